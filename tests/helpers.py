"""Helpers the tests share (importable by name: conftest puts tests/ on the path)."""

import os

import yaml

STUDIES = os.path.join(os.path.dirname(__file__), "..", "studies")


def tiny_study(tmp_path, **changes):
    """studies/tiny.yaml with ``changes``, its outputs under ``tmp_path/out`` unless ``out`` is given; its path."""
    data = yaml.safe_load(open(os.path.join(STUDIES, "tiny.yaml")))
    data.update(changes)
    data["out"] = changes.get("out", str(tmp_path / "out"))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
