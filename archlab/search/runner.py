"""Running studies: the objective, workers, resumption.

Every trial stores what is needed to read it back without re-running anything: its
choices (Optuna's params), the description (user attribute ``description``), every metric
and its standard error (``metric.<name>``, ``metric.<name>_se``), per-block latency on each
table (``block_latency.<table>``) and the proxy's training figures. A trial that raises (out
of memory, a NaN loss, a conversion failure) is recorded as failed with its reason
(``error``) and the study goes on.

Storage: SQLite beside the study's outputs by default; any SQLAlchemy URL (PostgreSQL for
many machines). Heartbeats mark a trial whose worker died (SIGKILL) as failed after the
grace period, and ``RetryHeartbeatStaleTrialCallback`` queues it again, so rerunning the
study resumes it with nothing lost or repeated. Workers on one machine are processes
running :func:`run_worker`; workers on several machines run the same study on one storage.
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import Any

import optuna
import sqlalchemy.exc

from archlab.arch.description import Description
from archlab.arch.presets import resolve

from archlab.arch.editing import block_summary
from archlab.cost.predict import Predictor, latency_metric
from archlab.cost.table import LatencyTable
from archlab.errors import ConfigError
from archlab.quality.pipeline import QualityPipeline
from archlab.search.space import load_space
from archlab.quality import registry
from archlab.search.study import StudyConfig, constraint_values, table_label


CREATE_ATTEMPTS = 4  # tries when another process is creating the same new database
SAMPLE_CAPTIONS = 4  # samples kept per trial (an Optuna artifact): a few forward passes of a proxy


def artifact_store(cfg: StudyConfig) -> Any:
    """The study's artifact store: files under ``<out>/artifacts`` (optuna-dashboard and the report read them)."""
    from optuna.artifacts import FileSystemArtifactStore

    folder = os.path.join(cfg.out_dir, "artifacts")
    os.makedirs(folder, exist_ok=True)
    return FileSystemArtifactStore(folder)


def storage_for(cfg: StudyConfig, url: str | None = None, *, create: bool = True) -> optuna.storages.RDBStorage:
    """The study's storage. ``create=False`` (read-only commands) never creates a database file; ``grpc://HOST:PORT``
    is a gRPC storage proxy (:mod:`archlab.search.grpc_workers`)."""
    url = url or cfg.storage_url
    if url.startswith("grpc://"):
        from archlab.search.grpc_workers import proxy_storage

        return proxy_storage(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not create and not os.path.isfile(path):
            raise ConfigError("storage", f"{path} does not exist: no study has run there (run `archlab study run` first)")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    where = url.split("@")[-1]
    for attempt in range(CREATE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=cfg.heartbeat.interval, grace_period=cfg.heartbeat.grace,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2),
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else {"connect_args": {"timeout": 60}},
            )
        except sqlalchemy.exc.IntegrityError as exc:
            # two processes creating one new database (workers, or a reader polling it) race on
            # the schema's version row; the loser finds the schema made and opens it next time
            race = exc
            time.sleep(0.5 * (attempt + 1))
        except Exception as exc:  # SQLAlchemy/driver errors: a bad URL or an unreachable server
            raise ConfigError("storage", f"cannot open {where}: {str(exc).splitlines()[0]}") from None
    raise ConfigError("storage", f"cannot open {where}: {str(race).splitlines()[0]}")


def open_study(cfg: StudyConfig, url: str | None = None) -> optuna.Study:
    """The study, created if new (for running it), its objectives named (optuna-dashboard shows the names)."""
    from archlab.search.searches import search_for

    study = optuna.create_study(study_name=cfg.name, storage=storage_for(cfg, url), sampler=search_for(cfg.sampler.kind).sampler(cfg),
                                directions=[o.direction for o in cfg.objectives], load_if_exists=True)
    names = [o.name for o in cfg.objectives]
    if study.metric_names != names:
        study.set_metric_names(names)
    return study


