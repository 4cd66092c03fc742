"""``archlab report``, ``archlab dashboard`` and ``archlab export``: looking at and handing on results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from archlab.cli.common import STORAGE_HELP, err_console, quiet_optuna, user_errors
from archlab.errors import ConfigError
from archlab.files import check_output_file, check_output_folder


@user_errors
def report_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write (self-contained, opens offline)."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """One self-contained HTML report: Pareto front with standard errors, per-block latency of the front, history."""
    from archlab.results.report import write_report
    from archlab.search.runner import load_existing
    from archlab.search.study import load_study

    quiet_optuna()
    check_output_file(out)
    cfg = load_study(study)
    path = write_report(load_existing(cfg, storage), cfg, out)
    err_console.print(f"report: {path}")


@user_errors
def dashboard_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 unless you mean to share it."),
    port: int = typer.Option(8080, help="Port to listen on (on --host)."),
) -> None:
    """Browse the study in optuna-dashboard (trials, Pareto front, each trial's architecture)."""
    from archlab.search.runner import artifact_store, load_existing, storage_for
    from archlab.search.study import load_study

    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise ConfigError("dashboard", "optuna-dashboard is not installed (pip install 'archlab[studies]')") from None
    quiet_optuna()
    cfg = load_study(study)
    load_existing(cfg, storage)  # a missing study is an error, not a new empty one
    url = storage or cfg.storage_url
    _check_port(host, port)
    err_console.print(f"optuna-dashboard for {cfg.name} on http://{host}:{port} (storage {url.split('@')[-1]})")
    run_server(storage_for(cfg, storage, create=False), host=host, port=port, artifact_store=artifact_store(cfg))


@user_errors
def export_cmd(
    source: Path = typer.Argument(..., help="A study file, an `archlab evolve` output folder, or a description file."),
    out: Path = typer.Option(..., help="Folder to write into."),
    trial: Optional[int] = typer.Option(None, help="A study: export this trial."),
    pick: Optional[str] = typer.Option(None, help='A study: the best feasible trial meeting a bound, e.g. "latency_ms<=250".'),
    from_diffusers: Optional[Path] = typer.Option(None, help="Inherit weights block by block from this local diffusers UNet."),
    onnx: bool = typer.Option(True, help="Write ONNX and check it in onnxruntime (the export's memory peak; --no-onnx skips it)."),
    tflite: bool = typer.Option(False, help="Also write a LiteRT .tflite (litert-torch)."),
    coreml: bool = typer.Option(False, help="Also write a Core ML .mlpackage (coremltools)."),
    formats: Optional[List[str]] = typer.Option(None, "--format", help="Also write this format (repeatable): diffusers "
                                                "(a UNet2DConditionModel folder), onnx, tflite, coreml."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print what was exported (folder, source) as JSON on stdout."),
) -> None:
    """Export an architecture: description, weights, ONNX (checked), model card, hand-off for distillation."""
    from archlab.results.export import export_architecture, load_evolve_output, pick_trial

    check_output_folder(out)
    known = ("diffusers", "onnx", "tflite", "coreml")
    for f in formats or ():
        if f not in known:
            raise ConfigError("--format", f"{f!r} is not one of {', '.join(known)}")
    formats = set(formats or ())
    tflite, coreml = tflite or "tflite" in formats, coreml or "coreml" in formats
    if trial is not None and pick is not None:
        raise ConfigError("--trial/--pick", "give one of them, not both")
    if pick is not None and not pick.strip():
        raise ConfigError("--pick", 'is empty; give a bound such as "latency_ms<=4000"')
    weights = None
    if source.is_dir():
        desc, weights, metrics = load_evolve_output(source)
        provenance = {"evolve": str(source)}
    elif source.suffix in (".yaml", ".yml") and _is_study(source):
        from archlab.arch.reading import description_from_dict
        from archlab.search.runner import load_existing
        from archlab.search.study import load_study

        quiet_optuna()
        cfg = load_study(source)
        chosen = pick_trial(load_existing(cfg, storage), cfg, trial=trial, pick=pick)
        desc = description_from_dict(chosen.user_attrs["description"]).replace(name=f"{cfg.name}-trial{chosen.number}")
        metrics = (chosen.user_attrs.get("proxy") or {}).get("metrics", {})
        provenance = {"study": cfg.name, "trial": chosen.number}
    else:
        from archlab.arch.presets import resolve

        desc, metrics, provenance = resolve(str(source)), {}, {"description": str(source)}
    card = export_architecture(desc, out, provenance=provenance, metrics=metrics, weights=weights,
                               from_diffusers=from_diffusers, onnx=onnx or "onnx" in formats, tflite=tflite,
                               coreml=coreml, diffusers="diffusers" in formats)
    err_console.print(f"exported {desc.name} ({card['params'] / 1e6:.1f}M params, {card['gflops']:.1f} GFLOPs, "
                      f"weights: {card['weights']}) to {out}")
    if "onnx_max_abs_diff" in card:
        err_console.print(f"ONNX vs PyTorch max abs difference: {card['onnx_max_abs_diff']:.2e}")
    if as_json:
        print(json.dumps({"out": str(out), **provenance, "params": card["params"], "gflops": card["gflops"]}))


def _check_port(host: str, port: int) -> None:
    """Refuse a port that is taken (or an address that cannot be bound) before starting the server."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError("--port", f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None


def _is_study(path: Path) -> bool:
    from archlab.config import read_yaml

    data = read_yaml(path)
    return isinstance(data, dict) and "objectives" in data
