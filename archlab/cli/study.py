"""``archlab study run | pareto | trials``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from archlab.cli.common import err_console, out_console, quiet_optuna, user_errors
from archlab.errors import ConfigError
from archlab.files import check_output_file, check_output_folder, write_text

study_app = typer.Typer(no_args_is_help=True, help="Architecture searches as Optuna studies.")


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
    from archlab.results.pareto import failures, pareto
    from archlab.search.runner import completed, run_study
    from archlab.search.study import load_study

    quiet_optuna()
    if n_trials is not None and n_trials < 1:
        raise ConfigError("--n-trials", f"{n_trials} must be at least 1")
    if workers < 1:
        raise ConfigError("--workers", f"{workers} must be at least 1")
    cfg = load_study(study)
    check_output_folder(cfg.out_dir)
    result = run_study(cfg, url=storage, n_trials=n_trials, workers=workers, progress=progress)
    front, hv, _ = pareto(result, cfg)
    err_console.print(f"{cfg.name}: {completed(result)} complete trials, Pareto front of {len(front)}, hypervolume {hv:.4g}; "
                      f"storage {(storage or cfg.storage_url).split('@')[-1]}")
    n_failed, errors = failures(result)
    if n_failed:
        err_console.print(f"{n_failed} trial(s) failed (marked infeasible in every output):", highlight=False)
        for line, n in errors[:5]:
            err_console.print(f"  {n} x {line}", highlight=False, markup=False)
    if not completed(result):
        raise ConfigError("study", "no trial completed; the errors above say why")


@study_app.command("pareto")
@user_errors
def pareto_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    storage: Optional[str] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The Pareto front (feasible trials) with standard errors, its hypervolume, and which members noise cannot tell apart."""
    from archlab.results.pareto import front_rows, noise_note, pareto
    from archlab.search.runner import load_existing
    from archlab.search.study import load_study

    quiet_optuna()
    cfg = load_study(study)
    front, hv, ref = pareto(load_existing(cfg, storage), cfg)
    names = [o.name for o in cfg.objectives]
    rows = front_rows(front, cfg)
    if as_json:
        print(json.dumps({"study": cfg.name, "objectives": names, "directions": [o.direction for o in cfg.objectives],
                          "hypervolume": hv, "reference_point": ref, "front": rows,
                          "seed_noise_counted": cfg.quality.train.seeds > 1}, indent=2))
        return
    table = Table("trial", *names, "not distinguishable from", "architecture", title=f"{cfg.name}: Pareto front")
    for r in rows:
        cells = [f"{r[n]:.4g}" + (f" ± {r[n + '_se']:.2g}" if r.get(n + "_se") else "") for n in names]
        table.add_row(str(r["trial"]), *cells, ", ".join(map(str, r["not_distinguishable_from"])) or "-", r["summary"])
    out_console.print(table)
    out_console.print(f"hypervolume {hv:.4g} against reference point {dict(zip(names, [round(x, 4) for x in ref]))}")
    if cfg.needs_proxy:
        out_console.print(noise_note(cfg))


@study_app.command("trials")
@user_errors
def trials_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    storage: Optional[str] = typer.Option(None),
    csv: Path = typer.Option(..., help="Write every trial here as CSV."),
) -> None:
    """Export every trial (objectives, metrics with standard errors, choices, feasibility, errors) as CSV."""
    from archlab.results.pareto import trials_frame
    from archlab.search.runner import load_existing
    from archlab.search.study import load_study

    quiet_optuna()
    check_output_file(csv)
    cfg = load_study(study)
    frame = trials_frame(load_existing(cfg, storage))
    write_text(csv, frame.to_csv(index=False))
    err_console.print(f"{len(frame)} trials -> {csv}")
