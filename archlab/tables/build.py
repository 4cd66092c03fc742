"""Building a latency table: one row per distinct block, timed on the table's own backend, resumable."""


import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from archlab.arch.description import Description
from archlab.cost.backends import LatencyBackend, Timing
from archlab.cost.keys import BlockSpec
from archlab.cost.predict import Predictor
from archlab.cost.table import LatencyTable
from archlab.errors import ConfigError
from archlab.progress import progress_bar


def refuse_foreign(table: LatencyTable, backend: LatencyBackend) -> None:
    """One line, and no timing, when ``table`` was not measured on this machine."""
    differences = backend.differences_from(table.meta.fingerprint)
    if differences:
        raise ConfigError(f"{table.path}: metadata.fingerprint", f"the table was measured on another machine "
                          f"({table.meta.device!r}): {'; '.join(differences)}; build a table here instead")



def open_for_build(path: str, backend: LatencyBackend, *, dtype: str, batch: int, extra: dict[str, Any]) -> LatencyTable:
    """The table at ``path`` if its settings and machine match the backend's (resume), else a new one."""
    meta = {**backend.metadata(), "dtype": dtype, "batch": batch, "statistic": "min", **extra}
    try:
        table = LatencyTable.read(path)
    except ConfigError:
        if Path(path).exists():
            raise
        return LatencyTable.create(path, meta)
    for key, recorded in table.meta.identity.items():
        if recorded != meta.get(key):
            raise ConfigError(f"{path}: metadata.{key}", f"the file says {recorded!r}, this build {meta.get(key)!r}; "
                              "write to another file to measure with other settings")
    refuse_foreign(table, backend)
    sources = list(dict.fromkeys([*table.meta.sources, *extra.get("sources", [])]))
    if tuple(sources) != table.meta.sources:
        table.metadata["sources"] = sources  # what the rows were measured for, over every build
        table.save()
    return table



def table_allocator(table: LatencyTable) -> str:
    """The allocator setting the table was timed with (tables older than the field: the system's)."""
    return table.meta.allocator



def backend_for(table: LatencyTable, *, warmup: int, repeats: int, workdir: str | Path | None = None,
                refuse_other_machine: bool = True) -> LatencyBackend:
    """The table's own backend, threads, cache and allocator settings, refusing a machine other than the one it was
    measured on (``refuse_other_machine=False``: `table check`, which reports how this machine differs instead)."""
    from archlab.cost.backends import get_backend

    meta = table.metadata
    backend = get_backend(meta["runtime"], threads=int(meta["threads"]), warmup=warmup, repeats=repeats,
                          cold=bool(meta.get("cold", False)), workdir=workdir, allocator=table_allocator(table))
    if not refuse_other_machine:
        return backend
    try:
        refuse_foreign(table, backend)
    except ConfigError:
        backend.close()
        raise
    return backend



def measure_missing(table: LatencyTable, desc: Description, *, show_progress: bool = True) -> int:
    """Time the blocks of ``desc`` the table lacks, now, on the table's own backend, and add them."""
    specs = Predictor([table], check_device=False).missing(desc).get(table.label, {})
    if not specs:
        return 0
    backend = backend_for(table, warmup=table.meta.warmup, repeats=table.meta.repeats)
    try:
        return measure_blocks(table, backend, specs, show_progress=show_progress)
    finally:
        backend.close()



