"""SnapGen's design axes: multi-/grouped-query attention, separable convs with an expansion ratio, QK
normalisation, key/value compression, a cross-attention + FF block in place of a residual block. Each
round-trips through YAML, counts as fvcore traces it, changes the module as it says, and exports."""

import dataclasses

import numpy as np
import pytest
import torch
from fvcore_count import block_flops

from archlab import ConfigError, build, count, load_description, preset
from archlab.arch.description import ResnetBlock, TransformerBlock
from archlab.arch.scaling import scale
from archlab.cost.keys import block_specs


def _tiny(**changes):
    """tiny (channels 32, 64; a transformer at 8x8 in down1) with its down1 transformer changed."""
    d = preset("tiny")
    t = dataclasses.replace(d.block("down1", 1), heads=4, head_dim=None, **changes)
    return d.with_blocks("down1", [d.block("down1", 0), t])


def _separable(expansion):
    d = preset("tiny")
    r = ResnetBlock(conv="separable", expansion=expansion)
    return d.with_blocks("up1", [r, d.block("up1", 1), r, d.block("up1", 3), d.block("up1", 4)])


def _cross_ff_first():
    """The first stage's ResNet replaced by a cross-attention + FF block (SnapGen's text conditioning from stage 1)."""
    d = preset("tiny")
    return d.with_blocks("down0", [TransformerBlock(self_attention=False, head_dim=8), *d.stage("down0").blocks[1:]])


VARIANTS = {
    "multi-query": lambda: _tiny(kv_heads=1),
    "grouped-query": lambda: _tiny(kv_heads=2),
    "multi-query shared kv": lambda: _tiny(kv_heads=1, shared_kv=True),
    "qk rms": lambda: _tiny(qk_norm="rms"),
    "qk layer": lambda: _tiny(qk_norm="layer"),
    "kv compression": lambda: _tiny(kv_compression=2),
    "all together": lambda: _tiny(kv_heads=1, qk_norm="rms", kv_compression=2, ff_ratio=3),
    "separable x2": lambda: _separable(2.0),
    "cross-attention + FF first": _cross_ff_first,
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_axis_round_trips_counts_and_runs(name, tmp_path):
    desc = VARIANTS[name]()
    path = tmp_path / "d.yaml"
    path.write_text(desc.to_yaml())
    assert load_description(path) == desc
    model = build(desc)
    c = count(desc)
    assert c.params == sum(p.numel() for p in model.parameters())
    for bc in c.blocks:
        traced = block_flops(bc.site, desc)
        assert abs(bc.cost.flops - traced) <= 0.005 * traced, (name, bc.site.name, bc.cost.flops, traced)
    x = torch.randn(2, desc.in_channels, desc.resolution, desc.resolution)
    out = model(x, torch.tensor([3, 700]), torch.randn(2, desc.text_tokens, desc.text_dim))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_new_axes_name_their_blocks_and_leave_older_keys_alone():
    keys = {s.key for _, s in block_specs(_tiny(kv_heads=1, qk_norm="rms", kv_compression=2))}
    assert any(",kvh=1,qkn=rms,kvc=2)" in k for k in keys)
    assert any(",exp=2)" in k for _, s in block_specs(_separable(2.0)) for k in [s.key])
    plain = {s.key for _, s in block_specs(preset("tiny"))}
    assert not any("kvh=" in k or "qkn=" in k or "kvc=" in k or "exp=" in k for k in plain)
    assert {s.key for _, s in block_specs(_tiny(kv_heads=4))} == {s.key for _, s in block_specs(_tiny())}  # 4 of 4: MHA


def test_multi_query_and_expansion_change_parameters_as_they_should():
    mha, mqa = count(_tiny()), count(_tiny(kv_heads=1))
    # keys and values shrink from 64 to 16 wide (4 heads of 16) in self- and cross-attention
    assert mha.params - mqa.params == 2 * (64 * 48 + 32 * 48)
    assert count(_separable(2.0)).params > count(_separable(1.0)).params
    model = build(_separable(2.0))
    conv = model.stages["up1"][0].conv1
    assert conv.expand.out_channels == 2 * conv.expand.in_channels and conv.depthwise.groups == conv.expand.out_channels


def test_grouped_query_with_one_group_per_head_is_multi_head_attention():
    torch.manual_seed(0)
    a = build(_tiny())
    b = build(_tiny(kv_heads=4))
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 4, 16, 16)
    ctx = torch.randn(1, 8, 32)
    assert torch.allclose(a(x, torch.tensor([5]), ctx), b(x, torch.tensor([5]), ctx))


