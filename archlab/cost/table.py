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
from archlab.cost.table_meta import IDENTITY_FIELDS, TableMeta, table_meta
from archlab.errors import ArchlabError, ConfigError

MAGIC = "# archlab-latency-table "
FORMAT = "archlab-latency-table/1"
COLUMNS = ["key", "kind", "median_ms", "spread_ms", "min_ms", "repeats", "measured_at"]
REQUIRED_METADATA = ("format", "device", "runtime", "runtime_version", "threads", "dtype", "batch", "warmup", "repeats", "created")
# the settings a resumed build must share with the file it appends to
IDENTITY = IDENTITY_FIELDS
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


# block kinds the overhead term may scale apart (resamplers: downsample and upsample)
LATENCY_KINDS = ("resnet", "transformer", "resample")
FIT_FORMS = ("sum", "weights", "kinds")


def latency_kind(block_kind: str) -> int:
    """The index of a block kind in :data:`LATENCY_KINDS`."""
    return 0 if block_kind == "resnet" else 1 if block_kind == "transformer" else 2


@dataclass(frozen=True)
class Overhead:
    """``predicted = intercept + sum over kinds of scale_k x block figures_k + per_gb x weight GB``.

    The ``sum`` form has one scale for every kind and no weight term; ``weights`` adds the
    weight-bytes term (a whole model streams its weights from memory, a block timed alone
    may keep them in cache); ``kinds`` scales ResNets, transformers and resamplers apart.
    """

    intercept_ms: float = 0.0
    scales: tuple[float, float, float] = (1.0, 1.0, 1.0)
    per_gb_ms: float = 0.0
    form: str = "sum"

    def apply(self, kind_sums: tuple[float, ...] | list[float], weight_gb: float = 0.0) -> float:
        r, t, x = kind_sums
        s = self.scales
        return self.intercept_ms + s[0] * r + s[1] * t + s[2] * x + self.per_gb_ms * weight_gb

    @classmethod
    def from_metadata(cls, o: Mapping[str, Any] | None) -> "Overhead":
        if not o:
            return cls()
        scales = o.get("scales")
        scales = tuple(float(scales[k]) for k in LATENCY_KINDS) if scales else (float(o.get("scale", 1.0)),) * 3
        return cls(float(o.get("intercept_ms", 0.0)), scales, float(o.get("per_gb_ms", 0.0)), str(o.get("form", "sum")))

    def to_metadata(self) -> dict[str, Any]:
        return {"form": self.form, "intercept_ms": self.intercept_ms, "scale": self.scales[0],
                "scales": dict(zip(LATENCY_KINDS, self.scales)), "per_gb_ms": self.per_gb_ms}


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
        return cls.read(resources.locate("tables", name_or_path))

    @classmethod
    def read(cls, path: str | Path) -> "LatencyTable":
        """Read and check a table file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ConfigError(str(path), "is not a text file: an archlab latency table is CSV with a JSON first line") from None
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
        for col, least in (("median_ms", 0.0), ("min_ms", 0.0), ("spread_ms", None)):
            bad = ~np.isfinite(rows[col].to_numpy(float)) | ((rows[col] <= least) if least is not None else (rows[col] < 0))
            if len(rows) and bad.any():
                row = rows[bad].iloc[0]
                raise ConfigError(f"{path}: column {col}", f"{row[col]!r} in the row of {row['key']!r} must be a finite "
                                  f"{'positive' if least is not None else 'non-negative'} number of milliseconds; "
                                  "remeasure that block or delete its row")
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
    def meta(self) -> TableMeta:
        """The metadata as a typed record (:mod:`archlab.cost.table_meta`); ``metadata`` is the dict the file holds."""
        return table_meta(self.metadata, f"{self.path}: metadata")

    @property
    def statistic(self) -> str:
        """Which per-block figure predictions add up: ``median`` or ``min``."""
        return self.meta.statistic

    @property
    def overhead(self) -> Overhead:
        return Overhead.from_metadata(self.metadata.get("overhead"))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def reference(self) -> str:
        """How a command names this table: a shipped table's name, else its path."""
        shipped = resources.find("tables", self.label)
        return self.label if shipped is not None and Path(shipped).resolve() == self.path.resolve() else str(self.path)

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
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0:
            raise ConfigError(f"{where}: metadata.{key}", f"{meta[key]!r} is not a non-negative integer")
    table_meta(meta, f"{where}: metadata")  # every field's type, and no unknown one


@dataclass(frozen=True)
class FitPoint:
    """A whole model timed for the overhead fit: its block figures by kind, weight GB and time."""

    kind_sums: tuple[float, float, float]
    weight_gb: float
    measured_ms: float


