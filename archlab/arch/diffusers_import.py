"""Load a diffusers UNet2DConditionModel folder (config.json + safetensors) into our UNet.

The mapping is explicit: every one of our parameters names its diffusers key, every key
must exist with the same shape, and every diffusers key must be used. Only local folders
are read; nothing is downloaded.

SD-1.5 and SDXL configs (and small configs of the same families) are supported; anything
else in the config is refused with the field named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file

from archlab.arch.builder import UNet, build
from archlab.arch.description import (
    Description,
    Downsample,
    ResnetBlock,
    Stage,
    TextTimeEmbedding,
    TransformerBlock,
    Upsample,
    stage_level,
)
from archlab.errors import ConfigError

# config fields whose value must be the one given (diffusers' defaults, SD/SDXL's values)
_REQUIRED_VALUES: dict[str, tuple[Any, ...]] = {
    "act_fn": ("silu",),
    "center_input_sample": (False,),
    "class_embed_type": (None,),
    "conv_in_kernel": (3,),
    "conv_out_kernel": (3,),
    "downsample_padding": (1,),
    "dual_cross_attention": (False,),
    "encoder_hid_dim": (None,),
    "flip_sin_to_cos": (True,),
    "freq_shift": (0,),
    "mid_block_scale_factor": (1, 1.0),
    "mid_block_type": ("UNetMidBlock2DCrossAttn", "UNetMidBlock2D"),
    "norm_eps": (1e-5,),
    "only_cross_attention": (False,),
    "resnet_time_scale_shift": ("default",),
    "time_cond_proj_dim": (None,),
    "time_embedding_type": ("positional",),
    "time_embedding_dim": (None,),
    "timestep_post_act": (None,),
    "attention_type": ("default",),
}


def _per_level(config: Mapping[str, Any], key: str, levels: int, default: Any = None) -> list[Any]:
    value = config.get(key, default)
    if isinstance(value, (list, tuple)):
        if len(value) != levels:
            raise ConfigError(f"config.{key}", f"has {len(value)} entries for {levels} levels")
        return list(value)
    return [value] * levels


def _first(entry: Any) -> int:
    return entry[0] if isinstance(entry, (list, tuple)) else entry


def description_from_diffusers_config(config: Mapping[str, Any], name: str = "diffusers") -> Description:
    """The description of the UNet a diffusers ``config.json`` defines."""
    for key, allowed in _REQUIRED_VALUES.items():
        if key in config and config[key] not in allowed:
            raise ConfigError(f"config.{key}", f"{config[key]!r} is not supported; allowed: {', '.join(map(repr, allowed))}")
    channels = list(config.get("block_out_channels", (320, 640, 1280, 1280)))
    n = len(channels)
    down_types = list(config.get("down_block_types", ["CrossAttnDownBlock2D"] * (n - 1) + ["DownBlock2D"]))
    up_types = list(config.get("up_block_types", ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n - 1)))
    for key, types, allowed in (("down_block_types", down_types, ("CrossAttnDownBlock2D", "DownBlock2D")),
                                ("up_block_types", up_types, ("CrossAttnUpBlock2D", "UpBlock2D"))):
        if len(types) != n:
            raise ConfigError(f"config.{key}", f"has {len(types)} entries for {n} levels")
        for i, t in enumerate(types):
            if t not in allowed:
                raise ConfigError(f"config.{key}[{i}]", f"{t!r} is not supported; allowed: {', '.join(allowed)}")
    text_dim = config.get("cross_attention_dim", 1280)
    if not isinstance(text_dim, int):
        raise ConfigError("config.cross_attention_dim", "per-block cross_attention_dim is not supported")
    layers_per_block = _per_level(config, "layers_per_block", n, 2)
    heads = _per_level(config, "num_attention_heads", n) if config.get("num_attention_heads") else _per_level(config, "attention_head_dim", n, 8)
    t_layers = _per_level(config, "transformer_layers_per_block", n, 1)
    reverse = config.get("reverse_transformer_layers_per_block")
    if reverse is not None and (not isinstance(reverse, (list, tuple)) or len(reverse) != n):
        raise ConfigError("config.reverse_transformer_layers_per_block", f"must list one entry per up block ({n})")
    projection = "linear" if config.get("use_linear_projection", False) else "conv"

    def attn(level: int, layers: int | None = None) -> TransformerBlock:
        return TransformerBlock(layers=layers if layers is not None else _first(t_layers[level]), heads=heads[level],
                                projection=projection)

    def per_block(entry: Any, count: int, where: str) -> list[int]:
        values = list(entry) if isinstance(entry, (list, tuple)) else [entry] * count
        if len(values) != count or not all(isinstance(v, int) and v >= 1 for v in values):
            raise ConfigError(where, f"{entry!r} must give {count} positive layer counts")
        return values

    stages: list[Stage] = []
    for level in range(n):
        cross = down_types[level] == "CrossAttnDownBlock2D"
        blocks: list[Any] = []
        depths = per_block(t_layers[level], layers_per_block[level], f"config.transformer_layers_per_block[{level}]")
        for j in range(layers_per_block[level]):
            blocks.append(ResnetBlock())
            if cross:
                blocks.append(attn(level, depths[j]))
        if level < n - 1:
            blocks.append(Downsample())
        stages.append(Stage(f"down{level}", tuple(blocks)))
    if config.get("mid_block_type", "UNetMidBlock2DCrossAttn") == "UNetMidBlock2D":
        stages.append(Stage("mid", (ResnetBlock(), ResnetBlock())))
    else:
        stages.append(Stage("mid", (ResnetBlock(), attn(n - 1), ResnetBlock())))
    for i, kind in enumerate(up_types):
        level = n - 1 - i
        blocks = []
        count = layers_per_block[level] + 1
        entry = reverse[i] if reverse is not None else t_layers[level]
        depths = per_block(entry, count, f"config.reverse_transformer_layers_per_block[{i}]")
        for j in range(count):
            blocks.append(ResnetBlock())
            if kind == "CrossAttnUpBlock2D":
                blocks.append(attn(level, depths[j]))
        if level > 0:
            blocks.append(Upsample())
        stages.append(Stage(f"up{level}", tuple(blocks)))

    addition = None
    if config.get("addition_embed_type") is not None:
        if config["addition_embed_type"] != "text_time":
            raise ConfigError("config.addition_embed_type", f"{config['addition_embed_type']!r} is not supported; allowed: 'text_time'")
        proj_dim = config.get("addition_time_embed_dim") or 256
        in_features = config.get("projection_class_embeddings_input_dim")
        if not isinstance(in_features, int) or in_features <= 6 * proj_dim:
            raise ConfigError("config.projection_class_embeddings_input_dim", f"{in_features!r} must exceed 6 x addition_time_embed_dim")
        addition = TextTimeEmbedding(pooled_dim=in_features - 6 * proj_dim, time_ids=6, time_proj_dim=proj_dim)
    return Description(
        name=name,
        channels=tuple(channels),
        stages=tuple(stages),
        in_channels=config.get("in_channels", 4),
        out_channels=config.get("out_channels", 4),
        text_dim=text_dim,
        resolution=config.get("sample_size", 64) or 64,
        norm_groups=config.get("norm_num_groups", 32),
        addition=addition,
    )


def diffusers_prefixes(desc: Description) -> dict[str, str]:
    """Our module prefix -> diffusers' for every block: ``stages.up2.3`` -> ``up_blocks.1.attentions.1``.

    Positions are counted per stage in order: the i-th ResNet of down level L is
    ``down_blocks.L.resnets.i``, and so on, exactly as diffusers lays out SD's blocks.
    """
    out = {"conv_in": "conv_in", "time_embedding": "time_embedding", "conv_norm_out": "conv_norm_out", "conv_out": "conv_out"}
    if desc.addition is not None:
        out["add_embedding"] = "add_embedding"
    for stage in desc.stages:
        level = stage_level(stage.name, desc.levels)
        if stage.name == "mid":
            base = "mid_block"
        elif stage.name.startswith("down"):
            base = f"down_blocks.{level}"
        else:
            base = f"up_blocks.{desc.levels - 1 - level}"
        counters = {"resnets": 0, "attentions": 0}
        for i, block in enumerate(stage.blocks):
            if isinstance(block, (Downsample, Upsample)):
                out[f"stages.{stage.name}.{i}"] = f"{base}.{'downsamplers' if isinstance(block, Downsample) else 'upsamplers'}.0"
                continue
            group = "resnets" if isinstance(block, ResnetBlock) else "attentions"
            out[f"stages.{stage.name}.{i}"] = f"{base}.{group}.{counters[group]}"
            counters[group] += 1
    return out


def map_state_dict(model: UNet, source: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict filled from a diffusers one; raises naming any missing, extra or misshapen key."""
    prefixes = diffusers_prefixes(model.description)
    ours = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, tensor in ours.items():
        head = next((p for p in sorted(prefixes, key=len, reverse=True) if key == p or key.startswith(p + ".")), None)
        if head is None:
            raise ConfigError(key, "has no diffusers counterpart")
        theirs = prefixes[head] + key[len(head):]
        if theirs not in source:
            raise ConfigError(theirs, f"missing from the diffusers weights (needed for {key})")
        if tuple(source[theirs].shape) != tuple(tensor.shape):
            raise ConfigError(theirs, f"has shape {tuple(source[theirs].shape)}, {key} needs {tuple(tensor.shape)}")
        mapped[key] = source[theirs]
        used.add(theirs)
    extra = sorted(set(source) - used)
    if extra:
        raise ConfigError(extra[0], f"is not used by the description ({len(extra)} diffusers keys left over)")
    return mapped


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a local diffusers UNet folder (one safetensors file or an index of shards)."""
    folder = Path(folder)
    single = folder / "diffusion_pytorch_model.safetensors"
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        weights: dict[str, torch.Tensor] = {}
        for shard in shards:
            weights.update(load_file(str(folder / shard)))
        return weights
    raise ConfigError(str(folder), "has no diffusion_pytorch_model.safetensors (archlab reads safetensors only)")


def is_diffusers_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a diffusers UNet's ``config.json``."""
    return (Path(path) / "config.json").is_file()


def read_description(folder: str | Path, *, name: str | None = None) -> Description:
    """The description of a local diffusers UNet folder, from its ``config.json`` alone."""
    folder = Path(folder)
    if not is_diffusers_folder(folder):
        raise ConfigError(str(folder), "has no config.json; give a diffusers UNet folder (a pipeline's unet/)")
    try:
        config = json.loads((folder / "config.json").read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(str(folder / "config.json"), f"is not valid JSON: {exc.msg}") from None
    return description_from_diffusers_config(config, name=name or folder.name)


def from_diffusers(folder: str | Path, *, name: str | None = None) -> UNet:
    """Our UNet with the weights of a local diffusers UNet folder.

    ``folder`` holds ``config.json`` and ``diffusion_pytorch_model.safetensors`` (for a full
    pipeline, pass its ``unet/`` subfolder). Every key and shape is checked both ways.
    """
    model = build(read_description(folder, name=name))
    model.load_state_dict(map_state_dict(model, read_weights(folder)), strict=True)
    return model
