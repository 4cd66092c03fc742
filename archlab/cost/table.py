"""Latency lookup tables: one CSV file per device x runtime, measured by this repository.

File format: the first line is ``# archlab-latency-table `` followed by the metadata as one
JSON object; the rest is CSV with the columns in :data:`COLUMNS`, one row per block key.
Rows are appended (and flushed) as they are measured, so an interrupted build keeps what
it finished and a rerun measures only the missing keys. Metadata changes (the overhead fit)
rewrite the file atomically.

A whole UNet's latency is predicted (by :class:`archlab.cost.predict.Predictor`) as
``intercept_ms + scale x sum(block figures)``, where intercept and scale are fitted by least
squares from a few whole-model timings on the same backend (skip concatenations,
embeddings, the head and framework overhead are in them).
The block figure is the median by default; a table whose metadata says ``"statistic":
"min"`` predicts from the fastest run of each block and is compared with the fastest runs
end to end, which a shared, noisy machine disturbs far less.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from archlab import resources
from archlab.errors import ArchlabError, ConfigError

MAGIC = "# archlab-latency-table "
FORMAT = "archlab-latency-table/1"
COLUMNS = ["key", "kind", "median_ms", "spread_ms", "min_ms", "repeats", "measured_at"]
REQUIRED_METADATA = ("format", "device", "runtime", "runtime_version", "threads", "dtype", "batch", "warmup", "repeats", "created")
# the settings a resumed build must share with the file it appends to
IDENTITY = ("device", "runtime", "threads", "dtype", "batch")
STATISTICS = ("median", "min")


class MissingBlocks(ArchlabError):
    """A prediction needs blocks the table has not measured."""

    def __init__(self, keys: list[str], table: str):
        self.keys = keys
        shown = "; ".join(keys[:5]) + (f"; ... ({len(keys) - 5} more)" if len(keys) > 5 else "")
        super().__init__(f"{table}: {len(keys)} block(s) not measured: {shown} "
                         "(run `archlab table build` for the space, or pass --measure-missing)")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Overhead:
    intercept_ms: float = 0.0
    scale: float = 1.0

    def apply(self, block_sum_ms: float) -> float:
        return self.intercept_ms + self.scale * block_sum_ms


class LatencyTable:
    """Measured block latencies plus metadata. Load with :meth:`read`, make with :meth:`create`."""

    def __init__(self, path: str | Path, metadata: dict[str, Any], rows: pd.DataFrame):
        self.path = Path(path)
        self.metadata = metadata
        self.rows = rows
        self._ms: dict[str, float] = dict(zip(rows["key"], rows[f"{self.statistic}_ms"].astype(float)))

    # ------------------------------------------------------------------ files

    @classmethod
    def create(cls, path: str | Path, metadata: Mapping[str, Any]) -> "LatencyTable":
        meta = {"format": FORMAT, "created": now(), **metadata}
        _check_metadata(meta, str(path))
        table = cls(path, meta, pd.DataFrame(columns=COLUMNS))
        table.save()
        return table

    @classmethod
    def load(cls, name_or_path: str | Path) -> "LatencyTable":
        """A table file, or a shipped table by name (``x86-2core_torch-cpu``)."""
        path = Path(name_or_path)
        if not path.exists() and path.suffix != ".csv" and os.sep not in str(name_or_path):
            shipped = resources.find("tables", str(name_or_path))
            if shipped is None:
                raise ConfigError("table", f"{name_or_path!r} is neither a file nor a shipped table ({', '.join(resources.names('tables'))})")
            path = shipped
        return cls.read(path)

    @classmethod
    def read(cls, path: str | Path) -> "LatencyTable":
        """Read and check a table file."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
        first, _, body = text.partition("\n")
        if not first.startswith(MAGIC):
            raise ConfigError(str(path), f"not an archlab latency table (first line must start with {MAGIC.strip()!r})")
        try:
            meta = json.loads(first[len(MAGIC):])
        except json.JSONDecodeError as exc:
            raise ConfigError(str(path), f"metadata is not valid JSON: {exc.msg}") from None
        _check_metadata(meta, str(path))
        if body and not body.endswith("\n"):  # a build killed mid-write: drop the partial row
            body = body[: body.rfind("\n") + 1]
        try:
            rows = pd.read_csv(io.StringIO(body), dtype={"key": str, "kind": str, "measured_at": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ConfigError(str(path), f"rows are not valid CSV: {exc}") from None
        if list(rows.columns) != COLUMNS:
            raise ConfigError(f"{path}: columns", f"{list(rows.columns)} is not {COLUMNS}")
        for col in ("median_ms", "spread_ms", "min_ms", "repeats"):
            if len(rows) and (not pd.api.types.is_numeric_dtype(rows[col]) or rows[col].isna().any()):
                raise ConfigError(f"{path}: column {col}", "must hold numbers in every row")
        if (rows["median_ms"] <= 0).any():
            raise ConfigError(f"{path}: column median_ms", "must be positive")
        dup = rows["key"][rows["key"].duplicated()]
        if len(dup):
            raise ConfigError(f"{path}: key", f"{dup.iloc[0]!r} appears twice")
        return cls(path, meta, rows)

    def save(self) -> None:
        """Rewrite the whole file atomically (metadata changes)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(MAGIC + json.dumps(self.metadata, sort_keys=True) + "\n")
            self.rows.to_csv(f, index=False, lineterminator="\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def append(self, key: str, kind: str, median_ms: float, spread_ms: float, min_ms: float, repeats: int) -> None:
        """Add one measured row and flush it to disk before returning."""
        row = {"key": key, "kind": kind, "median_ms": round(median_ms, 6), "spread_ms": round(spread_ms, 6),
               "min_ms": round(min_ms, 6), "repeats": repeats, "measured_at": now()}
        line = pd.DataFrame([row], columns=COLUMNS).to_csv(index=False, header=False, lineterminator="\n")
        text = self.path.read_text()
        with open(self.path, "a") as f:
            if text and not text.endswith("\n"):  # never glue a row onto a partial one
                f.truncate(len(text[: text.rfind("\n") + 1].encode()))
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.rows = pd.concat([self.rows if len(self.rows) else None, pd.DataFrame([row])], ignore_index=True)
        self._ms[key] = float(row[f"{self.statistic}_ms"])

    # ------------------------------------------------------------------ lookups

    def __contains__(self, key: str) -> bool:
        return key in self._ms

    def __len__(self) -> int:
        return len(self._ms)

    def ms(self, key: str) -> float:
        return self._ms[key]

    @property
    def statistic(self) -> str:
        """Which per-block figure predictions add up: ``median`` or ``min``."""
        return str(self.metadata.get("statistic", "median"))

    @property
    def overhead(self) -> Overhead:
        o = self.metadata.get("overhead") or {}
        return Overhead(float(o.get("intercept_ms", 0.0)), float(o.get("scale", 1.0)))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        """The table's name without ``.csv``: what ``latency_ms@<label>`` metrics refer to."""
        return self.path.stem


def _check_metadata(meta: Any, where: str) -> None:
    if not isinstance(meta, dict):
        raise ConfigError(where, "metadata must be a JSON object")
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{where}: metadata.format", f"{meta.get('format')!r} is not {FORMAT!r}")
    for key in REQUIRED_METADATA:
        if key not in meta:
            raise ConfigError(f"{where}: metadata.{key}", "is missing")
    for key in ("threads", "batch", "warmup", "repeats"):
        if not isinstance(meta[key], int) or meta[key] < 0:
            raise ConfigError(f"{where}: metadata.{key}", f"{meta[key]!r} is not a non-negative integer")
    if meta.get("statistic", "median") not in STATISTICS:
        raise ConfigError(f"{where}: metadata.statistic", f"{meta['statistic']!r} is not one of {', '.join(STATISTICS)}")


def fit_overhead(points: Iterable[tuple[float, float]]) -> Overhead:
    """Least-squares ``measured = intercept + scale x block_sum`` over (block_sum, measured) pairs.

    With one point, or points too close to fit a slope, only the intercept is fitted.
    """
    pts = np.array(list(points), dtype=float)
    if len(pts) == 0:
        return Overhead()
    x, y = pts[:, 0], pts[:, 1]
    if len(pts) >= 3 and np.ptp(x) > 0.2 * np.mean(x):
        scale, intercept = np.polyfit(x, y, 1)
        return Overhead(float(intercept), float(scale))
    return Overhead(float(np.mean(y - x)), 1.0)
