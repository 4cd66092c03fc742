"""LiteRT (TensorFlow Lite's successor): litert-torch converts, ai-edge-litert runs with
XNNPACK, the CPU kernels Android uses."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from archlab.convert import FLATBUFFER_LIMIT_BYTES, export_tflite, missing_modules, quiet_fds
from archlab.cost.backends.base import BackendUnavailable, LatencyBackend


class LiteRTBackend(LatencyBackend):
    """ai-edge-litert ``Interpreter(num_threads=threads)`` with its default XNNPACK delegate."""

    name = "litert"
    max_params = int(FLATBUFFER_LIMIT_BYTES * 0.95) // 4  # float32 weights plus the graph must fit 2 GB
    converted_suffix = ".tflite"

    @classmethod
    def available(cls) -> str | None:
        missing = missing_modules("litert_torch", "ai_edge_litert")
        return f"missing {', '.join(missing)} (pip install 'archlab[runtimes]')" if missing else None

    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Callable[[], Any]:
        reason = self.available()
        if reason:
            raise BackendUnavailable(f"litert: {reason}")
        from ai_edge_litert.interpreter import Interpreter

        path = self.converted(name, lambda out: export_tflite(module, inputs, out))
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
