"""Timing whole models: several interleaved passes, settled until their fastest runs agree."""


import json
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from archlab.arch.description import Description
from archlab.arch.reading import description_from_dict
from archlab.convert import model_and_inputs
from archlab.cost.backends import LatencyBackend, Timing
from archlab.cost.predict import count
from archlab.cost.table import MAX_PASSES, now
from archlab.errors import ConfigError
from archlab.progress import progress_bar


def model_file_name(desc: Description) -> str:
    """The name a whole model is prepared (and, on converting backends, kept) under."""
    return f"model-{desc.name}"



def time_model(backend: LatencyBackend, desc: Description, *, batch: int, repeats: int) -> Timing:
    """One end-to-end timing of ``desc``: prepare (build, convert), the backend's warm-up, ``repeats`` timed runs."""
    model, inputs = model_and_inputs(desc, batch=batch)
    try:
        return backend.measure(backend.prepare(model, inputs, name=model_file_name(desc)), repeats=repeats)
    finally:
        del model



def measured(timing: Timing | dict[str, float], statistic: str) -> float:
    if isinstance(timing, dict):
        return timing["min_ms"] if statistic == "min" else timing["median_ms"]
    return timing.min_ms if statistic == "min" else timing.median_ms



def pass_limit(passes: int, settle: float, max_passes: int) -> int:
    """The most passes a model can get: ``passes``, or up to ``max_passes`` when settling."""
    if settle < 0:
        raise ConfigError("settle", f"must be a share >= 0 (0.05: passes within 5%), not {settle}")
    if settle > 0 and max_passes < passes:
        raise ConfigError("max-passes", f"must be at least --passes ({passes}), not {max_passes}")
    return max_passes if settle > 0 else passes



class ModelTimings:
    """End-to-end timings of whole models, several passes each, stored (JSON) as each is measured.

    Passes are interleaved: pass 1 over every model in one shuffled order, then pass 2 in
    another, so a model's two timings lie far apart in time, with the others between them.
    Rerunning with the same file measures only what is missing.
    """

    def __init__(self, path: str | Path | None, backend: LatencyBackend, descs: Sequence[Description], *, batch: int):
        self.path = Path(path) if path else None
        self.backend, self.descs, self.batch = backend, list(descs), batch
        self.data: dict[str, Any] = {"runtime": backend.name, "device": backend.device_name(), "fingerprint": backend.fingerprint(),
                                     "models": {}}
        if self.path is not None and self.path.exists():
            stored = json.loads(self.path.read_text())
            differences = backend.differences_from(stored.get("fingerprint"))
            if stored.get("runtime") != backend.name or differences:
                raise ConfigError(str(self.path), f"holds timings of another runtime or machine ({'; '.join(differences) or stored.get('runtime')}); "
                                  "use another file")
            self.data = stored
        for d in self.descs:
            entry = self.data["models"].setdefault(d.name, {"description": d.to_dict(), "passes": []})
            if description_from_dict(entry["description"]) != d:
                raise ConfigError(str(self.path), f"holds another model called {d.name}; use another file")

    @classmethod
    def stored(cls, data: dict[str, Any]) -> "ModelTimings":
        """Timings already measured (a timings file's contents), read only: no backend, so they
        can be scored again on any machine (``benchmarks/latency/pool_validations.py``)."""
        timings = cls.__new__(cls)
        timings.path, timings.backend, timings.data = None, None, data
        timings.descs = [description_from_dict(m["description"]) for m in data["models"].values()]
        return timings

    def description(self, name: str) -> Description:
        return description_from_dict(self.data["models"][name]["description"])

    def run(self, *, passes: int, repeats: int, seed: int, show_progress: bool = True, label: str = "models",
            settle: float = 0.0, max_passes: int = MAX_PASSES, statistic: str = "min") -> None:
        """Time every model ``passes`` times, interleaved; then, with ``settle``, time again each model
        whose two fastest passes still differ by more than that share, one more pass over all such
        models at a time (shuffled), until they agree or have ``max_passes`` passes.

        A shared host has slow spells longer than one pass of a model: a model whose passes all
        land in spells is measured slow, and which models that happens to is chance. Two passes
        that agree say the fastest is what the machine does; the extra passes go only where they
        do not. The test-retest figures stay pass 1 against pass 2.
        """
        limit = pass_limit(passes, settle, max_passes)
        self.check_disk(passes)
        rng = np.random.default_rng(seed)
        orders = [rng.permutation(len(self.descs)) for _ in range(limit)]
        todo = sum(max(0, passes - len(self.data["models"][d.name]["passes"])) for d in self.descs)
        total = passes * len(self.descs)
        with progress_bar(show_progress) as progress:
            task = progress.add_task(f"{self.backend.name}: {label}", total=total, completed=total - todo, current="")
            for p, order in enumerate(orders):
                models = [self.descs[int(i)] for i in order]
                due = [d for d in models if len(self.passes(d)) == p and (p < passes or not self.settled(d, settle, statistic))]
                if p >= passes and due:
                    total += len(due)
                    progress.update(task, total=total)
                for desc in due:
                    progress.update(task, current=f"pass {p + 1}/{passes if p < passes else limit} {desc.name}")
                    t = time_model(self.backend, desc, batch=self.batch, repeats=repeats)
                    self.passes(desc).append({"min_ms": round(t.min_ms, 3), "median_ms": round(t.median_ms, 3),
                                              "samples_ms": [round(x, 3) for x in t.samples_ms], "measured_at": now()})
                    self.save()
                    progress.advance(task)
        self.remove_converted(passes)

    def protocol(self, passes: int, settle: float) -> dict[str, Any]:
        """How the models were timed, for a table's metadata: passes asked for, the settle share, most passes taken."""
        return {"passes": passes, "settle": settle, "passes_max": max(len(self.passes(d)) for d in self.descs)}

    def settled(self, desc: Description, settle: float, statistic: str = "min") -> bool:
        """Whether the model's two fastest passes agree within ``settle`` (a share of the fastest)."""
        times = sorted(measured(r, statistic) for r in self.passes(desc))
        return len(times) >= 2 and times[1] <= times[0] * (1 + settle)

    def check_disk(self, passes: int) -> None:
        """Refuse before timing anything when the converted models kept between passes will not fit the disk."""
        backend = self.backend
        if backend.converted_suffix is None:
            return
        need = sum(count(d).params * 4 for d in self.descs  # float32 weights
                   if len(self.data["models"][d.name]["passes"]) < passes and not backend.converted_path(model_file_name(d)).exists())
        free = shutil.disk_usage(backend.workdir).free
        if need * 1.1 > free:  # a flatbuffer or ONNX file is the weights plus a little graph
            raise ConfigError(str(backend.workdir), f"needs about {need * 1.1 / 1e9:.1f} GB free for the {backend.name} models it "
                              f"converts and keeps between passes, {free / 1e9:.1f} GB free; free space or put --timings elsewhere")

    def remove_converted(self, passes: int) -> None:
        """Delete the converted copies of the models whose every pass is timed (LiteRT: up to 2 GB each)."""
        for d in self.descs:
            if len(self.data["models"][d.name]["passes"]) >= passes:
                self.backend.discard_converted(model_file_name(d))

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def passes(self, desc: Description) -> list[dict[str, float]]:
        return self.data["models"][desc.name]["passes"]

    def truth(self, desc: Description, statistic: str) -> float:
        """The model's time over every pass: the fastest run (``min``) or the median of all runs."""
        runs = self.passes(desc)
        if statistic == "min":
            return min(r["min_ms"] for r in runs)
        return float(np.median([x for r in runs for x in r["samples_ms"]]))

