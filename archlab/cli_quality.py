"""``archlab proxy train`` and ``archlab evolve``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from archlab.arch.presets import resolve
from archlab.cli_common import err_console, user_errors
from archlab.quality.proxy import ProxyConfig
from archlab.quality.train import TrainConfig

proxy_app = typer.Typer(no_args_is_help=True, help="Short proxy training to judge a candidate's quality.")
console = err_console


@proxy_app.command("train")
@user_errors
def train_cmd(
    architecture: str = typer.Argument(..., help="A preset or description file (full size; the proxy rule shrinks it)."),
    data: str = typer.Option("synthetic", help="synthetic, folder or parquet."),
    data_path: Optional[str] = typer.Option(None, help="The image folder or Parquet file for real data."),
    steps: int = typer.Option(TrainConfig.steps, help="Training steps (250: about 1.5 minutes for a MobileDiffusion-sized proxy on 2 cores)."),
    time_budget: Optional[float] = typer.Option(None, help="Stop after this many seconds even if steps remain."),
    batch: int = typer.Option(TrainConfig.batch),
    width: float = typer.Option(ProxyConfig.width, help="Channel multiplier of the proxy."),
    resolution: int = typer.Option(ProxyConfig.resolution, help="Proxy input side."),
    prediction: str = typer.Option(TrainConfig.prediction, help="v or eps."),
    seed: int = typer.Option(0),
    out: Optional[Path] = typer.Option(None, help="Folder for checkpoints; an existing checkpoint is resumed."),
    shuffle_captions: bool = typer.Option(False, help="Train on captions shuffled across images (a control run)."),
    eval_samples: int = typer.Option(64, help="Captions sampled for the evaluator score."),
    as_json: bool = typer.Option(False, "--json"),
    progress: bool = typer.Option(True),
) -> None:
    """Train the candidate's proxy for a few hundred steps and print its quality metrics."""
    from archlab.quality.data import open_data
    from archlab.quality.metrics import EvalConfig, evaluate_proxy
    from archlab.quality.proxy import proxy_description
    from archlab.quality.train import train_proxy

    desc = resolve(architecture)
    cfg = TrainConfig(steps=steps, time_budget_s=time_budget, batch=batch, prediction=prediction, seed=seed)
    proxy = proxy_description(desc, ProxyConfig(width=width, resolution=resolution))
    dataset = open_data(data, resolution=resolution, path=data_path, seed=seed)
    if shuffle_captions:
        from archlab.quality.data import ShuffledCaptions

        dataset = ShuffledCaptions(dataset, seed=seed)
    model, result = train_proxy(proxy, dataset, cfg, out_dir=out, progress=progress)
    metrics = evaluate_proxy(model, open_data(data, resolution=resolution, path=data_path, seed=seed),
                             schedule=cfg.schedule, prediction=prediction, cfg=EvalConfig(samples=eval_samples))
    report = {"architecture": desc.name, "proxy_channels": list(proxy.channels), "proxy_params": sum(p.numel() for p in model.unet.parameters()),
              "steps": result.steps, "seconds": round(result.seconds, 2), "steps_per_s": round(result.steps_per_s, 3),
              "peak_memory_mb": round(result.peak_memory_mb, 1), "final_train_loss": result.final_loss,
              **{k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}}
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k:>18}: {v}")


@user_errors
def evolve_cmd(
    config: Path = typer.Argument(..., help="An evolve config (YAML): start, table, latency_target_ms, proxy, train, ..."),
    from_diffusers: Optional[Path] = typer.Option(None, help="Start from this local diffusers UNet folder's architecture."),
    out: Optional[Path] = typer.Option(None, help="Output folder (overrides the config's `out`)."),
    progress: bool = typer.Option(True),
) -> None:
    """SnapFusion's evolving search: robust training, then remove (or copy) blocks by Delta-quality / Delta-latency."""
    import dataclasses

    from archlab.search.evolve import Evolution, load_evolve_config

    cfg = load_evolve_config(config)
    if out is not None:
        cfg = dataclasses.replace(cfg, out=str(out))
    start = None
    if from_diffusers is not None:
        from archlab.arch.diffusers_import import description_from_diffusers_config

        cfg_file = from_diffusers / "config.json"
        if not cfg_file.is_file():
            from archlab.errors import ConfigError

            raise ConfigError(str(from_diffusers), "has no config.json")
        start = description_from_diffusers_config(json.loads(cfg_file.read_text()), name=from_diffusers.name)
    evo = Evolution(cfg, progress=progress, log=lambda m: console.print(m), start=start)
    result = evo.run()
    console.print(f"result: {Path(cfg.out) / 'result.yaml'} ({evo.latency(result):.1f} ms); log: {Path(cfg.out) / 'actions.csv'}")
