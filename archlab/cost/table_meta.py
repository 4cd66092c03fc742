"""A latency table's metadata as typed, frozen records, read by the one config reader.

The table file keeps its metadata as one JSON line (the format every shipped table has);
:func:`table_meta` reads it into :class:`TableMeta` (an unknown key or a wrong type is
refused, naming the field), so code reads ``table.meta.batch`` or ``table.meta.overhead.models``
instead of string keys. Three views group what belongs together: the table's identity
(what a build must match to add rows), its timing protocol (how blocks were timed), and the
overhead fit (how whole models relate to their blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from archlab.config import read

IDENTITY_FIELDS = ("device", "runtime", "threads", "dtype", "batch", "cold", "allocator")


@dataclass(frozen=True)
class OverheadRecord:
    """The overhead fit as stored: ``predicted = intercept + scales x block figures [+ per_gb x weight GB]``."""

    intercept_ms: float = 0.0
    scale: float = 1.0
    scales: dict[str, float] | None = None  # per block kind (resnet, transformer, resample)
    per_gb_ms: float = 0.0
    form: Literal["sum", "weights", "kinds", "intercept"] = "sum"  # intercept: fewer calibration models than a scale needs
    fitted: str = ""  # how it was fitted, in words
    statistic: str | None = None  # the block statistic it was fitted on
    seed: int | None = None  # the calibration models' sampling seed
    leave_one_out_rmspe: dict[str, float] | None = None  # each form's leave-one-out error
    models: tuple[dict[str, Any], ...] = ()  # the calibration models: name, description, block sum, measured ms...
    timing: dict[str, Any] | None = None  # how the calibration models were timed (passes, settle, ...)


@dataclass(frozen=True)
class TimingProtocol:
    """How a table's blocks were timed."""

    warmup: int
    repeats: int
    statistic: str
    threads: int
    cold: bool
    allocator: str
    block_sweeps: dict[str, Any] | None


@dataclass(frozen=True)
class TableMeta:
    """Every metadata field a table file may hold (see the module docstring)."""

    format: str
    device: str
    runtime: str
    created: str = ""
    runtime_version: str = ""
    dtype: str = "float32"
    batch: int = 1
    threads: int = 0
    warmup: int = 0
    repeats: int = 0
    statistic: Literal["median", "min"] = "median"
    text_tokens: int | None = None
    cold: bool = False  # tables written before the field: warm caches
    allocator: Literal["system", "steady"] = "system"  # tables written before the field: glibc's default
    fingerprint: dict[str, Any] | None = None
    sources: tuple[str, ...] = ()  # spaces, presets and description files the rows were measured for
    block_sweeps: dict[str, Any] | None = None
    overhead: OverheadRecord | None = None
    missing_blocks: int | None = None  # an imported table: manifest blocks without a result
    source: str | None = None  # an imported table: where its timings came from

    @property
    def identity(self) -> dict[str, Any]:
        """What a build must match to add rows to the table."""
        return {k: getattr(self, k) for k in IDENTITY_FIELDS}

    @property
    def timing(self) -> TimingProtocol:
        return TimingProtocol(self.warmup, self.repeats, self.statistic, self.threads, self.cold, self.allocator,
                              self.block_sweeps)

    @property
    def calibration_models(self) -> tuple[dict[str, Any], ...]:
        return self.overhead.models if self.overhead is not None else ()


def table_meta(data: dict[str, Any], where: str = "metadata") -> TableMeta:
    """Read a table's metadata dict into :class:`TableMeta` (ConfigError naming the field otherwise)."""
    return read(TableMeta, data, where)
