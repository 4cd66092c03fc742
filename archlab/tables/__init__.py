"""The latency-table workflow: build, time, sample, calibrate, validate and check tables, and
tables from phones (export blocks, import their timings), for the spaces and descriptions a
table is measured for.

This wing sits above ``search/`` (it samples calibration and validation models from search
spaces); ``archlab.cost`` below it is the model alone: counting, block keys, the table file,
the predictor, the backends and machine fingerprints.
"""

from archlab.tables.build import (
    SweepSamples,
    backend_for,
    measure_blocks,
    measure_missing,
    open_for_build,
    refuse_foreign,
    table_allocator,
)
from archlab.tables.calibration import (
    calibrate,
    fit_points,
    flops_baseline,
    refit,
    store_fit,
    stored_calibration,
)
from archlab.tables.drift import DRIFT_LIMIT, check, drift_verdict
from archlab.tables.phones import (
    FORMATS,
    SUFFIXES,
    Manifest,
    ManifestBlock,
    ManifestModel,
    export_blocks,
    import_results,
    parse_benchmark_output,
    read_manifest,
)
from archlab.tables.sampling import (
    DISAGREEMENT_POOL,
    PICKS,
    most_disagreeing,
    sample_table_models,
    table_space,
)
from archlab.tables.sources import (
    T,
    at_quantiles,
    resolve_sources,
    sample_models,
    source_specs,
    spread_by_size,
)
from archlab.tables.timing import (
    ModelTimings,
    measured,
    model_file_name,
    pass_limit,
    time_model,
)
from archlab.tables.validation import (
    accuracy,
    closer_share,
    disagreement,
    paired_bootstrap,
    score,
    validate,
    versus_flops,
)
from archlab.tables.validation_result import (
    FIGURES,
    GOALS,
    Accuracy,
    Goals,
    ModelResult,
    Validation,
)

__all__ = ["Accuracy", "DISAGREEMENT_POOL", "DRIFT_LIMIT", "FIGURES", "FORMATS", "GOALS", "Goals", "ModelResult", "Validation", "Manifest", "ManifestBlock", "ManifestModel", "ModelTimings", "PICKS", "SUFFIXES", "SweepSamples", "T", "accuracy", "at_quantiles", "backend_for", "calibrate", "check", "closer_share", "disagreement", "drift_verdict", "export_blocks", "fit_points", "flops_baseline", "import_results", "measure_blocks", "measure_missing", "measured", "model_file_name", "most_disagreeing", "open_for_build", "paired_bootstrap", "parse_benchmark_output", "pass_limit", "read_manifest", "refit", "refuse_foreign", "resolve_sources", "sample_models", "sample_table_models", "score", "source_specs", "spread_by_size", "store_fit", "stored_calibration", "table_allocator", "table_space", "time_model", "validate", "versus_flops"]
