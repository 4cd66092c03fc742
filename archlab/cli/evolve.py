"""``archlab evolve``: SnapFusion's evolving search from a file."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from archlab.cli.common import err_console, user_errors


@user_errors
def evolve_cmd(
    config: Path = typer.Argument(..., help="An evolve file: table, latency_target_ms, evolve (start, metric, ...), quality, out."),
    out: Optional[Path] = typer.Option(None, help="Output folder (overrides the file's `out`)."),
    seed: Optional[int] = typer.Option(None, help="Training seed (overrides quality.train.seed): rerun to see if the actions hold."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (overrides quality.train.threads): 1 to run two searches side by side on 2 cores."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Robust training, then remove (or copy) blocks by Delta-quality / Delta-latency until the target holds.

    The same search runs as a study with `sampler: {kind: evolve}`; both read EvolveConfig.
    """
    from archlab.cost.table import LatencyTable
    from archlab.search.evolve import evolve, load_evolve_file

    cfg = load_evolve_file(config)
    quality = cfg.quality
    overrides = {k: v for k, v in (("seed", seed), ("threads", threads)) if v is not None}
    if overrides:
        quality = dataclasses.replace(quality, train=dataclasses.replace(quality.train, **overrides))
    target = out or Path(cfg.out)
    result = evolve(cfg.evolve, quality=quality, table=LatencyTable.load(cfg.table), target_ms=cfg.latency_target_ms,
                    out=target, progress=progress, log=lambda m: err_console.print(m))
    met = "met" if result.target_met else "NOT met"
    err_console.print(f"result: {target / 'result.yaml'} ({result.latency_ms:.1f} ms, target {met}); "
                      f"log: {target / 'actions.csv'}, {target / 'log.json'}; export it with `archlab export {target} --out DIR`")
