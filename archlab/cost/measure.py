"""Measuring: table builds (resumable), overhead calibration, validation against re-measurement, drift checks.

Blocks and whole models go through the same backend ``prepare``/``measure`` protocol, so a
table's figures and an end-to-end run are comparable. Every timing command refuses a table
whose machine fingerprint is not this machine's (:mod:`archlab.cost.fingerprint`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from archlab.arch.description import Description, description_from_dict
from archlab.convert import model_and_inputs
from archlab.cost.backends import LatencyBackend, Timing
from archlab.cost.keys import BlockSpec
from archlab.cost.predict import DTYPE_BYTES, Predictor, count
from archlab.cost.table import (CALIBRATION_PASSES, IDENTITY, IDENTITY_DEFAULTS, MAX_PASSES, RICHER_FORM_SE,
                                VERSUS_FLOPS_SAMPLES, FitPoint, LatencyTable, MissingBlocks, fit_overhead, now)
from archlab.errors import ConfigError
from archlab.progress import progress_bar


def refuse_foreign(table: LatencyTable, backend: LatencyBackend) -> None:
    """One line, and no timing, when ``table`` was not measured on this machine."""
    differences = backend.differences_from(table.metadata.get("fingerprint"))
    if differences:
        raise ConfigError(f"{table.path}: metadata.fingerprint", f"the table was measured on another machine "
                          f"({table.metadata.get('device')!r}): {'; '.join(differences)}; build a table here instead")


def open_for_build(path: str, backend: LatencyBackend, *, dtype: str, batch: int, extra: dict[str, Any]) -> LatencyTable:
    """The table at ``path`` if its settings and machine match the backend's (resume), else a new one."""
    meta = {**backend.metadata(), "dtype": dtype, "batch": batch, "statistic": "min", **extra}
    try:
        table = LatencyTable.read(path)
    except ConfigError:
        if Path(path).exists():
            raise
        return LatencyTable.create(path, meta)
    for key in IDENTITY:
        recorded = table.metadata.get(key, IDENTITY_DEFAULTS.get(key))
        if recorded != meta.get(key):
            raise ConfigError(f"{path}: metadata.{key}", f"the file says {recorded!r}, this build {meta.get(key)!r}; "
                              "write to another file to measure with other settings")
    refuse_foreign(table, backend)
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


PICKS = ("random", "spread", "disagreement")


def sample_table_models(table: LatencyTable, *, n: int, seed: int, space: str | None = None,
                        max_params: float | None = None, pick: str = "random") -> list[Description]:
    """``n`` whole models (to calibrate or validate on) sampled from the table's own space unless
    ``space`` is given, within the runtime's size limit; checked to be predictable from the
    table before anything is timed. ``pick``:

    - ``random``: as the space samples them (validation: its figures are for the space's own distribution);
    - ``spread``: at quantiles of size (calibration);
    - ``disagreement``: the models, of a pool of ``DISAGREEMENT_POOL x n``, on which the table and
      the FLOPs baseline disagree most, half where the table predicts more, half less. On random
      models the two can agree too closely to be told apart; where they disagree, one is wrong,
      and measuring says which.
    """
    from archlab.cost.backends import BACKENDS
    from archlab.cost.sources import spread_by_size

    if pick not in PICKS:
        raise ConfigError("--pick", f"{pick!r} is not one of {', '.join(PICKS)}")
    sampled = table_space(table, space)
    runtime = BACKENDS.get(str(table.metadata.get("runtime")))
    limits = [x for x in (max_params, runtime.max_params if runtime else None) if x is not None]
    if limits:
        sampled = sampled.with_constraints(max_params=min(limits))
    predictor = Predictor([table], check_device=False)
    if pick == "spread":
        descs = spread_by_size(sampled, n, seed)
    elif pick == "disagreement":
        descs = most_disagreeing(table, predictor, [d for _, d in sampled.samples(DISAGREEMENT_POOL * n, seed)], n)
    else:
        descs = [d for _, d in sampled.samples(n, seed)]
    missing: dict[str, None] = {}
    for d in descs:
        missing.update(dict.fromkeys(predictor.missing(d).get(table.label, {})))
    if missing:
        raise MissingBlocks(list(missing), table.name)
    return descs


