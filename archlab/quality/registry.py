"""The one registry of quality metrics: each metric's name, direction, what it is, where it
applies, its value for a failed trial, and how it is measured.

The config reader (which names a quality section may ask for), the pipeline (what to
measure), studies (objective directions, failed trials), the evolving search (which way a
Delta counts), the Pareto table and the report all read it; nothing else lists metrics.

A metric is measured from a :class:`~archlab.quality.pipeline.Measurement`, the pipeline's
per-evaluation context: it computes held-out losses, samples and evaluator scores once and
hands them to every metric that needs them. ``measure`` returns per-item values (a dict of
arrays, the metric's own name among them: paired comparisons use them) or an
:class:`~archlab.quality.metrics.Estimate` for a metric that is not a mean over items.

Built-in metrics are registered here; ``few_step_score`` is registered by
:mod:`archlab.distill.few_step`, which ``import archlab`` loads, so this package never
imports the distillation layer above it.

>>> [m.name for m in metrics()][:3]
['heldout_loss', 'text_gap', 'eval_score']
>>> get("text_gap").higher_is_better, get("heldout_loss").worst
(True, 1000000000.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # the types only; nothing here runs a model
    from archlab.quality.config import QualityConfig

Measure = Callable[[Any], Any]  # (Measurement) -> dict[str, np.ndarray] | Estimate


@dataclass(frozen=True)
class Metric:
    """A quality metric. Contract: ``measure(m)`` reads only what ``m`` (a pipeline Measurement) offers and
    returns per-item values under at least the metric's own name, or one Estimate; ``applies(cfg)`` returns
    None when the metric can be measured under ``cfg``, else one sentence saying what is missing."""

    name: str
    higher_is_better: bool
    summary: str  # what it is, in a few words (axis titles, tables, help)
    measure: Measure
    applies: Callable[["QualityConfig"], str | None] = lambda cfg: None
    sampled: bool = False  # needs sampled images (DDIM): ten times the cost of the loss metrics
    default: bool = True  # measured when no metric is named, where it applies
    worst: float | None = None  # a failed trial's value (default: +-1e9 against the direction)

    def __post_init__(self) -> None:
        if self.worst is None:
            object.__setattr__(self, "worst", -1e9 if self.higher_is_better else 1e9)

    @property
    def direction(self) -> str:
        """Optuna's word for it."""
        return "maximize" if self.higher_is_better else "minimize"

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is better than ``b``."""
        return a > b if self.higher_is_better else a < b


_REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric (a name registered twice is a bug, refused)."""
    if metric.name in _REGISTRY and _REGISTRY[metric.name] != metric:
        raise ValueError(f"quality metric {metric.name!r} is registered twice")
    _REGISTRY[metric.name] = metric
    return metric


def get(name: str) -> Metric:
    """The registered metric ``name`` (KeyError naming the known ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"{name!r} is not a quality metric; known: {', '.join(_REGISTRY)}") from None


def metrics() -> list[Metric]:
    """Every registered metric, in registration order."""
    return list(_REGISTRY.values())


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def is_metric(name: str) -> bool:
    return name in _REGISTRY


# ---------------------------------------------------------------------- where each applies


def synthetic_only(cfg: "QualityConfig") -> str | None:
    return None if cfg.data.kind == "synthetic" else "needs the synthetic domain's evaluator; on real data use clip_score"


def needs_clip(cfg: "QualityConfig") -> str | None:
    return None if cfg.eval.clip is not None else "needs a local OpenCLIP model (quality.eval.clip.checkpoint)"


# ---------------------------------------------------------------------- the built-in metrics

register(Metric("heldout_loss", False, "held-out denoising loss at fixed timesteps and noise",
                lambda m: {"heldout_loss": m.own_losses()}))
register(Metric("text_gap", True, "loss with another image's caption minus with its own (text use)",
                lambda m: {"text_gap": m.mismatched_losses() - m.own_losses()}))
register(Metric("eval_score", True, "sampled images' attribute accuracy by the synthetic evaluator (0..1)",
                lambda m: m.evaluator_scores(), applies=synthetic_only, sampled=True, worst=0.0))
register(Metric("fd", False, "Frechet distance of evaluator features, samples vs held-out images",
                lambda m: m.frechet(), applies=synthetic_only, sampled=True))
register(Metric("clip_score", True, "100 x cosine of sample and caption in a local OpenCLIP model",
                lambda m: {"clip_score": m.clip_scores()}, applies=needs_clip, sampled=True, worst=0.0))
