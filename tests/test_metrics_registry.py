"""The metric registry: one place for every metric's facts, and a conformance test every registered metric passes."""

import numpy as np
import pytest

import archlab  # noqa: F401  (registers every metric, few_step_score included)
from archlab import ConfigError, preset
from archlab.config import read
from archlab.quality import registry
from archlab.quality.config import EvalConfig, FewStepConfig, ProxyConfig, QualityConfig, TrainConfig
from archlab.quality.metrics import Estimate
from archlab.quality.pipeline import QualityPipeline

CFG = QualityConfig(proxy=ProxyConfig(width=0.05, resolution=16), train=TrainConfig(steps=2, batch=4, threads=1), device="cpu",
                    eval=EvalConfig(heldout=8, samples=4, ddim_steps=2, few_step=FewStepConfig(iterations=1, batch=2, student_steps=1)))


@pytest.fixture(scope="module")
def trained():
    pipe = QualityPipeline(CFG)
    model = pipe.model(preset("tiny"), seed=0)
    pipe.trainer(model).train(progress=False)
    return pipe, model


@pytest.mark.parametrize("name", registry.names())
def test_every_registered_metric_measures_what_it_promises(name, trained):
    metric = registry.get(name)
    assert metric.summary and metric.direction in ("maximize", "minimize")
    assert metric.better(metric.worst + (1 if metric.higher_is_better else -1), metric.worst)  # the worst is beaten
    pipe, model = trained
    if metric.applies(pipe.cfg) is not None:
        with pytest.raises(ConfigError, match=name):
            pipe.evaluate(model, metrics=(name,))
        return
    estimates, values = pipe.evaluate(model, metrics=(name,))
    e = estimates[name]
    assert isinstance(e, Estimate) and np.isfinite(e.value) and e.n >= 1
    if name in values:  # per-item: as many values as items, their mean the estimate
        assert e.value == pytest.approx(float(np.mean(values[name])))


def test_the_pipeline_measures_shared_work_once(trained, monkeypatch):
    """heldout_loss and text_gap share the own-caption losses; eval_score and fd share one set of samples."""
    pipe, model = trained
    calls = {"losses": 0, "samples": 0}
    import archlab.quality.pipeline as p

    real_losses, real_sample = p.item_losses, p.sample

    def count_losses(*a, **k):
        calls["losses"] += 1
        return real_losses(*a, **k)

    def count_sample(*a, **k):
        calls["samples"] += 1
        return real_sample(*a, **k)

    monkeypatch.setattr(p, "item_losses", count_losses)
    monkeypatch.setattr(p, "sample", count_sample)
    pipe.evaluate(model, metrics=("heldout_loss", "text_gap", "eval_score", "fd"))
    assert calls == {"losses": 2, "samples": 1}  # own and mismatched captions; one sampling pass


def test_config_refuses_unknown_and_inapplicable_metrics_by_the_registry():
    with pytest.raises(ConfigError, match="quality.eval.metrics: 'psnr' is not one of heldout_loss, text_gap"):
        read(QualityConfig, {"eval": {"metrics": ["psnr"]}}, "quality")
    with pytest.raises(ConfigError, match="clip_score needs a local OpenCLIP model"):
        read(QualityConfig, {"eval": {"metrics": ["clip_score"]}}, "quality")


def test_default_metrics_are_those_that_apply():
    names = QualityPipeline(CFG).metrics()
    assert names == ("heldout_loss", "text_gap", "eval_score", "fd")  # few_step_score is opt-in, clip_score needs a model


def test_a_metric_registered_twice_is_refused():
    m = registry.get("text_gap")
    assert registry.register(m) is m  # the same one again is harmless
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(registry.Metric("text_gap", False, "another", lambda m: {}))
