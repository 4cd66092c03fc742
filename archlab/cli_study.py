"""``archlab study run | pareto | trials``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from archlab.cli_common import err_console, user_errors

study_app = typer.Typer(no_args_is_help=True, help="Architecture searches as Optuna studies.")
console = err_console


@study_app.command("run")
@user_errors
def run_cmd(
    study: Path = typer.Argument(..., help="A study file (studies/*.yaml)."),
    storage: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: SQLite beside the outputs; postgresql://... for many machines)."),
    n_trials: Optional[int] = typer.Option(None, help="Complete trials to reach (default: the file's budget)."),
    workers: int = typer.Option(1, help="Worker processes on this machine, all on the same storage."),
    progress: bool = typer.Option(True),
) -> None:
    """Run (or resume) a study until it holds its budget of complete trials."""
    from archlab.search.runner import completed, pareto, run_study
    from archlab.search.study import load_study

    cfg = load_study(study)
    result = run_study(cfg, url=storage, n_trials=n_trials, workers=workers, progress=progress)
    front, hv, _ = pareto(result, cfg)
    console.print(f"{cfg.name}: {completed(result)} complete trials, Pareto front of {len(front)}, hypervolume {hv:.4g}; "
                  f"storage {storage or cfg.storage_url}")


@study_app.command("pareto")
@user_errors
def pareto_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    storage: Optional[str] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The Pareto front (feasible trials), its hypervolume and the reference point."""
    from archlab.search.runner import open_study, pareto
    from archlab.search.study import load_study

    cfg = load_study(study)
    front, hv, ref = pareto(open_study(cfg, storage), cfg)
    names = [o.name for o in cfg.objectives]
    if as_json:
        print(json.dumps({"study": cfg.name, "objectives": names, "directions": [o.direction for o in cfg.objectives],
                          "hypervolume": hv, "reference_point": ref,
                          "front": [{"trial": t.number, **dict(zip(names, t.values)), "summary": t.user_attrs.get("summary", "")}
                                    for t in front]}, indent=2))
        return
    table = Table("trial", *names, "architecture", title=f"{cfg.name}: Pareto front")
    for t in front:
        table.add_row(str(t.number), *[f"{v:.4g}" for v in t.values], t.user_attrs.get("summary", ""))
    Console().print(table)
    Console().print(f"hypervolume {hv:.4g} against reference point {dict(zip(names, [round(r, 4) for r in ref]))}")


@study_app.command("trials")
@user_errors
def trials_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    storage: Optional[str] = typer.Option(None),
    csv: Path = typer.Option(..., help="Write every trial here as CSV."),
) -> None:
    """Export every trial (objectives, metrics, choices, feasibility, errors) as CSV."""
    from archlab.search.runner import open_study, trials_frame
    from archlab.search.study import load_study

    cfg = load_study(study)
    frame = trials_frame(open_study(cfg, storage))
    frame.to_csv(csv, index=False)
    console.print(f"{len(frame)} trials -> {csv}")
