"""Proxy training: reproducible by seed, resumable from safetensors, robust training, metrics with errors."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from archlab import ConfigError, preset, removable
from archlab.config import read
from archlab.quality.config import EvalConfig, ProxyConfig, QualityConfig, TrainConfig
from archlab.quality.data import SyntheticData
from archlab.quality.diffusion import Schedule, ddim_sample, noisy, target, to_eps_x0
from archlab.quality.metrics import item_losses, mean_se, mismatched, paired
from archlab.quality.pipeline import QualityPipeline
from archlab.quality.proxy import proxy_description
from archlab.quality.text import SmallTextEncoder, vocabulary
from archlab.quality.train import ProxyModel, Trainer

CFG = ProxyConfig(width=0.05, resolution=16)
DATA = SyntheticData(seed=0, resolution=16)
VOCAB = vocabulary(DATA.captions())


def _proxy():
    return proxy_description(preset("mobilediffusion"), CFG, channels=3, text_dim=32, text_tokens=16)


def _model():
    torch.manual_seed(0)
    return ProxyModel(_proxy(), text_encoder=SmallTextEncoder(VOCAB, width=32, tokens=16))


def _trainer(tmp=None, block_drop=0.0, **kw):
    return Trainer(_model(), DATA, TrainConfig(batch=4, seed=3, threads=1, **kw), block_drop=block_drop, out_dir=tmp)


def test_proxy_keeps_topology():
    full, proxy = preset("mobilediffusion"), _proxy()
    assert [[b.kind for b in s.blocks] for s in full.stages] == [[b.kind for b in s.blocks] for s in proxy.stages]
    assert [getattr(b, "self_attention", None) for s in full.stages for b in s.blocks] == \
           [getattr(b, "self_attention", None) for s in proxy.stages for b in s.blocks]
    assert proxy.in_channels == 3 and proxy.resolution == 16 and proxy.text_dim == 32


def test_training_is_reproducible_and_resumes_exactly(tmp_path):
    a = _trainer(steps=6)
    a.train(progress=False)
    b = _trainer(tmp_path, steps=6, checkpoint_every=3)
    b.train(steps=3, progress=False)  # stop half way; the checkpoint is on disk
    c = _trainer(tmp_path, steps=6)
    assert c.step == 3
    c.train(progress=False)
    for (k, v), (_, w) in zip(a.model.state_dict().items(), c.model.state_dict().items()):
        assert torch.allclose(v, w, atol=1e-6), k
    saved = load_file(str(tmp_path / "checkpoint.safetensors"))
    assert any(k.startswith("optim.") for k in saved) and any(k.startswith("model.unet.") for k in saved)
    assert torch.equal(saved["model.text.vocab"], torch.tensor(VOCAB))


def test_loss_falls_and_result_reports_throughput():
    result = _trainer(steps=40).train(progress=False)
    assert result.steps == 40 and result.steps_per_s > 0 and result.peak_memory_mb > 0 and result.cpu_seconds > 0
    assert sum(result.losses[-10:]) < sum(result.losses[:10])


def test_robust_training_skips_only_removable_blocks():
    trainer = _trainer(steps=1, block_drop=0.5)
    assert trainer.droppable == list(removable(trainer.model.description))
    sites = {s.name: s for s in trainer.model.unet.layout}
    assert all(sites[n].skip_channels == 0 and sites[n].in_channels == sites[n].out_channels for n in trainer.droppable)
    assert any(sites[n].block.kind == "transformer" for n in trainer.droppable)
    model = trainer.model
    x, t, ctx = torch.randn(1, 3, 16, 16), torch.tensor([10.0]), model.encode(["a red circle on the left"])
    with torch.no_grad():
        assert not torch.allclose(model(x, t, ctx), model(x, t, ctx, skip_blocks=frozenset(trainer.droppable)))
    with pytest.raises(ConfigError, match="block_drop"):
        Trainer(_model(), DATA, TrainConfig(), block_drop=1.5)


def test_time_budget_stops_early():
    result = _trainer(steps=10_000, time_budget_s=0.5).train(progress=False)
    assert result.steps < 10_000


def test_v_prediction_round_trip():
    s = Schedule()
    acp = s.alphas_cumprod()
    x0, eps, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([10, 900])
    xt = noisy(x0, eps, t, acp)
    e, x = to_eps_x0(target(x0, eps, t, acp, "v"), xt, acp[t].view(-1, 1, 1, 1), "v")
    assert torch.allclose(e, eps, atol=1e-4) and torch.allclose(x, x0, atol=1e-4)


def test_item_losses_use_common_random_numbers():
    model = _trainer(steps=2).model
    items = [DATA.get(i) for i in range(16)]
    kw = dict(schedule=Schedule(), prediction="v", seed=7, batch=8)
    a = item_losses(model, items, **kw)
    assert a.shape == (16,) and np.array_equal(a, item_losses(model, items, **kw))  # same items, noise, timesteps
    wrong = item_losses(model, items, captions=mismatched([c for _, c in items]), **kw)
    gap = paired(a, wrong)
    assert gap.n == 16 and np.isfinite(gap.se)
    # a paired difference cancels the items' own spread: its error is far below the unpaired one
    assert gap.se < 0.5 * np.hypot(mean_se(a).se, mean_se(wrong).se)
    out = ddim_sample(lambda x, t, c: torch.zeros_like(x), (2, 3, 8, 8), torch.zeros(2, 1, 1), torch.zeros(2, 1, 1),
                      schedule=Schedule(), steps=4)
    assert out.shape == (2, 3, 8, 8)


def test_pipeline_reports_every_metric_with_its_standard_error():
    cfg = QualityConfig(proxy=CFG, train=TrainConfig(steps=4, batch=4, threads=1), device="cpu",
                        eval=EvalConfig(heldout=16, samples=8, ddim_steps=3))
    judged = QualityPipeline(cfg).judge(preset("tiny"), progress=False)
    assert {"heldout_loss", "text_gap", "eval_score", "eval_colour", "fd"} <= set(judged.metrics)
    for name in ("heldout_loss", "text_gap", "eval_score", "fd"):
        e = judged.metrics[name]
        assert np.isfinite(e.value) and np.isfinite(e.se) and e.se >= 0, name
    assert judged.metrics["heldout_loss"].n == 16 and judged.metrics["eval_score"].n == 8
    assert 0 <= judged.metrics["eval_score"].value <= 1
    flat = judged.flat()
    assert flat["heldout_loss_se"] == judged.metrics["heldout_loss"].se


def test_bad_training_settings_name_the_field():
    with pytest.raises(ConfigError, match="train.prediction: 'x0' is not one of eps, v"):
        read(TrainConfig, {"prediction": "x0"}, "train")
    with pytest.raises(ConfigError, match="train.guidance_dropout"):
        read(TrainConfig, {"guidance_dropout": 1.5}, "train")
    with pytest.raises(ConfigError, match="quality.eval: asks for 512 held-out items but data.heldout keeps 64"):
        read(QualityConfig, {"data": {"kind": "folder", "path": "x", "heldout": 64}, "eval": {"heldout": 512}}, "quality")
    with pytest.raises(ConfigError, match="eval_score needs the synthetic domain"):
        read(QualityConfig, {"data": {"kind": "folder", "path": "x", "heldout": 300}, "eval": {"metrics": ["eval_score"]}}, "quality")


def test_weight_average_is_measured_resumed_and_leaves_the_trajectory_alone(tmp_path):
    plain = _trainer(steps=6)
    plain.train(progress=False)
    averaged = _trainer(tmp_path, steps=6, ema=0.9, checkpoint_every=3)
    averaged.train(steps=3, progress=False)
    resumed = _trainer(tmp_path, steps=6, ema=0.9)
    resumed.train(progress=False)
    for (k, v), (_, w) in zip(plain.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.allclose(v, w, atol=1e-6), k  # the average does not change training
    straight = _trainer(steps=6, ema=0.9)
    straight.train(progress=False)
    assert all(torch.allclose(straight.ema[n], resumed.ema[n], atol=1e-6) for n in straight.ema)
    before = {k: v.clone() for k, v in resumed.model.state_dict().items()}
    with resumed.averaged() as model:
        name = next(iter(resumed.ema))
        assert torch.equal(dict(model.named_parameters())[name], resumed.ema[name])
        assert not torch.equal(dict(model.named_parameters())[name], before[name])
    assert all(torch.equal(v, before[k]) for k, v in resumed.model.state_dict().items())  # restored


def test_cosine_schedule_warms_up_then_decays_to_zero_and_constant_stays():
    from archlab.quality.train import scheduled_lr

    cos = TrainConfig(steps=100, lr=1e-3, warmup_steps=10, lr_schedule="cosine")
    flat = TrainConfig(steps=100, lr=1e-3, warmup_steps=10)
    assert scheduled_lr(cos, 0) == pytest.approx(1e-4) == scheduled_lr(flat, 0)
    assert scheduled_lr(cos, 10) == pytest.approx(1e-3) and scheduled_lr(cos, 55) == pytest.approx(5e-4)
    assert scheduled_lr(cos, 100) == pytest.approx(0.0, abs=1e-12) and scheduled_lr(flat, 100) == 1e-3
