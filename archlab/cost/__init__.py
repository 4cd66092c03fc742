"""Cost: analytic parameters and FLOPs, block keys, latency backends, measured latency
tables, and the one predictor that scores descriptions from them.

>>> from archlab.cost import Predictor
>>> from archlab import preset
>>> Predictor().score(preset("tiny")).params
985444
"""

from archlab.cost.backends import (
    BACKENDS,
    BackendUnavailable,
    LatencyBackend,
    LiteRTBackend,
    OnnxRuntimeBackend,
    Timing,
    TorchCPUBackend,
    TorchCUDABackend,
    get_backend,
    get_backend_class,
)
from archlab.cost.counting import Cost, site_cost, stem_cost
from archlab.cost.keys import BlockSpec, block_specs, distinct_specs, spec_of
from archlab.cost.predict import BlockCount, ModelCount, Predictor, Score, count, latency_metric, parse_metric
from archlab.cost.table import LatencyTable, MissingBlocks, Overhead, fit_overhead

__all__ = [
    "BACKENDS", "BackendUnavailable", "BlockCount", "BlockSpec", "Cost", "LatencyBackend", "LatencyTable", "LiteRTBackend",
    "MissingBlocks", "ModelCount", "OnnxRuntimeBackend", "Overhead", "Predictor", "Score", "Timing", "TorchCPUBackend",
    "TorchCUDABackend", "block_specs", "count", "distinct_specs", "fit_overhead", "get_backend", "get_backend_class",
    "latency_metric", "parse_metric", "site_cost", "spec_of", "stem_cost",
]
