"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import torch
from torch import nn

from archlab.cost.backends.base import BackendUnavailable, LatencyBackend
from archlab.cost.backends.quiet import quiet_fds


def export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str) -> None:
    """TorchScript-based export (no onnxscript needed), opset 17, weights beside the model
    when they pass protobuf's 2 GB."""
    names = [f"input{i}" for i in range(len(inputs))]
    with quiet_fds(), torch.no_grad():
        torch.onnx.export(module.eval(), inputs, path, input_names=names, output_names=["output"], opset_version=17,
                          dynamo=False)


class OnnxRuntimeBackend(LatencyBackend):
    """onnxruntime InferenceSession, CPUExecutionProvider, ``intra_op_num_threads=threads``,
    one inter-op thread, sequential execution, all graph optimisations."""

    name = "onnxruntime"

    @classmethod
    def available(cls) -> str | None:
        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        return f"missing {', '.join(missing)} (pip install 'archlab[runtimes]')" if missing else None

    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Callable[[], Any]:
        reason = self.available()
        if reason:
            raise BackendUnavailable(f"onnxruntime: {reason}")
        import onnxruntime as ort

        path = self.workdir / f"{_safe(name)}.onnx"
        if not path.exists():
            export_onnx(module, inputs, str(path))
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


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]
