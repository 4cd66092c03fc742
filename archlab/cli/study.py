"""``archlab study run | pareto | trials``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from archlab.cli.common import STORAGE_HELP, err_console, finite, out_console, quiet_optuna, user_errors
from archlab.errors import ConfigError
from archlab.files import check_output_file, check_output_folder, write_text

study_app = typer.Typer(no_args_is_help=True, help="Architecture searches as Optuna studies.")


@study_app.command("run")
@user_errors
def run_cmd(
    study: Path = typer.Argument(..., help="A study file (studies/*.yaml)."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    n_trials: Optional[int] = typer.Option(None, help="Run this many more complete trials (as Optuna's n_trials)."),
    until: Optional[int] = typer.Option(None, help="Run until the study holds this many complete trials (default: the file's budget.trials)."),
    timeout: Optional[float] = typer.Option(None, callback=finite, help="Stop starting trials after this many seconds (default: the file's budget.timeout_s)."),
    enqueue: Optional[List[str]] = typer.Option(None, "--enqueue", help="A preset or description file to evaluate first (repeatable; must be a member of the space)."),
    workers: int = typer.Option(1, help="Worker processes on this machine, all on the same storage."),
    grpc: bool = typer.Option(False, "--grpc", help="Workers reach the storage through a gRPC storage proxy this command runs "
                                                    "(for many workers on PostgreSQL); a dead worker's trials are queued again."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Run (or resume) a study until it holds its budget of complete trials (or --n-trials more, or --until N)."""
    from archlab.results.pareto import failures, pareto
    from archlab.search.runner import completed, run_study
    from archlab.search.study import load_study

    quiet_optuna()
    for flag, value in (("--n-trials", n_trials), ("--until", until)):
        if value is not None and value < 1:
            raise ConfigError(flag, f"{value} must be at least 1")
    if n_trials is not None and until is not None:
        raise ConfigError("--n-trials/--until", "give one of them, not both")
    if timeout is not None and timeout <= 0:
        raise ConfigError("--timeout", f"{timeout} must be a positive number of seconds")
    if workers < 1:
        raise ConfigError("--workers", f"{workers} must be at least 1")
    cfg = load_study(study)
    check_output_folder(cfg.out_dir)
    result = run_study(cfg, url=storage, n_trials=n_trials, until=until, timeout=timeout, workers=workers,
                       enqueue=tuple(enqueue or ()), grpc=grpc, progress=progress)
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
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout (nothing else goes there)."),
) -> None:
    """The Pareto front (feasible trials) with standard errors, its hypervolume, and which members noise cannot tell apart."""
    from archlab.results.pareto import front_rows, noise_note, pareto, racing_spend, spend_line
    from archlab.search.runner import load_existing
    from archlab.search.study import load_study

    quiet_optuna()
    cfg = load_study(study)
    loaded = load_existing(cfg, storage)
    front, hv, ref = pareto(loaded, cfg)
    names = [o.name for o in cfg.objectives]
    rows = front_rows(front, cfg)
    spend = racing_spend(loaded, cfg)
    if as_json:
        print(json.dumps({"study": cfg.name, "objectives": names, "directions": [o.direction for o in cfg.objectives],
                          "hypervolume": hv, "reference_point": ref, "front": rows,
                          "seed_noise_counted": cfg.quality.train.seeds > 1 or (cfg.racing is not None and (
                              cfg.racing.max_seeds > 1 or cfg.racing.seed_sd is not None)),
                          **({"racing": spend} if spend else {})}, indent=2))
        return
    raced = any("seeds" in r for r in rows)
    table = Table("trial", *names, *(["seeds"] if raced else []), "not distinguishable from", "architecture",
                  title=f"{cfg.name}: Pareto front")
    for r in rows:
        cells = [f"{r[n]:.4g}" + (f" ± {r[n + '_se']:.2g}" if r.get(n + "_se") else "") for n in names]
        table.add_row(str(r["trial"]), *cells, *([str(r.get("seeds", 1))] if raced else []),
                      ", ".join(map(str, r["not_distinguishable_from"])) or "-", r["summary"])
    out_console.print(table)
    out_console.print(f"hypervolume {hv:.4g} against reference point {dict(zip(names, [round(x, 4) for x in ref]))}")
    if cfg.needs_proxy:
        out_console.print(noise_note(cfg))
    if spend:
        out_console.print(spend_line(spend))