def _design(points: list[FitPoint], form: str) -> np.ndarray:
    rows = []
    for p in points:
        total = sum(p.kind_sums)
        rows.append([1.0, total] if form == "sum" else [1.0, total, p.weight_gb] if form == "weights" else [1.0, *p.kind_sums])
    return np.array(rows)


def _solve(points: list[FitPoint], form: str) -> Overhead:
    """Least squares on relative errors (each row divided by its measured time): RMSPE is what counts."""
    x, y = _design(points, form), np.array([p.measured_ms for p in points])
    coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)
    if form == "sum":
        return Overhead(float(coef[0]), (float(coef[1]),) * 3, 0.0, form)
    if form == "weights":
        return Overhead(float(coef[0]), (float(coef[1]),) * 3, float(coef[2]), form)
    return Overhead(float(coef[0]), (float(coef[1]), float(coef[2]), float(coef[3])), 0.0, form)


def _loo_errors(points: list[FitPoint], form: str) -> np.ndarray:
    """Each model's relative error when the form is fitted on all the others."""
    errors = []
    for i, p in enumerate(points):
        o = _solve(points[:i] + points[i + 1:], form)
        errors.append((o.apply(p.kind_sums, p.weight_gb) - p.measured_ms) / p.measured_ms)
    return np.array(errors)


RICHER_FORM_SE = 2.0  # a richer form must beat the form kept so far by this many paired standard errors
# Whole models the overhead term is fitted on by default. 12 rather than 8: on 16 unseen-space
# runs, 12 of the same timings predicted 30 new models with RMSPE 0.58 +- 0.16 points lower
# than 8 (lower in 13 of 16) for half as much calibration time again
# (benchmarks/latency/calibration_count.py); 24 lowered it another 0.3 points at twice that time.
CALIBRATION_MODELS = 12
CALIBRATION_PASSES = 2  # interleaved passes over the calibration models (the table's repeats split between them)
VERSUS_FLOPS_SAMPLES = 3000  # models `table vs-flops` predicts: ~5 s; a share of 1 in 1000 is resolved
# validation with --settle: the most passes a model gets (on the noisy 2-core VM of 2026-12-04,
# one thread, 4 runs: at most 5 passes settled 25, 30, 29 and 30 of 30 models within 5%)
MAX_PASSES = 5


def fit_overhead(points: Iterable[FitPoint], forms: Iterable[str] = FIT_FORMS) -> tuple[Overhead, dict[str, float]]:
    """The overhead term, and each candidate form's leave-one-out RMSPE on the calibration models.

    Each form is fitted by least squares on relative errors. The simplest form is kept unless
    a richer one predicts the left-out models better beyond noise: its squared errors lower by
    more than ``RICHER_FORM_SE`` standard errors of the per-model difference. With 8 models
    the lowest leave-one-out error alone overfits: on every validated table so far the plain
    sum predicted 30 new models as well or better than the form that choice picked
    (benchmarks/latency/overhead_form_choice.py). A form is only tried with at least two more models
    than it has terms; with fewer than three models only the intercept is fitted (scale 1).
    """
    pts = list(points)
    if not pts:
        return Overhead(), {}
    if len(pts) < 3 or np.ptp([sum(p.kind_sums) for p in pts]) <= 0.2 * np.mean([sum(p.kind_sums) for p in pts]):
        return Overhead(float(np.mean([p.measured_ms - sum(p.kind_sums) for p in pts])), form="intercept"), {}
    terms = {"sum": 2, "weights": 3, "kinds": 4}
    errors = {f: _loo_errors(pts, f) for f in FIT_FORMS if f in set(forms) and len(pts) >= terms[f] + 2}
    if not errors:
        return _solve(pts, "sum"), {}
    return _solve(pts, choose_form(errors)), {f: float(np.sqrt(np.mean(e**2))) for f, e in errors.items()}


def choose_form(errors: Mapping[str, np.ndarray]) -> str:
    """From the simplest form (in ``FIT_FORMS`` order) up, a richer form replaces the one kept
    when its leave-one-out squared errors are lower by more than ``RICHER_FORM_SE`` paired
    standard errors."""
    ordered = [f for f in FIT_FORMS if f in errors]
    chosen = ordered[0]
    for richer in ordered[1:]:
        gain = errors[chosen] ** 2 - errors[richer] ** 2
        se = gain.std(ddof=1) / np.sqrt(len(gain))
        if gain.mean() > RICHER_FORM_SE * se:
            chosen = richer
    return chosen
