"""The drift check: a few calibration models timed again here, against the table's record."""


from typing import Any, Sequence

import numpy as np

from archlab.arch.reading import description_from_dict
from archlab.cost.backends import LatencyBackend
from archlab.cost.table import CALIBRATION_PASSES, LatencyTable
from archlab.errors import ConfigError
from archlab.tables.timing import ModelTimings


def check(table: LatencyTable, backend: LatencyBackend, *, models: int = 3, passes: int = CALIBRATION_PASSES,
          show_progress: bool = True) -> dict[str, Any]:
    """Re-time up to ``models`` of the table's calibration models here; their drift from then to now.

    Timed in ``passes`` interleaved passes of ``backend.repeats`` runs, as calibration times
    them (with the defaults, the fastest of 8 runs in 2 passes both then and now): on a noisy
    host the fastest of fewer runs comes out slower, which would read as drift.
    """
    if passes < 1 or backend.repeats < 1:
        raise ConfigError("passes" if passes < 1 else "repeats", "must be at least 1")
    calib = list(table.meta.calibration_models)
    stored = [c for c in calib if "description" in c][:models]
    if not stored:
        raise ConfigError(f"{table.path}: metadata.overhead.models", "hold no descriptions to re-time (run `archlab table calibrate` first)")
    descs = [description_from_dict(c["description"]) for c in stored]
    timings = ModelTimings(None, backend, descs, batch=table.meta.batch)
    timings.run(passes=passes, repeats=backend.repeats, seed=0, show_progress=show_progress, label="check models")
    stat = table.statistic
    rows = []
    for c, d in zip(stored, descs):
        now_ms = timings.truth(d, stat)
        rows.append({"name": d.name, "then_ms": c["measured_ms"], "now_ms": round(now_ms, 3),
                     "drift": round(now_ms / c["measured_ms"] - 1, 4)})
    differences = backend.differences_from(table.meta.fingerprint)
    drift = float(np.median([r["drift"] for r in rows]))
    return {"table": str(table.path), "device_then": table.meta.device, "device_now": backend.device_name(),
            "fingerprint_differences": differences, "median_drift": drift,
            "verdict": drift_verdict(table.name, differences, drift), "models": rows}



# The median drift a table's own host stays within: the shipped CPU tables checked on their
# host ten days after the build drifted -4.6% and -0.3% (one-pass checks of the torch-cpu
# table: +4.1 to +7.5%); on another "AMD EPYC" +31% and +47%.
DRIFT_LIMIT = 0.10



def drift_verdict(name: str, differences: Sequence[str], median_drift: float) -> dict[str, Any]:
    """Whether a checked table predicts for this machine, and what to do when it does not."""
    if differences:
        return {"holds": False, "advice": f"measured on another machine: build a table here (`archlab table build`); "
                                          f"{name} predicts that machine's latencies, {median_drift:+.0%} off here"}
    if abs(median_drift) > DRIFT_LIMIT:
        return {"holds": False, "advice": f"this machine runs {median_drift:+.0%} from the table, beyond +-{DRIFT_LIMIT:.0%}: "
                                          f"refit it here (`archlab table calibrate {name} --settle 0.05`) and validate, "
                                          "or build again"}
    return {"holds": True, "advice": f"holds here: median drift within +-{DRIFT_LIMIT:.0%}"}

