"""The latency backend contract.

A backend times a PyTorch module (a block the builder makes, or a whole UNet) on one
runtime. Every backend follows the same protocol, so figures from a table and from an
end-to-end run are comparable:

1. ``prepare(module, inputs)`` does everything that is not the run itself (moving to the
   device, exporting, converting, loading an interpreter) and returns a callable that runs
   the model once on those fixed inputs and returns only when the result is ready
   (synchronised: CUDA work finished, interpreter returned).
2. ``warmup`` runs are made and discarded (allocations, caches, lazy initialisation).
3. ``repeats`` runs are timed one by one with a monotonic clock (CUDA events for CUDA);
   the result is the median, the spread (interquartile range), the minimum and every sample,
   in milliseconds. With ``cold``, the CPU caches are flushed (a buffer twice the last-level
   cache is written) before every timed run, as a block's weights are cold inside a whole
   model whose weights do not fit the cache.
4. The runtime uses exactly ``threads`` CPU threads for its kernels; the thread count is part
   of the table's metadata, and tables of different thread counts are not compared.
5. ``allocator``: ``"steady"`` keeps freed memory in the process (glibc's ``mallopt``), so a
   module run again reuses its buffers instead of page-faulting them in afresh on every run;
   ``"system"`` leaves the C library's default, under which a buffer over its adaptive mmap
   threshold (at most 32 MiB) is mapped and unmapped on every run, and whether one is depends
   on what the process allocated before. Eager PyTorch's large intermediates (a ReLU
   attention's score matrix at 40x40 latents: 51 MB) then cost 2.5x as long in one process as
   in another (benchmarks/README.md, "A space archlab had never seen"). It is process-wide and cannot
   be undone (a ``"system"`` backend made later in the same process times with it too; each
   CLI command makes one), and the table records the setting (missing in older tables:
   ``"system"``).

Subclasses implement :meth:`LatencyBackend.prepare`, :meth:`runtime_version` and, when not
the host CPU, :meth:`device_name`; tests/test_backends.py runs the same conformance test on
every registered backend that can run here.
"""

from __future__ import annotations

import abc
import ctypes
import ctypes.util
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from archlab.convert import safe_name
from archlab.errors import ArchlabError, ConfigError

ALLOCATORS = ("steady", "system")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_STEADY_LIMITS = (1 << 30, 32 << 20)  # mmap threshold: 1 GiB where glibc allows it, else its 32 MiB ceiling
_steady = False


def use_steady_allocator() -> bool:
    """Keep freed memory in this process from now on (glibc); True when in effect.

    Large buffers then come from the heap and are reused run after run instead of being
    mapped, page-faulted in and unmapped each time. Process-wide and permanent; False (and
    nothing changed) where the C library has no ``mallopt`` (macOS, musl).
    """
    global _steady
    if not _steady:
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
        except (OSError, AttributeError):
            return False
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        mapped = any(mallopt(_M_MMAP_THRESHOLD, limit) == 1 for limit in _STEADY_LIMITS)
        _steady = mapped and mallopt(_M_TRIM_THRESHOLD, _STEADY_LIMITS[0]) == 1
    return _steady


class BackendUnavailable(ArchlabError):
    """The backend's runtime is not installed or has no device here."""


@dataclass(frozen=True)
class Timing:
    median_ms: float
    spread_ms: float  # interquartile range of the samples
    min_ms: float
    samples_ms: tuple[float, ...] = field(repr=False, default=())

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> "Timing":
        ordered = sorted(samples_ms)
        if len(ordered) >= 4:
            q = statistics.quantiles(ordered, n=4)
            spread = q[2] - q[0]
        else:
            spread = ordered[-1] - ordered[0]
        return cls(statistics.median(ordered), spread, ordered[0], tuple(samples_ms))


