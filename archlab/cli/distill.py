"""``archlab distill`` and ``archlab gan-finetune``: from a chosen architecture to a few-step model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from archlab.cli.common import err_console, user_errors


def _summary(report: dict) -> str:
    rows = []
    for key, metrics in report.items():
        if isinstance(metrics, dict) and "_at_" in key:
            shown = ", ".join(f"{m} {v['value']:.4g} ± {v['se']:.2g}" for m, v in metrics.items() if not m.startswith("eval_") or m == "eval_score")
            rows.append(f"{key}: {shown}")
    return "\n".join(rows)


@user_errors
def distill_cmd(
    config: Path = typer.Argument(..., help="A distill file (teacher, quality, distill, out); an export's handoff.yaml is one."),
    out: Optional[Path] = typer.Option(None, help="Output folder (overrides the file's `out`); an existing checkpoint is resumed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """SnapFusion's CFG-aware step distillation: a student that samples in `student_steps` DDIM steps."""
    from archlab.distill import load_distill_file, run_distill

    report = run_distill(load_distill_file(config), out=out, progress=progress, log=lambda m: err_console.print(m))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(_summary(report))


@user_errors
def gan_finetune_cmd(
    config: Path = typer.Argument(..., help="A distill file (teacher, quality, gan, out); an export's handoff.yaml is one."),
    init: str = typer.Option("teacher", help="Start from the teacher (as MobileDiffusion), the distilled student, or a model file."),
    out: Optional[Path] = typer.Option(None, help="Output folder (overrides the file's `out`); an existing checkpoint is resumed."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """One-step diffusion-GAN finetuning (UFOGen line): generator and discriminator both from the diffusion UNet."""
    from archlab.distill import load_distill_file, run_gan

    report = run_gan(load_distill_file(config), init=init, out=out, progress=progress, log=lambda m: err_console.print(m))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        print(_summary(report))
