"""The conformance test every latency backend runs, on the same block module."""

import json
import subprocess
import sys

import pytest
import torch

from archlab import preset
from archlab.cost.backends import BACKENDS, BackendUnavailable, get_backend
from archlab.cost.keys import block_specs

SPECS = {site.block.kind: spec for site, spec in block_specs(preset("tiny"))}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "litert" else n for n in sorted(BACKENDS)])
def test_backend_conformance(name, tmp_path):
    reason = BACKENDS[name].available()
    if reason:
        with pytest.raises(BackendUnavailable, match=name):
            get_backend(name)
        pytest.skip(reason)
    backend = get_backend(name, threads=1, warmup=1, repeats=4, workdir=tmp_path)
    meta = backend.metadata()
    assert meta["runtime"] == name and meta["threads"] == 1 and meta["repeats"] == 4
    assert meta["device"] and meta["runtime_version"]
    for kind in ("resnet", "transformer", "downsample", "upsample"):
        spec = SPECS[kind]
        run = backend.prepare(spec.module(), spec.inputs(), name=spec.key)
        timing = backend.measure(run)
        assert len(timing.samples_ms) == 4 and all(s > 0 for s in timing.samples_ms)
        assert timing.min_ms <= timing.median_ms and timing.spread_ms >= 0
    # a whole model goes through the same prepare/measure path
    from archlab.convert import model_and_inputs

    model, inputs = model_and_inputs(preset("tiny"))
    assert backend.time(model, inputs, name="tiny-model").median_ms > 0
    backend.close()


@pytest.mark.parametrize("runtime", ["onnxruntime", pytest.param("litert", marks=pytest.mark.slow)])
def test_exported_blocks_compute_what_pytorch_computes(tmp_path, runtime):
    """The converted models the runtimes time are the builder's blocks, numerically."""
    reason = BACKENDS[runtime].available()
    if reason:
        pytest.skip(reason)
    spec = SPECS["transformer"]
    module, inputs = spec.module(), spec.inputs()
    with torch.no_grad():
        expected = module(*inputs).numpy()
    if runtime == "onnxruntime":
        import onnxruntime as ort

        from archlab.convert import export_onnx

        export_onnx(module, inputs, tmp_path / "b.onnx")
        session = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
        assert abs(got - expected).max() < 1e-4
    else:
        from helpers import run_tflite

        from archlab.convert import export_tflite

        export_tflite(module, inputs, tmp_path / "b.tflite")
        assert abs(run_tflite(tmp_path / "b.tflite", inputs) - expected).max() < 1e-4


def test_unknown_backend_is_a_config_error():
    from archlab import ConfigError

    with pytest.raises(ConfigError, match="backend: unknown backend 'tpu'"):
        get_backend("tpu")


FAULTS_SCRIPT = """
import json, resource, sys, torch
from archlab.cost.backends import get_backend
class Scores(torch.nn.Module):  # a 64 MB intermediate, as a ReLU attention's score matrix at 4000 tokens
    def forward(self, x):
        return (x @ x.transpose(-1, -2)).relu().sum()
x, out = torch.randn(4000, 64), {}
for mode in ("system", "steady"):  # in this order: steady is process-wide and cannot be undone
    backend = get_backend("torch-cpu", threads=1, warmup=2, repeats=1, allocator=mode)
    run = backend.prepare(Scores(), (x,))
    backend.measure(run)
    faults = []
    for _ in range(3):  # the fewest of three runs: one run in a full suite once faulted its buffer in anew (15625)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        run()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    out[mode] = [backend.metadata()["allocator"], min(faults)]
print(json.dumps(out))
"""


def test_a_steady_allocator_stops_large_buffers_page_faulting_in_on_every_run():
    """Eager PyTorch's large intermediates cost page faults on every run under glibc's default; the steady
    allocator (torch-cpu's default for new tables, recorded in their metadata) reuses them instead."""
    from archlab.cost.backends.base import use_steady_allocator

    if sys.platform != "linux":
        pytest.skip("glibc's mallopt: Linux only")
    result = subprocess.run([sys.executable, "-c", FAULTS_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    faults = json.loads(result.stdout.strip().splitlines()[-1])
    if faults["steady"][0] != "steady":  # a C library without mallopt: the table says what it was timed with
        assert not use_steady_allocator()
        pytest.skip("no mallopt here")
    assert faults["system"][0] == "system" and faults["system"][1] > 4000  # 64 MB is 16384 pages
    assert faults["steady"][1] < 100
    assert get_backend("torch-cpu").allocator == "steady" and get_backend("onnxruntime").allocator == "system"