def last_level_cache_bytes() -> int:
    """The largest CPU cache's size (32 MiB when the system does not say)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = index.read_text().strip().upper()
            sizes.append(int(text[:-1]) * {"K": 2**10, "M": 2**20}[text[-1]] if text[-1] in "KM" else int(text))
        except (OSError, ValueError):
            continue
    return max(sizes, default=32 * 2**20)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class LatencyBackend(abc.ABC):
    """Times modules on one runtime. Keyword-only settings; see the module docstring."""

    name: ClassVar[str]
    # the largest whole model (float32 parameters) the runtime can load, None: no limit
    max_params: ClassVar[int | None] = None
    # file suffix of the converted copy (weights included) prepare() keeps in workdir; None: nothing converted
    converted_suffix: ClassVar[str | None] = None
    # the allocator new tables are timed with (see the module docstring, 5); runtimes with their own arenas keep "system"
    default_allocator: ClassVar[str] = "system"

    def __init__(self, *, threads: int = 2, warmup: int = 2, repeats: int = 7, cold: bool = False,
                 workdir: str | Path | None = None, allocator: str | None = None):
        if threads < 1 or warmup < 0 or repeats < 1:
            raise ValueError("threads and repeats must be >= 1, warmup >= 0")
        allocator = self.default_allocator if allocator is None else allocator
        if allocator not in ALLOCATORS:
            raise ConfigError("allocator", f"{allocator!r} is not allowed; allowed: {', '.join(ALLOCATORS)}")
        # what is in effect: "steady" asked for where the C library cannot do it times with the system's
        self.allocator = "steady" if allocator == "steady" and use_steady_allocator() else "system"
        self.threads = threads
        self.warmup = warmup
        self.repeats = repeats
        self.cold = cold
        self._flush = None
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix=f"archlab-{self.name}-")
        self.workdir = Path(workdir) if workdir else Path(self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)

    def converted_path(self, name: str) -> Path:
        """Where ``prepare(..., name=name)`` keeps its converted model (backends with ``converted_suffix``)."""
        return self.workdir / f"{safe_name(name)}{self.converted_suffix}"

    def converted(self, name: str, export: Callable[[str], None]) -> Path:
        """The converted model, exported once and reused by later passes; renamed into place, so a crash leaves no half file."""
        path = self.converted_path(name)
        if not path.exists():
            partial = path.with_name(f"{path.stem}.partial{path.suffix}")
            export(str(partial))
            partial.replace(path)
        return path

    def discard_converted(self, name: str) -> None:
        """Delete ``name``'s converted copy once no pass needs it again (LiteRT: a block up to 0.5 GB, a model up to 2 GB)."""
        if self.converted_suffix is not None:
            self.converted_path(name).unlink(missing_ok=True)

    @classmethod
    def available(cls) -> str | None:
        """None when the backend can run here, else why not."""
        return None

    @abc.abstractmethod
    def prepare(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Callable[[], Any]:
        """Return a callable running ``module`` once on ``inputs``, synchronised."""

    @abc.abstractmethod
    def runtime_version(self) -> str:
        """The runtime's name and version, e.g. ``torch 2.14.1``."""

    def device_name(self) -> str:
        return cpu_name()

    def flush_caches(self) -> None:
        """Evict the CPU caches by writing a buffer twice the size of the last-level cache."""
        if self._flush is None:
            self._flush = np.zeros(2 * last_level_cache_bytes() // 8)
        self._flush += 1.0

    def measure(self, run: Callable[[], Any], *, repeats: int | None = None, warmup: int | None = None) -> Timing:
        for _ in range(self.warmup if warmup is None else warmup):
            run()
        samples = []
        for _ in range(self.repeats if repeats is None else repeats):
            if self.cold:
                self.flush_caches()
            start = time.perf_counter_ns()
            run()
            samples.append((time.perf_counter_ns() - start) / 1e6)
        return Timing.from_samples(samples)

    def time(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], *, name: str = "model") -> Timing:
        """Prepare and measure in one call."""
        return self.measure(self.prepare(module, inputs, name=name))

    fingerprint_device = "cpu"  # what the fingerprint's reference benchmark runs on

    def fingerprint(self) -> dict[str, Any]:
        """This machine as :mod:`archlab.cost.fingerprint` describes it, for this runtime's threads."""
        from archlab.cost.fingerprint import fingerprint

        return fingerprint(self.threads, self.fingerprint_device)

    def differences_from(self, recorded: dict[str, Any] | None) -> list[str]:
        """How this machine differs from a recorded fingerprint (empty: the same machine, as fast)."""
        from archlab.cost.fingerprint import differences_here

        return differences_here(recorded, self.threads, self.fingerprint_device)

    def metadata(self) -> dict[str, Any]:
        return {"runtime": self.name, "runtime_version": self.runtime_version(), "device": self.device_name(),
                "threads": self.threads, "warmup": self.warmup, "repeats": self.repeats, "cold": self.cold,
                "allocator": self.allocator, "fingerprint": self.fingerprint()}

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
