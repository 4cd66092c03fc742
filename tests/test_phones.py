"""Phones: export one model per block (LiteRT, Core ML), import timings into a table."""

import json

import pytest
from typer.testing import CliRunner

from archlab import preset
from archlab.cli import app
from archlab.cost.keys import distinct_specs
from archlab.tables.phones import export_blocks, import_results, parse_benchmark_output
from archlab.cost.table import LatencyTable

runner = CliRunner()
BENCHMARK_LOG = """STARTING!
Graph: [/data/local/tmp/{name}]
Num threads: [4]
The input model file size (MB): 0.2
Initialized session in 3.2ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=73 first=7450 curr=6800 min=6700 max=7450 avg=6850 std=120
Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=146 first={us} curr={us} min={us} max={us} avg={us} std=95
Inference timings in us: Init: 3200, First inference: 7450, Warmup (avg): 6850, Inference (avg): {us}
"""
PROFILE_CSV = """============================== Run Order ==============================
node type, start, first, avg_ms, %, cdf%, mem KB, times called, name
CONV_2D, 0.000, 1.200, 1.100, 40.0%, 40.0%, 0.000, 1, [conv]
Timings (microseconds): count=50 first=3100 curr=2900 min=2800 max=3200 avg={us} std=80
Memory (bytes): count=0
3 nodes observed
"""


def _specs(n):
    return dict(list(distinct_specs([preset("tiny")]).items())[:n])


def test_parse_benchmark_model_outputs():
    assert parse_benchmark_output(BENCHMARK_LOG.format(name="b.tflite", us=2500)) == (2.5, 0.095, 146)
    assert parse_benchmark_output(PROFILE_CSV.format(us=2950)) == (2.95, 0.08, 50)
    with pytest.raises(ValueError):
        parse_benchmark_output("nothing here")


@pytest.mark.slow
def test_tflite_export_and_import_from_benchmark_model(tmp_path):
    pytest.importorskip("litert_torch")
    specs = _specs(4)
    manifest = export_blocks(specs, tmp_path / "export", fmt="tflite", models=[preset("tiny")])
    data = json.loads(manifest.read_text())
    assert len(data["blocks"]) == 4 and data["models"][0]["file"].endswith(".tflite")
    assert all((tmp_path / "export" / e["file"]).stat().st_size > 0 for e in data["blocks"])
    logs = tmp_path / "logs"
    logs.mkdir()
    for i, entry in enumerate(data["blocks"]):
        stem = entry["file"].split("/")[-1].rsplit(".", 1)[0]
        text = BENCHMARK_LOG if i % 2 else PROFILE_CSV
        (logs / f"{stem}.{'txt' if i % 2 else 'csv'}").write_text(text.format(name=entry["file"], us=1000 * (i + 1)))
    result = runner.invoke(app, ["table", "import", str(logs), "--device", "Pixel 8", "--runtime", "litert-xnnpack",
                                 "--manifest", str(manifest), "--out", str(tmp_path / "pixel8.csv")])
    assert result.exit_code == 0, result.output
    table = LatencyTable.read(tmp_path / "pixel8.csv")
    assert table.metadata["device"] == "Pixel 8" and table.metadata["missing_blocks"] == 0
    assert [table.ms(e["key"]) for e in data["blocks"]] == [1.0, 2.0, 3.0, 4.0]


def test_coreml_export_and_import_from_a_results_csv(tmp_path):
    pytest.importorskip("coremltools")
    specs = _specs(2)
    manifest = export_blocks(specs, tmp_path / "export", fmt="coreml")
    data = json.loads(manifest.read_text())
    assert all((tmp_path / "export" / e["file"]).is_dir() and e["file"].endswith(".mlpackage") for e in data["blocks"])
    results = tmp_path / "results.csv"
    results.write_text("key,latency_ms,spread_ms,repeats\n" + "".join(f'"{e["key"]}",{1.5 + i},0.1,20\n' for i, e in enumerate(data["blocks"])))
    table = import_results(results, manifest_path=manifest, device="iPhone 15 Pro", runtime="coreml-ane", out=tmp_path / "ip.csv")
    assert len(table) == 2 and table.ms(data["blocks"][1]["key"]) == 2.5
    bad = tmp_path / "bad.csv"
    bad.write_text("name,ms\nx,1\n")
    result = runner.invoke(app, ["table", "import", str(bad), "--device", "d", "--runtime", "r", "--manifest", str(manifest),
                                 "--out", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "needs 'key' or 'file'" in result.stderr