def load_existing(cfg: StudyConfig, url: str | None = None) -> optuna.Study:
    """The study for reading: a missing database or study is one clear error, and nothing is created."""
    storage = storage_for(cfg, url, create=False)
    names = optuna.get_all_study_names(storage)
    if cfg.name not in names:
        where = (url or cfg.storage_url).split("@")[-1]
        raise ConfigError("study", f"no study {cfg.name!r} in {where}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=cfg.name, storage=storage)  # reading: no sampler proposes anything


class TrialEvaluator:
    """Scores one candidate: cheap metrics from the predictor, quality from the quality pipeline."""

    def __init__(self, cfg: StudyConfig):
        self.cfg = cfg
        self.space = load_space(cfg.space)
        self.tables = [LatencyTable.load(t) for t in cfg.tables()]
        labels = [t.label for t in self.tables]
        if len(set(labels)) != len(labels):
            raise ConfigError("objectives", f"two latency tables share a name ({', '.join(labels)}); rename one file")
        self.predictor = Predictor(self.tables)
        self._pipeline: QualityPipeline | None = None
        self.racer = None
        if cfg.racing is not None:
            from archlab.search.racing import Racer

            self.racer = Racer(cfg, self)

    @property
    def pipeline(self) -> QualityPipeline:
        if self._pipeline is None:
            a = self.cfg.quality.amortised
            space = load_space(a.space) if a.space else self.space
            self._pipeline = QualityPipeline(self.cfg.quality, amortised_dir=os.path.join(self.cfg.out_dir, "amortised"), space=space)
        return self._pipeline

    def cheap(self, desc: Description) -> tuple[dict[str, float], dict[str, Any]]:
        c = self.predictor.breakdown(desc)
        values: dict[str, float] = {"params": float(c.params), "gflops": c.gflops}
        attrs: dict[str, Any] = {}
        for table in self.tables:
            values[latency_metric(table.label)] = c.latency_ms[table.label]
            attrs[f"block_latency.{table.label}"] = [[b.site.name, round(b.ms[table.label], 3)] for b in c.blocks]
        return values, attrs

    def quality(self, desc: Description, seed: int, trial: Any = None, look: Any = None) -> tuple[dict[str, float], dict[str, Any]]:
        """The proxy's metrics; with ``trial``, a small grid of its samples kept as the trial's artifact; with ``look``
        (a FirstLook), its reading and whether it stopped the run (``first_look``, ``stopped``)."""
        judged = self.pipeline.judge(desc, metrics=self.cfg.quality_metrics, seed=seed, progress=False, keep_model=True,
                                     first_look=look)
        attrs: dict[str, Any] = {"proxy": judged.report()}
        if look is not None:
            attrs.update(first_look=judged.first_look.as_dict(), stopped=judged.stopped)
        if trial is not None and not judged.stopped:
            attrs["samples_artifact"] = self.keep_samples(trial, judged.model)
        return judged.flat(), attrs

    def keep_samples(self, trial: Any, model: Any) -> str:
        """Sample ``SAMPLE_CAPTIONS`` held-out captions (the same for every trial) and upload the grid as an Optuna
        artifact (a file store beside the study's outputs); its id. Costs a few forward passes of the proxy."""
        import tempfile

        from optuna.artifacts import upload_artifact

        from archlab.quality.samples import generate, grid, save_png

        side = model.description.resolution
        captions = [c for _, c in self.pipeline.data(side).items[:SAMPLE_CAPTIONS]]
        pixels = generate(self.pipeline, model, captions)
        with tempfile.TemporaryDirectory() as tmp:
            path = save_png(grid(pixels, captions), os.path.join(tmp, f"trial{trial.number}-samples.png"))
            return upload_artifact(artifact_store=artifact_store(self.cfg), file_path=str(path), study_or_trial=trial,
                                   mimetype="image/png")

    def __call__(self, trial: optuna.Trial) -> tuple[float, ...]:
        try:
            return self._evaluate(trial)
        except Exception as exc:  # recorded with the failed trial; the study goes on
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise

    def check_tables(self) -> None:
        """Refuse, before the first trial, a latency table that lacks blocks of the study's space."""
        from archlab.cost.keys import distinct_specs

        keys = distinct_specs(self.space.iter_stage_variants(), batch=1)
        for table in self.tables:
            batch, dtype = table.meta.batch, table.meta.dtype
            wanted = keys if (batch, dtype) == (1, "float32") else distinct_specs(self.space.iter_stage_variants(), batch=batch, dtype=dtype)
            missing = [k for k in wanted if k not in table]
            if missing:
                raise ConfigError(f"objectives: {table.reference}", f"lacks {len(missing)} of the {len(wanted)} blocks of the space "
                                  f"{self.space.name}; build a table for it (`archlab table build {self.space.name} ...`)")

    def _evaluate(self, trial: optuna.Trial) -> tuple[float, ...]:
        trial.set_user_attr("host", socket.gethostname())  # where, then which process runs it: a dead worker's
        trial.set_user_attr("worker", os.getpid())  # trials are queued again (recover, recover_orphans)
        choices, desc = self.space.suggest(trial)
        refines = trial.user_attrs.get("refines")  # a racing refinement: the same architecture, one more seed
        twin = None if refines is not None else next(
            (t for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                                       optuna.trial.TrialState.RUNNING,
                                                                       optuna.trial.TrialState.PRUNED))
             if t.number < trial.number and t.params == trial.params
             and (t.state != optuna.trial.TrialState.PRUNED or t.user_attrs.get("racing", {}).get("stopped"))), None)
        if twin is not None:  # never evaluate one architecture twice (workers, or a sampler proposing it again)
            trial.set_user_attr("duplicate_of", twin.number)
            raise optuna.TrialPruned(f"the same architecture as trial {twin.number}")
        trial.set_user_attr("description", desc.to_dict())
        values, attrs = self.cheap(desc)
        if self.cfg.needs_proxy:
            if any(v > 0 for v in self._cheap_constraints(values)):
                values.update({m: registry.get(m).worst for m in self.cfg.quality_metrics})
                attrs["quality_skipped"] = True
            elif self.racer is not None:  # seeds where the front is decided (archlab.search.racing)
                earlier = None
                if refines is not None:
                    before = trial.study.trials[refines].user_attrs
                    earlier = before["racing"]["per_seed"]
                    if "samples_artifact" in before:
                        attrs["samples_artifact"] = before["samples_artifact"]
                quality, qattrs = self.racer.race(trial, desc, values, earlier)
                values.update(quality)
                attrs.update(qattrs)
                if qattrs["racing"].get("stopped"):  # out of reach at its first look: pruned, its reading kept
                    record(trial, values, attrs, self.cfg, desc, constraints=False)
                    raise optuna.TrialPruned(f"stopped at the first look ({qattrs['racing']['first_look']['step']} steps)")
            else:  # every candidate trains with the same seed: the same batches, timesteps and noise
                quality, qattrs = self.quality(desc, seed=self.cfg.quality.train.seed, trial=trial)
                values.update(quality)
                attrs.update(qattrs)
        record(trial, values, attrs, self.cfg, desc)
        out = []
        for o in self.cfg.objectives:
            v = values[o.name]
            if math.isnan(v):
                raise FloatingPointError(f"{o.name} is NaN")
            out.append(v)
        return tuple(out)

    def _cheap_constraints(self, values: dict[str, float]) -> list[float]:
        """How far each constraint on a cheap metric is broken (> 0) or met (<= 0)."""
        out = []
        for c in self.cfg.constraints:
            if c.name not in values:
                continue
            v = values[c.name]
            out.append(max(v - c.max if c.max is not None else -math.inf, c.min - v if c.min is not None else -math.inf))
        return out


