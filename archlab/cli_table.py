"""``archlab table ...``: build, validate, inspect, export and import latency tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from archlab.arch.description import Description, load_description
from archlab.arch.presets import list_presets, preset
from archlab.cli_common import err_console, user_errors
from archlab.cost.keys import BlockSpec, distinct_specs
from archlab.errors import ConfigError
from archlab.search.space import SearchSpace, list_spaces, load_space

table_app = typer.Typer(no_args_is_help=True, help="Latency lookup tables: measure blocks, predict whole UNets, validate.")
console = err_console


def _is_space_file(path: Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "levels" in data


def resolve_sources(sources: List[str]) -> tuple[list[SearchSpace], list[Description]]:
    """Names or files of search spaces and descriptions (``preset:NAME`` forces a preset)."""
    spaces: list[SearchSpace] = []
    descs: list[Description] = []
    for src in sources:
        if src.startswith("preset:"):
            descs.append(preset(src.split(":", 1)[1]))
        elif src.startswith("space:"):
            spaces.append(load_space(src.split(":", 1)[1]))
        elif Path(src).suffix in (".yaml", ".yml", ".json"):
            path = Path(src)
            if not path.is_file():
                raise ConfigError(src, "no such file")
            if _is_space_file(path):
                spaces.append(load_space(path))
            else:
                descs.append(load_description(path))
        elif src in list_spaces():
            spaces.append(load_space(src))
        elif src in list_presets():
            descs.append(preset(src))
        else:
            raise ConfigError("source", f"{src!r} is not a search space ({', '.join(list_spaces())}), a preset "
                              f"({', '.join(list_presets())}) or a .yaml/.json file")
    return spaces, descs


def source_specs(sources: List[str], *, batch: int = 1, dtype: str = "float32") -> tuple[dict[str, BlockSpec], list[SearchSpace], list[Description]]:
    spaces, descs = resolve_sources(sources)

    def all_descs() -> Iterator[Description]:
        for space in spaces:
            yield from space.iter_stage_variants()
        yield from descs

    return distinct_specs(all_descs(), batch=batch, dtype=dtype), spaces, descs


def calibration_models(spaces: list[SearchSpace], descs: list[Description], n: int, seed: int,
                       max_params: int | None = None) -> list[Description]:
    """Whole models to fit the overhead on: sampled from the first space, else the descriptions."""
    if spaces:
        space = _limited(spaces[0], max_params)
        return [d for _, d in space.samples(n, seed)]
    return list(descs[:n])


def _limited(space: SearchSpace, max_params: float | None) -> SearchSpace:
    """The space with an extra parameter ceiling (a runtime's model-size limit)."""
    if max_params is None:
        return space
    import dataclasses

    bound = min(max_params, space.constraints.get("max_params", max_params))
    return dataclasses.replace(space, constraints={**space.constraints, "max_params": bound})


@table_app.command("keys")
@user_errors
def keys_cmd(
    sources: List[str] = typer.Argument(..., help="Search spaces, presets or description files."),
    as_json: bool = typer.Option(False, "--json"),
    show: bool = typer.Option(False, "--list", help="Print every key."),
) -> None:
    """How many distinct blocks the sources need against how many architectures they hold."""
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
    threads: int = typer.Option(2, help="CPU threads the runtime may use."),
    warmup: int = typer.Option(2, help="Untimed runs before timing each block."),
    repeats: int = typer.Option(8, help="Timed runs per block (over 2 interleaved passes); the table keeps their median."),
    calibrate: int = typer.Option(5, help="Whole models timed to fit the overhead term (0: none)."),
    calibration_seed: int = typer.Option(0, help="Seed for sampling the calibration models from the first space."),
    batch: int = typer.Option(1),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Measure every distinct block of the sources on a backend, then fit the overhead term.

    Rows are written as they are measured; rerun the same command after an interruption and
    only the missing blocks are measured.
    """
    from archlab.cost.backends import get_backend
    from archlab.cost.measure import calibrate as fit, measure_blocks, open_table

    specs, spaces, descs = source_specs(sources, batch=batch)
    tokens = {s.text_tokens for s in specs.values()}
    runtime = get_backend(backend, threads=threads, warmup=warmup, repeats=repeats)
    table = open_table(str(out), runtime, dtype="float32", batch=batch,
                       extra={"text_tokens": min(tokens), "sources": sources})
    done = measure_blocks(table, runtime, specs, show_progress=progress)
    console.print(f"{out}: {done} block(s) measured, {len(specs) - done} already there")
    overhead = table.metadata.get("overhead") or {}
    if calibrate and (done or len(overhead.get("models", [])) != calibrate):
        fit(table, runtime, calibration_models(spaces, descs, calibrate, calibration_seed, runtime.max_params), seed=calibration_seed,
            show_progress=progress)
        o = table.overhead
        console.print(f"overhead: {o.intercept_ms:.2f} ms + {o.scale:.4f} x block sum (from {calibrate} whole models)")
    runtime.close()



@table_app.command("validate")
@user_errors
def validate_cmd(
    table_file: Path = typer.Argument(..., help="A table built by `archlab table build`."),
    space: str = typer.Option("mobilediffusion", help="The search space to sample from."),
    samples: int = typer.Option(30, help="Architectures to measure end to end."),
    seed: int = typer.Option(1, help="Sampling seed; use one other than the table's calibration seed."),
    max_params: Optional[float] = typer.Option(None, help="Only sample architectures with at most this many parameters."),
    as_json: bool = typer.Option(False, "--json"),
    repeats: int = typer.Option(6, help="Timed runs per architecture (split over 2 interleaved passes, 1 warm-up run each)."),
    progress: bool = typer.Option(True),
    out: Optional[Path] = typer.Option(None, help="Also write the full result (every model) as JSON here."),
) -> None:
    """Predicted vs measured end-to-end latency on sampled architectures, against a FLOPs baseline."""
    from archlab.cost.backends import get_backend_class
    from archlab.cost.measure import backend_for, validate
    from archlab.cost.table import LatencyTable

    table = LatencyTable.read(table_file)
    sp = load_space(space)
    runtime_limit = get_backend_class(table.metadata["runtime"]).max_params
    limits = [x for x in (max_params, runtime_limit) if x is not None]
    sp = _limited(sp, min(limits) if limits else None)
    cal_seed = (table.metadata.get("overhead") or {}).get("seed")
    if cal_seed == seed:
        raise ConfigError("seed", f"{seed} is the seed the table's overhead was fitted with; pick another")
    descs = [d for _, d in sp.samples(samples, seed)]
    for d in descs:
        table.predict(d)  # fail before measuring anything if a block is missing
    runtime = backend_for(table, warmup=1, repeats=repeats)
    try:
        result = validate(table, runtime, descs, seed=seed, show_progress=progress)
    finally:
        runtime.close()  # also on --json and on errors
    result["seed"] = seed
    if out is not None:
        out.write_text(json.dumps(result, indent=1))
    if as_json:
        print(json.dumps({k: v for k, v in result.items() if k != "models"}, indent=2))
        return
    t = Table("figure", "table", "FLOPs baseline")
    for k, label in (("within_10", "within +-10%"), ("within_5", "within +-5%"), ("rmspe", "RMSPE"), ("spearman", "Spearman")):
        fmt = "{:.1%}" if k != "spearman" else "{:.3f}"
        t.add_row(label, fmt.format(result[k]), fmt.format(result[f"flops_{k}"]))
    Console().print(t)



@table_app.command("calibrate")
@user_errors
def calibrate_cmd(
    table_file: Path = typer.Argument(..., help="A table built by `archlab table build` on this machine."),
    space: str = typer.Option("mobilediffusion", help="The space the calibration models are sampled from."),
    models: int = typer.Option(5, help="Whole models to time."),
    seed: int = typer.Option(0, help="Sampling seed for the calibration models."),
    statistic: Optional[str] = typer.Option(None, help="Predict from block medians or minima (median | min); default: the table's."),
    repeats: int = typer.Option(8, help="Timed runs per model (over 2 interleaved passes)."),
    progress: bool = typer.Option(True),
) -> None:
    """Refit a table's overhead term (and optionally switch its statistic) without re-measuring blocks."""
    from archlab.cost.measure import backend_for, calibrate as fit
    from archlab.cost.table import STATISTICS, LatencyTable

    table = LatencyTable.read(table_file)
    if statistic is not None:
        if statistic not in STATISTICS:
            raise ConfigError("--statistic", f"{statistic!r} is not one of {', '.join(STATISTICS)}")
        table.metadata["statistic"] = statistic
        table.save()
        table = LatencyTable.read(table_file)
    runtime = backend_for(table, warmup=int(table.metadata["warmup"]), repeats=repeats)
    descs = calibration_models([load_space(space)], [], models, seed, runtime.max_params)
    fit(table, runtime, descs, seed=seed, show_progress=progress)
    o = table.overhead
    console.print(f"overhead ({table.statistic}): {o.intercept_ms:.2f} ms + {o.scale:.4f} x block sum (from {models} whole models)")


@table_app.command("show")
@user_errors
def show_cmd(table_file: Path = typer.Argument(...)) -> None:
    """A table's metadata and a summary of its rows."""
    from archlab.cost.table import LatencyTable

    table = LatencyTable.read(table_file)
    meta = {k: v for k, v in table.metadata.items() if k != "overhead"}
    print(json.dumps(meta, indent=2))
    o = table.metadata.get("overhead")
    if o:
        print(f"overhead: {o['intercept_ms']:.3f} ms + {o['scale']:.4f} x block sum, from {len(o.get('models', []))} whole models")
    print(f"{len(table)} blocks; " + ", ".join(f"{k}: {v}" for k, v in table.rows["kind"].value_counts().items()))



@table_app.command("export-blocks")
@user_errors
def export_cmd(
    sources: List[str] = typer.Argument(..., help="Search spaces, presets or description files."),
    format: str = typer.Option(..., "--format", help="tflite (LiteRT, Android) or coreml (iOS)."),
    out: Path = typer.Option(..., help="Folder for the models and manifest.json."),
    calibrate: int = typer.Option(0, help="Also export this many whole models to fit the overhead on the phone."),
    calibration_seed: int = typer.Option(0),
) -> None:
    """One model file per distinct block, to time on a phone; see README for how."""
    from archlab.cost.measure import progress_bar
    from archlab.cost.phones import export_blocks

    specs, spaces, descs = source_specs(sources)
    models = calibration_models(spaces, descs, calibrate, calibration_seed) if calibrate else []
    with progress_bar() as bar:
        task = bar.add_task(f"export {format}", total=len(specs), current="")
        manifest = export_blocks(specs, out, fmt=format, models=models, progress=lambda: bar.advance(task))
    console.print(f"{len(specs)} blocks exported; manifest: {manifest}")



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
    from archlab.cost.phones import import_results

    table = import_results(results, manifest_path=manifest, device=device, runtime=runtime, out=out, threads=threads)
    console.print(f"{out}: {len(table)} blocks imported ({table.metadata['missing_blocks']} in the manifest without a result)")


