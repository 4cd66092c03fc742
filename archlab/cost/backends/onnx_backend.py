"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from archlab.convert import export_onnx, missing_modules
from archlab.cost.backends.base import BackendUnavailable, LatencyBackend


class OnnxRuntimeBackend(LatencyBackend):
    """onnxruntime InferenceSession, CPUExecutionProvider, ``intra_op_num_threads=threads``,
    one inter-op thread, sequential execution, all graph optimisations."""

    name = "onnxruntime"
    converted_suffix = ".onnx"

    @classmethod
    def available(cls) -> str | None:
        missing = missing_modules("onnx", "onnxruntime")
        return f"missing {', '.join(missing)} (pip install 'archlab[runtimes]')" if missing else None

    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Callable[[], Any]:
        reason = self.available()
        if reason:
            raise BackendUnavailable(f"onnxruntime: {reason}")
        import onnxruntime as ort

        path = self.converted(name, lambda out: export_onnx(module, inputs, out))
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}

        def run() -> Any:
            return session.run(None, feeds)

        return run

    def runtime_version(self) -> str:
        import onnxruntime

        return f"onnxruntime {onnxruntime.__version__}"

