"""Quality: judging a candidate by training a short proxy and measuring it.

The pieces: data (the synthetic domain, image folders, Parquet, VAE latents), text
encoders, the proxy rule, training, metrics with standard errors, and the one
:class:`QualityPipeline` that puts them together under a :class:`QualityConfig`.
"""

from archlab.quality.config import (
    AmortisedConfig,
    ClipConfig,
    DataConfig,
    EvalConfig,
    ProxyConfig,
    QualityConfig,
    TextConfig,
    TrainConfig,
)
from archlab.quality.data import ImageFolder, ParquetImages, ShuffledCaptions, SyntheticData, open_data, split
from archlab.quality.diffusion import Schedule, ddim_sample, ddim_step, ddim_times
from archlab.quality import registry
from archlab.quality.metrics import Estimate, mean_se, paired
from archlab.quality.registry import Metric
from archlab.quality.pipeline import FirstLook, Judgement, QualityPipeline, resolve_device
from archlab.quality.proxy import proxy_description
from archlab.quality.text import OpenCLIP, OpenCLIPTextEncoder, SmallTextEncoder
from archlab.quality.train import ProxyModel, Trainer, TrainResult

__all__ = [
    "AmortisedConfig", "ClipConfig", "Metric", "DataConfig", "Estimate", "EvalConfig", "FirstLook", "ImageFolder", "Judgement", "OpenCLIP",
    "OpenCLIPTextEncoder", "ParquetImages", "ProxyConfig", "ProxyModel", "QualityConfig", "QualityPipeline", "Schedule",
    "ShuffledCaptions", "SmallTextEncoder", "SyntheticData", "TextConfig", "TrainConfig", "TrainResult", "Trainer",
    "ddim_sample", "ddim_step", "ddim_times", "mean_se", "open_data", "paired", "proxy_description", "registry", "resolve_device",
    "split",
]