DISAGREEMENT_POOL = 100  # candidates per model picked: 3000 for 30 take ~4 s to predict


def most_disagreeing(table: LatencyTable, predictor: Predictor, pool: Sequence[Description], n: int) -> list[Description]:
    """The ``n`` of ``pool`` with the largest log(table / FLOPs baseline) prediction, ceil(n/2) of
    them where the table predicts more and the rest where it predicts less (in pool order)."""
    missing: dict[str, None] = {}
    for d in pool:
        missing.update(dict.fromkeys(predictor.missing(d).get(table.label, {})))
    if missing:
        raise MissingBlocks(list(missing), table.name)
    a, b = flops_baseline(table)
    ratio = []
    for d in pool:
        c = predictor.breakdown(d)
        ratio.append(math.log(c.latency_ms[table.label] / (a + b * c.gflops)))
    order = np.argsort(ratio, kind="stable")
    above = [i for i in order[::-1] if ratio[i] > 0][: (n + 1) // 2]
    below = [i for i in order if ratio[i] <= 0][: n - len(above)]
    return [pool[i] for i in sorted([*above, *below])]


def table_allocator(table: LatencyTable) -> str:
    """The allocator setting the table was timed with (tables older than the field: the system's)."""
    return str(table.metadata.get("allocator", IDENTITY_DEFAULTS["allocator"]))


def backend_for(table: LatencyTable, *, warmup: int, repeats: int, workdir: str | Path | None = None,
                refuse_other_machine: bool = True) -> LatencyBackend:
    """The table's own backend, threads, cache and allocator settings, refusing a machine other than the one it was
    measured on (``refuse_other_machine=False``: `table check`, which reports how this machine differs instead)."""
    from archlab.cost.backends import get_backend

    meta = table.metadata
    backend = get_backend(meta["runtime"], threads=int(meta["threads"]), warmup=warmup, repeats=repeats,
                          cold=bool(meta.get("cold", False)), workdir=workdir, allocator=table_allocator(table))
    if not refuse_other_machine:
        return backend
    try:
        refuse_foreign(table, backend)
    except ConfigError:
        backend.close()
        raise
    return backend


def measure_missing(table: LatencyTable, desc: Description, *, show_progress: bool = True) -> int:
    """Time the blocks of ``desc`` the table lacks, now, on the table's own backend, and add them."""
    specs = Predictor([table], check_device=False).missing(desc).get(table.label, {})
    if not specs:
        return 0
    backend = backend_for(table, warmup=int(table.metadata["warmup"]), repeats=int(table.metadata["repeats"]))
    try:
        return measure_blocks(table, backend, specs, show_progress=show_progress)
    finally:
        backend.close()


def measure_blocks(table: LatencyTable, backend: LatencyBackend, specs: dict[str, BlockSpec], *, show_progress: bool = True,
                   passes: int = 2, group: int | None = None) -> int:
    """Measure every key of ``specs`` missing from ``table``; the number measured.

    The missing keys are timed in ``passes`` sweeps (warm-up, then ``repeats / passes`` timed
    runs per key per sweep), each sweep over every key in another order, so a key's samples
    lie minutes apart with the other keys between them: a slow spell of a shared machine
    lands in one sweep of a block, not in all of them. Measured on one host, one run (three
    builds each): two builds' block sums disagree by 1.2% RMS, against 3.4% when both passes
    ran over 12 keys at a time, seconds apart (benchmarks/README.md, "Blocks timed in whole
    sweeps"). ``group``: sweep over this many keys at a time instead (12: that older protocol).

    Each sweep's samples go to ``<table>.sweeps.jsonl`` as measured; a key's row goes into
    the table when its last sweep is done, and the side file is removed when every key is.
    An interrupted build resumes without re-timing what it stored.
    """
    todo = [k for k in specs if k not in table]
    per_pass = max(1, math.ceil(backend.repeats / passes))
    protocol = {"passes": passes, "keys_per_sweep": group or "all"}  # tables without it: 2 passes over 12 keys at a time
    if todo and table.metadata.get("block_sweeps") != protocol:
        table.metadata["block_sweeps"] = protocol
        table.save()
    sweeps = SweepSamples(table, passes=passes, per_pass=per_pass)
    rng = np.random.default_rng(0)
    size = group or max(1, len(todo))
    with progress_bar(show_progress) as progress:
        task = progress.add_task(f"{backend.name}: blocks", total=passes * len(specs),
                                 completed=passes * (len(specs) - len(todo)) + sweeps.done(todo), current="")
        for start in range(0, len(todo), size):
            keys = todo[start:start + size]
            for p in range(passes):
                order = keys if p == 0 else [keys[int(i)] for i in rng.permutation(len(keys))]
                for key in order:
                    if not sweeps.has(key, p):
                        progress.update(task, current=f"sweep {p + 1}/{passes} " + key.split("|")[0][:50])
                        torch.manual_seed(0)
                        run = backend.prepare(specs[key].module(), specs[key].inputs(), name=key)
                        sweeps.add(key, p, backend.measure(run, repeats=per_pass).samples_ms)
                        del run
                        progress.advance(task)
                    if p == passes - 1:  # also when a killed build stored this sweep but not the row
                        timing = Timing.from_samples(sweeps.samples(key))
                        table.append(key, specs[key].kind, timing.median_ms, timing.spread_ms, timing.min_ms, len(timing.samples_ms))
    sweeps.remove()
    return len(todo)


class SweepSamples:
    """The block samples of unfinished sweeps, one JSON line per key and sweep, beside the table.

    The first line names the table's creation time and the sweep settings; a file written for
    another table or other settings is stale (its blocks were timed for a table that is gone)
    and is started afresh.
    """

    def __init__(self, table: LatencyTable, *, passes: int, per_pass: int):
        self.path = table.path.with_name(table.path.name + ".sweeps.jsonl")
        self.header = {"table_created": table.metadata.get("created"), "passes": passes, "per_pass": per_pass}
        self.data: dict[tuple[str, int], list[float]] = {}
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        try:
            stale = not lines or json.loads(lines[0]) != self.header
        except json.JSONDecodeError:
            stale = True
        for line in [] if stale else lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed build
                continue
            self.data[(entry["key"], int(entry["sweep"]))] = entry["samples_ms"]
        tmp = self.path.with_name(self.path.name + ".tmp")  # rewritten whole: no partial line to append to
        tmp.write_text("".join(json.dumps(x) + "\n" for x in [self.header, *(
            {"key": k, "sweep": p, "samples_ms": v} for (k, p), v in self.data.items())]))
        tmp.replace(self.path)

    def has(self, key: str, sweep: int) -> bool:
        return (key, sweep) in self.data

    def done(self, keys: Iterable[str]) -> int:
        wanted = set(keys)
        return sum(1 for key, _ in self.data if key in wanted)

    def add(self, key: str, sweep: int, samples_ms: Iterable[float]) -> None:
        self.data[(key, sweep)] = [round(x, 6) for x in samples_ms]
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": key, "sweep": sweep, "samples_ms": self.data[(key, sweep)]}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def samples(self, key: str) -> list[float]:
        """Every sample of ``key``, sweep by sweep."""
        return [x for p in range(self.header["passes"]) for x in self.data.get((key, p), [])]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# ---------------------------------------------------------------------- whole models


def model_file_name(desc: Description) -> str:
    """The name a whole model is prepared (and, on converting backends, kept) under."""
    return f"model-{desc.name}"


def time_model(backend: LatencyBackend, desc: Description, *, batch: int, repeats: int) -> Timing:
    """One end-to-end timing of ``desc``: prepare (build, convert), the backend's warm-up, ``repeats`` timed runs."""
    model, inputs = model_and_inputs(desc, batch=batch)
    try:
        return backend.measure(backend.prepare(model, inputs, name=model_file_name(desc)), repeats=repeats)
    finally:
        del model


def measured(timing: Timing | dict[str, float], statistic: str) -> float:
    if isinstance(timing, dict):
        return timing["min_ms"] if statistic == "min" else timing["median_ms"]
    return timing.min_ms if statistic == "min" else timing.median_ms


def pass_limit(passes: int, settle: float, max_passes: int) -> int:
    """The most passes a model can get: ``passes``, or up to ``max_passes`` when settling."""
    if settle < 0:
        raise ConfigError("settle", f"must be a share >= 0 (0.05: passes within 5%), not {settle}")
    if settle > 0 and max_passes < passes:
        raise ConfigError("max-passes", f"must be at least --passes ({passes}), not {max_passes}")
    return max_passes if settle > 0 else passes


class ModelTimings:
    """End-to-end timings of whole models, several passes each, stored (JSON) as each is measured.

    Passes are interleaved: pass 1 over every model in one shuffled order, then pass 2 in
    another, so a model's two timings lie far apart in time, with the others between them.
    Rerunning with the same file measures only what is missing.
    """

    def __init__(self, path: str | Path | None, backend: LatencyBackend, descs: Sequence[Description], *, batch: int):
        self.path = Path(path) if path else None
        self.backend, self.descs, self.batch = backend, list(descs), batch
        self.data: dict[str, Any] = {"runtime": backend.name, "device": backend.device_name(), "fingerprint": backend.fingerprint(),
                                     "models": {}}
        if self.path is not None and self.path.exists():
            stored = json.loads(self.path.read_text())
            differences = backend.differences_from(stored.get("fingerprint"))
            if stored.get("runtime") != backend.name or differences:
                raise ConfigError(str(self.path), f"holds timings of another runtime or machine ({'; '.join(differences) or stored.get('runtime')}); "
                                  "use another file")
            self.data = stored
        for d in self.descs:
            entry = self.data["models"].setdefault(d.name, {"description": d.to_dict(), "passes": []})
            if description_from_dict(entry["description"]) != d:
                raise ConfigError(str(self.path), f"holds another model called {d.name}; use another file")

    @classmethod
    def stored(cls, data: dict[str, Any]) -> "ModelTimings":
        """Timings already measured (a timings file's contents), read only: no backend, so they
        can be scored again on any machine (``benchmarks/pool_validations.py``)."""
        timings = cls.__new__(cls)
        timings.path, timings.backend, timings.data = None, None, data
        timings.descs = [description_from_dict(m["description"]) for m in data["models"].values()]
        return timings

    def description(self, name: str) -> Description:
        return description_from_dict(self.data["models"][name]["description"])

    def run(self, *, passes: int, repeats: int, seed: int, show_progress: bool = True, label: str = "models",
            settle: float = 0.0, max_passes: int = MAX_PASSES, statistic: str = "min") -> None:
        """Time every model ``passes`` times, interleaved; then, with ``settle``, time again each model
        whose two fastest passes still differ by more than that share, one more pass over all such
        models at a time (shuffled), until they agree or have ``max_passes`` passes.

        A shared host has slow spells longer than one pass of a model: a model whose passes all
        land in spells is measured slow, and which models that happens to is chance. Two passes
        that agree say the fastest is what the machine does; the extra passes go only where they
        do not. The test-retest figures stay pass 1 against pass 2.
        """
        limit = pass_limit(passes, settle, max_passes)
        self.check_disk(passes)
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(len(self.descs)) for _ in range(limit)]
        todo = sum(max(0, passes - len(self.data["models"][d.name]["passes"])) for d in self.descs)
        total = passes * len(self.descs)
        with progress_bar(show_progress) as progress:
            task = progress.add_task(f"{self.backend.name}: {label}", total=total, completed=total - todo, current="")
            for p, order in enumerate(orders):
                models = [self.descs[int(i)] for i in order]
                due = [d for d in models if len(self.passes(d)) == p and (p < passes or not self.settled(d, settle, statistic))]
                if p >= passes and due:
                    total += len(due)
                    progress.update(task, total=total)
                for desc in due:
                    progress.update(task, current=f"pass {p + 1}/{passes if p < passes else limit} {desc.name}")
                    t = time_model(self.backend, desc, batch=self.batch, repeats=repeats)
                    self.passes(desc).append({"min_ms": round(t.min_ms, 3), "median_ms": round(t.median_ms, 3),
                                              "samples_ms": [round(x, 3) for x in t.samples_ms], "measured_at": now()})
                    self.save()
                    progress.advance(task)
        self.remove_converted(passes)

    def protocol(self, passes: int, settle: float) -> dict[str, Any]:
        """How the models were timed, for a table's metadata: passes asked for, the settle share, most passes taken."""
        return {"passes": passes, "settle": settle, "passes_max": max(len(self.passes(d)) for d in self.descs)}

    def settled(self, desc: Description, settle: float, statistic: str = "min") -> bool:
        """Whether the model's two fastest passes agree within ``settle`` (a share of the fastest)."""
        times = sorted(measured(r, statistic) for r in self.passes(desc))
        return len(times) >= 2 and times[1] <= times[0] * (1 + settle)

    def check_disk(self, passes: int) -> None:
        """Refuse before timing anything when the converted models kept between passes will not fit the disk."""
        backend = self.backend
        if backend.converted_suffix is None:
            return
        need = sum(count(d).params * 4 for d in self.descs  # float32 weights
                   if len(self.data["models"][d.name]["passes"]) < passes and not backend.converted_path(model_file_name(d)).exists())
        free = shutil.disk_usage(backend.workdir).free
        if need * 1.1 > free:  # a flatbuffer or ONNX file is the weights plus a little graph
            raise ConfigError(str(backend.workdir), f"needs about {need * 1.1 / 1e9:.1f} GB free for the {backend.name} models it "
                              f"converts and keeps between passes, {free / 1e9:.1f} GB free; free space or put --timings elsewhere")

    def remove_converted(self, passes: int) -> None:
        """Delete the converted copies of the models whose every pass is timed (LiteRT: up to 2 GB each)."""
        if self.backend.converted_suffix is None:
            return
        for d in self.descs:
            if len(self.data["models"][d.name]["passes"]) >= passes:
                self.backend.converted_path(model_file_name(d)).unlink(missing_ok=True)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def passes(self, desc: Description) -> list[dict[str, float]]:
        return self.data["models"][desc.name]["passes"]

    def truth(self, desc: Description, statistic: str) -> float:
        """The model's time over every pass: the fastest run (``min``) or the median of all runs."""
        runs = self.passes(desc)
        if statistic == "min":
            return min(r["min_ms"] for r in runs)
        return float(np.median([x for r in runs for x in r["samples_ms"]]))


