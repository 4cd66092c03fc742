"""SnapGen's design ladder, step by step: archlab's parameter, FLOP and latency deltas beside SnapGen's.

From the thinned SDXL start (channels 256/512/896, transformer layers 0/2/4 per block,
self-attention at 64x64 and 32x32, feed-forward 4, multi-head attention, regular convs)
through SnapGen's published steps, each one change to the previous model:

1. self-attention removed at the higher resolution (64x64 latents): SnapGen FLOPs -17%, latency -24%;
2. separable convolutions in the ResNets: params -24%, latency -62%;
3. an expansion ratio of 2 in them (quality restored; params, FLOPs up);
4. feed-forward expansion 4 -> 3: params and FLOPs about -12%;
5. multi-head -> multi-query attention: params -16%, FLOPs -6%, latency -9%;
6. the first stage's first ResNet replaced by a cross-attention + FF block (no delta published),

ending at the ``snapgen`` preset. Latency comes from each shipped table that holds every
block of both models of a step (the tables were measured on 512 px spaces: most SnapGen
blocks are not in them until a table is built for the snapgen space), stated as missing
otherwise. Each figure is the step's change relative to the model before it.

With ``--quality-seeds N``, each model's proxy is also trained with the default proxy (its steps
name the runs' file, ``benchmarks/quality/ladder_quality.py``) and seeds 0 .. N-1, and each step's change of
text_gap and held-out loss given with its standard error from the seeds' spread (pooled over
the ladder's models) beside the direction of SnapGen's ImageNet FID. Each run is stored as it
finishes (``--work``); rerun to continue. Without it, the runs already stored are reported.

    .venv/bin/python -m benchmarks.latency.snapgen_ladder --quality-seeds 3 --out benchmarks/results/snapgen_ladder/snapgen_ladder.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from archlab import LatencyTable, Predictor, count, preset
from archlab.arch.description import Description, ResnetBlock, Stage, TransformerBlock
from archlab.cost.table import MissingBlocks
from archlab.resources import names
from benchmarks.common import write_result
from benchmarks.quality.ladder_quality import (
    FID_DIRECTION,
    quality_changes,
    run_quality,
)

PUBLISHED = {  # relative change of each step as SnapGen reports it (None: not reported)
    "no high-res self-attention": {"params": None, "gflops": -0.17, "latency": -0.24},
    "separable convs": {"params": -0.24, "gflops": None, "latency": -0.62},
    "expansion ratio 2": {"params": None, "gflops": None, "latency": None},
    "FF 4 -> 3": {"params": -0.12, "gflops": -0.12, "latency": None},
    "multi-query attention": {"params": -0.16, "gflops": -0.06, "latency": -0.09},
    "cross-attention + FF first block": {"params": None, "gflops": None, "latency": None},
}


def _map_blocks(desc: Description, fn) -> Description:
    return desc.replace(stages=tuple(Stage(s.name, tuple(fn(s.name, i, b) for i, b in enumerate(s.blocks))) for s in desc.stages))


def ladder() -> list[tuple[str, Description]]:
    """The models of the ladder, from the start to the snapgen preset (checked equal at the end)."""
    end = preset("snapgen")

    def start_block(stage: str, i: int, b: Any) -> Any:
        if isinstance(b, ResnetBlock):
            return ResnetBlock()
        if isinstance(b, TransformerBlock):
            sa = b.self_attention or stage in ("down1", "up1")
            return dataclasses.replace(b, self_attention=sa, ff_ratio=4.0, kv_heads=None)
        return b

    start = _map_blocks(end, start_block)
    first = next(s for s in start.stages if s.name == "down0")
    start = start.with_blocks("down0", [ResnetBlock(), *first.blocks[1:]]).replace(name="thinned-sdxl")
    steps = [("start (thinned SDXL)", start)]

    def step(name: str, fn) -> None:
        steps.append((name, _map_blocks(steps[-1][1], fn).replace(name=name)))

    step("no high-res self-attention", lambda s, i, b: dataclasses.replace(b, self_attention=False)
         if isinstance(b, TransformerBlock) and s in ("down1", "up1") else b)
    step("separable convs", lambda s, i, b: ResnetBlock(conv="separable") if isinstance(b, ResnetBlock) else b)
    step("expansion ratio 2", lambda s, i, b: ResnetBlock(conv="separable", expansion=2.0) if isinstance(b, ResnetBlock) else b)
    step("FF 4 -> 3", lambda s, i, b: dataclasses.replace(b, ff_ratio=3.0) if isinstance(b, TransformerBlock) else b)
    step("multi-query attention", lambda s, i, b: dataclasses.replace(b, kv_heads=1) if isinstance(b, TransformerBlock) else b)
    last = steps[-1][1]
    down0 = next(s for s in last.stages if s.name == "down0")
    steps.append(("cross-attention + FF first block", last.with_blocks(
        "down0", [TransformerBlock(self_attention=False, head_dim=64, ff_ratio=3.0, kv_heads=1), *down0.blocks[1:]])
        .replace(name="cross-attention + FF first block")))
    if steps[-1][1].replace(name="snapgen") != end:
        raise SystemExit("the ladder does not end at the snapgen preset; the preset or the steps changed")
    return steps


def latency(table: LatencyTable, desc: Description) -> float | str:
    try:
        return Predictor([table], check_device=False).score(desc).latency_ms[table.label]
    except MissingBlocks as exc:
        return f"{len(exc.keys)} blocks not in the table"


def readme_rows(rows: list[dict[str, Any]], labels: list[str]) -> list[str]:
    """benchmarks/README.md's ladder table with a latency column per table, from the stored rows (nothing typed)."""
    def pub(x: float | None) -> str:
        return f"{x:+.0%}" if x is not None else ""

    runtimes = [label.rsplit("_", 1)[-1] for label in labels]
    out = [f"| step | params | GFLOPs | {' | '.join(runtimes)} | change params / FLOPs / {' / '.join(runtimes)} | SnapGen reports |",
           "|---|---|---|" + "---|" * len(labels) + "---|---|"]
    for r in rows:
        head = f"| {r['step']} | {r['params'] / 1e6:.1f}M | {r['gflops']:.1f} | " + " | ".join(f"{r['latency_ms'][x]:.0f} ms" for x in labels) + " |"
        if "change" not in r:
            out.append(head + " | |")
            continue
        c, p = r["change"], r["published"]
        out.append(f"{head} {c['params']:+.1%} / {c['gflops']:+.1%} / " + " / ".join(f"{c['latency'][x]:+.1%}" for x in labels)
                   + f" | {pub(p['params'])} / {pub(p['gflops'])} / {pub(p['latency'])} |")
    return out


