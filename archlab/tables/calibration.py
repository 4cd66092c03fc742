"""Calibration: the overhead fit from whole-model timings, stored in the table's metadata."""


import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from archlab.arch.description import Description
from archlab.arch.reading import description_from_dict
from archlab.cost.backends import LatencyBackend
from archlab.cost.predict import DTYPE_BYTES, Predictor
from archlab.cost.table import (
    CALIBRATION_PASSES,
    MAX_PASSES,
    RICHER_FORM_SE,
    FitPoint,
    LatencyTable,
    fit_overhead,
)
from archlab.errors import ConfigError
from archlab.tables.timing import ModelTimings


def fit_points(table: LatencyTable, descs: Sequence[Description], truths: Sequence[float]) -> list[FitPoint]:
    predictor = Predictor([table], check_device=False)
    bytes_per = DTYPE_BYTES.get(table.meta.dtype, 4)
    out = []
    for d, t in zip(descs, truths):
        c = predictor.breakdown(d)
        out.append(FitPoint(c.kind_sums_ms[table.label], c.params * bytes_per / 1e9, t))
    return out



def calibrate(table: LatencyTable, backend: LatencyBackend, descs: Sequence[Description], *, seed: int,
              show_progress: bool = True, passes: int = CALIBRATION_PASSES, settle: float = 0.0, max_passes: int = MAX_PASSES) -> None:
    """Fit the table's overhead term from whole-model timings; store the fit, its choice and its models.

    ``settle``, ``max_passes``: as in :func:`validate`, time a model again while its two fastest
    passes differ by more than ``settle``. Every prediction of the table goes through this fit,
    so a calibration model measured in a slow spell of the host shifts all of them. Each timing is
    stored as measured (:func:`calibration_timings_path`): rerun after an interruption to resume.
    """
    path = calibration_timings_path(table, descs)
    timings = ModelTimings(path, backend, descs, batch=table.meta.batch)
    timings.data["table_created"] = table.meta.created  # written with the first timing: names the table they are for
    timings.run(passes=passes, repeats=max(1, math.ceil(backend.repeats / passes)), seed=seed, show_progress=show_progress,
                label="calibration models", settle=settle, max_passes=max_passes, statistic=table.statistic)
    store_fit(table, descs, [timings.truth(d, table.statistic) for d in descs], seed=seed,
              timing=timings.protocol(passes, settle))
    path.unlink(missing_ok=True)


def calibration_timings_path(table: LatencyTable, descs: Sequence[Description]) -> Path:
    """Where a calibration stores each whole-model timing as it is measured, beside the table, so an
    interrupted calibration resumes; a file left for another table (another creation time) or for
    other models is stale and removed."""
    path = table.path.with_name(table.path.name + ".calibration.json")
    try:
        stored = json.loads(path.read_text()) if path.exists() else None
        stale = stored is not None and (stored.get("table_created") != table.meta.created
                                        or {n: description_from_dict(m["description"]) for n, m in stored["models"].items()}
                                        != {d.name: d for d in descs})
    except (ValueError, KeyError, TypeError, ConfigError):  # unreadable: a file no calibration could resume from
        stale = True
    if stale:
        path.unlink()
    return path



def stored_calibration(table: LatencyTable) -> tuple[list[Description], list[float]]:
    """The calibration models the table's overhead term was fitted on, and their stored times."""
    stored = list(table.meta.calibration_models)
    if not stored or not all("description" in m for m in stored):
        raise ConfigError(f"{table.path}: metadata.overhead.models", "hold no timed descriptions; "
                          "run `archlab table calibrate` first")
    return [description_from_dict(m["description"]) for m in stored], [m["measured_ms"] for m in stored]



def refit(table: LatencyTable) -> None:
    """Fit the overhead term again from the calibration models the table has already timed
    (after a change of the fitting rule): times nothing, so it works on any machine."""
    descs, truths = stored_calibration(table)
    if (table.meta.overhead.statistic or table.statistic) != table.statistic:
        raise ConfigError(f"{table.path}: metadata.statistic", "differs from the one the calibration models were timed "
                          "with; recalibrate without --refit")
    store_fit(table, descs, truths, seed=table.meta.overhead.seed, timing=table.meta.overhead.timing)



def store_fit(table: LatencyTable, descs: Sequence[Description], truths: Sequence[float], *, seed: int | None,
              timing: dict[str, Any] | None = None) -> None:
    """Fit the overhead term on timed whole models; store the fit, its choice and its models in the table
    (``timing``: how the models were timed, :meth:`ModelTimings.protocol`)."""
    stat = table.statistic
    points = fit_points(table, descs, truths)
    overhead, loo = fit_overhead(points)
    predictor = Predictor([table], check_device=False)
    table.metadata["overhead"] = {
        **overhead.to_metadata(), "seed": seed, "statistic": stat,
        "fitted": f"least squares on relative errors, measured ({stat}) = intercept + scales x block {stat}s by kind "
                  "[+ per_gb x weight GB]; the simplest form unless a richer one's leave-one-out squared "
                  f"errors are lower by more than {RICHER_FORM_SE:g} paired standard errors",
        "leave_one_out_rmspe": loo,
        **({"timing": timing} if timing else {}),
        "models": [{"name": d.name, "block_sum_ms": round(sum(p.kind_sums), 3), "weight_gb": round(p.weight_gb, 4),
                    "measured_ms": round(t, 3), "gflops": round(predictor.score(d).gflops, 3), "description": d.to_dict()}
                   for d, p, t in zip(descs, points, truths)],
    }
    table.save()


def flops_baseline(table: LatencyTable) -> tuple[float, float]:
    """``latency = a + b x GFLOPs`` fitted (relative least squares) on the table's calibration models."""
    calib = list(table.meta.calibration_models)
    if len(calib) < 2:
        raise ConfigError(f"{table.path}: metadata.overhead", "needs at least 2 calibration models; run `archlab table calibrate`")
    x = np.array([[1.0, c["gflops"]] for c in calib])
    y = np.array([c["measured_ms"] for c in calib])
    (a, b), *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)
    return float(a), float(b)
