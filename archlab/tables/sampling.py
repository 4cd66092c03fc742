"""Whole models for calibration and validation, drawn from the spaces a table was measured for."""


import math
from typing import Sequence

import numpy as np

from archlab.arch.description import Description
from archlab.cost.predict import Predictor
from archlab.cost.table import LatencyTable, MissingBlocks
from archlab.errors import ConfigError
from archlab.tables.calibration import flops_baseline


def table_space(table: LatencyTable, space: str | None = None):
    """The space whole models are sampled from: ``space``, else the table's first space source."""
    from archlab.search.space import load_space
    from archlab.tables.sources import resolve_sources

    if space is not None:
        return load_space(space)
    spaces, _ = resolve_sources(list(table.meta.sources))
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
    from archlab.tables.sources import spread_by_size

    if pick not in PICKS:
        raise ConfigError("--pick", f"{pick!r} is not one of {', '.join(PICKS)}")
    sampled = table_space(table, space)
    runtime = BACKENDS.get(table.meta.runtime)
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

