"""Phones: export one model file per distinct block, time them on the device, import the results.

Export writes ``DIR/manifest.json`` and ``DIR/blocks/bNNNN.tflite`` (LiteRT, via litert-torch)
or ``DIR/blocks/bNNNN.mlpackage`` (Core ML, via coremltools), plus optional whole models in
``DIR/models/`` whose timings fit the table's overhead term.

Import reads either
- a CSV with a ``key`` or ``file`` column and a ``latency_ms`` (or ``median_ms``) column, and
  optionally ``spread_ms`` and ``repeats`` (what a small on-device harness writes), or
- a folder of ``benchmark_model`` outputs, one per model file, named after it
  (``b0007.txt`` for ``blocks/b0007.tflite``): its log ("Inference timings in us: ...
  Inference (avg): X") or its op-profiling CSV (``--op_profiling_output_mode=csv``, whose
  "Timings (microseconds): count=... avg=... std=..." line gives the model's time).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from archlab.arch.description import Description
from archlab.convert import export, model_and_inputs
from archlab.cost.keys import BlockSpec, block_specs
from archlab.cost.table import LatencyTable, fit_overhead, now
from archlab.errors import ConfigError
from archlab.files import write_text

FORMATS = ("tflite", "coreml")
SUFFIXES = {"tflite": ".tflite", "coreml": ".mlpackage"}


def export_blocks(specs: dict[str, BlockSpec], out: str | Path, *, fmt: str, models: Sequence[Description] = (),
                  progress: Any = None) -> Path:
    """Write one model per block (and per calibration model) and the manifest; resumable."""
    if fmt not in FORMATS:
        raise ConfigError("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    (out / "blocks").mkdir(parents=True, exist_ok=True)
    suffix = SUFFIXES[fmt]
    entries = []
    for i, (key, spec) in enumerate(specs.items()):
        rel = f"blocks/b{i:04d}{suffix}"
        inputs = spec.inputs()
        if not (out / rel).exists():
            export(spec.module(), inputs, out / rel, fmt)
        entries.append({"key": key, "file": rel, "kind": spec.kind, "inputs": [list(t.shape) for t in inputs],
                        "params": spec.cost().params, "gflops": spec.cost().flops / 1e9})
        if progress is not None:
            progress()
    model_entries = []
    if models:
        (out / "models").mkdir(exist_ok=True)
        for j, desc in enumerate(models):
            rel = f"models/m{j:03d}{suffix}"
            module, inputs = model_and_inputs(desc)
            if not (out / rel).exists():
                export(module, inputs, out / rel, fmt)
            model_entries.append({"name": desc.name, "file": rel, "inputs": [list(t.shape) for t in inputs],
                                  "block_keys": [s.key for _, s in block_specs(desc)]})
    first = next(iter(specs.values()))
    manifest = {"format": fmt, "created": now(), "dtype": first.dtype, "batch": first.batch,
                "text_tokens": first.text_tokens, "blocks": entries, "models": model_entries}
    write_text(out / "manifest.json", json.dumps(manifest, indent=1))
    return out / "manifest.json"


# ---------------------------------------------------------------------- import

_LOG_AVG = re.compile(r"Inference timings in us:.*?Inference \(avg\):\s*([0-9.eE+-]+)")
_STAT = re.compile(r"count=(\d+).*?avg=([0-9.eE+-]+)\s+std=([0-9.eE+-]+)")


def parse_benchmark_output(text: str) -> tuple[float, float, int]:
    """(latency ms, spread ms, runs) from one benchmark_model log or op-profiling CSV.

    benchmark_model reports the mean and standard deviation, not a median; the spread
    column holds the standard deviation for such rows.
    """
    stat_lines = [m for m in _STAT.finditer(text)]
    log = _LOG_AVG.search(text)
    if log:
        avg_us = float(log.group(1))
        std_us, runs = (float(stat_lines[-1].group(3)), int(stat_lines[-1].group(1))) if stat_lines else (math.nan, 0)
        return avg_us / 1000.0, std_us / 1000.0, runs
    for line in text.splitlines():
        if line.startswith("Timings (microseconds):"):
            m = _STAT.search(line)
            if m:
                return float(m.group(2)) / 1000.0, float(m.group(3)) / 1000.0, int(m.group(1))
    raise ValueError("no 'Inference timings in us' or 'Timings (microseconds)' line")


@dataclass(frozen=True)
class ManifestBlock:
    key: str
    file: str
    kind: str
    inputs: tuple[tuple[int, ...], ...] = ()
    params: int = 0
    gflops: float = 0.0


@dataclass(frozen=True)
class ManifestModel:
    name: str
    file: str
    block_keys: tuple[str, ...]
    inputs: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` as ``table export-blocks`` writes it (read by the one config reader)."""

    format: str
    dtype: str
    batch: int
    blocks: tuple[ManifestBlock, ...]
    created: str = ""
    text_tokens: int | None = None
    models: tuple[ManifestModel, ...] = ()


