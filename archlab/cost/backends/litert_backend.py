"""LiteRT (TensorFlow Lite's successor): litert-torch converts, ai-edge-litert runs with
XNNPACK, the CPU kernels Android uses."""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import torch
from torch import nn

from archlab.cost.backends.base import BackendUnavailable, LatencyBackend
from archlab.cost.backends.onnx_backend import _safe
from archlab.cost.backends.quiet import quiet_fds

# a flatbuffer cannot hold more than 2 GB: about 500M float32 parameters
FLATBUFFER_LIMIT_BYTES = 2 * 1024**3


def export_tflite(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str) -> None:
    n_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    if n_bytes >= FLATBUFFER_LIMIT_BYTES:
        raise BackendUnavailable(f"litert: {n_bytes / 1e9:.1f} GB of weights do not fit one .tflite flatbuffer (2 GB)")
    import litert_torch

    with quiet_fds(), torch.no_grad():
        litert_torch.convert(module.eval(), inputs).export(path)


class LiteRTBackend(LatencyBackend):
    """ai-edge-litert ``Interpreter(num_threads=threads)`` with its default XNNPACK delegate."""

    name = "litert"
    max_params = int(FLATBUFFER_LIMIT_BYTES * 0.95) // 4  # float32 weights plus the graph must fit 2 GB

    @classmethod
    def available(cls) -> str | None:
        missing = [m for m in ("litert_torch", "ai_edge_litert") if importlib.util.find_spec(m) is None]
        return f"missing {', '.join(missing)} (pip install 'archlab[runtimes]')" if missing else None

    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Callable[[], Any]:
        reason = self.available()
        if reason:
            raise BackendUnavailable(f"litert: {reason}")
        from ai_edge_litert.interpreter import Interpreter

        path = self.workdir / f"{_safe(name)}.tflite"
        if not path.exists():
            export_tflite(module, inputs, str(path))
        with quiet_fds():
            interpreter = Interpreter(model_path=str(path), num_threads=self.threads)
            interpreter.allocate_tensors()
        details = interpreter.get_input_details()
        by_shape = {}
        for t in inputs:  # the converter may reorder inputs: match them by shape
            by_shape.setdefault(tuple(t.shape), []).append(t)
        for d in details:
            arrays = by_shape.get(tuple(int(s) for s in d["shape"]))
            if not arrays:
                raise BackendUnavailable(f"litert: no input of shape {tuple(d['shape'])} for {d['name']}")
            interpreter.set_tensor(d["index"], arrays.pop(0).numpy())

        def run() -> Any:
            interpreter.invoke()

        return run

    def runtime_version(self) -> str:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')} (XNNPACK), litert-torch {version('litert-torch')}"
