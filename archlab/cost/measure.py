"""Measuring: table builds (resumable), overhead calibration, and end-to-end validation.

Blocks and whole models go through the same backend ``prepare``/``measure`` protocol, so
a table's figures and an end-to-end run are comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from scipy.stats import spearmanr

from archlab.arch.description import Description
from archlab.convert import model_and_inputs
from archlab.cost.backends import LatencyBackend, Timing
from archlab.cost.keys import BlockSpec
from archlab.cost.predict import Predictor, count
from archlab.cost.table import IDENTITY, LatencyTable, fit_overhead
from archlab.errors import ConfigError


def progress_bar(enabled: bool = True) -> Progress:
    """A rich progress bar on stderr (stdout stays clean for ``--json``)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[current]}"), disable=not enabled, transient=False,
                    console=Console(stderr=True))


def open_for_build(path: str, backend: LatencyBackend, *, dtype: str, batch: int, extra: dict[str, Any]) -> LatencyTable:
    """The table at ``path`` if its settings match the backend's (resume), else a new one."""
    meta = {**backend.metadata(), "dtype": dtype, "batch": batch, **extra}
    try:
        table = LatencyTable.read(path)
    except ConfigError:
        from pathlib import Path

        if Path(path).exists():
            raise
        return LatencyTable.create(path, meta)
    for key in IDENTITY:
        if table.metadata.get(key) != meta.get(key):
            raise ConfigError(f"{path}: metadata.{key}", f"the file says {table.metadata.get(key)!r}, this build {meta.get(key)!r}; "
                              "write to another file to measure with other settings")
    sources = list(dict.fromkeys([*table.metadata.get("sources", []), *extra.get("sources", [])]))
    if sources != table.metadata.get("sources"):
        table.metadata["sources"] = sources  # what the rows were measured for, over every build
        table.save()
    return table


def table_space(table: LatencyTable, space: str | None = None):
    """The space whole models are sampled from: ``space``, else the table's first space source."""
    from archlab.cost.sources import resolve_sources
    from archlab.search.space import load_space

    if space is not None:
        return load_space(space)
    spaces, _ = resolve_sources(table.metadata.get("sources") or [])
    if not spaces:
        raise ConfigError(f"{table.path}: metadata.sources", "name no search space to sample models from; pass --space")
    return spaces[0]


def sample_table_models(table: LatencyTable, *, n: int, seed: int, space: str | None = None,
                        max_params: float | None = None) -> list[Description]:
    """``n`` whole models (to calibrate or validate on) sampled from the table's own space unless
    ``space`` is given, within the runtime's size limit; checked to be predictable from the
    table before anything is timed."""
    from archlab.cost.table import MissingBlocks

    sampled = table_space(table, space)
    limits = [x for x in (max_params, table_backend_limit(table)) if x is not None]
    if limits:
        sampled = sampled.with_constraints(max_params=min(limits))
    descs = [d for _, d in sampled.samples(n, seed)]
    predictor = Predictor([table])
    missing: dict[str, None] = {}
    for d in descs:
        missing.update(dict.fromkeys(predictor.missing(d).get(table.label, {})))
    if missing:
        raise MissingBlocks(list(missing), table.name)
    return descs


def table_backend_limit(table: LatencyTable) -> int | None:
    from archlab.cost.backends import BACKENDS

    backend = BACKENDS.get(str(table.metadata.get("runtime")))
    return backend.max_params if backend is not None else None


def backend_for(table: LatencyTable, *, warmup: int, repeats: int) -> LatencyBackend:
    """The table's own backend and thread count, refusing a machine other than the one it names."""
    from archlab.cost.backends import get_backend

    meta = table.metadata
    backend = get_backend(meta["runtime"], threads=int(meta["threads"]), warmup=warmup, repeats=repeats)
    if backend.device_name() != meta["device"]:
        raise ConfigError(f"{table.path}: metadata.device",
                          f"the table was measured on {meta['device']!r}, this machine is {backend.device_name()!r}")
    return backend


def measure_missing(table: LatencyTable, desc: Description, *, show_progress: bool = True) -> int:
    """Time the blocks of ``desc`` the table lacks, now, on the table's own backend, and add them."""
    specs = Predictor([table]).missing(desc).get(table.label, {})
    if not specs:
        return 0
    backend = backend_for(table, warmup=int(table.metadata["warmup"]), repeats=int(table.metadata["repeats"]))
    try:
        return measure_blocks(table, backend, specs, show_progress=show_progress)
    finally:
        backend.close()


def measure_blocks(table: LatencyTable, backend: LatencyBackend, specs: dict[str, BlockSpec], *, show_progress: bool = True,
                   passes: int = 2, chunk: int = 12) -> int:
    """Measure every key of ``specs`` missing from ``table``.

    Keys are taken ``chunk`` at a time; each chunk is timed in ``passes`` interleaved passes
    (warm-up, then ``repeats / passes`` timed runs per key per pass), so a burst of load on a
    shared machine lands in one pass, not in every sample of a block. A chunk's rows are on
    disk when it is done: an interrupted build loses at most one chunk.
    """
    todo = [(k, s) for k, s in specs.items() if k not in table]
    per_pass = max(1, math.ceil(backend.repeats / passes))
    with progress_bar(show_progress) as progress:
        task = progress.add_task(f"{backend.name}: blocks", total=len(specs), completed=len(specs) - len(todo), current="")
        for start in range(0, len(todo), chunk):
            group = todo[start:start + chunk]
            runs = []
            for key, spec in group:
                progress.update(task, current="preparing " + key.split("|")[0][:50])
                torch.manual_seed(0)
                runs.append(backend.prepare(spec.module(), spec.inputs(), name=key))
            samples: list[list[float]] = [[] for _ in group]
            for p in range(passes):
                for i, ((key, _), run) in enumerate(zip(group, runs)):
                    progress.update(task, current=f"pass {p + 1}/{passes} " + key.split("|")[0][:50])
                    samples[i].extend(backend.measure(run, repeats=per_pass).samples_ms)
            for (key, spec), s in zip(group, samples):
                timing = Timing.from_samples(s)
                table.append(key, spec.kind, timing.median_ms, timing.spread_ms, timing.min_ms, len(s))
                progress.advance(task)
            del runs
    return len(todo)


