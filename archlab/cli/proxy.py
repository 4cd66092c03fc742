"""``archlab proxy train``: judge one candidate's quality the way studies and evolve do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from archlab.cli.common import finite, user_errors
from archlab.config import read, read_yaml
from archlab.files import check_output_folder
from archlab.quality.config import QualityConfig

proxy_app = typer.Typer(no_args_is_help=True, help="Short proxy training to judge a candidate's quality.")


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section (None: not given)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict):
            merged = merge(out.get(key) or {}, value)
            if merged:
                out[key] = merged
        elif value is not None:
            out[key] = value
    return out


# the flag that sets each quality field, so that a refused value names what the user typed
FLAGS = {"data.kind": "--data", "data.path": "--data-path", "data.heldout": "--data-heldout", "data.vae": "--vae",
         "text.encoder": "--text-encoder", "text.checkpoint": "--clip-checkpoint", "proxy.width": "--width",
         "proxy.resolution": "--resolution", "train.steps": "--steps", "train.batch": "--batch",
         "train.prediction": "--prediction", "train.seed": "--seed", "eval.heldout": "--eval-heldout",
         "eval.samples": "--eval-samples", "eval.metrics": "--metric", "device": "--device"}


def quality_from_cli(config: Optional[Path], overrides: dict[str, Any]) -> QualityConfig:
    """A quality file (or the defaults) with command-line flags over it, read and checked like any file; a value a
    flag gave is refused under the flag's name."""
    from archlab.errors import ConfigError

    base = read_yaml(config) if config is not None else {}
    if not isinstance(base, dict):
        raise ConfigError(str(config), "must be a mapping of quality sections (data, text, proxy, train, eval)")
    base = base.get("quality", base)  # a study or evolve file works too: its quality section
    try:
        return read(QualityConfig, merge(base, overrides), "quality", base=config.resolve().parent if config else Path.cwd())
    except ConfigError as exc:
        given = {f"{section}.{k}" if isinstance(v, dict) else section for section, v in overrides.items()
                 for k in (v if isinstance(v, dict) else [None]) if (v.get(k) if isinstance(v, dict) else v) is not None}
        field = exc.field.removeprefix("quality.").split("[")[0]
        if field in given and field in FLAGS:
            raise ConfigError(FLAGS[field], exc.message) from None
        raise


@proxy_app.command("train")
@user_errors
def train_cmd(
    architecture: str = typer.Argument(..., help="A preset or description file (full size; the proxy rule shrinks it)."),
    config: Optional[Path] = typer.Option(None, help="A quality file (sections data, text, proxy, train, eval), or a study/evolve file."),
    data: Optional[str] = typer.Option(None, help="synthetic (default), folder or parquet."),
    data_path: Optional[str] = typer.Option(None, help="The image folder or Parquet file for real data."),
    heldout: Optional[int] = typer.Option(None, "--data-heldout", "--heldout", help="Items kept out of training for the held-out metrics (data.heldout)."),
    vae: Optional[str] = typer.Option(None, help="A local diffusers AutoencoderKL folder: train on its latents."),
    text_encoder: Optional[str] = typer.Option(None, help="small (trained with the UNet) or openclip (frozen, --clip-checkpoint)."),
    clip_checkpoint: Optional[str] = typer.Option(None, help="A local OpenCLIP checkpoint for the openclip text encoder."),
    steps: Optional[int] = typer.Option(None, help="Training steps (default: the quality defaults, docs/quality.md)."),
    batch: Optional[int] = typer.Option(None, help="Images per training step (default: the quality defaults)."),
    width: Optional[float] = typer.Option(None, callback=finite, help="Channel multiplier of the proxy."),
    resolution: Optional[int] = typer.Option(None, help="Proxy input side."),
    prediction: Optional[str] = typer.Option(None, help="v or eps."),
    seed: Optional[int] = typer.Option(None, help="Training seed (batches, noise, initial weights)."),
    device: Optional[str] = typer.Option(None, help="auto (CUDA when present), cpu or cuda."),
    eval_heldout: Optional[int] = typer.Option(None, help="Held-out images for heldout_loss and text_gap."),
    eval_samples: Optional[int] = typer.Option(None, help="Captions sampled for eval_score / fd / clip_score."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="Measure only these (repeatable); default: all that apply."),
    out: Optional[Path] = typer.Option(None, help="Folder for checkpoints; an existing checkpoint is resumed."),
    shuffle_captions: bool = typer.Option(False, help="Train on captions shuffled across images (a control run)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Train the candidate's proxy and print its quality metrics, each with its standard error."""
    from archlab.arch.presets import resolve
    from archlab.quality.data import ShuffledCaptions
    from archlab.quality.pipeline import QualityPipeline

    cfg = quality_from_cli(config, {
        "data": {"kind": data, "path": data_path, "heldout": heldout, "vae": vae},
        "text": {"encoder": text_encoder, "checkpoint": clip_checkpoint},
        "proxy": {"width": width, "resolution": resolution},
        "train": {"steps": steps, "batch": batch, "prediction": prediction, "seed": seed},
        "eval": {"heldout": eval_heldout, "samples": eval_samples, "metrics": metric or None},
        "device": device,
    })
    desc = resolve(architecture)
    if out is not None:
        check_output_folder(out)  # before the training, not after it
    space = None
    if cfg.amortised.kind == "supernet":
        from archlab.search.space import load_space

        space = load_space(cfg.amortised.space or "mobilediffusion")
    pipe = QualityPipeline(cfg, space=space, amortised_dir=None if out is None else out / "amortised")
    control = ShuffledCaptions(pipe.data(pipe.input_side(desc)).train, seed=cfg.train.seed) if shuffle_captions else None
    judged = pipe.judge(desc, out_dir=out, progress=progress, train_data=control, keep_model=True)
    model = judged.model
    report = {"architecture": desc.name, "device": pipe.device, "proxy_params": sum(p.numel() for p in model.unet.parameters()),
              **judged.report()}
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for k, v in report.items():
        if k != "metrics":
            print(f"{k:>18}: {v}")
    for name, e in judged.metrics.items():
        print(f"{name:>18}: {e.value:.4f} ± {e.se:.4f} (n={e.n})")