def fit_points(table: LatencyTable, descs: Sequence[Description], truths: Sequence[float]) -> list[FitPoint]:
    predictor = Predictor([table], check_device=False)
    bytes_per = DTYPE_BYTES.get(str(table.metadata["dtype"]), 4)
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
    so a calibration model measured in a slow spell of the host shifts all of them.
    """
    timings = ModelTimings(None, backend, descs, batch=int(table.metadata["batch"]))
    timings.run(passes=passes, repeats=max(1, math.ceil(backend.repeats / passes)), seed=seed, show_progress=show_progress,
                label="calibration models", settle=settle, max_passes=max_passes, statistic=table.statistic)
    store_fit(table, descs, [timings.truth(d, table.statistic) for d in descs], seed=seed,
              timing=timings.protocol(passes, settle))


def stored_calibration(table: LatencyTable) -> tuple[list[Description], list[float]]:
    """The calibration models the table's overhead term was fitted on, and their stored times."""
    stored = (table.metadata.get("overhead") or {}).get("models") or []
    if not stored or not all("description" in m for m in stored):
        raise ConfigError(f"{table.path}: metadata.overhead.models", "hold no timed descriptions; "
                          "run `archlab table calibrate` first")
    return [description_from_dict(m["description"]) for m in stored], [m["measured_ms"] for m in stored]


