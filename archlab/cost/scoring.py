"""Score candidates in microseconds: parameters, FLOPs and predicted latency, no module.

Each distinct placed block is looked up once (params, FLOPs, table median) and cached, so
scoring a candidate is its layout plus one dictionary look-up per block.

>>> from archlab import preset
>>> s = Scorer().score(preset("sd15"))
>>> s.params, round(s.gflops)
(859520964, 402)
"""

from __future__ import annotations

from dataclasses import dataclass

from archlab.arch.description import Description, layout
from archlab.cost.counting import site_cost, stem_cost
from archlab.cost.keys import spec_of
from archlab.cost.table import LatencyTable, MissingBlocks


@dataclass(frozen=True)
class Score:
    params: int
    flops: int
    latency_ms: float | None  # None without a table

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


class Scorer:
    """Scores descriptions; give a table to predict latency too."""

    def __init__(self, table: LatencyTable | None = None, *, batch: int = 1):
        self.table = table
        self.batch = int(table.metadata["batch"]) if table is not None else batch
        self.dtype = str(table.metadata["dtype"]) if table is not None else "float32"
        # (time_dim, text_dim, tokens, groups, resolution) -> (block, in, out, res) -> (params, flops, ms)
        self._blocks: dict[tuple, dict[tuple, tuple[int, int, float]]] = {}

    def _block(self, site, desc: Description) -> tuple[int, int, float]:
        cost = site_cost(site, time_dim=desc.time_embed_dim, text_dim=desc.text_dim, text_tokens=desc.text_tokens, batch=self.batch)
        ms = 0.0
        if self.table is not None:
            key = spec_of(site, desc.time_embed_dim, desc.text_dim, desc.text_tokens, desc.norm_groups, self.batch, self.dtype).key
            if key not in self.table:
                raise MissingBlocks([key], self.table.name)
            ms = self.table.ms(key)
        return cost.params, cost.flops, ms

    def score(self, desc: Description) -> Score:
        context = (desc.time_embed_dim, desc.text_dim, desc.text_tokens, desc.norm_groups, desc.resolution)
        cache = self._blocks.get(context)
        if cache is None:
            cache = self._blocks[context] = {}
        stem = stem_cost(desc, desc.resolution, self.batch)
        params, flops, ms = stem.params, stem.flops, 0.0
        for site in layout(desc):
            shape = (site.block, site.in_channels, site.out_channels, site.resolution)
            hit = cache.get(shape)
            if hit is None:
                hit = cache[shape] = self._block(site, desc)
            params += hit[0]
            flops += hit[1]
            ms += hit[2]
        latency = self.table.overhead.apply(ms) if self.table is not None else None
        return Score(params, flops, latency)
