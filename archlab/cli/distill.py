"""``archlab distill``, ``archlab gan-finetune`` and ``archlab sample``: from a chosen architecture to a few-step
model, and what a model generates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from archlab.cli.common import err_console, finite, user_errors
from archlab.errors import ConfigError


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


@user_errors
def sample_cmd(
    model: Path = typer.Argument(..., help="A trained model: `proxy train --out DIR`'s DIR/model.safetensors, an evolve "
                                           "model, a distilled student or a one-step generator (or their folder)."),
    caption: Optional[List[str]] = typer.Option(None, "--caption", help="A caption to sample (repeatable)."),
    captions: Optional[Path] = typer.Option(None, "--captions", help="A text file of captions, one per line."),
    out: Path = typer.Option(Path("samples.png"), help="The grid to write (PNG)."),
    steps: Optional[int] = typer.Option(None, help="DDIM steps (default: the steps a student or one-step generator was made for, else the evaluation's)."),
    guidance: Optional[float] = typer.Option(None, callback=finite, help="Classifier-free guidance scale (default: the evaluation setting)."),
    seed: int = typer.Option(0, help="Seed of the sampling noise."),
    config: Optional[Path] = typer.Option(None, help="A quality file, for a model that does not record its settings."),
) -> None:
    """Write a grid of what a model generates for some captions, each caption under its image."""
    from archlab.config import read, read_yaml
    from archlab.files import check_output_file
    from archlab.quality.config import QualityConfig
    from archlab.quality.pipeline import QualityPipeline
    from archlab.quality.train import read_trained
    from archlab.quality.samples import generate, grid, read_captions, save_png

    check_output_file(out)
    texts = read_captions(caption or [], captions)
    if steps is not None and steps < 1:
        raise ConfigError("--steps", f"{steps} must be at least 1")
    trained = read_trained(model)
    if config is not None:
        data = read_yaml(config)
        quality = read(QualityConfig, data.get("quality", data) if isinstance(data, dict) else data, "quality")
    elif trained.quality is not None:
        quality = read(QualityConfig, trained.quality, "quality")
    else:
        raise ConfigError(str(model), "does not record the quality settings it was trained under; pass --config")
    pipe = QualityPipeline(quality)
    net = pipe.load_trained(model)
    if steps is None and trained.metadata.get("sampling_steps"):  # a student or one-step generator says its steps
        steps = int(trained.metadata["sampling_steps"])
    pixels = generate(pipe, net, texts, steps=steps, guidance=guidance, seed=seed)
    save_png(grid(pixels, texts), out)
    err_console.print(f"{len(texts)} samples of {net.description.name} -> {out}")
