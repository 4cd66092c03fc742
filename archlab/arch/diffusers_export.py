"""A description as diffusers' UNet2DConditionModel: its ``config.json`` and weights under diffusers' names.

The inverse of :mod:`archlab.arch.diffusers_import`, for every architecture diffusers can
express: regular 3x3 convs with SiLU, SD's transformer (self- and cross-attention, GEGLU x4,
multi-head softmax attention, one projection kind throughout), a transformer after every
ResNet of a level or after none, up stages one ResNet longer than their down stage, heads
the same within a level, and a mid block of ResNet, transformer, ResNet (with the lowest
level's layer count) or of two ResNets. For anything else :func:`diffusers_config` raises
one line naming the feature and where it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from archlab.arch.builder import UNet
from archlab.arch.description import Description, Downsample, ResnetBlock, TransformerBlock, Upsample
from archlab.arch.diffusers_import import diffusers_prefixes
from archlab.errors import ConfigError
from archlab.files import write_text


def _refuse(where: str, what: str) -> None:
    raise ConfigError(where, f"diffusers' UNet2DConditionModel cannot express {what}; export without --format diffusers")


def _check_block(where: str, b: Any) -> None:
    if isinstance(b, ResnetBlock):
        if b.conv != "regular" or b.kernel != 3 or b.activation != "silu" or b.expansion != 1:
            _refuse(where, f"this ResNet (conv {b.conv}, kernel {b.kernel}, {b.activation}, expansion {b.expansion:g})")
    elif isinstance(b, TransformerBlock):
        for attr, want in (("self_attention", True), ("cross_attention", True), ("ff", "geglu"), ("ff_ratio", 4.0),
                           ("shared_kv", False), ("attention", "softmax"), ("kv_heads", None), ("qk_norm", "none"),
                           ("kv_compression", 1)):
            if getattr(b, attr) != want:
                _refuse(f"{where}.{attr}", f"{attr} {getattr(b, attr)!r} (it has {attr} {want!r} only)")
    elif b.conv != "regular":
        _refuse(where, f"a {b.kind} with {b.conv} convs")


def _units(desc: Description, stage: str) -> tuple[int, list[int]]:
    """ResNets in a stage and the layers of the transformer after each (0: none), checked to be diffusers' pattern."""
    blocks = [b for b in desc.stage(stage).blocks if not isinstance(b, (Downsample, Upsample))]
    layers: list[int] = []
    i = 0
    while i < len(blocks):
        if not isinstance(blocks[i], ResnetBlock):
            _refuse(f"stages.{stage}.blocks[{i}]", "a transformer that does not follow a ResNet")
        follows = i + 1 < len(blocks) and isinstance(blocks[i + 1], TransformerBlock)
        layers.append(blocks[i + 1].layers if follows else 0)
        i += 2 if follows else 1
    if any(layers) and not all(layers):
        _refuse(f"stages.{stage}", "a transformer after some ResNets of a level but not all of them")
    return len(layers), layers


