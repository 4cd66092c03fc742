"""The analytic counter against the built modules (parameters) and fvcore (FLOPs)."""

import pytest

from archlab import build, count, preset, presets
from archlab.arch.scaling import scale
from fvcore_count import block_flops, model_flops

# fvcore traces each block once; identical placed blocks (same kind, choices, shapes) share one trace
_fvcore_cache: dict = {}


@pytest.mark.parametrize("name", [n if n == "tiny" else pytest.param(n, marks=pytest.mark.slow) for n in presets()])
def test_analytic_flops_match_fvcore_on_every_block(name):
    desc = preset(name)
    if name == "sdxl":  # its 10-layer transformers at 128x128 latents take minutes to trace on 2 cores
        desc = desc.replace(resolution=64)
    c = count(desc)
    for bc in c.blocks:
        key = (bc.site.block, bc.site.in_channels, bc.site.out_channels, bc.site.resolution, desc.text_dim, desc.time_embed_dim)
        if key not in _fvcore_cache:
            _fvcore_cache[key] = block_flops(bc.site, desc)
        traced = _fvcore_cache[key]
        assert abs(bc.cost.flops - traced) <= 0.005 * traced, (bc.site.name, bc.cost.flops, traced)


@pytest.mark.parametrize("name", presets())
def test_analytic_params_match_built_blocks(name):
    desc = scale(preset(name), width=0.1, resolution=16, text_dim=32)
    model = build(desc)
    c = count(desc)
    assert c.params == sum(p.numel() for p in model.parameters())
    for bc in c.blocks:
        assert bc.cost.params == sum(p.numel() for p in model.block(bc.site.stage, bc.site.index).parameters()), bc.site.name


def test_whole_model_flops_match_fvcore_on_small_models():
    for name in ("tiny", "mobilediffusion"):
        desc = scale(preset(name), width=0.25, resolution=16, text_dim=64) if name != "tiny" else preset(name)
        traced = model_flops(desc)
        assert abs(count(desc).flops - traced) <= 0.005 * traced


def test_published_yardsticks():
    sd15 = count(preset("sd15"))
    assert sd15.params == 859_520_964 and abs(sd15.gflops / 392 - 1) <= 0.05
    assert (sd15.conv_blocks, sd15.self_attention, sd15.cross_attention) == (22, 16, 16)
    assert count(preset("sdxl")).params == 2_567_463_684
    snap = count(preset("snapfusion"))
    assert (snap.conv_blocks, snap.self_attention, snap.cross_attention) == (17, 14, 14)
    for name, conv, sa, ca, params, gflops in (("mobilediffusion", 11, 15, 18, 386e6, 182),
                                              ("mobilediffusion-lite", 11, 12, 15, 278e6, 153)):
        c = count(preset(name))
        assert (c.conv_blocks, c.self_attention, c.cross_attention) == (conv, sa, ca)
        assert abs(c.params / params - 1) <= 0.03 and abs(c.gflops / gflops - 1) <= 0.05
        assert preset(name).channels[-1] in (1024, 896)


def test_snapfusion_attention_sits_where_table3_puts_it():
    per_stage = {}
    for bc in count(preset("snapfusion")).blocks:
        if bc.site.block.kind == "transformer":
            per_stage[bc.site.stage] = per_stage.get(bc.site.stage, 0) + 1
    assert per_stage == {"down1": 2, "down2": 2, "mid": 1, "up2": 6, "up1": 3}