def refit(table: LatencyTable) -> None:
    """Fit the overhead term again from the calibration models the table has already timed
    (after a change of the fitting rule): times nothing, so it works on any machine."""
    descs, truths = stored_calibration(table)
    if table.metadata["overhead"].get("statistic", table.statistic) != table.statistic:
        raise ConfigError(f"{table.path}: metadata.statistic", "differs from the one the calibration models were timed "
                          "with; recalibrate without --refit")
    store_fit(table, descs, truths, seed=table.metadata["overhead"].get("seed"), timing=table.metadata["overhead"].get("timing"))


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


FIGURES = ("within_10", "within_5", "rmspe", "spearman")


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


def flops_baseline(table: LatencyTable) -> tuple[float, float]:
    """``latency = a + b x GFLOPs`` fitted (relative least squares) on the table's calibration models."""
    calib = (table.metadata.get("overhead") or {}).get("models") or []
    if len(calib) < 2:
        raise ConfigError(f"{table.path}: metadata.overhead", "needs at least 2 calibration models; run `archlab table calibrate`")
    x = np.array([[1.0, c["gflops"]] for c in calib])
    y = np.array([c["measured_ms"] for c in calib])
    (a, b), *_ = np.linalg.lstsq(x / y[:, None], np.ones(len(y)), rcond=None)
    return float(a), float(b)


