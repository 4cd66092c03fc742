"""Latency backends behind one contract (see :mod:`archlab.cost.backends.base`).

>>> from archlab.cost.backends import BACKENDS
>>> sorted(BACKENDS)
['litert', 'onnxruntime', 'torch-cpu', 'torch-cuda']
"""

from __future__ import annotations

from typing import Any

from archlab.cost.backends.base import BackendUnavailable, LatencyBackend, Timing, cpu_name
from archlab.cost.backends.litert_backend import LiteRTBackend
from archlab.cost.backends.onnx_backend import OnnxRuntimeBackend
from archlab.cost.backends.torch_backend import TorchCPUBackend, TorchCUDABackend
from archlab.errors import ConfigError

BACKENDS: dict[str, type[LatencyBackend]] = {
    b.name: b for b in (TorchCPUBackend, TorchCUDABackend, OnnxRuntimeBackend, LiteRTBackend)
}


def get_backend_class(name: str) -> type[LatencyBackend]:
    if name not in BACKENDS:
        raise ConfigError("backend", f"unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def get_backend(name: str, **settings: Any) -> LatencyBackend:
    """A backend by name, checked to be runnable here."""
    reason = get_backend_class(name).available()
    if reason:
        raise BackendUnavailable(f"backend {name}: {reason}")
    return BACKENDS[name](**settings)


__all__ = ["BACKENDS", "BackendUnavailable", "LatencyBackend", "LiteRTBackend", "OnnxRuntimeBackend", "Timing",
           "TorchCPUBackend", "TorchCUDABackend", "cpu_name", "get_backend", "get_backend_class"]
