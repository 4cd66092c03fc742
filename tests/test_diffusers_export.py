"""Export to diffusers: UNet2DConditionModel.from_pretrained loads it with archlab's outputs, for every
architecture diffusers can express; the rest are refused in one line naming the feature."""

import pytest
import torch

from archlab import ConfigError, build, load_space, preset
from archlab.arch.diffusers_export import diffusers_config, export_diffusers
from archlab.arch.diffusers_import import from_diffusers
from archlab.arch.scaling import scale

diffusers = pytest.importorskip("diffusers")


def _expressible_members(n=3):
    """Members of the default space diffusers can express (SD-like choices), small."""
    space = load_space("mobilediffusion")
    found = []
    for _, desc in space.samples(400, seed=8):
        try:
            diffusers_config(desc)
        except ConfigError:
            continue
        found.append(scale(desc, width=0.1, resolution=16, text_dim=32))
        if len(found) == n:
            break
    return found


def _same_outputs(model, folder):
    theirs = diffusers.UNet2DConditionModel.from_pretrained(str(folder)).eval()
    d = model.description
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, d.in_channels, d.resolution, d.resolution, generator=g)
    ctx = torch.randn(2, d.text_tokens, d.text_dim, generator=g)
    t = torch.tensor([10, 700])
    kwargs = {}
    if d.addition is not None:
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(2, d.addition.pooled_dim, generator=g),
                                       "time_ids": torch.randn(2, d.addition.time_ids, generator=g)}
    with torch.no_grad():
        ours = model(x, t, ctx, pooled_text=kwargs.get("added_cond_kwargs", {}).get("text_embeds"),
                     time_ids=kwargs.get("added_cond_kwargs", {}).get("time_ids"))
        out = theirs(x, t, ctx, **kwargs).sample
    return float((ours - out).abs().max())


@pytest.mark.parametrize("name", ["sd15", "sdxl", "member-0", "member-1", "member-2"])
def test_small_expressible_models_load_in_diffusers_with_equal_outputs_and_round_trip(name, tmp_path):
    if name.startswith("member"):
        members = _expressible_members()
        assert len(members) == 3, "the default space holds SD-like members diffusers can express"
        desc = members[int(name[-1])]
    else:
        desc = scale(preset(name), width=0.1, resolution=16, text_dim=32)
    torch.manual_seed(1)
    model = build(desc).eval()
    export_diffusers(model, tmp_path / "unet")
    assert _same_outputs(model, tmp_path / "unet") < 1e-4
    back = from_diffusers(tmp_path / "unet")  # and the import reads it back: the same blocks, the same weights
    assert back.description.stages == desc.stages
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values()))


@pytest.mark.slow
def test_full_size_sd15_exports_to_diffusers_with_equal_outputs(tmp_path):
    torch.manual_seed(0)
    model = build(preset("sd15")).eval()
    export_diffusers(model, tmp_path / "unet")
    assert _same_outputs(model, tmp_path / "unet") < 1e-4


@pytest.mark.parametrize("desc, where", [
    (lambda: preset("mobilediffusion"), "self_attention False"),  # cross-attention-only blocks at 32x32
    (lambda: preset("snapgen"), "stages.down0.blocks[0].self_attention"),  # the cross-attention + FF block
    (lambda: scale(preset("sd15"), width=0.1).replace(time_dim=64), "time embedding"),
])
def test_what_diffusers_cannot_express_is_named(desc, where):
    with pytest.raises(ConfigError, match="diffusers' UNet2DConditionModel cannot express") as info:
        diffusers_config(desc())
    assert where in str(info.value)


def test_the_export_command_writes_a_diffusers_folder_or_refuses_before_writing(tmp_path):
    from typer.testing import CliRunner

    from archlab.cli import app

    runner = CliRunner()
    small = scale(preset("sd15"), width=0.1, resolution=16, text_dim=32)
    path = tmp_path / "small.yaml"
    path.write_text(small.to_yaml())
    ok = runner.invoke(app, ["export", str(path), "--out", str(tmp_path / "e"), "--format", "diffusers", "--no-onnx"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "e" / "diffusers" / "config.json").is_file()
    refused = runner.invoke(app, ["export", "mobilediffusion", "--out", str(tmp_path / "t"), "--format", "diffusers"])
    assert refused.exit_code == 2 and "cannot express" in refused.stderr and not (tmp_path / "t").exists()