def measure_blocks(table: LatencyTable, backend: LatencyBackend, specs: dict[str, BlockSpec], *, show_progress: bool = True,
                   passes: int = 2, group: int | None = None) -> int:
    """Measure every key of ``specs`` missing from ``table``; the number measured.

    The missing keys are timed in ``passes`` sweeps (warm-up, then ``repeats / passes`` timed
    runs per key per sweep), each sweep over every key in another order, so a key's samples
    lie minutes apart with the other keys between them: a slow spell of a shared machine
    lands in one sweep of a block, not in all of them. Measured on one host, one run (three
    builds each): two builds' block sums disagree by 1.2% RMS, against 3.4% when both passes
    ran over 12 keys at a time, seconds apart (benchmarks/README.md, "How the method was chosen"). ``group``: sweep over this many keys at a time instead (12: that older protocol).

    Each sweep's samples go to ``<table>.sweeps.jsonl`` as measured; a key's row goes into
    the table when its last sweep is done, and the side file is removed when every key is.
    An interrupted build resumes without re-timing what it stored.
    """
    todo = [k for k in specs if k not in table]
    per_pass = max(1, math.ceil(backend.repeats / passes))
    protocol = {"passes": passes, "keys_per_sweep": group or "all"}  # tables without it: 2 passes over 12 keys at a time
    if todo and table.meta.block_sweeps != protocol:
        table.metadata["block_sweeps"] = protocol
        table.save()
    sweeps = SweepSamples(table, passes=passes, per_pass=per_pass)
    rng = np.random.default_rng(0)
    size = group or max(1, len(todo))
    with progress_bar(show_progress) as progress:
        task = progress.add_task(f"{backend.name}: blocks", total=passes * len(specs),
                                 completed=passes * (len(specs) - len(todo)) + sweeps.done(todo), current="")
        for start in range(0, len(todo), size):
            keys = todo[start:start + size]
            for p in range(passes):
                order = keys if p == 0 else [keys[int(i)] for i in rng.permutation(len(keys))]
                for key in order:
                    if not sweeps.has(key, p):
                        progress.update(task, current=f"sweep {p + 1}/{passes} " + key.split("|")[0][:50])
                        torch.manual_seed(0)
                        run = backend.prepare(specs[key].module(), specs[key].inputs(), name=key)
                        sweeps.add(key, p, backend.measure(run, repeats=per_pass).samples_ms)
                        del run
                        progress.advance(task)
                    if p == passes - 1:  # also when a killed build stored this sweep but not the row
                        timing = Timing.from_samples(sweeps.samples(key))
                        table.append(key, specs[key].kind, timing.median_ms, timing.spread_ms, timing.min_ms, len(timing.samples_ms))
                        backend.discard_converted(key)  # else a LiteRT build keeps every block (26 GB at 352 of the SnapGen space)
    sweeps.remove()
    return len(todo)



class SweepSamples:
    """The block samples of unfinished sweeps, one JSON line per key and sweep, beside the table.

    The first line names the table's creation time and the sweep settings; a file written for
    another table or other settings is stale (its blocks were timed for a table that is gone)
    and is started afresh.
    """

    def __init__(self, table: LatencyTable, *, passes: int, per_pass: int):
        self.path = table.path.with_name(table.path.name + ".sweeps.jsonl")
        self.header = {"table_created": table.meta.created, "passes": passes, "per_pass": per_pass}
        self.data: dict[tuple[str, int], list[float]] = {}
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        try:
            stale = not lines or json.loads(lines[0]) != self.header
        except json.JSONDecodeError:
            stale = True
        for line in [] if stale else lines[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # the last line of a killed build
                continue
            self.data[(entry["key"], int(entry["sweep"]))] = entry["samples_ms"]
        tmp = self.path.with_name(self.path.name + ".tmp")  # rewritten whole: no partial line to append to
        tmp.write_text("".join(json.dumps(x) + "\n" for x in [self.header, *(
            {"key": k, "sweep": p, "samples_ms": v} for (k, p), v in self.data.items())]))
        tmp.replace(self.path)

    def has(self, key: str, sweep: int) -> bool:
        return (key, sweep) in self.data

    def done(self, keys: Iterable[str]) -> int:
        wanted = set(keys)
        return sum(1 for key, _ in self.data if key in wanted)

    def add(self, key: str, sweep: int, samples_ms: Iterable[float]) -> None:
        self.data[(key, sweep)] = [round(x, 6) for x in samples_ms]
        with open(self.path, "a") as f:
            f.write(json.dumps({"key": key, "sweep": sweep, "samples_ms": self.data[(key, sweep)]}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def samples(self, key: str) -> list[float]:
        """Every sample of ``key``, sweep by sweep."""
        return [x for p in range(self.header["passes"]) for x in self.data.get((key, p), [])]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