@study_app.command("trials")
@user_errors
def trials_cmd(
    study: Path = typer.Argument(..., help="The study file."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    csv: Optional[Path] = typer.Option(None, help="Write every trial here as CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print every trial as JSON records on stdout."),
) -> None:
    """Export every trial (objectives, metrics with standard errors, choices, feasibility, errors) as CSV."""
    from archlab.results.pareto import trials_frame
    from archlab.search.runner import load_existing
    from archlab.search.study import load_study

    quiet_optuna()
    if csv is None and not as_json:
        raise ConfigError("--csv", "give --csv FILE or --json")
    if csv is not None:
        check_output_file(csv)
    cfg = load_study(study)
    frame = trials_frame(load_existing(cfg, storage))
    if csv is not None:
        write_text(csv, frame.to_csv(index=False))
        err_console.print(f"{len(frame)} trials -> {csv}")
    if as_json:
        print(frame.to_json(orient="records", indent=2))


@study_app.command("list")
@user_errors
def list_cmd(
    study: Optional[Path] = typer.Argument(None, help="A study file: list the studies in its storage."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP + " Without a study file, this URL."),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout."),
) -> None:
    """The studies a storage holds, with their trial counts and objective names."""
    import optuna

    from archlab.search.runner import storage_for
    from archlab.search.study import load_study

    quiet_optuna()
    if study is None and storage is None:
        raise ConfigError("study", "give a study file or --storage URL")
    if study is not None:
        storage_obj = storage_for(load_study(study), storage, create=False)
    else:
        storage_obj = _storage_url(storage)
    rows = []
    for summary in optuna.get_all_study_summaries(storage_obj, include_best_trial=False):
        names = optuna.load_study(study_name=summary.study_name, storage=storage_obj).metric_names
        rows.append({"study": summary.study_name, "trials": summary.n_trials,
                     "objectives": list(names or []) or [d.name.lower() for d in summary.directions],
                     "started": summary.datetime_start.isoformat(timespec="seconds") if summary.datetime_start else None})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("study", "trials", "objectives", "started")
    for r in rows:
        table.add_row(r["study"], str(r["trials"]), ", ".join(r["objectives"]), r["started"] or "-")
    out_console.print(table)


@study_app.command("delete")
@user_errors
def delete_cmd(
    study: Path = typer.Argument(..., help="The study file whose study to delete."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    yes: bool = typer.Option(False, "--yes", help="Delete without asking."),
) -> None:
    """Delete a study (every trial) from its storage; asks first unless --yes."""
    import optuna

    from archlab.search.runner import load_existing, storage_for
    from archlab.search.study import load_study

    quiet_optuna()
    cfg = load_study(study)
    existing = load_existing(cfg, storage)
    n = len(existing.trials)
    if not yes and not typer.confirm(f"delete study {cfg.name!r} and its {n} trials?", err=True):
        raise typer.Exit(1)
    optuna.delete_study(study_name=cfg.name, storage=storage_for(cfg, storage, create=False))
    err_console.print(f"deleted study {cfg.name} ({n} trials)")


def _storage_url(url: str):
    import optuna

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise ConfigError("--storage", f"{url[len('sqlite:///'):]} does not exist")
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy/driver errors: a bad URL or an unreachable server
        raise ConfigError("--storage", f"cannot open {url.split('@')[-1]}: {str(exc).splitlines()[0]}") from None


@study_app.command("serve")
@user_errors
def serve_cmd(
    study: Path = typer.Argument(..., help="The study file whose storage to serve."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; 127.0.0.1 unless workers on other machines need it."),
    port: int = typer.Option(13000, help="Port to listen on."),
) -> None:
    """Run a gRPC storage proxy for the study's storage; workers elsewhere run with --storage grpc://HOST:PORT."""
    from archlab.search.grpc_workers import serve
    from archlab.search.runner import storage_for
    from archlab.search.study import load_study

    quiet_optuna()
    cfg = load_study(study)
    url = storage or cfg.storage_url
    err_console.print(f"gRPC storage proxy for {url.split('@')[-1]} on {host}:{port} (Ctrl-C stops it)")
    serve(storage_for(cfg, url), host, port)