def validate(table: LatencyTable, backend: LatencyBackend, descs: Sequence[Description], *, seed: int,
             timings_path: str | Path | None = None, passes: int = 2, show_progress: bool = True,
             recalibrate: Sequence[Description] = (), settle: float = 0.0, max_passes: int = MAX_PASSES) -> dict[str, Any]:
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
    timings = ModelTimings(timings_path, backend, [*calibration, *descs], batch=int(table.metadata["batch"]))
    timings.run(passes=passes, repeats=backend.repeats, seed=seed, show_progress=show_progress,
                label="calibration and validation models" if calibration else "validation models",
                settle=settle, max_passes=max_passes, statistic=table.statistic)
    if not calibration:
        return {**score(table, timings, descs, seed=seed), "calibration": "as stored in the table"}
    stored_fit = table.metadata.get("overhead") or {}
    as_stored = score(table, timings, descs, seed=seed)
    store_fit(table, calibration, [timings.truth(d, table.statistic) for d in calibration],
              seed=stored_fit.get("seed"),  # the seed they were sampled with, if any
              timing={**timings.protocol(passes, settle), "with": "the validation's models"})
    result = {**score(table, timings, descs, seed=seed),
              "calibration": f"refitted on {len(calibration)} models timed in the same passes"}
    # the fit the table had, on the same timings: how much of its error was the host's drift since
    result["as_stored"] = {**{k: v for k, v in as_stored.items() if k not in ("table", "backend", "device")},
                           "calibration": "as stored in the table",
                           "overhead": {k: v for k, v in stored_fit.items() if k != "models"}}
    return result


