"""archlab: architecture search and profiling for mobile text-to-image diffusion UNets.

>>> import archlab
>>> d = archlab.preset("mobilediffusion")
>>> c = archlab.count(d)
>>> c.conv_blocks, c.self_attention, c.cross_attention
(11, 15, 18)
"""

from archlab.arch.builder import UNet, build
from archlab.arch.description import (
    Description,
    Downsample,
    ResnetBlock,
    Site,
    Stage,
    TextTimeEmbedding,
    TransformerBlock,
    Upsample,
    description_from_dict,
    layout,
    load_description,
)
from archlab.arch.presets import list_presets, preset, resolve
from archlab.cost.counting import count
from archlab.errors import ArchlabError, ConfigError

__all__ = [
    "ArchlabError", "ConfigError", "Description", "Downsample", "ResnetBlock", "Site", "Stage",
    "TextTimeEmbedding", "TransformerBlock", "UNet", "Upsample", "build", "count",
    "description_from_dict", "layout", "list_presets", "load_description", "preset", "resolve",
]
