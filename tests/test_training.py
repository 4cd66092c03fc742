"""Proxy training: reproducible by seed, resumable from safetensors, metrics, robust training."""

import pytest
import torch
from safetensors.torch import load_file

from archlab import preset
from archlab.quality.data import SyntheticData
from archlab.quality.diffusion import Schedule, ddim_sample, to_eps_x0, target, noisy
from archlab.quality.metrics import EvalConfig, evaluate_proxy, heldout_loss, heldout_set
from archlab.quality.proxy import ProxyConfig, proxy_description
from archlab.quality.train import ProxyModel, TrainConfig, Trainer

CFG = ProxyConfig(width=0.05, resolution=16, text_dim=32)
DATA = SyntheticData(seed=0, resolution=16)


def _proxy():
    return proxy_description(preset("mobilediffusion"), CFG)


def _trainer(tmp=None, **kw):
    torch.manual_seed(0)
    return Trainer(ProxyModel(_proxy()), DATA, TrainConfig(batch=4, seed=3, threads=1, **kw), out_dir=tmp)


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


def test_loss_falls_and_result_reports_throughput():
    trainer = _trainer(steps=40)
    result = trainer.train(progress=False)
    assert result.steps == 40 and result.steps_per_s > 0 and result.peak_memory_mb > 0
    assert sum(result.losses[-10:]) < sum(result.losses[:10])


def test_block_drop_skips_droppable_blocks():
    trainer = _trainer(steps=1, block_drop=0.5)
    sites = {s.name: s for s in trainer.model.unet.layout}
    assert all(sites[n].skip_channels == 0 and sites[n].in_channels == sites[n].out_channels for n in trainer.droppable)
    assert any(sites[n].block.kind == "transformer" for n in trainer.droppable)
    assert not any(sites[n].skip_channels for n in trainer.droppable)
    model = trainer.model
    x, t, ctx = torch.randn(1, 3, 16, 16), torch.tensor([10.0]), model.text(["a red circle on the left"])
    with torch.no_grad():
        assert not torch.allclose(model(x, t, ctx), model(x, t, ctx, skip_blocks=frozenset(trainer.droppable)))


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


def test_metrics_are_deterministic():
    model = _trainer(steps=2).model
    held = heldout_set(DATA, 16)
    a = heldout_loss(model, held, schedule=Schedule(), prediction="eps", n=16)
    assert a == heldout_loss(model, held, schedule=Schedule(), prediction="eps", n=16)
    metrics = evaluate_proxy(model, DATA, schedule=Schedule(), prediction="eps", cfg=EvalConfig(heldout=8, samples=8, ddim_steps=3))
    assert {"heldout_loss", "eval_score", "eval_colour", "fd"} <= set(metrics) and 0 <= metrics["eval_score"] <= 1
    out = ddim_sample(lambda x, t, c: torch.zeros_like(x), (2, 3, 8, 8), torch.zeros(2, 1, 1), torch.zeros(2, 1, 1),
                      schedule=Schedule(), steps=4)
    assert out.shape == (2, 3, 8, 8)


def test_bad_training_settings_name_the_field():
    from archlab import ConfigError

    with pytest.raises(ConfigError, match="train.prediction"):
        TrainConfig(prediction="x0")
    with pytest.raises(ConfigError, match="train.block_drop"):
        TrainConfig(block_drop=1.5)