def record(trial: Any, values: dict[str, float], attrs: dict[str, Any], cfg: StudyConfig, desc: Description, *,
           constraints: bool = True) -> None:
    """Store a trial's metrics, attributes, constraints (unless told not to: a pruned trial) and summary."""
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    for k, v in values.items():
        trial.set_user_attr(f"metric.{k}", v)
    for name, value in (constraint_values(cfg, values) if constraints else {}).items():
        trial.set_constraint(name, value)  # Optuna's constraint support: feasible when <= 0
    trial.set_user_attr("summary", summary(desc))


def summary(desc: Description) -> str:
    """One line: widths, depth and where attention sits."""
    from archlab.cost.predict import count

    c = count(desc)
    stages = []
    for s in desc.stages:
        t = [block_summary(b) for b in s.blocks if b.kind == "transformer"]
        if t:
            stages.append(f"{s.name}:{len(t)}T")
    return (f"{'/'.join(map(str, desc.channels))} | {c.conv_blocks} conv, {c.self_attention} SA, {c.cross_attention} CA | "
            f"{c.params / 1e6:.0f}M, {c.gflops:.0f} GFLOPs | {' '.join(stages)}")


def completed(study: optuna.Study) -> int:
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))


def recover(study: optuna.Study, pid: int) -> list[int]:
    """Fail the running trials of a dead worker and queue their choices again; the numbers recovered."""
    storage = study._storage
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if t.user_attrs.get("worker") == pid:
            storage.set_trial_user_attr(t._trial_id, "error", f"worker {pid} died during the trial; queued again")
            storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            recovered.append(t.number)
    return recovered


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def recover_orphans(study: optuna.Study) -> list[int]:
    """Running trials whose worker on this machine is gone: a worker killed before its trial's first heartbeat
    leaves a trial that Optuna's stale-trial check never fails (it has no heartbeat to go stale)."""
    host = socket.gethostname()
    dead = {t.user_attrs["worker"] for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            if t.user_attrs.get("host") == host and isinstance(t.user_attrs.get("worker"), int)
            and t.user_attrs["worker"] != os.getpid() and not _alive(t.user_attrs["worker"])}
    return [n for pid in sorted(dead) for n in recover(study, pid)]