@dataclass
class ModelTiming:
    desc: Description
    timing: Timing
    block_sum_ms: float
    predicted_ms: float
    gflops: float


def time_models(table: LatencyTable, backend: LatencyBackend, descs: Sequence[Description], *, rounds: int = 2,
                seed: int = 0, show_progress: bool = True, label: str = "models") -> list[ModelTiming]:
    """End-to-end timings, interleaved: ``rounds`` passes over the models in shuffled order,
    each pass the backend's warm-up runs then ``repeats / rounds`` timed runs; the median over
    all passes."""
    rng = np.random.default_rng(seed)
    per_round = max(1, math.ceil(backend.repeats / rounds))
    samples: list[list[float]] = [[] for _ in descs]
    with progress_bar(show_progress) as progress:
        task = progress.add_task(f"{backend.name}: {label}", total=rounds * len(descs), current="")
        for _ in range(rounds):
            for i in rng.permutation(len(descs)):
                desc = descs[int(i)]
                progress.update(task, current=desc.name)
                model, inputs = model_and_inputs(desc, batch=int(table.metadata["batch"]))
                timing = backend.measure(backend.prepare(model, inputs, name=f"model-{desc.name}"), repeats=per_round)
                samples[int(i)].extend(timing.samples_ms)
                del model
                progress.advance(task)
    out = []
    predictor = Predictor([table])
    for desc, s in zip(descs, samples):
        pred = predictor.breakdown(desc)
        out.append(ModelTiming(desc, Timing.from_samples(s), pred.block_sum_ms[table.label], pred.latency_ms[table.label], pred.gflops))
    return out


def measured(timing: Timing, statistic: str) -> float:
    return timing.min_ms if statistic == "min" else timing.median_ms


def calibrate(table: LatencyTable, backend: LatencyBackend, descs: Sequence[Description], *, seed: int,
              show_progress: bool = True) -> None:
    """Fit the table's overhead term from whole-model timings and store it with its data."""
    table.metadata.pop("overhead", None)  # block sums first, without the old fit
    timings = time_models(table, backend, descs, seed=seed, show_progress=show_progress, label="calibration models")
    stat = table.statistic
    overhead = fit_overhead((t.block_sum_ms, measured(t.timing, stat)) for t in timings)
    table.metadata["overhead"] = {
        "intercept_ms": overhead.intercept_ms, "scale": overhead.scale, "seed": seed, "statistic": stat,
        "fitted": f"least squares, measured ({stat}) = intercept + scale x block sum ({stat}s)",
        "models": [{"name": t.desc.name, "block_sum_ms": round(t.block_sum_ms, 3), "measured_ms": round(measured(t.timing, stat), 3),
                    "median_ms": round(t.timing.median_ms, 3), "min_ms": round(t.timing.min_ms, 3),
                    "gflops": round(t.gflops, 3)} for t in timings],
    }
    table.save()


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


def validate(table: LatencyTable, backend: LatencyBackend, descs: Sequence[Description], *, seed: int,
             show_progress: bool = True) -> dict[str, Any]:
    """Predicted vs measured end to end, for the table and for a FLOPs-only baseline.

    The baseline is ``latency = a + b x GFLOPs`` fitted on the same calibration models the
    table's overhead was fitted on, so both methods get the same whole-model data.
    """
    calib = (table.metadata.get("overhead") or {}).get("models") or []
    if len(calib) < 2:
        raise ConfigError(f"{table.path}: metadata.overhead", "needs at least 2 calibration models; run `archlab table build` with --calibrate 2 or more")
    b, a = np.polyfit([c["gflops"] for c in calib], [c["measured_ms"] for c in calib], 1)
    timings = time_models(table, backend, descs, seed=seed, show_progress=show_progress, label="validation models")
    stat = table.statistic
    truth = [measured(t.timing, stat) for t in timings]
    ours = accuracy([t.predicted_ms for t in timings], truth)
    flops = accuracy([a + b * t.gflops for t in timings], truth)
    return {
        **ours,
        **{f"flops_{k}": v for k, v in flops.items()},
        "samples": len(timings),
        "statistic": stat,
        "table": str(table.path),
        "backend": backend.name,
        "device": backend.device_name(),
        "models": [{"name": t.desc.name, "measured_ms": round(measured(t.timing, stat), 3), "median_ms": round(t.timing.median_ms, 3),
                    "min_ms": round(t.timing.min_ms, 3), "spread_ms": round(t.timing.spread_ms, 3),
                    "predicted_ms": round(t.predicted_ms, 3), "flops_predicted_ms": round(a + b * t.gflops, 3),
                    "gflops": round(t.gflops, 3), "params": count(t.desc).params} for t in timings],
    }
