"""Our UNet against diffusers' UNet2DConditionModel: same weights, same outputs, same sizes."""

import json

import pytest
import torch

from archlab import count, preset
from archlab.arch.diffusers_import import description_from_diffusers_config, from_diffusers, map_state_dict
from archlab.arch.builder import build
from archlab.errors import ConfigError

diffusers = pytest.importorskip("diffusers")

SD15_SMALL = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=[32, 64, 64, 64], layers_per_block=2,
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32,
)
SDXL_SMALL = dict(
    sample_size=16, in_channels=4, out_channels=4, block_out_channels=[32, 64, 64], layers_per_block=2,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    transformer_layers_per_block=[1, 2, 3], attention_head_dim=[2, 4, 4], use_linear_projection=True,
    cross_attention_dim=48, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=40 + 6 * 8,
)


def _save(tmp_path, config):
    torch.manual_seed(0)
    reference = diffusers.UNet2DConditionModel(**config).eval()
    with torch.no_grad():  # diffusers zero-inits nothing we rely on, but make every weight non-trivial
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    reference.save_pretrained(tmp_path, safe_serialization=True)
    return reference


@pytest.mark.parametrize("config", [SD15_SMALL, SDXL_SMALL], ids=["sd15-family", "sdxl-family"])
def test_outputs_match_diffusers(tmp_path, config):
    reference = _save(tmp_path, config)
    ours = from_diffusers(tmp_path).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    assert count(ours.description).params == sum(p.numel() for p in reference.parameters())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([10, 900])
    ctx = torch.randn(2, 7, config["cross_attention_dim"], generator=g)
    extra = {}
    if config.get("addition_embed_type"):
        extra = {"text_embeds": torch.randn(2, 40, generator=g), "time_ids": torch.rand(2, 6, generator=g) * 512}
    with torch.no_grad():
        expected = reference(x, t, ctx, added_cond_kwargs=extra or None).sample
        got = ours(x, t, ctx, pooled_text=extra.get("text_embeds"), time_ids=extra.get("time_ids"))
    assert (expected - got).abs().max().item() <= 1e-4


@pytest.mark.parametrize("name,config_name", [("sd15", "sd15"), ("sdxl", "sdxl")])
def test_full_size_presets_equal_diffusers_configs(name, config_name):
    """The presets are diffusers' SD-1.5 / SDXL layouts, counted on the meta device (no memory)."""
    configs = {
        "sd15": dict(cross_attention_dim=768, attention_head_dim=8),
        "sdxl": dict(block_out_channels=[320, 640, 1280], down_block_types=SDXL_SMALL["down_block_types"],
                     up_block_types=SDXL_SMALL["up_block_types"], transformer_layers_per_block=[1, 2, 10],
                     attention_head_dim=[5, 10, 20], use_linear_projection=True, cross_attention_dim=2048,
                     addition_embed_type="text_time", addition_time_embed_dim=256,
                     projection_class_embeddings_input_dim=2816, sample_size=128),
    }
    with torch.device("meta"):
        reference = diffusers.UNet2DConditionModel(**configs[config_name])
        ours = build(preset(name))
    n = sum(p.numel() for p in reference.parameters())
    assert n == {"sd15": 859_520_964, "sdxl": 2_567_463_684}[name]
    assert count(preset(name)).params == n == sum(p.numel() for p in ours.parameters())
    # every diffusers key maps onto ours with its shape
    mapped = map_state_dict(ours, reference.state_dict())
    assert len(mapped) == len(reference.state_dict())


def test_missing_or_misshapen_keys_are_named(tmp_path):
    reference = _save(tmp_path, SD15_SMALL)
    ours = build(description_from_diffusers_config(SD15_SMALL))
    weights = dict(reference.state_dict())
    weights.pop("mid_block.attentions.0.proj_in.weight")
    with pytest.raises(ConfigError, match="mid_block.attentions.0.proj_in.weight: missing"):
        map_state_dict(ours, weights)
    weights = dict(reference.state_dict())
    weights["conv_in.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="conv_in.weight: has shape"):
        map_state_dict(ours, weights)
    weights = dict(reference.state_dict())
    weights["extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="extra.weight: is not used"):
        map_state_dict(ours, weights)


def test_unsupported_config_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**SD15_SMALL, "resnet_time_scale_shift": "scale_shift"}))
    with pytest.raises(ConfigError, match="config.resnet_time_scale_shift"):
        from_diffusers(tmp_path)
    with pytest.raises(ConfigError, match="no config.json"):
        from_diffusers(tmp_path / "nowhere")
