"""Property-based: random bytes, random YAML and random field values thrown at every file reader and at the
command line. Each must either read the file or refuse it with one ConfigError (one line, exit 2 on the
command line); any other exception is a bug."""

import math
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from archlab import ConfigError, load_description, load_space, preset
from archlab.cli import app
from archlab.tables.phones import read_manifest
from archlab.cost.table import LatencyTable
from archlab.distill import load_distill_file
from archlab.search.evolve import load_evolve_file
from archlab.search.study import load_study

ROOT = Path(__file__).resolve().parent.parent
# ARCHLAB_FUZZ_EXAMPLES raises the count for a longer hunt (the default keeps the suite fast and repeatable)
EXAMPLES_PER_TEST = int(os.environ.get("ARCHLAB_FUZZ_EXAMPLES", "30"))
FAST = settings(max_examples=EXAMPLES_PER_TEST, deadline=None, suppress_health_check=list(HealthCheck),
                derandomize=EXAMPLES_PER_TEST <= 30)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["", "auto", "mobilediffusion", "resnet", "x.yaml", "../x"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)


def _examples() -> dict:
    manifest = {"format": "tflite", "dtype": "float32", "batch": 1, "text_tokens": 77,
                "blocks": [{"key": "k", "file": "blocks/b0000.tflite", "kind": "resnet"}], "models": []}
    return {
        "description": (yaml.safe_load(preset("tiny").to_yaml()), load_description),
        "space": (yaml.safe_load((ROOT / "search_spaces" / "tiny.yaml").read_text()), load_space),
        "study": (yaml.safe_load((ROOT / "studies" / "tiny.yaml").read_text()), load_study),
        "evolve": (yaml.safe_load((ROOT / "studies" / "evolve-quickstart.yaml").read_text()), load_evolve_file),
        "distill": ({"teacher": "model.safetensors", "distill": {"steps": 10}, "gan": {"steps": 5}, "out": "o"}, load_distill_file),
        "manifest": (manifest, read_manifest),
    }


EXAMPLES = _examples()


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _replace(data, path, value):
    if not path:
        return value
    import copy

    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _must_read_or_refuse(reader, path):
    try:
        reader(path)
    except ConfigError as exc:
        assert "\n" not in str(exc).strip(), str(exc)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
@FAST
@given(blob=st.binary(max_size=300))
def test_random_bytes(kind, blob, tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / f"f.{'json' if kind == 'manifest' else 'yaml'}"
    path.write_bytes(blob)
    _must_read_or_refuse(EXAMPLES[kind][1], path)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
@FAST
@given(data=values)
def test_random_yaml(kind, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("yaml") / "f.yaml"
    path.write_text(yaml.safe_dump(data))
    _must_read_or_refuse(EXAMPLES[kind][1], path)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
@FAST
@given(pick=st.integers(0, 10**6), value=values)
def test_random_field_values(kind, pick, value, tmp_path_factory):
    example, reader = EXAMPLES[kind]
    paths = list(_paths(example))
    data = _replace(example, paths[pick % len(paths)], value)
    path = tmp_path_factory.mktemp("field") / "f.yaml"
    path.write_text(yaml.safe_dump(data))
    _must_read_or_refuse(reader, path)


@FAST
@given(row=st.integers(0, 5), column=st.sampled_from(["median_ms", "spread_ms", "min_ms", "repeats", "key", "kind"]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.integers(-5, 5)))
def test_random_latency_table_cells(row, column, value, tmp_path_factory):
    shipped = LatencyTable.load("x86-2core_torch-cpu")
    rows = shipped.rows.head(6).copy()
    rows[column] = rows[column].astype(object)
    rows.loc[row, column] = value
    path = tmp_path_factory.mktemp("table") / "t.csv"
    path.write_text(shipped.path.read_text().splitlines()[0] + "\n" + rows.to_csv(index=False, lineterminator="\n"))
    try:
        table = LatencyTable.read(path)
    except ConfigError:
        return
    for key in table.rows["key"]:  # what was read is usable: finite positive times
        assert math.isfinite(table.ms(key)) and table.ms(key) > 0


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.one_of(values, st.binary(max_size=200)), command=st.sampled_from(["describe", "table show", "study pareto"]))
def test_the_command_line_reads_or_refuses_in_one_line(data, command, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / ("t.csv" if command == "table show" else "f.yaml")
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, [*command.split(), str(path)])
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