def diffusers_config(desc: Description) -> dict[str, Any]:
    """The ``config.json`` of ``desc`` as a UNet2DConditionModel (see the module docstring)."""
    for stage in desc.stages:
        for i, b in enumerate(stage.blocks):
            _check_block(f"stages.{stage.name}.blocks[{i}]", b)
    transformers = [b for s in desc.stages for b in s.blocks if isinstance(b, TransformerBlock)]
    projections = {b.projection for b in transformers}
    if len(projections) > 1:
        _refuse("transformer.projection", "linear and conv projections in one model")
    n = desc.levels
    down_types, up_types, per_level, heads, reverse, layers_per_block = [], [], [], [], [], []
    for level in range(n):
        width = desc.channels[level]
        k, down_layers = _units(desc, f"down{level}")
        k_up, up_layers = _units(desc, f"up{level}")
        if k_up != k + 1:
            _refuse(f"stages.up{level}", f"{k_up} ResNets where the down stage has {k} (diffusers' up stages have one more)")
        if len(set(down_layers)) > 1:
            _refuse(f"stages.down{level}", "transformers of different depths in one down stage")
        level_heads = {b.num_heads(width) for s in (f"down{level}", f"up{level}") for b in desc.stage(s).blocks
                       if isinstance(b, TransformerBlock)}
        if len(level_heads) > 1:
            _refuse(f"stages.down{level}", "different head counts at one level")
        down_types.append("CrossAttnDownBlock2D" if down_layers[0] else "DownBlock2D")
        up_types.append("CrossAttnUpBlock2D" if up_layers[0] else "UpBlock2D")
        per_level.append(down_layers[0] or 1)
        heads.append(level_heads.pop() if level_heads else max(1, width // 64))
        reverse.append(tuple(up_layers) if up_layers[0] else (1,) * k_up)
        layers_per_block.append(k)
    mid = [b for b in desc.stage("mid").blocks]
    if [type(b) for b in mid] == [ResnetBlock, TransformerBlock, ResnetBlock]:
        mid_type = "UNetMidBlock2DCrossAttn"
        if down_types[-1] == "CrossAttnDownBlock2D" and mid[1].layers != per_level[-1]:
            _refuse("stages.mid.blocks[1].layers", f"a {mid[1].layers}-layer mid transformer under a {per_level[-1]}-layer "
                    "lowest level (diffusers gives the mid block the lowest level's count)")
        per_level[-1] = mid[1].layers
        if mid[1].num_heads(desc.channels[-1]) != heads[-1]:
            if down_types[-1] == "CrossAttnDownBlock2D" or up_types[-1] == "CrossAttnUpBlock2D":
                _refuse("stages.mid.blocks[1]", "a mid transformer with other heads than the lowest level")
            heads[-1] = mid[1].num_heads(desc.channels[-1])
    elif [type(b) for b in mid] == [ResnetBlock, ResnetBlock]:
        mid_type = "UNetMidBlock2D"
    else:
        _refuse("stages.mid", "a mid block other than ResNet, transformer, ResNet or two ResNets")
    if desc.time_dim is not None and desc.time_dim != 4 * desc.channels[0]:
        _refuse("time_dim", f"a time embedding of {desc.time_dim} (diffusers: 4 x the first width)")
    config: dict[str, Any] = {
        "_class_name": "UNet2DConditionModel", "sample_size": desc.resolution, "in_channels": desc.in_channels,
        "out_channels": desc.out_channels, "down_block_types": down_types, "mid_block_type": mid_type,
        "up_block_types": list(reversed(up_types)), "block_out_channels": list(desc.channels),
        "layers_per_block": layers_per_block, "norm_num_groups": desc.norm_groups, "cross_attention_dim": desc.text_dim,
        "attention_head_dim": heads, "transformer_layers_per_block": per_level,
        "reverse_transformer_layers_per_block": [list(r) for r in reversed(reverse)],
        "use_linear_projection": projections == {"linear"}, "act_fn": "silu", "norm_eps": 1e-5,
        "flip_sin_to_cos": True, "freq_shift": 0, "downsample_padding": 1,
    }
    if desc.addition is not None:
        a = desc.addition
        if a.time_ids != 6:
            _refuse("addition.time_ids", f"{a.time_ids} time ids (SDXL's 6)")
        config.update({"addition_embed_type": "text_time", "addition_time_embed_dim": a.time_proj_dim,
                       "projection_class_embeddings_input_dim": a.in_features})
    return config


def diffusers_state_dict(model: UNet) -> dict[str, torch.Tensor]:
    """The model's weights under diffusers' names (every key mapped; one that is not is a bug)."""
    prefixes = diffusers_prefixes(model.description)
    out = {}
    for key, tensor in model.state_dict().items():
        head = next((p for p in sorted(prefixes, key=len, reverse=True) if key == p or key.startswith(p + ".")), None)
        if head is None:
            raise ValueError(f"{key} has no diffusers name")
        out[prefixes[head] + key[len(head):]] = tensor.detach().contiguous().cpu()
    return out


def export_diffusers(model: UNet, folder: str | Path) -> Path:
    """Write ``folder/config.json`` and ``folder/diffusion_pytorch_model.safetensors``: a UNet2DConditionModel
    folder (``from_pretrained(folder)``); refused in one line before anything is written if diffusers cannot
    express the model."""
    from safetensors.torch import save_file

    config = diffusers_config(model.description)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "diffusion_pytorch_model.safetensors"
    tmp = folder / ".diffusion_pytorch_model.safetensors.tmp"
    save_file(diffusers_state_dict(model), str(tmp), metadata={"format": "pt"})
    tmp.replace(weights)
    write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    return folder

