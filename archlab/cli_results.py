"""``archlab report``, ``archlab dashboard`` and ``archlab export``: looking at and handing on results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from archlab.cli_common import err_console, user_errors

console = err_console


@user_errors
def report_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    out: Path = typer.Option(Path("report.html"), help="The HTML file to write (self-contained, opens offline)."),
    storage: Optional[str] = typer.Option(None),
) -> None:
    """One self-contained HTML report: Pareto front, per-block latency of the front, history."""
    from archlab.report import write_report
    from archlab.search.runner import open_study
    from archlab.search.study import load_study

    cfg = load_study(study)
    path = write_report(open_study(cfg, storage), cfg, out)
    console.print(f"report: {path}")


@user_errors
def dashboard_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    storage: Optional[str] = typer.Option(None),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 unless you mean to share it."),
    port: int = typer.Option(8080),
) -> None:
    """Browse the study in optuna-dashboard (trials, Pareto front, each trial's architecture)."""
    from archlab.search.study import load_study

    try:
        from optuna_dashboard import run_server
    except ImportError:
        from archlab.errors import ConfigError

        raise ConfigError("dashboard", "optuna-dashboard is not installed (pip install optuna-dashboard)") from None
    cfg = load_study(study)
    url = storage or cfg.storage_url
    console.print(f"optuna-dashboard for {cfg.name} on http://{host}:{port} (storage {url.split('@')[-1]})")
    run_server(url, host=host, port=port)


@user_errors
def export_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    out: Path = typer.Option(..., help="Folder to write into."),
    trial: Optional[int] = typer.Option(None, help="Export this trial."),
    pick: Optional[str] = typer.Option(None, help='Or the best feasible trial meeting a bound, e.g. "latency_ms<=250".'),
    from_diffusers: Optional[Path] = typer.Option(None, help="Inherit weights block by block from this local diffusers UNet."),
    tflite: bool = typer.Option(False, help="Also write a LiteRT .tflite (litert-torch)."),
    coreml: bool = typer.Option(False, help="Also write a Core ML .mlpackage (coremltools)."),
    storage: Optional[str] = typer.Option(None),
) -> None:
    """Export a trial's architecture: description, weights, ONNX (checked), model card, hand-off."""
    from archlab.arch.description import description_from_dict
    from archlab.export import export_architecture, pick_trial
    from archlab.search.runner import open_study
    from archlab.search.study import load_study

    cfg = load_study(study)
    chosen = pick_trial(open_study(cfg, storage), cfg, trial=trial, pick=pick)
    desc = description_from_dict(chosen.user_attrs["description"]).replace(name=f"{cfg.name}-trial{chosen.number}")
    metrics = chosen.user_attrs.get("proxy.metrics", {})
    card = export_architecture(desc, out, study=cfg.name, trial=chosen.number, metrics=metrics,
                               from_diffusers=from_diffusers, tflite=tflite, coreml=coreml)
    console.print(f"exported trial {chosen.number} ({card['params'] / 1e6:.1f}M params, {card['gflops']:.1f} GFLOPs) to {out}")
    if "onnx_max_abs_diff" in card:
        console.print(f"ONNX vs PyTorch max abs difference: {card['onnx_max_abs_diff']:.2e}")
    print(json.dumps({"out": str(out), "trial": chosen.number}))