def score(table: LatencyTable, timings: ModelTimings, descs: Sequence[Description], *, seed: int) -> dict[str, Any]:
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
    result = {**accuracy(predicted, truth), **{f"flops_{k}": v for k, v in accuracy(flops, truth).items()},
              "table_minus_flops": paired_bootstrap(predicted, flops, truth, seed=seed),
              "table_closer": closer_share(predicted, flops, truth), "flops_disagreement": disagreement(predicted, flops)}
    passes = min(len(r["passes_ms"]) for r in rows)
    if passes >= 2:
        retest = accuracy([r["passes_ms"][0] for r in rows], [r["passes_ms"][1] for r in rows])
        result.update({f"retest_{k}": v for k, v in retest.items()})
        result["rmspe_over_retest"] = result["rmspe"] / retest["rmspe"] if retest["rmspe"] else float("inf")
        # how far the truth itself may be off: each model's second fastest pass against its fastest
        gaps = [sorted(r["passes_ms"])[1] / min(r["passes_ms"]) - 1 for r in rows]
        result["truth_spread"] = {"rms": float(np.sqrt(np.mean(np.square(gaps)))), "max": float(max(gaps)),
                                  "passes_max": max(len(r["passes_ms"]) for r in rows)}
    result.update({"samples": len(rows), "passes": passes, "statistic": stat, "overhead_form": table.overhead.form,
                   "table": str(table.path), "backend": timings.data["runtime"], "device": timings.data["device"], "models": rows})
    return result


