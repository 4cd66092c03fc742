"""The one cost predictor: parameters, FLOPs and predicted latency of a description.

Studies, ``archlab describe``, the report, the export's model card, search-space
constraints and ``benchmarks/latency/scoring.py`` all go through :class:`Predictor`. Nothing is
built or traced: parameters and FLOPs come from :mod:`archlab.cost.counting`, latency from
each table's per-block figures plus its fitted overhead term. Costs are cached per placed
stage (:class:`~archlab.arch.description.PlacedStage`), which the candidates of a search
share, so scoring a candidate is a dozen dictionary look-ups.

>>> from archlab import preset
>>> s = Predictor().score(preset("sd15"))
>>> s.params, round(s.gflops)
(859520964, 402)
>>> c = count(preset("mobilediffusion"))
>>> c.conv_blocks, c.self_attention, c.cross_attention
(11, 15, 18)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from archlab.arch.description import Description, PlacedStage, ResnetBlock, Site, TransformerBlock, layout
from archlab.cost.counting import Cost, site_cost, stem_cost
from archlab.cost.keys import BlockSpec, spec_of
from archlab.cost.fingerprint import warn_if_foreign
from archlab.cost.table import LatencyTable, MissingBlocks, latency_kind

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}

LATENCY = "latency_ms"


def latency_metric(table_label: str) -> str:
    """The metric name of latency predicted by one table: ``latency_ms@<table label>``."""
    return f"{LATENCY}@{table_label}"


def parse_metric(name: str) -> tuple[str, str | None]:
    """``"latency_ms@x86-2core_torch-cpu"`` -> ``("latency_ms", "x86-2core_torch-cpu")``; others -> (name, None)."""
    metric, _, table = name.partition("@")
    return metric, table or None


@dataclass(frozen=True)
class Score:
    """Totals of one description: what a search needs, nothing per block."""

    params: int
    flops: int  # multiply-adds, fvcore's convention
    latency_ms: dict[str, float] = field(default_factory=dict)  # table label -> predicted ms

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


@dataclass(frozen=True)
class BlockCount:
    site: Site
    cost: Cost
    ms: dict[str, float] = field(default_factory=dict)  # table label -> the block's figure


@dataclass(frozen=True)
class ModelCount:
    """Totals and every block's share: what ``describe``, the report and the export show."""

    params: int
    flops: int
    stem: Cost
    blocks: tuple[BlockCount, ...]
    conv_blocks: int
    self_attention: int
    cross_attention: int
    latency_ms: dict[str, float] = field(default_factory=dict)  # table label -> predicted ms
    block_sum_ms: dict[str, float] = field(default_factory=dict)  # table label -> sum of block figures
    kind_sums_ms: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # ... by ResNet, transformer, resampler

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


