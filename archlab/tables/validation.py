"""Validation against re-measurement, and how far a table stands from its FLOPs baseline."""


import dataclasses
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from scipy.stats import spearmanr

from archlab.arch.description import Description
from archlab.cost.backends import LatencyBackend
from archlab.cost.predict import Predictor
from archlab.cost.table import MAX_PASSES, VERSUS_FLOPS_SAMPLES, LatencyTable
from archlab.errors import ConfigError
from archlab.tables.calibration import flops_baseline, store_fit
from archlab.tables.sampling import sample_table_models
from archlab.tables.timing import ModelTimings, measured
from archlab.tables.validation_result import FIGURES, Validation


def accuracy(predicted: Iterable[float], measured: Iterable[float]) -> dict[str, float]:
    p, m = np.asarray(list(predicted), float), np.asarray(list(measured), float)
    err = (p - m) / m
    return {
        "within_10": float(np.mean(np.abs(err) <= 0.10)),
        "within_5": float(np.mean(np.abs(err) <= 0.05)),
        "rmspe": float(np.sqrt(np.mean(err**2))),
        "spearman": float(spearmanr(p, m).statistic) if len(p) > 2 else float("nan"),
        "mean_error": float(np.mean(err)),
    }



def paired_bootstrap(predicted: Sequence[float], baseline: Sequence[float], measured: Sequence[float], *,
                     resamples: int = 2000, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per figure, ``predicted``'s minus ``baseline``'s on the same models, with its bootstrap
    standard error and 95% interval (models resampled with replacement, both predictors on the
    same resample): whether one predictor beats the other beyond what these models can tell."""
    p, b, m = (np.asarray(x, float) for x in (predicted, baseline, measured))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in FIGURES}
    for _ in range(resamples):
        i = rng.integers(0, len(m), len(m))
        if np.ptp(m[i]) == 0:  # a resample of one model has no ranking
            continue
        x, y = accuracy(p[i], m[i]), accuracy(b[i], m[i])
        for k in FIGURES:
            draws[k].append(x[k] - y[k])
    whole_p, whole_b = accuracy(p, m), accuracy(b, m)
    out = {}
    for k in FIGURES:
        d = np.array(draws[k])
        d = d[np.isfinite(d)]
        lo, hi = np.quantile(d, [0.025, 0.975]) if len(d) > 1 else (np.nan, np.nan)
        out[k] = {"difference": whole_p[k] - whole_b[k], "se": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
                  "ci95": [float(lo), float(hi)]}
    return out



def closer_share(predicted: Sequence[float], baseline: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """The share of models ``predicted`` is closer to than ``baseline`` (ties count half), with its
    binomial standard error and a two-sided sign test's p-value against 0.5 (no better): on
    models picked where the two disagree, it says which one to trust."""
    from scipy.stats import binomtest

    p, b, m = (np.asarray(x, float) for x in (predicted, baseline, measured))
    closer, farther = int(np.sum(np.abs(p - m) < np.abs(b - m))), int(np.sum(np.abs(p - m) > np.abs(b - m)))
    share = (closer + 0.5 * (len(m) - closer - farther)) / len(m) if len(m) else float("nan")
    return {"share": share, "se": math.sqrt(share * (1 - share) / len(m)) if len(m) else float("nan"),
            "closer": closer, "farther": farther,
            "sign_test_p": float(binomtest(closer, closer + farther).pvalue) if closer + farther else 1.0}



def disagreement(table_ms: Sequence[float], flops_ms: Sequence[float]) -> dict[str, float]:
    """How far the FLOPs baseline's predictions stand from the table's on the same models: the
    room a validation has to tell the two apart, known before anything is timed.

    ``flops_off_10`` (``_5``): the share of the models FLOPs would put outside +-10% (+-5%) if
    the table were exact. Where it is near 0, within +-10% cannot separate the two: FLOPs is
    within +-10% wherever the table is close, and the table's lead or lag there is its own
    errors and measurement noise. ``spearman`` near 1: the two rank the models alike.
    """
    t, f = np.asarray(table_ms, float), np.asarray(flops_ms, float)
    off = f / t - 1
    return {"models": len(t), "rms": float(np.sqrt(np.mean(off**2))), "largest_over": float(off.max()),
            "largest_under": float(off.min()), "flops_off_5": float(np.mean(np.abs(off) > 0.05)),
            "flops_off_10": float(np.mean(np.abs(off) > 0.10)),
            "spearman": float(spearmanr(t, f).statistic) if len(t) > 2 else float("nan")}



def versus_flops(table: LatencyTable, *, n: int = VERSUS_FLOPS_SAMPLES, seed: int = 0, space: str | None = None,
                 max_params: float | None = None) -> dict[str, Any]:
    """:func:`disagreement` of the table and its FLOPs baseline on ``n`` models sampled as a
    validation samples them (the table's space, the runtime's size limit). Times nothing, so it
    runs on any machine: whether a table can be better than FLOPs at all, and on which figures,
    is a property of the table and the space.

    >>> from archlab.cost.table import LatencyTable
    >>> result = versus_flops(LatencyTable.load("x86-2core_torch-cpu"), n=50, seed=1)
    >>> result["models"], 0 < result["rms"] < 1, sorted(result["baseline_ms"])
    (50, True, ['intercept', 'per_gflop'])
    """
    descs = sample_table_models(table, n=n, seed=seed, space=space, max_params=max_params)
    a, b = flops_baseline(table)
    predictor = Predictor([table], check_device=False)
    scores = [predictor.score(d) for d in descs]
    return {**disagreement([s.latency_ms[table.label] for s in scores], [a + b * s.gflops for s in scores]),
            "baseline_ms": {"intercept": a, "per_gflop": b}, "seed": seed, "table": table.name}




def validate(table: LatencyTable, backend: LatencyBackend, descs: Sequence[Description], *, seed: int,
             timings_path: str | Path | None = None, passes: int = 2, show_progress: bool = True,
             recalibrate: Sequence[Description] = (), settle: float = 0.0, max_passes: int = MAX_PASSES) -> Validation:
    """Predicted vs measured end to end for the table, a FLOPs-only baseline, and re-measurement.

    Every model is timed ``passes`` times, interleaved with the others (stored in
    ``timings_path`` as measured, so an interrupted validation resumes). The truth is each
    model's time over all passes; the test-retest figures compare pass 1 with pass 2: the
    noise floor no predictor can beat. The FLOPs baseline is fitted on the same calibration
    models as the table's overhead term; ``table_minus_flops`` gives each figure's difference
    with its paired-bootstrap standard error (is the table better beyond noise?).

    ``settle``, ``max_passes``: time a model again while its two fastest passes differ by more
    than ``settle`` (:meth:`ModelTimings.run`), so a slow spell of the host is not scored as the
    table's error.

    ``recalibrate``: calibration models timed in the same interleaved passes as the validated
    ones; the overhead term (and the FLOPs baseline) is refitted on them and saved in the
    table before anything is scored (its stored calibration seed is kept). A host whose speed
    drifts between a calibration and a validation minutes apart shifts every model alike,
    which no predictor can know; timed together, the two see the same host, and what is left
    is the table's own error. The figures under the fit the table had, on the same timings,
    are in ``as_stored``.
    """
    calibration = list(recalibrate)
    clash = {d.name for d in calibration} & {d.name for d in descs}
    if clash:
        raise ConfigError("recalibrate", f"calibration and validation models must differ; both hold {sorted(clash)[0]}")
    timings = ModelTimings(timings_path, backend, [*calibration, *descs], batch=table.meta.batch)
    timings.run(passes=passes, repeats=backend.repeats, seed=seed, show_progress=show_progress,
                label="calibration and validation models" if calibration else "validation models",
                settle=settle, max_passes=max_passes, statistic=table.statistic)
    if not calibration:
        return dataclasses.replace(score(table, timings, descs, seed=seed), calibration="as stored in the table")
    stored_fit = dict(table.metadata.get("overhead") or {})  # as the file holds it: reported back as it was
    as_stored = score(table, timings, descs, seed=seed)
    store_fit(table, calibration, [timings.truth(d, table.statistic) for d in calibration],
              seed=table.meta.overhead.seed if table.meta.overhead else None,  # the seed they were sampled with, if any
              timing={**timings.protocol(passes, settle), "with": "the validation's models"})
    # the fit the table had, on the same timings: how much of its error was the host's drift since
    before = dataclasses.replace(as_stored, table_path=None, backend=None, device=None, calibration="as stored in the table",
                                 extra={"overhead": {k: v for k, v in stored_fit.items() if k != "models"}})
    return dataclasses.replace(score(table, timings, descs, seed=seed), as_stored=before,
                               calibration=f"refitted on {len(calibration)} models timed in the same passes")



def score(table: LatencyTable, timings: ModelTimings, descs: Sequence[Description], *, seed: int) -> Validation:
    """:func:`validate`'s figures for timed ``descs`` under the table's current overhead term."""
    a, b = flops_baseline(table)
    stat = table.statistic
    predictor = Predictor([table], check_device=False)
    rows = []
    for d in descs:
        c = predictor.breakdown(d)
        runs = timings.passes(d)
        rows.append({"name": d.name, "measured_ms": round(timings.truth(d, stat), 3),
                     "passes_ms": [round(measured(r, stat), 3) for r in runs], "predicted_ms": round(c.latency_ms[table.label], 3),
                     "flops_predicted_ms": round(a + b * c.gflops, 3), "gflops": round(c.gflops, 3), "params": c.params})
    truth = [r["measured_ms"] for r in rows]
    predicted, flops = [r["predicted_ms"] for r in rows], [r["flops_predicted_ms"] for r in rows]
    result: dict[str, Any] = {
        **accuracy(predicted, truth), **{f"flops_{k}": v for k, v in accuracy(flops, truth).items()},
        "table_minus_flops": paired_bootstrap(predicted, flops, truth, seed=seed),
        "table_closer": closer_share(predicted, flops, truth), "flops_disagreement": disagreement(predicted, flops)}
    passes = min(len(r["passes_ms"]) for r in rows)
    if passes >= 2:
        result.update({f"retest_{k}": v for k, v in accuracy([r["passes_ms"][0] for r in rows],
                                                            [r["passes_ms"][1] for r in rows]).items()})
        # how far the truth itself may be off: each model's second fastest pass against its fastest
        gaps = [sorted(r["passes_ms"])[1] / min(r["passes_ms"]) - 1 for r in rows]
        result["truth_spread"] = {"rms": float(np.sqrt(np.mean(np.square(gaps)))), "max": float(max(gaps)),
                                  "passes_max": max(len(r["passes_ms"]) for r in rows)}
    result.update({"samples": len(rows), "passes": passes, "statistic": stat, "overhead_form": table.overhead.form,
                   "table": str(table.path), "backend": timings.data["runtime"], "device": timings.data["device"], "models": rows})
    return Validation.from_dict(result)