def quality_readme_rows(quality: dict[str, Any]) -> list[str]:
    """benchmarks/README.md's ladder quality table, from the stored changes (nothing typed)."""
    def cell(c: dict[str, Any] | None, digits: int) -> str:
        return "n/a" if c is None else f"{c['change']:+.{digits}f} [{c['ci95'][0]:+.{digits}f}, {c['ci95'][1]:+.{digits}f}]"

    out = ["| step | text_gap change [95%] | held-out loss change [95%] | text_gap's verdict | held-out loss's verdict | SnapGen's FID |",
           "|---|---|---|---|---|---|"]
    for r in quality["steps"]:
        tg, hl = r["text_gap"], r["heldout_loss"]
        out.append(f"| {r['step']} | {cell(tg, 4)} | {cell(hl, 3)} | {tg['verdict'] if tg else 'n/a'} | "
                   f"{hl['verdict'] if hl else 'n/a'} | {r['fid_snapgen']} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/snapgen_ladder/snapgen_ladder.json"))
    p.add_argument("--quality-seeds", type=int, default=0, help="train each model's default proxy with this many seeds")
    p.add_argument("--work", type=Path, default=Path("benchmarks/results/snapgen_ladder"),
                   help="where each proxy run is stored as it finishes (ladder_quality_runs_<steps>steps.json)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="tiny proxies (10 steps): the code only")
    a = p.parse_args()
    if a.quality_seeds == 1 or a.quality_seeds < 0:
        p.error("--quality-seeds: 0 (no proxies) or at least 2 (a change's noise needs the seeds' spread)")
    steps = ladder()
    # with no seeds asked for, the runs already stored (none trained): a rerun for latency keeps the quality figures
    quality = run_quality(steps, seeds=a.quality_seeds, work=a.work, device=a.device, quick=a.quick)
    tables = [LatencyTable.load(n) for n in names("tables")]
    rows = []
    previous = None
    for name, desc in steps:
        c = count(desc)
        row: dict[str, Any] = {"step": name, "params": c.params, "gflops": round(c.gflops, 2),
                               "latency_ms": {t.label: latency(t, desc) for t in tables}}
        if previous is not None:
            row["change"] = {"params": round(c.params / previous["params"] - 1, 4),
                             "gflops": round(c.gflops / previous["gflops"] - 1, 4),
                             "latency": {t: (round(ms / previous["latency_ms"][t] - 1, 4) if isinstance(ms, float)
                                             and isinstance(previous["latency_ms"][t], float) else "n/a")
                                         for t, ms in row["latency_ms"].items()}}
            row["published"] = PUBLISHED[name]
        rows.append(row)
        previous = row
        change = row.get("change", {})
        print(f"{name:34s} {c.params / 1e6:8.1f}M {c.gflops:8.1f} GFLOPs  "
              + (f"params {change['params']:+.1%} (SnapGen {PUBLISHED[name]['params']}), "
                 f"GFLOPs {change['gflops']:+.1%} (SnapGen {PUBLISHED[name]['gflops']})" if change else ""))
    out: dict[str, Any] = {"benchmark": "snapgen_ladder", "resolution": steps[0][1].resolution, "steps": rows}
    if quality:
        out["quality"] = {**quality_changes(quality, [n for n, _ in steps]), "fid_direction": FID_DIRECTION}
        print("\n".join(quality_readme_rows(out["quality"])))
    write_result(a.out, out)
    whole = [t.label for t in tables if all(isinstance(r["latency_ms"][t.label], float) for r in rows)]
    if whole:
        print("\n" + "\n".join(readme_rows(rows, whole)))
    print(json.dumps({"written": str(a.out)}))


if __name__ == "__main__":
    main()
