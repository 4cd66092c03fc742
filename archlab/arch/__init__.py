"""Architectures: the description, its blocks, the PyTorch builder, presets, scaling, and
the import of diffusers UNets.

>>> from archlab.arch import preset, build, removable
>>> build(preset("tiny")).stages["down1"][1].__class__.__name__
'Transformer2D'
"""

from archlab.arch.builder import UNet, build
from archlab.arch.description import (
    Block,
    Description,
    Downsample,
    Layout,
    ResnetBlock,
    Site,
    Stage,
    TextTimeEmbedding,
    TransformerBlock,
    Upsample,
    layout,
    stage_level,
    stage_names,
)
from archlab.arch.editing import block_summary, edit, removable
from archlab.arch.reading import description_from_dict, load_description
from archlab.arch.diffusers_import import (
    description_from_diffusers_config,
    diffusers_prefixes,
    from_diffusers,
    is_diffusers_folder,
    map_state_dict,
    read_description,
    read_weights,
)
from archlab.arch.modules import block_inputs, build_block
from archlab.arch.presets import preset, presets, resolve
from archlab.arch.scaling import scale

__all__ = [
    "Block", "Description", "Downsample", "Layout", "ResnetBlock", "Site", "Stage", "TextTimeEmbedding",
    "TransformerBlock", "UNet", "Upsample", "block_inputs", "block_summary", "build", "build_block",
    "description_from_diffusers_config", "description_from_dict", "diffusers_prefixes", "edit", "from_diffusers",
    "is_diffusers_folder", "layout", "load_description", "map_state_dict", "preset", "presets", "read_description",
    "read_weights", "removable", "resolve", "scale", "stage_level", "stage_names",
]
