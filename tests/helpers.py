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


def run_tflite(path, inputs):
    """Run a converted .tflite model once on ``inputs`` (torch tensors, each found by its shape); its first output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    assert len({tuple(d["shape"]) for d in details}) == len(details) == len(inputs)  # each input found by its shape
    for d in details:
        interpreter.set_tensor(d["index"], next(x for x in inputs if tuple(x.shape) == tuple(d["shape"])).numpy())
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