def test_kv_compression_attends_to_fewer_tokens():
    torch.manual_seed(0)
    model = build(_tiny(kv_compression=2))
    attn = model.stages["down1"][1].transformer_blocks[0].attn1
    seen = {}
    attn.to_k.register_forward_hook(lambda m, i, o: seen.__setitem__("tokens", o.shape[1]))
    model(torch.randn(1, 4, 16, 16), torch.tensor([5]), torch.randn(1, 8, 32))
    assert seen["tokens"] == (8 // 2) ** 2  # an 8x8 map, keys from 4x4


@pytest.mark.parametrize("change, field", [
    (dict(kv_heads=3), "kv_heads"), (dict(qk_norm="l2"), "qk_norm"), (dict(kv_compression=3), "kv_compression"),
    (dict(kv_compression=2, self_attention=False), "kv_compression"),
])
def test_bad_values_of_the_new_axes_name_the_field(change, field):
    with pytest.raises(ConfigError, match=f"stages.down1.blocks\\[1\\].{field}"):
        _tiny(**change)


def test_an_expansion_needs_a_separable_conv():
    d = preset("tiny")
    with pytest.raises(ConfigError, match="expansion: an expansion needs conv: separable"):
        d.with_blocks("up1", [ResnetBlock(expansion=2.0), *d.stage("up1").blocks[1:]])


def test_the_proxy_rule_keeps_grouped_query_heads_dividing():
    small = scale(preset("tiny").with_blocks("down1", [preset("tiny").block("down1", 0),
                                                       TransformerBlock(heads=8, kv_heads=4)]), width=0.5)
    b = small.block("down1", 1)
    assert b.num_heads(small.channels[1]) % b.num_kv_heads(small.channels[1]) == 0


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_axis_exports_to_onnx_and_matches(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from archlab.convert import ForwardWrapper, example_inputs, export_onnx

    desc = VARIANTS[name]()
    torch.manual_seed(0)
    wrapper, inputs = ForwardWrapper(build(desc)).eval(), example_inputs(desc)
    with torch.no_grad():
        expected = wrapper(*inputs).numpy()
    export_onnx(wrapper, inputs, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "coreml"])
def test_every_new_axis_together_converts_for_phones_and_litert_matches_pytorch(fmt, tmp_path):
    from archlab.convert import ForwardWrapper, example_inputs, export_coreml, export_tflite, missing_modules

    module = {"tflite": "litert_torch", "coreml": "coremltools"}[fmt]
    if missing_modules(module):
        pytest.skip(f"{module} is not installed")
    desc = _tiny(kv_heads=1, qk_norm="rms", kv_compression=2)
    desc = desc.with_blocks("up1", [ResnetBlock(conv="separable", expansion=2.0), *desc.stage("up1").blocks[1:]])
    wrapper, inputs = ForwardWrapper(build(desc)).eval(), example_inputs(desc)
    path = tmp_path / ("m.tflite" if fmt == "tflite" else "m.mlpackage")
    (export_tflite if fmt == "tflite" else export_coreml)(wrapper, inputs, path)
    assert path.exists()
    if fmt == "coreml":
        return  # Core ML runs a model only on macOS; here the conversion is the check
    from helpers import run_tflite

    with torch.no_grad():
        expected = wrapper(*inputs).numpy()
    assert np.abs(run_tflite(path, inputs) - expected).max() < 1e-4  # the LiteRT model computes what the PyTorch one does


def test_the_snapgen_preset_is_a_member_of_the_snapgen_space_and_near_379m():
    from archlab import load_space

    space = load_space("snapgen")
    first = space.decode({n: space.options[n][0] for n in space.active(3)} | {"depth": 3}, name="snapgen")
    assert first == preset("snapgen")  # each option list starts with SnapGen's own choice
    assert abs(count(preset("snapgen")).params / 379e6 - 1) <= 0.03
    assert "transformer.kv_heads" in space.active(3) and "level0.first" in space.active(3)
    assert "transformer.kv_heads" not in load_space("mobilediffusion").active(3)  # older spaces keep their choices


def test_the_snapgen_space_samples_valid_members():
    from archlab import load_space

    space = load_space("snapgen")
    for _, desc in space.samples(20, seed=0):
        assert count(desc).params > 0
