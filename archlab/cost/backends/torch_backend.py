"""PyTorch eager on the CPU and on CUDA."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from archlab.cost.backends.base import BackendUnavailable, LatencyBackend, Timing


class TorchCPUBackend(LatencyBackend):
    """Eager PyTorch, ``torch.set_num_threads(threads)``, inference mode, float32."""

    name = "torch-cpu"
    default_allocator = "steady"  # eager PyTorch allocates every intermediate through malloc on every run

    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Callable[[], Any]:
        torch.set_num_threads(self.threads)
        module = module.eval()

        def run() -> Any:
            with torch.inference_mode():
                return module(*inputs)

        return run

    def runtime_version(self) -> str:
        return f"torch {torch.__version__}"


class TorchCUDABackend(LatencyBackend):
    """Eager PyTorch on the first CUDA device; each run is timed with CUDA events and
    ``torch.cuda.synchronize`` so only finished GPU work counts."""

    name = "torch-cuda"
    fingerprint_device = "cuda"

    @classmethod
    def available(cls) -> str | None:
        return None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is False)"

    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Callable[[], Any]:
        reason = self.available()
        if reason:
            raise BackendUnavailable(f"torch-cuda: {reason}")
        module = module.eval().cuda()
        inputs = tuple(t.cuda() for t in inputs)

        def run() -> Any:
            with torch.inference_mode():
                return module(*inputs)

        return run

    def measure(self, run: Callable[[], Any], *, repeats: int | None = None, warmup: int | None = None) -> Timing:
        for _ in range(self.warmup if warmup is None else warmup):
            run()
        torch.cuda.synchronize()
        samples = []
        for _ in range(self.repeats if repeats is None else repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        return Timing.from_samples(samples)

    def runtime_version(self) -> str:
        return f"torch {torch.__version__} cuda {torch.version.cuda}"

    def device_name(self) -> str:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"

