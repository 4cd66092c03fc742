"""The quality reference: architectures trained long, with two seeds, scored on 1024 held-out items.

What a quality proxy is judged against (``benchmarks/quality/proxy_designs.py`` ranks proxy designs
by it). Eighteen architectures, chosen so that real quality differences exist: ten random
draws of the default space at evenly spaced quantiles of predicted latency, the
mobilediffusion and mobilediffusion-lite presets, and six deliberate extremes (no attention
anywhere, attention only at the lowest level, one ResNet per level, cross-attention only,
channels 0.6x the space's narrowest, and the space's largest member).

Each is trained at the proxy rule's width (1/8) and input side (16 px), batch 32,
v-prediction, for ``--steps`` (1000: 8x the default proxy's 125 steps), with two training
seeds (100 and 101: no proxy run shares a trajectory with them), lr 1e-3 decayed to 0 by a
cosine after 20 warm-up steps (the proxies' constant 2e-3 blew up both seeds of the first
architecture between 400 and 750 steps in a first attempt), weights averaged with a slower
EMA (0.995) than the proxy's. At 250, 500, 750 and 1000 steps held-out loss and
text_gap are measured on 1024 held-out images (fixed timesteps and noise); at the end
eval_score and FD on 1024 held-out captions (DDIM 20 steps, CFG 3), and the loss metrics on
the last (not averaged) weights.

Resumable: each run checkpoints (safetensors, every 100 steps) under ``--work`` and appends
each measurement to ``<work>/<arch>/s<seed>.json`` as it finishes, with the command,
commit, host and date that measured it. Every finished measurement is also merged into
``--out`` (the committed results file), from which ``--seed-from`` restores a fresh checkout.
Two processes share 2 cores best as one thread each, one per seed::

    .venv/bin/python -m benchmarks.quality.quality_reference --seeds 100 --threads 1 &
    .venv/bin/python -m benchmarks.quality.quality_reference --seeds 101 --threads 1 &
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from archlab import (
    LatencyTable,
    Predictor,
    count,
    description_from_dict,
    load_space,
    preset,
)
from archlab.arch.description import Description
from archlab.cost.table import MissingBlocks
from archlab.quality import QualityConfig, QualityPipeline
from archlab.quality.train import divergence
from benchmarks.common import drop_checkpoint, provenance, write_result

LOSS_METRICS = ("heldout_loss", "text_gap")
SAMPLED_METRICS = ("eval_score", "fd")
CHECKPOINTS = (250, 500, 750)  # loss metrics on the way (the end is measured in full)
SEEDS = (100, 101)
REFERENCE_EMA = 0.995
REFERENCE_LR = 1e-3  # with a cosine decay to 0: at the proxies' constant 2e-3 both seeds of the first run blew up by 750 steps
ITEMS = 1024


def reference_config(steps: int, threads: int, device: str = "auto", precision: str = "fp32", items: int = ITEMS) -> QualityConfig:
    """The reference's settings: the default proxy rule, trained 8x longer, measured on 1024 items; float32 on every
    device (a GPU's bf16 would make its architectures' references unlike the CPU's)."""
    base = QualityConfig()
    return dataclasses.replace(
        base, device=device, precision=precision, data=dataclasses.replace(base.data, heldout=items),
        train=dataclasses.replace(base.train, steps=steps, ema=REFERENCE_EMA, threads=threads, lr=REFERENCE_LR, lr_schedule="cosine"),
        eval=dataclasses.replace(base.eval, heldout=items, samples=items))


# ---------------------------------------------------------------------- architectures


def _designed(space_name: str) -> list[tuple[str, Description]]:
    """The deliberate extremes, decoded by the default space's rule with its options widened where an extreme leaves it."""
    space = load_space(space_name)
    wide = dict(space.options)
    for level in range(space.max_depth):
        for side in ("down_layers", "up_layers"):
            wide[f"level{level}.{side}"] = tuple(sorted(set(wide[f"level{level}.{side}"]) | {0}))
        wide[f"level{level}.self_attention"] = (False, True)
        wide[f"level{level}.channels"] = tuple(sorted(set(wide[f"level{level}.channels"]) | {192, 384, 640}))
    wide["mid.layers"] = tuple(sorted(set(wide["mid.layers"]) | {0}))
    widened = dataclasses.replace(space, options=wide, constraints={})
    middle = {"depth": 3, "mid.layers": 2, "mid.separable": False, "transformer.ff": space.options["transformer.ff"][0],
              "transformer.ff_ratio": 4, "transformer.shared_kv": False,
              "transformer.attention": space.options["transformer.attention"][0],
              "transformer.head_dim": space.options["transformer.head_dim"][0]}
    for level, ch in enumerate((320, 640, 1024)):
        middle.update({f"level{level}.channels": ch, f"level{level}.down_resnets": 2, f"level{level}.down_layers": 1,
                       f"level{level}.up_layers": 1, f"level{level}.self_attention": True, f"level{level}.separable": False})
    largest = {"depth": space.max_depth, **{k: v for k, v in middle.items() if not k.startswith("level")},
               "mid.layers": max(space.options["mid.layers"]), "transformer.ff_ratio": max(space.options["transformer.ff_ratio"])}
    for level in range(space.max_depth):
        for c in ("channels", "down_resnets", "down_layers", "up_layers"):
            largest[f"level{level}.{c}"] = max(space.options[f"level{level}.{c}"])
        largest[f"level{level}.self_attention"] = max(space.options[f"level{level}.self_attention"])
        largest[f"level{level}.separable"] = False
    variants = {
        "no-attention": {**{f"level{i}.{s}": 0 for i in range(3) for s in ("down_layers", "up_layers")}, "mid.layers": 0},
        "attention-lowest-only": {**{f"level{i}.{s}": 0 for i in range(2) for s in ("down_layers", "up_layers")},
                                  "level2.down_layers": 2, "level2.up_layers": 2},
        "one-resnet": {f"level{i}.down_resnets": 1 for i in range(3)},
        "cross-attention-only": {f"level{i}.self_attention": False for i in range(3)},
        "narrow": {"level0.channels": 192, "level1.channels": 384, "level2.channels": 640},
    }
    out = [(name, widened.decode({**middle, **change}, name=f"ref-{name}")) for name, change in variants.items()]
    out.append(("largest", space.decode(largest, name="ref-largest")))
    return out


def reference_architectures(space_name: str, table_name: str, random_n: int, seed: int) -> list[dict[str, Any]]:
    """Random draws at latency quantiles, the two MobileDiffusion presets and the extremes, interleaved so that a
    partial run already spans the range."""
    predictor = Predictor([LatencyTable.load(table_name)])
    space = load_space(space_name)
    pool = [d for _, d in space.samples(max(300, 20 * random_n), seed)]
    pool.sort(key=lambda d: _predicted_ms(predictor, d))
    random = [("random", pool[min(len(pool) - 1, int((i + 0.5) * len(pool) / random_n))].replace(name=f"ref-r{i:02d}"))
              for i in range(random_n)]
    fixed = [("preset", preset(n).replace(name=f"ref-{n}")) for n in ("mobilediffusion", "mobilediffusion-lite")]
    fixed += [("extreme", d) for _, d in _designed(space_name)]
    order = []
    rand_iter = iter(random[::3] + random[1::3] + random[2::3])  # spread over latency first
    for kind, d in fixed:
        order.append((kind, d))
        order.append(next(rand_iter, None) or (None, None))
    order += list(rand_iter)
    order = [x for x in order if x[1] is not None]
    return [{"name": d.name, "kind": kind, "predicted_ms": _predicted_ms(predictor, d), "gflops": round(count(d).gflops, 2),
             "description": d.to_dict()} for kind, d in order]


def _predicted_ms(predictor: Predictor, desc: Description) -> float | None:
    """Predicted latency, or None where the table lacks a block (the extremes leave the space it was built for)."""
    try:
        return round(predictor.score(desc).latency_ms[predictor.tables[0].label], 1)
    except MissingBlocks:
        return None


def pinned(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The architectures picked when this reference started (kept in ``work``), so nothing swaps them later."""
    path = work / "archs.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic(path, reference_architectures(args.space, args.table, args.random, args.arch_seed))
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- measuring


def _atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def measure(arch: dict[str, Any], seed: int, steps: int, work: Path, pipe: QualityPipeline) -> list[dict[str, Any]]:
    """Train one (architecture, seed) run on from its checkpoint, storing each measurement as it is made."""
    folder = work / arch["name"]
    path = folder / f"s{seed}.json"
    results = json.loads(path.read_text()) if path.exists() else []
    points = [s for s in CHECKPOINTS if s < steps] + [steps]
    todo = [s for s in points if s not in {r["step"] for r in results}]
    if not todo:
        return results
    desc = description_from_dict(arch["description"])
    model = pipe.model(desc, seed=seed)
    trainer = pipe.trainer(model, out_dir=folder / f"s{seed}", train=dataclasses.replace(pipe.cfg.train, seed=seed))
    if results and trainer.step < results[-1]["step"]:  # its checkpoint is lost (another machine): start the run again
        print(json.dumps({"arch": arch["name"], "seed": seed, "restart": f"no checkpoint past step {trainer.step}; "
                          f"{len(results)} measurements dropped"}), flush=True)
        results, todo = [], points
    cpu = results[-1]["train_cpu_s"] if results else 0.0
    wall = results[-1]["train_wall_s"] if results else 0.0
    for step in todo:
        if trainer.step > step:
            raise SystemExit(f"{path}: the checkpoint is at step {trainer.step}, past {step}; delete {folder / f's{seed}'} to remeasure")
        r = trainer.train(steps=step, progress=False)
        cpu, wall = cpu + r.cpu_seconds, wall + r.seconds
        entry: dict[str, Any] = {"step": step, "train_cpu_s": round(cpu, 1), "train_wall_s": round(wall, 1),
                                 "train_loss_last20": r.final_loss, "diverged": divergence(r.losses) is not None}
        final = step == steps
        start = time.process_time()
        with trainer.averaged():
            est, _ = pipe.evaluate(model, metrics=LOSS_METRICS + (SAMPLED_METRICS if final else ()))
        entry["ema"] = {k: v.as_dict() for k, v in est.items() if k in LOSS_METRICS + SAMPLED_METRICS}
        if final:
            raw, _ = pipe.evaluate(model, metrics=LOSS_METRICS)
            entry["raw"] = {k: v.as_dict() for k, v in raw.items()}
        entry["eval_cpu_s"] = round(time.process_time() - start, 1)
        entry["provenance"] = provenance()
        results.append(entry)
        _atomic(path, results)
        print(json.dumps({"arch": arch["name"], "seed": seed, "step": step, "train_cpu_min": round(cpu / 60, 1),
                          **{k: round(v["value"], 4) for k, v in entry["ema"].items()}}), flush=True)
    drop_checkpoint(folder / f"s{seed}")  # the run reached its last step: its measurements are stored
    return results


def collect(work: Path, archs: list[dict[str, Any]], steps: int, *, finished_only: bool = False) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every run's measurements in ``work``; ``finished_only``: only runs that reached ``steps`` (where the checkpoints
    of the others are not kept, as on a lent machine)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for a in archs:
        runs = {}
        for p in sorted((work / a["name"]).glob("s*.json")):
            results = json.loads(p.read_text())
            if not finished_only or any(r["step"] == steps for r in results):
                runs[p.stem] = results
        out[a["name"]] = runs
    return out


def unfinished(work: Path, archs: list[dict[str, Any]], steps: int, seeds: list[int]) -> list[tuple[str, int]]:
    """The (architecture, seed) runs that have not reached ``steps``, in the reference's order."""
    done = collect(work, archs, steps, finished_only=True)
    return [(a["name"], s) for a in archs for s in seeds if f"s{s}" not in done[a["name"]]]


def restore(seed_from: Path, work: Path) -> None:
    """Fill ``work`` from a committed results file where it has nothing yet (a fresh checkout continues)."""
    stored = json.loads(seed_from.read_text())
    if not (work / "archs.json").exists():
        work.mkdir(parents=True, exist_ok=True)
        _atomic(work / "archs.json", stored["archs"])
    for arch, runs in stored["measurements"].items():
        for run, results in runs.items():
            path = work / arch / f"{run}.json"
            if results and not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                _atomic(path, results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="mobilediffusion")
    p.add_argument("--table", default="x86-2core_torch-cpu", help="orders the random draws by predicted latency")
    p.add_argument("--random", type=int, default=10, help="random draws of the space")
    p.add_argument("--arch-seed", type=int, default=33)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="training seeds this process runs, in order per architecture")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--only", default=None, help="these architectures (names, comma-separated) and no others")
    p.add_argument("--work", type=Path, default=Path("out/quality_reference"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_reference/quality_reference.json"))
    p.add_argument("--seed-from", type=Path, default=None, help="a committed results file to continue from")
    p.add_argument("--items", type=int, default=ITEMS, help="held-out images and captions scored (fewer only to try the code)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="fp32 everywhere keeps runs comparable")
    p.add_argument("--list", action="store_true", help="print the architectures and stop")
    p.add_argument("--todo", action="store_true", help="print the unfinished runs, one 'ARCH SEED' a line, and stop")
    p.add_argument("--collect", action="store_true", help="write --out from the work folder's finished runs and stop")
    a = p.parse_args()
    if a.seed_from is not None:
        restore(a.seed_from, a.work)
    archs = pinned(a.work, a)
    if a.list:
        for x in archs:
            print(f"{x['name']:28s} {x['kind']:8s} {x['predicted_ms']} ms {x['gflops']:8.1f} GFLOPs")
        return
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.todo:
        for name, seed in unfinished(a.work, archs, a.steps, seeds):
            print(name, seed)
        return
    pipe = QualityPipeline(reference_config(a.steps, a.threads, a.device, a.precision, a.items))
    if a.collect:
        _write(a, archs, pipe, finished_only=True)
        return
    only = None if a.only is None else set(a.only.split(","))
    for arch in archs:
        if only is not None and arch["name"] not in only:
            continue
        for seed in seeds:
            measure(arch, seed, a.steps, a.work, pipe)
            _write(a, archs, pipe)


def _write(a: argparse.Namespace, archs: list[dict[str, Any]], pipe: QualityPipeline, *, finished_only: bool = False) -> None:
    write_result(a.out, {"benchmark": "quality_reference", "settings": {
        "steps": a.steps, "seeds": list(SEEDS), "ema": REFERENCE_EMA, "items": a.items, "checkpoints": list(CHECKPOINTS),
        "quality": dataclasses.asdict(pipe.cfg)}, "archs": archs,
        "measurements": collect(a.work, archs, a.steps, finished_only=finished_only), "written_by": provenance()})


if __name__ == "__main__":
    main()
