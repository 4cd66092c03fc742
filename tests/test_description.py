"""The description: round trips, layout and skips, and one clear message per validation error."""

import dataclasses

import pytest
import yaml

from archlab import (ConfigError, Description, ResnetBlock, TransformerBlock, description_from_dict, layout,
                     presets, load_description, preset)

TINY = yaml.safe_load("""
name: t
channels: [32, 64]
text_dim: 32
defaults:
  transformer: {heads: 2}
stages:
  down0: {blocks: [resnet, downsample]}
  down1: {blocks: [resnet, transformer]}
  mid: {blocks: [resnet, transformer, resnet]}
  up1: {blocks: [resnet, transformer, resnet, upsample]}
  up0: {blocks: [resnet, resnet]}
""")


@pytest.mark.parametrize("name", presets())
def test_round_trip_yaml_and_json(name, tmp_path):
    d = preset(name)
    assert description_from_dict(yaml.safe_load(d.to_yaml())) == d
    path = tmp_path / "d.json"
    path.write_text(d.to_json())
    assert load_description(path) == d


def test_defaults_apply_and_dump_is_compact():
    d = description_from_dict(TINY)
    assert d.block("down1", 1) == TransformerBlock(heads=2)
    assert d.to_dict()["stages"]["down0"]["blocks"] == ["resnet", "downsample"]


def test_layout_follows_sd_skips():
    sites = {s.name: s for s in layout(preset("sd15"))}
    assert sites["up3.0"].in_channels == 2560 and sites["up3.0"].skip_channels == 1280
    assert sites["up0.0"].in_channels == 640 + 320          # up1's output + down0's second unit
    assert sites["up0.4"].in_channels == 320 + 320          # last: conv_in's output
    assert sites["up1.4"].in_channels == 640 + 320          # down0's downsample output
    assert sites["down1.4"].resolution == 32 and sites["up0.0"].resolution == 64


def test_unused_skips_are_reported_not_refused():
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["stages"]["up0"]["blocks"] = ["resnet"]
    lay = layout(description_from_dict(data))
    assert lay.unused_skips == ("level 0: 1 of 2",)


def _error(mutate) -> str:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    mutate(data)
    with pytest.raises(ConfigError) as info:
        description_from_dict(data)
    return str(info.value)


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"heads": 3}}),
     "stages.down1.blocks[1].heads: 64 channels is not divisible by 3 heads"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"heads": 2, "head_dim": 8}}),
     "stages.down1.blocks[1]: give heads or head_dim, not both"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"ff": "relu"}}),
     "stages.down1.blocks[1].ff: 'relu' is not one of geglu, swiglu, gelu, swish"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"attention": "linear"}}),
     "stages.down1.blocks[1].attention: 'linear' is not one of softmax, relu"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"self_attention": False, "cross_attention": False}}),
     "both off"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"ff_ratio": 2.01}}),
     "stages.down1.blocks[1].ff_ratio: 64 x 2.01 is not a whole hidden width"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"layers": 0}}),
     "stages.down1.blocks[1].layers: 0 is not a positive integer"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(1, {"transformer": {"colour": 1}}),
     "stages.down1.blocks[1].colour: unknown field"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(0, {"resnet": {"conv": "dilated"}}),
     "stages.down1.blocks[0].conv: 'dilated' is not one of regular, separable"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(0, {"resnet": {"kernel": 4}}),
     "stages.down1.blocks[0].kernel: 4 is even"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(0, {"resnet": {"activation": "tanh"}}),
     "stages.down1.blocks[0].activation: 'tanh' is not one of silu, gelu, relu"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(0, "attention"),
     "stages.down1.blocks[0]: unknown block kind 'attention'"),
    (lambda d: d["stages"]["down1"]["blocks"].__setitem__(0, "transformer"),
     "stages.down1.blocks[0]: a transformer block cannot change width 32 -> 64; put a resnet block first"),
    (lambda d: d["stages"]["down0"]["blocks"].pop(),
     "stages.down0.blocks: must end with a downsample block"),
    (lambda d: d["stages"]["up0"]["blocks"].append("upsample"),
     "stages.up0.blocks[2]: an upsample block may only end an up stage below the top level"),
    (lambda d: d["stages"].pop("mid"), "stages.mid: is missing"),
    (lambda d: d["stages"].__setitem__("down7", {"blocks": []}), "stages.down7: is not a stage"),
    (lambda d: d.__setitem__("channels", [32, 60]), "channels[1]: 60 is not divisible by norm_groups 32"),
    (lambda d: d.__setitem__("resolution", 15), "resolution: 15 is not a positive multiple of 2^1"),
    (lambda d: d.__setitem__("text_dim", 0), "text_dim: 0 is not a positive integer"),
    (lambda d: d.__setitem__("colour", "red"), "colour: unknown field"),
    (lambda d: d.pop("stages"), "stages: is required"),
    (lambda d: d.__setitem__("defaults", {"resnet": {"heads": 2}}), "defaults.resnet.heads: unknown field"),
    (lambda d: d["stages"]["up0"].__setitem__("blocks", ["transformer"]),
     "stages.up0.blocks[0]: a transformer block cannot change width 64 -> 32"),
])
def test_each_validation_error_names_its_field(mutate, expected):
    assert expected in _error(mutate)


def test_invalid_file_messages(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_description(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_description(tmp_path / "missing.yaml")


def test_descriptions_are_frozen_and_editable_by_copy():
    d = preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "x"
    e = d.with_blocks("down1", [ResnetBlock(conv="separable"), TransformerBlock(heads=2)])
    assert e.block("down1", 0).conv == "separable" and d.block("down1", 0).conv == "regular"
    assert isinstance(e, Description)