class Predictor:
    """Scores descriptions from the counter and, optionally, latency tables.

    ``batch`` is the batch the FLOPs are counted at; each table's keys use the table's own
    batch and dtype. A block a table lacks raises :class:`MissingBlocks` listing every
    missing key of the description.
    """

    def __init__(self, tables: Iterable[LatencyTable] = (), *, batch: int = 1, check_device: bool = True):
        self.tables = tuple(tables)
        self.batch = batch
        self._table_keys = [(t.meta.batch, t.meta.dtype) for t in self.tables]
        self._overheads = [t.overhead for t in self.tables]
        self._bytes = [DTYPE_BYTES.get(dtype, 4) for _, dtype in self._table_keys]
        if check_device:
            for t in self.tables:  # a table from another machine predicts that machine, not this one: say so once
                warn_if_foreign(t.reference, t.metadata)
        # (time_dim, text_dim, tokens, groups) -> placed stage -> (params, flops, (ms per table and kind))
        self._stages: dict[tuple[int, int, int, int], dict[PlacedStage, tuple[int, int, tuple[float, ...]]]] = {}
        self._stems: dict[tuple, Cost] = {}

    # ------------------------------------------------------------------ totals

    def score(self, desc: Description) -> Score:
        """Parameters, FLOPs and predicted latency on every table (the search's hot path)."""
        ctx = (desc.time_embed_dim, desc.text_dim, desc.text_tokens, desc.norm_groups)
        cache = self._stages.get(ctx)
        if cache is None:
            cache = self._stages[ctx] = {}
        stem = self._stem(desc, desc.resolution)
        params, flops = stem.params, stem.flops
        sums = [0.0] * (3 * len(self.tables))  # per table: ResNet, transformer and resampler figures
        for placed in layout(desc).stages:
            hit = cache.get(placed)
            if hit is None:
                hit = cache[placed] = self._stage_cost(placed, desc)
            params += hit[0]
            flops += hit[1]
            for i, ms in enumerate(hit[2]):
                sums[i] += ms
        return Score(params, flops, {t.label: o.apply(sums[3 * i:3 * i + 3], params * b / 1e9)
                                     for i, (t, o, b) in enumerate(zip(self.tables, self._overheads, self._bytes))})

    def _stem(self, desc: Description, resolution: int) -> Cost:
        key = (desc.in_channels, desc.out_channels, desc.channels[0], desc.time_embed_dim, desc.addition, resolution)
        cost = self._stems.get(key)
        if cost is None:
            cost = self._stems[key] = stem_cost(desc, resolution, self.batch)
        return cost

    def _stage_cost(self, placed: PlacedStage, desc: Description) -> tuple[int, int, tuple[float, ...]]:
        params = flops = 0
        sums = [0.0] * (3 * len(self.tables))
        for site in placed.sites:
            cost = site_cost(site, time_dim=desc.time_embed_dim, text_dim=desc.text_dim, text_tokens=desc.text_tokens,
                             batch=self.batch)
            params += cost.params
            flops += cost.flops
            kind = latency_kind(site.block.kind)
            for i, ms in enumerate(self._block_ms(site, desc)):
                sums[3 * i + kind] += ms
        return params, flops, tuple(sums)

    def _block_ms(self, site: Site, desc: Description) -> list[float]:
        out = []
        for table, (batch, dtype) in zip(self.tables, self._table_keys):
            key = spec_of(site, desc.time_embed_dim, desc.text_dim, desc.text_tokens, desc.norm_groups, batch, dtype).key
            if key not in table:
                raise MissingBlocks(list(self.missing(desc).get(table.label, {key: None})), table.name)
            out.append(table.ms(key))
        return out

    # ------------------------------------------------------------------ per block

    def breakdown(self, desc: Description, *, resolution: int | None = None) -> ModelCount:
        """Every block's parameters, FLOPs and table figures, with the totals."""
        res = desc.resolution if resolution is None else resolution
        stem = self._stem(desc, res)
        blocks = []
        for site in layout(desc, res):
            cost = site_cost(site, time_dim=desc.time_embed_dim, text_dim=desc.text_dim, text_tokens=desc.text_tokens,
                             batch=self.batch)
            ms = dict(zip((t.label for t in self.tables), self._block_ms(site, desc))) if self.tables else {}
            blocks.append(BlockCount(site, cost, ms))
        total = stem
        for b in blocks:
            total += b.cost
        kind_sums = {t.label: [0.0, 0.0, 0.0] for t in self.tables}
        for b in blocks:
            for label, ms in b.ms.items():
                kind_sums[label][latency_kind(b.site.block.kind)] += ms
        transformers = [b.site.block for b in blocks if isinstance(b.site.block, TransformerBlock)]
        return ModelCount(
            params=total.params, flops=total.flops, stem=stem, blocks=tuple(blocks),
            conv_blocks=sum(isinstance(b.site.block, ResnetBlock) for b in blocks),
            self_attention=sum(t.layers for t in transformers if t.self_attention),
            cross_attention=sum(t.layers for t in transformers if t.cross_attention),
            latency_ms={t.label: o.apply(kind_sums[t.label], total.params * b / 1e9)
                        for t, o, b in zip(self.tables, self._overheads, self._bytes)},
            block_sum_ms={label: sum(v) for label, v in kind_sums.items()},
            kind_sums_ms={label: tuple(v) for label, v in kind_sums.items()},
        )

    def missing(self, desc: Description) -> dict[str, dict[str, BlockSpec]]:
        """Table label -> the blocks of ``desc`` it has not measured (key -> spec)."""
        out: dict[str, dict[str, BlockSpec]] = {}
        for table, (batch, dtype) in zip(self.tables, self._table_keys):
            for site in layout(desc):
                spec = spec_of(site, desc.time_embed_dim, desc.text_dim, desc.text_tokens, desc.norm_groups, batch, dtype)
                if spec.key not in table:
                    out.setdefault(table.label, {})[spec.key] = spec
        return out


_COUNTERS: dict[int, Predictor] = {}


def count(desc: Description, *, resolution: int | None = None, batch: int = 1) -> ModelCount:
    """Exact parameters and fvcore-convention FLOPs of ``desc`` at ``resolution`` (latent side), per block."""
    predictor = _COUNTERS.get(batch)
    if predictor is None:
        predictor = _COUNTERS[batch] = Predictor(batch=batch)
    return predictor.breakdown(desc, resolution=resolution)
