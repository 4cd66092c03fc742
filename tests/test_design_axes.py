"""Every design axis of the description visibly changes the built module, and every preset runs."""

import dataclasses

import pytest
import torch

from archlab import build, count, presets, preset
from archlab.arch.modules import SeparableConv2d
from archlab.arch.scaling import scale


def _tiny_with(**transformer_changes):
    d = preset("tiny")
    t = dataclasses.replace(d.block("down1", 1), **transformer_changes)
    return d.with_blocks("down1", [d.block("down1", 0), t])


def _run(model, seed=0):
    d = model.description
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, d.in_channels, d.resolution, d.resolution, generator=g)
    ctx = torch.randn(2, d.text_tokens, d.text_dim, generator=g)
    return model(x, torch.tensor([3, 700]), ctx)


def test_self_attention_off_removes_it():
    block = build(_tiny_with(self_attention=False)).block("down1", 1).transformer_blocks[0]
    assert not hasattr(block, "attn1") and hasattr(block, "attn2")
    block = build(_tiny_with(cross_attention=False)).block("down1", 1).transformer_blocks[0]
    assert hasattr(block, "attn1") and not hasattr(block, "attn2")


def test_separable_conv_is_depthwise_then_pointwise():
    d = preset("tiny")
    d = d.with_blocks("down1", [dataclasses.replace(d.block("down1", 0), conv="separable"), d.block("down1", 1)])
    conv = build(d).block("down1", 0).conv1
    assert isinstance(conv, SeparableConv2d)
    assert conv.depthwise.groups == conv.depthwise.in_channels == 32 and conv.depthwise.kernel_size == (3, 3)
    assert conv.pointwise.kernel_size == (1, 1) and conv.pointwise.out_channels == 64


def test_shared_kv_has_one_projection():
    attn = build(_tiny_with(shared_kv=True)).block("down1", 1).transformer_blocks[0].attn2
    assert hasattr(attn, "to_kv") and not hasattr(attn, "to_k") and not hasattr(attn, "to_v")
    assert count(_tiny_with(shared_kv=True)).params < count(preset("tiny")).params


def test_relu_attention_differs_from_softmax():
    torch.manual_seed(0)
    softmax = build(preset("tiny")).eval()
    relu = build(_tiny_with(attention="relu")).eval()
    relu.load_state_dict(softmax.state_dict())  # same weights, only the nonlinearity differs
    with torch.no_grad():
        assert (_run(softmax) - _run(relu)).abs().max() > 1e-4


@pytest.mark.parametrize("ff,ratio,first_width", [("geglu", 4.0, 512), ("geglu", 3.0, 384), ("swiglu", 3.0, 384),
                                                  ("gelu", 4.0, 256), ("swish", 2.0, 128)])
def test_feed_forward_kind_and_ratio_change_hidden_width(ff, ratio, first_width):
    net = build(_tiny_with(ff=ff, ff_ratio=ratio)).block("down1", 1).transformer_blocks[0].ff.net
    assert net[0].proj.out_features == first_width
    assert net[2].in_features == int(64 * ratio)


def test_projection_heads_layers_and_activation_change_the_module():
    linear = build(_tiny_with(projection="linear")).block("down1", 1)
    conv = build(_tiny_with(projection="conv")).block("down1", 1)
    assert isinstance(linear.proj_in, torch.nn.Linear) and isinstance(conv.proj_in, torch.nn.Conv2d)
    assert build(_tiny_with(heads=4)).block("down1", 1).transformer_blocks[0].attn1.heads == 4
    assert len(build(_tiny_with(layers=3)).block("down1", 1).transformer_blocks) == 3
    d = preset("tiny")
    d = d.with_blocks("down1", [dataclasses.replace(d.block("down1", 0), activation="gelu", kernel=5), d.block("down1", 1)])
    block = build(d).block("down1", 0)
    assert isinstance(block.nonlinearity, torch.nn.GELU) and block.conv1.kernel_size == (5, 5)


def test_latent_and_text_widths():
    d = preset("tiny").replace(in_channels=8, out_channels=8, text_dim=48, text_tokens=5)
    m = build(d)
    assert m.conv_in.in_channels == 8 and m.conv_out.out_channels == 8
    assert m.block("down1", 1).transformer_blocks[0].attn2.to_k.in_features == 48
    assert _run(m).shape == (2, 8, 16, 16)


@pytest.mark.parametrize("name", presets())
def test_every_preset_builds_small_and_trains(name):
    desc = scale(preset(name), width=0.1, resolution=16, text_dim=32)
    model = build(desc)
    out = _run(model)
    assert out.shape == (2, desc.out_channels, 16, 16) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads), "every parameter takes part in the forward"
    assert sum(g.abs().sum().item() for g in grads) > 0
