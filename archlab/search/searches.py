"""Searches behind one small contract: an Optuna sampler's search and SnapFusion's evolving search.

A study file names its search in ``sampler.kind``; :func:`search_for` returns the search
registered under that name. Contract (:class:`Search`):

- ``check(cfg)``: refuse, when the study file is read, settings this search cannot run with
  (one :class:`~archlab.errors.ConfigError` naming the field);
- ``sampler(cfg)``: the Optuna sampler that proposes trials (None for a search that records
  its results as created trials instead of asking a sampler);
- ``run(cfg, ...)``: run or resume the search on the study's storage, and return the study.
  Every result is a trial there, with the same user attributes, so the Pareto front, the
  report and the export read any search alike.

>>> sorted(searches())
['evolve', 'nsga2', 'random', 'tpe']
"""

from __future__ import annotations

import abc
import multiprocessing
import os
from typing import Any, Callable

import optuna

from archlab.errors import ConfigError


class Search(abc.ABC):
    """See the module docstring."""

    def check(self, cfg: Any) -> None:  # noqa: B027 - most searches need nothing beyond the study file's own rules
        """Refuse settings this search cannot run with."""

    @abc.abstractmethod
    def sampler(self, cfg: Any) -> optuna.samplers.BaseSampler | None: ...

    @abc.abstractmethod
    def run(self, cfg: Any, *, url: str | None = None, until: int | None = None, timeout: float | None = None,
            workers: int = 1, progress: bool = True) -> optuna.Study: ...


class OptunaSearch(Search):
    """Trials proposed by an Optuna sampler, each judged by :class:`~archlab.search.runner.TrialEvaluator`;
    ``workers`` processes share the storage."""

    def __init__(self, make: Callable[[Any], optuna.samplers.BaseSampler]):
        self.make = make

    def sampler(self, cfg: Any) -> optuna.samplers.BaseSampler:
        return self.make(cfg.sampler)

    def run(self, cfg: Any, *, url: str | None = None, until: int | None = None, timeout: float | None = None,
            workers: int = 1, progress: bool = True) -> optuna.Study:
        from archlab.search.runner import open_study, run_worker

        if workers <= 1:
            return run_worker(cfg, url=url, until=until, timeout=timeout, progress=progress)
        open_study(cfg, url)  # create it once, before the workers race to
        context = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked threads or open connections
        procs = [context.Process(target=worker_process, args=(cfg, url, until, timeout, i)) for i in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        codes = [p.exitcode for p in procs]
        if any(codes):
            raise ConfigError("workers", f"worker exit codes {codes}")
        return open_study(cfg, url)


def worker_process(cfg: Any, url: str | None, until: int | None, timeout: float | None, index: int) -> None:
    """One worker process: its own sampler seed (workers with one seed would all propose the same candidates),
    Optuna's per-trial lines off as on the command line."""
    import dataclasses
    import warnings

    from archlab.search.runner import run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    cfg = dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, seed=cfg.sampler.seed + index))
    run_worker(cfg, url=url, until=until, timeout=timeout, progress=False)


class EvolveSearch(Search):
    """SnapFusion's evolving search (:mod:`archlab.search.evolve`) from the ``evolve:`` section, to the study's
    ``latency_ms`` constraint's max; its result is judged like any trial and recorded as one."""

    def check(self, cfg: Any) -> None:
        if cfg.evolve is None:
            raise ConfigError("evolve", "sampler kind evolve needs an evolve: section (see archlab.search.evolve)")
        if cfg.latency_target() is None:
            raise ConfigError("constraints", "the evolve sampler needs a latency_ms constraint with max (its latency target)")
        if cfg.quality.amortised.kind == "supernet":
            raise ConfigError("quality.amortised.kind", "evolve trains one model from its start; a supernet serves a "
                              "study's sampled candidates (use none or teacher here)")

    def sampler(self, cfg: Any) -> None:
        return None

    def run(self, cfg: Any, *, url: str | None = None, until: int | None = None, timeout: float | None = None,
            workers: int = 1, progress: bool = True) -> optuna.Study:
        from archlab.cost.table import LatencyTable
        from archlab.search.evolve import evolve
        from archlab.search.runner import TrialEvaluator, open_study, record

        target = cfg.latency_target()
        result = evolve(cfg.evolve, quality=cfg.quality, table=LatencyTable.load(target.table), target_ms=float(target.max),
                        out=os.path.join(cfg.out_dir, "evolve"), progress=progress, log=lambda m: None)
        study = open_study(cfg, url)
        evaluator = TrialEvaluator(cfg)
        desc = result.description
        values, attrs = evaluator.cheap(desc)
        if cfg.needs_proxy:
            quality, qattrs = evaluator.quality(desc, seed=cfg.quality.train.seed)
            values.update(quality)
            attrs.update(qattrs)
        trial = optuna.trial.create_trial(values=[values[o.name] for o in cfg.objectives], user_attrs={
            "description": desc.to_dict(), "evolve_log": os.path.join(cfg.out_dir, "evolve", "log.json")})
        record(trial, values, attrs, cfg, desc)
        study.add_trial(trial)
        return study


_SEARCHES: dict[str, Search] = {
    # constant liar: a running trial counts as a poor result, so workers sharing a study do not all try one region
    "tpe": OptunaSearch(lambda s: optuna.samplers.TPESampler(seed=s.seed, multivariate=True, n_startup_trials=s.startup_trials,
                                                             constant_liar=True)),
    "nsga2": OptunaSearch(lambda s: optuna.samplers.NSGAIISampler(seed=s.seed, population_size=s.population)),
    "random": OptunaSearch(lambda s: optuna.samplers.RandomSampler(seed=s.seed)),
    "evolve": EvolveSearch(),
}


def searches() -> dict[str, Search]:
    """Every registered search by the name a study file gives in ``sampler.kind``."""
    return dict(_SEARCHES)


def search_for(kind: str) -> Search:
    try:
        return _SEARCHES[kind]
    except KeyError:
        raise ConfigError("sampler.kind", f"{kind!r} is not one of {', '.join(_SEARCHES)}") from None