def stops_per_run(cfg: StudyConfig) -> int:
    """How many first-look stops cost one full proxy run (1 without a first look)."""
    look = cfg.racing.first_look if cfg.racing is not None else None
    return 1 if not look else math.ceil(cfg.quality.train.steps / look)


def run_worker(cfg: StudyConfig, *, url: str | None = None, until: int | None = None, timeout: float | None = None,
               progress: bool = True) -> optuna.Study:
    """Run trials in this process until the study holds ``until`` complete ones (default: the file's budget) or
    ``timeout`` seconds (default: the file's) have passed."""
    study = open_study(cfg, url)
    recover_orphans(study)
    target = until or cfg.budget.trials
    evaluator = TrialEvaluator(cfg)
    evaluator.check_tables()
    if cfg.needs_proxy and cfg.quality.amortised.kind != "none":
        evaluator.pipeline.prepare(progress=progress)  # once per study, kept under <out>/amortised; a second worker waits
    callbacks = []
    if target is not None:
        callbacks.append(optuna.study.MaxTrialsCallback(target, states=(optuna.trial.TrialState.COMPLETE,)))
    from archlab.progress import progress_bar

    with progress_bar(progress) as bar:
        task = bar.add_task(f"study {cfg.name}", total=target, completed=completed(study), current="")

        def update(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            try:
                front = len(study.best_trials)
            except ValueError:
                front = 0
            bar.update(task, completed=completed(study), current=f"front: {front} designs")

        callbacks.append(update)
        if target is None or completed(study) < target:
            # failed trials do not count towards the budget: allow some, bounded; so with a first look do the
            # candidates it stopped (each cost about first_look / steps of a full run)
            cap = None if target is None else (max(0, target - completed(study)) * 3 + 3) * stops_per_run(cfg)
            study.optimize(evaluator, n_trials=cap,
                           timeout=timeout or cfg.budget.timeout_s, catch=(Exception,), callbacks=callbacks, gc_after_trial=True)
        if evaluator.racer is not None and cfg.racing.refine:  # front members still tied: one more seed each, until none
            for _ in range(cfg.racing.max_seeds):
                queued = evaluator.racer.refinements(study)
                if not queued:
                    break
                study.optimize(evaluator, n_trials=len(queued), catch=(Exception,), gc_after_trial=True)
    return study


def run_study(cfg: StudyConfig, *, url: str | None = None, n_trials: int | None = None, until: int | None = None,
              timeout: float | None = None, workers: int = 1, enqueue: tuple[str, ...] = (), grpc: bool = False,
              progress: bool = True) -> optuna.Study:
    """Run (or resume) a study with the search its file names (:mod:`archlab.search.searches`).

    ``n_trials``: as Optuna means it, this many more complete trials; ``until``: until the study holds this
    many complete trials (default: the file's ``budget.trials``); ``timeout``: seconds (default: the file's);
    ``enqueue``: presets or description files evaluated first (each must be a member of the study's space);
    ``grpc``: the workers reach the storage through a gRPC storage proxy this process runs."""
    from archlab.search.searches import search_for

    if n_trials is not None or enqueue:
        study = open_study(cfg, url)
        if n_trials is not None:
            until = completed(study) + n_trials
        space = load_space(cfg.space)
        for name in enqueue:
            study.enqueue_trial(space.encode(resolve(name)), skip_if_exists=True)
    if grpc:
        if cfg.sampler.kind == "evolve":
            raise ConfigError("--grpc", "the evolving search runs in one process; --grpc serves sampled studies")
        from archlab.search.grpc_workers import run_grpc_workers

        return run_grpc_workers(cfg, url or cfg.storage_url, workers=workers, until=until, timeout=timeout)
    return search_for(cfg.sampler.kind).run(cfg, url=url, until=until, timeout=timeout, workers=workers, progress=progress)


def description_of(trial: optuna.trial.FrozenTrial) -> Description:
    from archlab.arch.reading import description_from_dict

    return description_from_dict(trial.user_attrs["description"])


__all__ = ["TrialEvaluator", "completed", "description_of", "load_existing", "open_study", "run_study",
           "run_worker", "storage_for", "summary", "table_label"]
