"""archlab: architecture search and profiling for mobile text-to-image diffusion UNets.

>>> import archlab
>>> d = archlab.preset("mobilediffusion")
>>> c = archlab.count(d)
>>> c.conv_blocks, c.self_attention, c.cross_attention
(11, 15, 18)
>>> "sd15" in archlab.presets()
True
"""

from archlab.arch import (
    Description,
    Downsample,
    ResnetBlock,
    Site,
    Stage,
    TextTimeEmbedding,
    TransformerBlock,
    UNet,
    Upsample,
    build,
    description_from_dict,
    from_diffusers,
    layout,
    load_description,
    preset,
    presets,
    removable,
    resolve,
)
from archlab.cost import LatencyTable, Predictor, count
from archlab.errors import ArchlabError, ConfigError
from archlab.search.space import SearchSpace, load_space

from archlab import distill  # noqa: E402,F401  (last: it registers the few_step_score quality metric)

__all__ = [
    "ArchlabError", "ConfigError", "Description", "Downsample", "LatencyTable", "Predictor", "ResnetBlock", "SearchSpace",
    "Site", "Stage", "TextTimeEmbedding", "TransformerBlock", "UNet", "Upsample", "build", "count",
    "description_from_dict", "from_diffusers", "layout", "load_description", "load_space", "preset", "presets",
    "removable", "resolve",
]
