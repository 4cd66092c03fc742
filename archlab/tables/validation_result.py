"""A validation's result as a typed, frozen record: what ``archlab table validate`` computes,
writes and renders.

The file format stays the flat JSON every stored validation has (``within_10``,
``flops_rmspe``, ``retest_spearman``, ``table_minus_flops``, ``models``, ...):
:meth:`Validation.to_dict` writes it and :meth:`Validation.from_dict` reads it back, old files
included (figures a file predates are None; keys this record does not know, such as a
benchmark's additions, are kept in ``extra`` and written back as they were).

The goals a table is held to are here once (:data:`GOALS`), with the test of a lead beyond
noise (:meth:`Validation.beyond_noise`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FIGURES = ("within_10", "within_5", "rmspe", "spearman")
LOWER_IS_BETTER = frozenset({"rmspe"})


@dataclass(frozen=True)
class Goals:
    """What a table must reach on new models: a share within +-10%, RMSPE as a multiple of the
    host's own re-measurement RMSPE, and rank correlation."""

    within_10: float = 0.90
    rmspe_over_retest: float = 1.25
    spearman: float = 0.97


GOALS = Goals()


@dataclass(frozen=True)
class Accuracy:
    """One predictor's figures against measured times (``mean_error``: signed, relative)."""

    within_10: float
    within_5: float
    rmspe: float
    spearman: float
    mean_error: float | None = None  # absent in the oldest files

    @classmethod
    def from_dict(cls, d: dict[str, Any], prefix: str = "") -> Accuracy | None:
        if f"{prefix}within_10" not in d:
            return None
        return cls(**{f.name: d.get(prefix + f.name) for f in dataclasses.fields(cls)})

    def to_dict(self, prefix: str = "") -> dict[str, Any]:
        return {prefix + k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Difference:
    """The table's figure minus FLOPs' on the same models, with its paired bootstrap spread."""

    difference: float
    se: float
    ci95: tuple[float, float]

    def lead(self, figure: str) -> float:
        """How far the table is ahead (positive: better), whichever way the figure points."""
        return -self.difference if figure in LOWER_IS_BETTER else self.difference

    def beyond_noise(self, figure: str) -> bool:
        """The table ahead by more than 2 standard errors."""
        return self.lead(figure) > 2 * self.se


@dataclass(frozen=True)
class Closer:
    """The share of models the table is closer to than FLOPs, with a sign test against 0.5."""

    share: float
    se: float
    closer: int
    farther: int
    sign_test_p: float


@dataclass(frozen=True)
class Disagreement:
    """How far FLOPs' predictions stand from the table's (:func:`archlab.tables.validation.disagreement`)."""

    models: int
    rms: float
    largest_over: float
    largest_under: float
    flops_off_5: float
    flops_off_10: float
    spearman: float


@dataclass(frozen=True)
class TruthSpread:
    """Each model's second fastest pass against its fastest: how far the truth itself may be off."""

    rms: float
    max: float
    passes_max: int


@dataclass(frozen=True)
class ModelResult:
    """One validated model: its truth, each pass, and both predictions."""

    name: str
    measured_ms: float
    predicted_ms: float
    flops_predicted_ms: float | None = None
    passes_ms: tuple[float, ...] = ()
    gflops: float | None = None
    params: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields of older files

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        return cls(**{**known, "passes_ms": tuple(d.get("passes_ms", ()))},
                   extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out["passes_ms"] = list(self.passes_ms)
        return {**{k: v for k, v in out.items() if v is not None and not (k == "passes_ms" and not v)}, **self.extra}


@dataclass(frozen=True)
class Validation:
    """Predicted against measured on ``samples`` models: the table, its FLOPs baseline and, with
    two passes or more, the host's re-measurement (pass 1 against pass 2)."""

    table: Accuracy
    flops: Accuracy
    retest: Accuracy | None
    samples: int | None = None
    passes: int | None = None  # the fewest passes any model had
    models: tuple[ModelResult, ...] = ()
    table_minus_flops: dict[str, Difference] | None = None
    table_closer: Closer | None = None
    flops_disagreement: Disagreement | None = None
    truth_spread: TruthSpread | None = None
    statistic: str | None = None
    overhead_form: str | None = None
    table_path: str | None = None
    backend: str | None = None
    device: str | None = None
    calibration: str | None = None  # "as stored in the table" or how the overhead was refitted
    as_stored: Validation | None = None  # with a refit: the fit the table had (its ``extra["overhead"]``), same timings
    seed: int | None = None
    pick: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this record does not know, kept as they were

    @property
    def rmspe_over_retest(self) -> float | None:
        if self.retest is None:
            return None
        return self.table.rmspe / self.retest.rmspe if self.retest.rmspe else float("inf")

    def goals(self, goals: Goals = GOALS, *, retest_aware: bool = False) -> dict[str, bool]:
        """Which goals are met. ``retest_aware``: a share or correlation the host's own second
        pass does not reach is not asked of the table either."""
        within = min(goals.within_10, self.retest.within_10) if retest_aware and self.retest else goals.within_10
        rank = min(goals.spearman, self.retest.spearman) if retest_aware and self.retest else goals.spearman
        ratio = self.rmspe_over_retest
        return {"within_10": self.table.within_10 >= within - 1e-9,
                "rmspe_over_retest": ratio is not None and ratio <= goals.rmspe_over_retest,
                "spearman": self.table.spearman >= rank}

    def ahead(self) -> dict[str, bool]:
        """Per figure: the table strictly better than FLOPs (noise not considered)."""
        t, f = self.table, self.flops
        return {k: (getattr(t, k) < getattr(f, k)) if k in LOWER_IS_BETTER else (getattr(t, k) > getattr(f, k))
                for k in FIGURES}

    def beyond_noise(self) -> dict[str, bool] | None:
        """Per figure: the table ahead of FLOPs by more than 2 paired bootstrap standard errors
        (None for files from before validations reported the bootstrap)."""
        if self.table_minus_flops is None:
            return None
        return {k: self.table_minus_flops[k].beyond_noise(k) for k in FIGURES}

    # ---- the file format ----
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.table.to_dict(), **self.flops.to_dict("flops_")}
        if self.table_minus_flops is not None:
            out["table_minus_flops"] = {k: {"difference": d.difference, "se": d.se, "ci95": list(d.ci95)}
                                        for k, d in self.table_minus_flops.items()}
        for name in ("table_closer", "flops_disagreement"):
            if getattr(self, name) is not None:
                out[name] = dataclasses.asdict(getattr(self, name))
        if self.retest is not None:
            out.update(self.retest.to_dict("retest_"))
            out["rmspe_over_retest"] = self.rmspe_over_retest
        if self.truth_spread is not None:
            out["truth_spread"] = dataclasses.asdict(self.truth_spread)
        for key, value in (("samples", self.samples), ("passes", self.passes), ("statistic", self.statistic), ("overhead_form", self.overhead_form), ("table", self.table_path),
                           ("backend", self.backend), ("device", self.device)):
            if value is not None:
                out[key] = value
        if self.models:
            out["models"] = [m.to_dict() for m in self.models]
        if self.calibration is not None:
            out["calibration"] = self.calibration
        if self.as_stored is not None:
            out["as_stored"] = {k: v for k, v in self.as_stored.to_dict().items() if k not in ("table", "backend", "device")}
        if self.seed is not None:
            out["seed"] = self.seed
        if self.pick is not None:
            out["pick"] = self.pick
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Validation:
        """Read a stored validation (any version archlab has written)."""
        table, flops = Accuracy.from_dict(d), Accuracy.from_dict(d, "flops_")
        if table is None or flops is None:
            raise ValueError("not a validation result: it has no within_10 / flops_within_10")
        known = {*(f"{p}{f.name}" for p in ("", "flops_", "retest_") for f in dataclasses.fields(Accuracy)),
                 "rmspe_over_retest", "table_minus_flops", "table_closer", "flops_disagreement", "truth_spread", "samples",
                 "passes", "statistic", "overhead_form", "table", "backend", "device", "models", "calibration", "as_stored",
                 "seed", "pick"}
        tmf = d.get("table_minus_flops")
        stored = d.get("as_stored")
        models = d.get("models") or ()
        return cls(
            table=table, flops=flops, retest=Accuracy.from_dict(d, "retest_"),
            samples=d.get("samples"), passes=d.get("passes"),
            models=tuple(ModelResult.from_dict(m) for m in models),
            table_minus_flops={k: Difference(v["difference"], v["se"], tuple(v["ci95"])) for k, v in tmf.items()}
            if tmf else None,
            table_closer=Closer(**d["table_closer"]) if d.get("table_closer") else None,
            flops_disagreement=Disagreement(**d["flops_disagreement"]) if d.get("flops_disagreement") else None,
            truth_spread=TruthSpread(**d["truth_spread"]) if d.get("truth_spread") else None,
            statistic=d.get("statistic"), overhead_form=d.get("overhead_form"), table_path=d.get("table"),
            backend=d.get("backend"), device=d.get("device"), calibration=d.get("calibration"),
            as_stored=cls.from_dict(stored) if stored else None,
            seed=d.get("seed"), pick=d.get("pick"),
            extra={k: v for k, v in d.items() if k not in known})
