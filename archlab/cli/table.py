"""``archlab table ...``: build, calibrate, validate, check, inspect, export and import latency tables."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from archlab.cli.common import err_console, finite, out_console, user_errors
from archlab.cost.table import (
    CALIBRATION_MODELS,
    CALIBRATION_PASSES,
    MAX_PASSES,
    VERSUS_FLOPS_SAMPLES,
)
from archlab.errors import ConfigError
from archlab.files import write_text

table_app = typer.Typer(no_args_is_help=True, help="Latency lookup tables: measure blocks, predict whole UNets, validate.")

SETTLE_HELP = ("After the passes, time again (one more interleaved pass at a time) each model whose two fastest "
               "passes differ by more than this share, e.g. 0.05 on a shared host with slow spells; 0: exactly the passes.")
MAX_PASSES_HELP = "With --settle: the most passes a model gets."


@table_app.command("keys")
@user_errors
def keys_cmd(
    sources: List[str] = typer.Argument(..., help="Search spaces, presets or description files."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else goes there)."),
    show: bool = typer.Option(False, "--list", help="Print every key."),
) -> None:
    """How many distinct blocks the sources need against how many architectures they hold."""
    from archlab.tables.sources import source_specs

    specs, spaces, descs = source_specs(sources)
    architectures = sum(s.size() for s in spaces) + len(descs)
    kinds: dict[str, int] = {}
    for spec in specs.values():
        kinds[spec.kind] = kinds.get(spec.kind, 0) + 1
    if as_json:
        print(json.dumps({"distinct_blocks": len(specs), "architectures": architectures, "by_kind": kinds,
                          **({"keys": list(specs)} if show else {})}, indent=2))
        return
    print(f"{len(specs)} distinct blocks for {architectures:,} architectures ({', '.join(f'{v} {k}' for k, v in kinds.items())})")
    if show:
        for key in specs:
            print(key)


@table_app.command("build")
@user_errors
def build_cmd(
    sources: List[str] = typer.Argument(..., help="Search spaces, presets or description files whose blocks to measure."),
    backend: str = typer.Option("torch-cpu", help="torch-cpu, torch-cuda, onnxruntime or litert."),
    out: Path = typer.Option(..., help="The table file (CSV). An existing one is resumed."),
    threads: int = typer.Option(2, help="CPU threads the runtime may use; the table predicts at this count only. "
                                 "On a shared VM, 1 repeats best for models under ~0.5 s (benchmarks/README.md, one thread)."),
    warmup: int = typer.Option(2, help="Untimed runs before timing each block."),
    repeats: int = typer.Option(8, help="Timed runs per block (over 2 interleaved passes)."),
    calibrate: int = typer.Option(CALIBRATION_MODELS, "--calibration-models", "--calibrate", help="Whole models timed to fit the overhead term, spread over the sizes of the first space (0: none)."),
    calibration_seed: int = typer.Option(0, help="Seed for sampling the calibration models from the first space."),
    batch: int = typer.Option(1, help="Batch size every block and model is timed at (part of the table's identity)."),
    cold: bool = typer.Option(False, help="Flush the CPU caches before every timed run of a block (weights cold, as in a whole model)."),
    allocator: Optional[str] = typer.Option(None, help="steady: freed memory stays in the process, so large buffers are not "
                                            "page-faulted in afresh on every run (glibc; torch-cpu's default); system: the C "
                                            "library's default (other runtimes' default). Recorded in the table."),
    settle: float = typer.Option(0.0, callback=finite, help="Calibration models: " + SETTLE_HELP),
    max_passes: int = typer.Option(MAX_PASSES, help=MAX_PASSES_HELP),
    progress: bool = typer.Option(True, help="Show a progress bar (on stderr)."),
) -> None:
    """Measure every distinct block of the sources on a backend, then fit the overhead term.

    Rows are written as they are measured, and so are the calibration models' timings; rerun the
    same command after an interruption and only what is missing is measured.
    """
    from archlab.cost.backends import get_backend
    from archlab.tables import calibrate as fit
    from archlab.tables import measure_blocks, open_for_build, pass_limit
    from archlab.tables.sources import sample_models, source_specs

    pass_limit(CALIBRATION_PASSES, settle, max_passes)  # before anything is timed
    specs, spaces, descs = source_specs(sources, batch=batch)
    tokens = {s.text_tokens for s in specs.values()}
    runtime = get_backend(backend, threads=threads, warmup=warmup, repeats=repeats, cold=cold, allocator=allocator)
    try:
        table = open_for_build(str(out), runtime, dtype="float32", batch=batch, extra={"text_tokens": min(tokens), "sources": sources})
        done = measure_blocks(table, runtime, specs, show_progress=progress)
        err_console.print(f"{out}: {done} block(s) measured, {len(specs) - done} already there")
        if calibrate and (done or len(table.meta.calibration_models) != calibrate):
            models = sample_models(spaces, descs, calibrate, calibration_seed, runtime.max_params)
            fit(table, runtime, models, seed=calibration_seed, show_progress=progress, settle=settle, max_passes=max_passes)
            err_console.print(f"overhead: {describe_overhead(table)} (from {calibrate} whole models{calibration_note(table)})")
    finally:
        runtime.close()


@table_app.command("validate")
@user_errors
def validate_cmd(
    table_file: str = typer.Argument(..., help="A table built by `archlab table build` on this machine (file or shipped name)."),
    space: Optional[str] = typer.Option(None, help="The search space to sample from; default: the table's first space."),
    samples: int = typer.Option(30, help="Architectures to measure end to end."),
    seed: int = typer.Option(1, help="Sampling seed; use one other than the table's calibration seed."),
    max_params: Optional[float] = typer.Option(None, callback=finite, help="Only sample architectures with at most this many parameters."),
    pick: str = typer.Option("random", help="random: as the space samples them; disagreement: where the table and the "
                                            "FLOPs baseline disagree most (which of the two is right)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (progress stays on stderr)."),
    repeats: int = typer.Option(3, help="Timed runs per architecture and pass (after 1 warm-up run)."),
    passes: int = typer.Option(2, help="Times each architecture is timed, interleaved with the others (2: test-retest; "
                               "3 where the host has slow spells longer than a pass: its time is the fastest pass; "
                               "rerun with more to add passes to the stored ones)."),
    settle: float = typer.Option(0.0, callback=finite, help=SETTLE_HELP),
    max_passes: int = typer.Option(MAX_PASSES, help=MAX_PASSES_HELP),
    timings: Optional[Path] = typer.Option(None, help="Store each timing here as measured; rerun to resume (default: beside --out)."),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Time the table's calibration models again, in the same "
                                     "passes as the validated ones, and refit its overhead term on them (written to the "
                                     "table): separates the table's error from the host's drift since it was calibrated."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
    out: Optional[Path] = typer.Option(None, help="Also write the full result (every model) as JSON here."),
) -> None:
    """Predicted vs measured end-to-end latency on sampled architectures, against a FLOPs baseline and re-measurement.

    Every architecture is timed twice, far apart (interleaved with the others): the
    agreement of the two passes is the noise floor the predictor is judged against.
    """
    from archlab.cost.table import LatencyTable
    from archlab.tables import (
        backend_for,
        pass_limit,
        sample_table_models,
        stored_calibration,
        validate,
    )

    pass_limit(passes, settle, max_passes)  # before anything is loaded or timed
    table = LatencyTable.load(table_file)
    cal_seed = (table.meta.overhead.seed if table.meta.overhead else None)
    if cal_seed == seed:
        raise ConfigError("seed", f"{seed} is the seed the table's overhead was fitted with; pick another")
    descs = sample_table_models(table, n=samples, seed=seed, space=space, max_params=max_params, pick=pick)
    calibration = stored_calibration(table)[0] if recalibrate else []
    store = timings or (out.with_suffix(".timings.json") if out else None)
    runtime = backend_for(table, warmup=1, repeats=repeats, workdir=store.with_suffix(".work") if store else None)
    try:
        result = validate(table, runtime, descs, seed=seed, timings_path=store, passes=passes, show_progress=progress,
                          recalibrate=calibration, settle=settle, max_passes=max_passes)
    finally:
        runtime.close()  # also on --json and on errors
    result = dataclasses.replace(result, seed=seed, pick=pick)
    if recalibrate:
        err_console.print(f"overhead: {describe_overhead(table)} (refitted on {len(calibration)} calibration models "
                          "timed in the validation's passes; saved in the table)")
    data = result.to_dict()
    if out is not None:
        write_text(out, json.dumps(data, indent=1))
    if as_json:
        print(json.dumps({k: v for k, v in data.items() if k != "models"}, indent=2))
        return
    render_validation(result)


def render_validation(result) -> None:
    """A validation's figures as a table, then a line each: closer than FLOPs, the room FLOPs
    leaves, how settled the truth is, and which goals are met (:class:`archlab.tables.Validation`)."""
    from archlab.tables import FIGURES, GOALS

    before, retest, diffs = result.as_stored, result.retest, result.table_minus_flops
    t = Table("figure", *(["table, as stored", "table, refitted here"] if before else ["table"]), "FLOPs baseline",
              *(["table - FLOPs (+- bootstrap se)"] if diffs else []), *(["re-measurement (pass 1 vs 2)"] if retest else []))
    for k, label in zip(FIGURES, ("within +-10%", "within +-5%", "RMSPE", "Spearman")):
        fmt = "{:.1%}" if k != "spearman" else "{:.3f}"
        t.add_row(label, *([fmt.format(getattr(before.table, k))] if before else []), fmt.format(getattr(result.table, k)),
                  fmt.format(getattr(result.flops, k)),
                  *([f"{fmt.format(diffs[k].difference)} +- {fmt.format(diffs[k].se)}"] if diffs else []),
                  *([fmt.format(getattr(retest, k))] if retest else []))
    out_console.print(t)
    closer = result.table_closer
    if closer is not None:
        out_console.print(f"{result.samples} models ({result.pick}); the table is closer than FLOPs on "
                          f"{closer.share:.0%} of them (+- {closer.se:.0%}; sign test p = {closer.sign_test_p:.2g})")
    if result.flops_disagreement is not None:
        out_console.print(flops_room(dataclasses.asdict(result.flops_disagreement)))
    spread = result.truth_spread
    if spread:
        counts = f"{result.passes}" + (f"-{spread.passes_max}" if spread.passes_max > result.passes else "")
        out_console.print(f"measured: each model's fastest of {counts} passes; its second fastest within "
                          f"{spread.rms:.1%} RMS of it (at most {spread.max:.1%})")
    met = result.goals()
    ratio = result.rmspe_over_retest
    parts = [f"within +-10% >= {GOALS.within_10:.0%}: {'met' if met['within_10'] else 'not met'}",
             f"RMSPE <= {GOALS.rmspe_over_retest}x re-measurement: "
             + ("no re-measurement" if ratio is None else f"{ratio:.2f}x, {'met' if met['rmspe_over_retest'] else 'not met'}"),
             f"Spearman >= {GOALS.spearman}: {'met' if met['spearman'] else 'not met'}"]
    beyond = result.beyond_noise()
    lead = ", ".join(label for k, label in zip(FIGURES, ("within +-10%", "within +-5%", "RMSPE", "Spearman"))
                     if beyond and beyond[k]) if beyond else ""
    out_console.print("goals: " + "; ".join(parts) + (f"; ahead of FLOPs beyond 2 se on {lead}" if lead else
                                                       "; ahead of FLOPs beyond 2 se on no figure" if beyond else ""))


@table_app.command("vs-flops")
@user_errors
def vs_flops_cmd(
    table_file: str = typer.Argument(..., help="A table file or a shipped table's name (any machine's: nothing is timed)."),
    space: Optional[str] = typer.Option(None, help="The search space to sample from; default: the table's first space."),
    samples: int = typer.Option(VERSUS_FLOPS_SAMPLES, help="Architectures to predict."),
    seed: int = typer.Option(0, help="Sampling seed."),
    max_params: Optional[float] = typer.Option(None, callback=finite, help="Only sample architectures with at most this many parameters."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else goes there)."),
) -> None:
    """How far the table's predictions stand from a FLOPs-only baseline's, before timing anything.

    Where the two never differ by more than 10%, no validation can show the table better than
    FLOPs on within +-10%; where they rank alike, not on Spearman either. This says which
    figures a validation can separate them on, for this table and space.
    """
    from archlab.cost.table import LatencyTable
    from archlab.tables import versus_flops

    if samples < 3:
        raise ConfigError("--samples", f"must be at least 3 (a ranking needs three), not {samples}")
    result = versus_flops(LatencyTable.load(table_file), n=samples, seed=seed, space=space, max_params=max_params)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    base = result["baseline_ms"]
    out_console.print(f"{result['table']} against its FLOPs baseline ({base['intercept']:.1f} ms + {base['per_gflop']:.2f} ms "
                      f"x GFLOPs, fitted on the same calibration models), {result['models']} sampled models (seed {seed}):")
    out_console.print(flops_room(result))


def flops_room(d: dict) -> str:
    """One sentence on how far FLOPs stands from the table (:func:`archlab.tables.validation.disagreement`)."""
    verdict = ("within +-10% cannot tell them apart here" if d["flops_off_10"] == 0 else
               f"within +-10% can separate them on up to {d['flops_off_10']:.1%} of models")
    return (f"FLOPs / table - 1: RMS {d['rms']:.1%}, from {d['largest_under']:+.1%} to {d['largest_over']:+.1%}; "
            f"if the table were exact FLOPs would be off by more than 5% on {d['flops_off_5']:.1%} of the models, "
            f"more than 10% on {d['flops_off_10']:.1%} ({verdict}); they rank the models alike to Spearman {d['spearman']:.3f}")


@table_app.command("calibrate")
@user_errors
def calibrate_cmd(
    table_file: str = typer.Argument(..., help="A table built by `archlab table build` on this machine."),
    space: Optional[str] = typer.Option(None, help="The space to sample calibration models from; default: the table's first source."),
    models: int = typer.Option(CALIBRATION_MODELS, "--calibration-models", "--models", help="Whole models to time, at evenly spaced quantiles of parameter count."),
    seed: int = typer.Option(0, "--calibration-seed", "--seed", help="Sampling seed for the calibration models."),
    statistic: Optional[str] = typer.Option(None, help="Predict from block medians or minima (median | min); default: the table's."),
    repeats: int = typer.Option(8, help="Timed runs per model (over 2 interleaved passes)."),
    refit: bool = typer.Option(False, "--refit", help="Time nothing: fit again on the calibration models already timed "
                                                      "(after a change of the fitting rule; any machine)."),
    settle: float = typer.Option(0.0, callback=finite, help=SETTLE_HELP),
    max_passes: int = typer.Option(MAX_PASSES, help=MAX_PASSES_HELP),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Refit a table's overhead term (and optionally switch its statistic) without re-measuring blocks.

    Every block of the calibration models is checked to be in the table before anything is timed.
    """
    from archlab.cost.table import STATISTICS, LatencyTable
    from archlab.tables import backend_for, pass_limit, sample_table_models
    from archlab.tables import calibrate as fit
    from archlab.tables import refit as fit_stored

    pass_limit(CALIBRATION_PASSES, settle, max_passes)
    table = LatencyTable.load(table_file)
    if refit:
        if statistic is not None:
            raise ConfigError("--statistic", "cannot change with --refit (the stored timings are of the table's statistic)")
        fit_stored(table)
        err_console.print(f"overhead ({table.statistic}): {describe_overhead(table)} "
                          f"(refitted on {len(table.meta.calibration_models)} stored models)")
        return
    if statistic is not None and statistic not in STATISTICS:
        raise ConfigError("--statistic", f"{statistic!r} is not one of {', '.join(STATISTICS)}")
    runtime = backend_for(table, warmup=table.meta.warmup, repeats=repeats)
    try:
        descs = sample_table_models(table, n=models, seed=seed, space=space, pick="spread")
        if statistic is not None:
            table.metadata["statistic"] = statistic
            table.save()
            table = LatencyTable.read(table.path)
        fit(table, runtime, descs, seed=seed, show_progress=progress, settle=settle, max_passes=max_passes)
    finally:
        runtime.close()
    err_console.print(f"overhead ({table.statistic}): {describe_overhead(table)} (from {models} whole models{calibration_note(table)})")