def check(table: LatencyTable, backend: LatencyBackend, *, models: int = 3, passes: int = CALIBRATION_PASSES,
          show_progress: bool = True) -> dict[str, Any]:
    """Re-time up to ``models`` of the table's calibration models here; their drift from then to now.

    Timed in ``passes`` interleaved passes of ``backend.repeats`` runs, as calibration times
    them (with the defaults, the fastest of 8 runs in 2 passes both then and now): on a noisy
    host the fastest of fewer runs comes out slower, which would read as drift.
    """
    if passes < 1 or backend.repeats < 1:
        raise ConfigError("passes" if passes < 1 else "repeats", "must be at least 1")
    calib = (table.metadata.get("overhead") or {}).get("models") or []
    stored = [c for c in calib if "description" in c][:models]
    if not stored:
        raise ConfigError(f"{table.path}: metadata.overhead.models", "hold no descriptions to re-time (run `archlab table calibrate` first)")
    descs = [description_from_dict(c["description"]) for c in stored]
    timings = ModelTimings(None, backend, descs, batch=int(table.metadata["batch"]))
    timings.run(passes=passes, repeats=backend.repeats, seed=0, show_progress=show_progress, label="check models")
    stat = table.statistic
    rows = []
    for c, d in zip(stored, descs):
        now_ms = timings.truth(d, stat)
        rows.append({"name": d.name, "then_ms": c["measured_ms"], "now_ms": round(now_ms, 3),
                     "drift": round(now_ms / c["measured_ms"] - 1, 4)})
    differences = backend.differences_from(table.metadata.get("fingerprint"))
    drift = float(np.median([r["drift"] for r in rows]))
    return {"table": str(table.path), "device_then": table.metadata.get("device"), "device_now": backend.device_name(),
            "fingerprint_differences": differences, "median_drift": drift,
            "verdict": drift_verdict(table.name, differences, drift), "models": rows}


# The median drift a table's own host stays within: the shipped CPU tables checked on their
# host ten days after the build drifted -4.6% and -0.3% (one-pass checks of the torch-cpu
# table: +4.1 to +7.5%); on another "AMD EPYC" +31% and +47%.
DRIFT_LIMIT = 0.10


def drift_verdict(name: str, differences: Sequence[str], median_drift: float) -> dict[str, Any]:
    """Whether a checked table predicts for this machine, and what to do when it does not."""
    if differences:
        return {"holds": False, "advice": f"measured on another machine: build a table here (`archlab table build`); "
                                          f"{name} predicts that machine's latencies, {median_drift:+.0%} off here"}
    if abs(median_drift) > DRIFT_LIMIT:
        return {"holds": False, "advice": f"this machine runs {median_drift:+.0%} from the table, beyond +-{DRIFT_LIMIT:.0%}: "
                                          f"refit it here (`archlab table calibrate {name} --settle 0.05`) and validate, "
                                          "or build again"}
    return {"holds": True, "advice": f"holds here: median drift within +-{DRIFT_LIMIT:.0%}"}