def read_manifest(path: Path) -> dict[str, Any]:
    """A checked manifest, as plain data; a missing field, a binary or malformed file names itself."""
    from archlab.config import load, to_data

    try:
        return to_data(load(Manifest, path))
    except ConfigError as exc:
        if exc.field.startswith(str(path)):
            raise
        raise ConfigError(f"{path}: {exc.field}", f"{exc.message} (is this the manifest.json export-blocks wrote?)") from None


def _read_results(results: Path, manifest: dict[str, Any]) -> dict[str, tuple[float, float, int]]:
    """file (as in the manifest) -> (latency ms, spread ms, runs)."""
    files = {e["file"]: e for e in manifest["blocks"] + manifest.get("models", [])}
    by_stem = {Path(f).stem: f for f in files}
    by_key = {e["key"]: e["file"] for e in manifest["blocks"]}
    out: dict[str, tuple[float, float, int]] = {}
    if results.is_dir():
        for path in sorted(results.iterdir()):
            if path.stem not in by_stem or path.suffix not in (".txt", ".log", ".csv"):
                continue
            try:
                out[by_stem[path.stem]] = parse_benchmark_output(path.read_text(errors="replace"))
            except ValueError as exc:
                raise ConfigError(str(path), f"not a benchmark_model output: {exc}") from None
        if not out:
            raise ConfigError(str(results), "holds no benchmark_model outputs named after the manifest's files (b0000.txt, ...)")
        return out
    try:
        rows = pd.read_csv(results)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(str(results), f"cannot read as CSV: {exc}") from None
    value = next((c for c in ("latency_ms", "median_ms") if c in rows.columns), None)
    ident = next((c for c in ("key", "file") if c in rows.columns), None)
    if value is None or ident is None:
        raise ConfigError(f"{results}: columns", f"{list(rows.columns)} needs 'key' or 'file' and 'latency_ms' or 'median_ms'")
    for i, row in rows.iterrows():
        name = str(row[ident])
        file = by_key.get(name) if ident == "key" else (name if name in files else by_stem.get(Path(name).stem))
        if file is None:
            raise ConfigError(f"{results}: row {i + 2}", f"{ident} {name!r} is not in the manifest")
        ms = float(row[value])
        if not ms > 0:
            raise ConfigError(f"{results}: row {i + 2}", f"{value} {row[value]!r} is not a positive number")
        spread = float(row["spread_ms"]) if "spread_ms" in rows.columns else math.nan
        runs = int(row["repeats"]) if "repeats" in rows.columns and not pd.isna(row["repeats"]) else 0
        out[file] = (ms, spread, runs)
    return out


def import_results(results: str | Path, *, manifest_path: str | Path, device: str, runtime: str, out: str | Path,
                   threads: int = 0) -> LatencyTable:
    """A latency table (same schema as measured ones) from on-device results."""
    manifest_path = Path(manifest_path)
    manifest = read_manifest(manifest_path)
    timings = _read_results(Path(results), manifest)
    out = Path(out)
    if out.exists():
        raise ConfigError(str(out), "exists; import into a new file")
    meta = {"device": device, "runtime": runtime, "runtime_version": f"imported ({manifest['format']})", "threads": threads,
            "dtype": manifest["dtype"], "batch": manifest["batch"], "text_tokens": manifest.get("text_tokens"),
            "warmup": 0, "repeats": 0, "source": f"imported from {Path(results).name}"}
    table = LatencyTable.create(out.with_name(out.name + ".partial"), meta)
    for entry in manifest["blocks"]:
        if entry["file"] in timings:
            ms, spread, runs = timings[entry["file"]]
            table.append(entry["key"], entry["kind"], ms, 0.0 if math.isnan(spread) else spread, ms, runs)
    points = []
    for model in manifest.get("models", []):
        if model["file"] in timings and all(k in table for k in model["block_keys"]):
            points.append((sum(table.ms(k) for k in model["block_keys"]), timings[model["file"]][0], model["name"]))
    if points:
        o = fit_overhead((p[0], p[1]) for p in points)
        table.metadata["overhead"] = {"intercept_ms": o.intercept_ms, "scale": o.scale, "fitted": "least squares from imported whole-model timings",
                                      "models": [{"name": n, "block_sum_ms": s, "measured_ms": m} for s, m, n in points]}
    table.metadata["missing_blocks"] = sum(1 for e in manifest["blocks"] if e["file"] not in timings)
    table.save()
    table.path.replace(out)
    return LatencyTable.read(out)