@table_app.command("check")
@user_errors
def check_cmd(
    table_file: str = typer.Argument(..., help="A table file or a shipped table's name."),
    models: int = typer.Option(3, help="Calibration models to re-time here."),
    repeats: int = typer.Option(4, help="Timed runs per model and pass (after the table's warm-up runs)."),
    passes: int = typer.Option(CALIBRATION_PASSES, help="Interleaved passes over the models; the defaults time them as calibration does "
                                       "(the fastest of 8 runs over 2 passes)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else goes there)."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Is this table true here? Compares fingerprints and re-times a few of its calibration models here (the drift)."""
    from archlab.cost.table import LatencyTable
    from archlab.tables import backend_for, check

    table = LatencyTable.load(table_file)
    runtime = backend_for(table, warmup=table.meta.warmup, repeats=repeats, refuse_other_machine=False)
    try:
        result = check(table, runtime, models=models, passes=passes, show_progress=progress)
    finally:
        runtime.close()
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out_console.print(f"{table.name}: measured on {result['device_then']!r}, checked on {result['device_now']!r}")
    for d in result["fingerprint_differences"] or ["fingerprints match"]:
        out_console.print(f"  {d}")
    t = Table("model", "then (ms)", "now (ms)", "drift")
    for r in result["models"]:
        t.add_row(r["name"], f"{r['then_ms']:.1f}", f"{r['now_ms']:.1f}", f"{r['drift']:+.1%}")
    out_console.print(t)
    out_console.print(f"median drift {result['median_drift']:+.1%}; {result['verdict']['advice']}")


def calibration_note(table) -> str:
    """", settled ..." when the calibration models were timed until their passes agreed."""
    timing = (table.meta.overhead.timing if table.meta.overhead else None) or {}
    if not timing.get("settle"):
        return ""
    return f", passes settled within {timing['settle']:.0%}: up to {timing['passes_max']} passes"


def describe_overhead(table) -> str:
    o = table.overhead
    kinds = " + ".join(f"{s:.3f} x {k}" for s, k in zip(o.scales, ("ResNets", "transformers", "resamplers"))) \
        if o.form == "kinds" else f"{o.scales[0]:.4f} x block sum"
    weights = f" + {o.per_gb_ms:.1f} ms/GB of weights" if o.per_gb_ms else ""
    return f"{o.intercept_ms:.2f} ms + {kinds}{weights} ({o.form} form)"


@table_app.command("show")
@user_errors
def show_cmd(table_file: str = typer.Argument(..., help="A table file or a shipped table's name."),
             as_json: bool = typer.Option(False, "--json", help="Print the metadata and row counts as one JSON object.")) -> None:
    """A table's metadata and a summary of its rows."""
    from archlab.cost.table import LatencyTable

    table = LatencyTable.load(table_file)
    if as_json:
        print(json.dumps({"metadata": table.metadata, "blocks": len(table),
                          "kinds": {k: int(v) for k, v in table.rows["kind"].value_counts().items()}}, indent=2))
        return
    meta = {k: v for k, v in table.metadata.items() if k != "overhead"}
    print(json.dumps(meta, indent=2))
    if table.meta.overhead is not None:
        print(f"overhead: {describe_overhead(table)}, from {len(table.meta.calibration_models)} whole models{calibration_note(table)}")
    print(f"{len(table)} blocks; " + ", ".join(f"{k}: {v}" for k, v in table.rows["kind"].value_counts().items()))


@table_app.command("export-blocks")
@user_errors
def export_blocks_cmd(
    sources: List[str] = typer.Argument(..., help="Search spaces, presets or description files."),
    format: str = typer.Option(..., "--format", help="tflite (LiteRT, Android) or coreml (iOS)."),
    out: Path = typer.Option(..., help="Folder for the models and manifest.json."),
    calibrate: int = typer.Option(0, "--calibration-models", "--calibrate", help="Also export this many whole models to fit the overhead on the phone."),
    calibration_seed: int = typer.Option(0, help="Seed of the calibration models sampled (with --calibrate)."),
) -> None:
    """One model file per distinct block, to time on a phone; docs/latency-tables.md (Phones) says how."""
    from archlab.progress import progress_bar
    from archlab.tables.phones import export_blocks
    from archlab.tables.sources import sample_models, source_specs

    specs, spaces, descs = source_specs(sources)
    models = sample_models(spaces, descs, calibrate, calibration_seed) if calibrate else []
    with progress_bar() as bar:
        task = bar.add_task(f"export {format}", total=len(specs), current="")
        manifest = export_blocks(specs, out, fmt=format, models=models, progress=lambda: bar.advance(task))
    err_console.print(f"{len(specs)} blocks exported; manifest: {manifest}")


@table_app.command("import")
@user_errors
def import_cmd(
    results: Path = typer.Argument(..., help="A results CSV (key/file, latency_ms) or a folder of benchmark_model outputs."),
    device: str = typer.Option(..., help="The phone, e.g. 'Pixel 8 (Tensor G3)'."),
    runtime: str = typer.Option(..., help="The runtime, e.g. 'litert-xnnpack' or 'coreml-ane'."),
    manifest: Path = typer.Option(..., help="The manifest.json written by export-blocks."),
    out: Path = typer.Option(..., help="The table file to write."),
    threads: int = typer.Option(0, help="Threads used on the phone (0: unknown / runtime default)."),
) -> None:
    """Turn on-device timings into a latency table with the same schema as measured ones."""
    from archlab.tables.phones import import_results

    table = import_results(results, manifest_path=manifest, device=device, runtime=runtime, out=out, threads=threads)
    err_console.print(f"{out}: {len(table)} blocks imported ({table.meta.missing_blocks} in the manifest without a result)")
