"""The ``archlab`` command line.

Every user error (a wrong field in a file, an unknown preset) is printed as one line
naming the field, with exit code 2 and no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from archlab.arch.description import block_summary
from archlab.arch.presets import list_presets, preset, resolve
from archlab.cost.counting import ModelCount, count
from archlab.cli_common import user_errors
from archlab.cli_quality import evolve_cmd, proxy_app
from archlab.cli_results import dashboard_cmd, export_cmd, report_cmd
from archlab.cli_study import study_app
from archlab.cli_table import table_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Architecture search and profiling for mobile text-to-image diffusion UNets.")
# wide enough for the per-block table when piped (rich assumes 80 columns off a terminal)
console = Console(width=None if sys.stdout.isatty() else 140)
app.add_typer(table_app, name="table")
app.add_typer(proxy_app, name="proxy")
app.command("evolve")(evolve_cmd)
app.add_typer(study_app, name="study")
app.command("report")(report_cmd)
app.command("dashboard")(dashboard_cmd)
app.command("export")(export_cmd)


def count_to_json(desc_name: str, c: ModelCount, resolution: int) -> dict[str, Any]:
    return {
        "name": desc_name,
        "resolution": resolution,
        "params": c.params,
        "gflops": c.gflops,
        "conv_blocks": c.conv_blocks,
        "self_attention": c.self_attention,
        "cross_attention": c.cross_attention,
        "stem": {"params": c.stem.params, "gflops": c.stem.gflops},
        "blocks": [
            {
                "stage": b.site.stage,
                "index": b.site.index,
                "kind": b.site.block.kind,
                "summary": block_summary(b.site.block),
                "resolution": b.site.resolution,
                "in_channels": b.site.in_channels,
                "out_channels": b.site.out_channels,
                "params": b.cost.params,
                "gflops": b.cost.gflops,
            }
            for b in c.blocks
        ],
    }


@app.command()
@user_errors
def presets() -> None:
    """List the registered reference architectures with their size."""
    table = Table("preset", "channels", "params (M)", "GFLOPs", "conv", "SA", "CA", "latent")
    for name in list_presets():
        d = preset(name)
        c = count(d)
        table.add_row(name, str(list(d.channels)), f"{c.params / 1e6:.1f}", f"{c.gflops:.1f}", str(c.conv_blocks),
                      str(c.self_attention), str(c.cross_attention), f"{d.resolution}x{d.resolution}x{d.in_channels}")
    console.print(table)


@app.command()
@user_errors
def describe(
    architecture: str = typer.Argument(..., help="A preset name (see `archlab presets`) or a description .yaml/.json file."),
    resolution: Optional[int] = typer.Option(None, help="Latent side (64 for 512x512 images); default: the description's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    table_file: Optional[Path] = typer.Option(None, "--table", help="A latency table: add predicted milliseconds per block."),
    measure_missing: bool = typer.Option(False, help="With --table: time blocks the table lacks now, on its backend, and add them."),
) -> None:
    """Per-block parameters and FLOPs of a UNet, stage by stage, with totals (and latency, given a table)."""
    desc = resolve(architecture)
    res = desc.resolution if resolution is None else resolution
    if res != desc.resolution:
        desc = desc.replace(resolution=res)
    c = count(desc)
    prediction = None
    if table_file is not None:
        from archlab.cost.table import LatencyTable

        latency_table = LatencyTable.read(table_file)
        latency_table.check_compatible(desc)
        prediction = latency_table.predict(desc, measure_missing=_on_the_spot(latency_table) if measure_missing else None)
    ms = [p[2] for p in prediction.blocks] if prediction else [None] * len(c.blocks)
    if as_json:
        data = count_to_json(desc.name, c, res)
        if prediction is not None:
            data["latency_ms"] = prediction.total_ms
            data["latency_table"] = str(table_file)
            data["latency_overhead_ms"] = prediction.total_ms - prediction.block_sum_ms
            for block, m in zip(data["blocks"], ms):
                block["latency_ms"] = m
        print(json.dumps(data, indent=2))
        return
    columns = ["stage", "#", "block", "res", "channels", "params (M)", "GFLOPs"] + (["ms"] if prediction else [])
    title = f"{desc.name} at {res}x{res} latents" + (f", latency from {table_file.name}" if prediction else "")
    table = Table(*columns, title=title)
    extra = [f"{prediction.total_ms - prediction.block_sum_ms:.1f} (overhead)"] if prediction else []
    table.add_row("stem", "", "conv_in, time embedding, head", str(res), f"{desc.in_channels}->{desc.channels[0]}",
                  f"{c.stem.params / 1e6:.2f}", f"{c.stem.gflops:.2f}", *extra)
    previous = None
    for b, m in zip(c.blocks, ms):
        s = b.site
        channels = f"{s.in_channels}->{s.out_channels}" if s.in_channels != s.out_channels else str(s.in_channels)
        if s.skip_channels:
            channels += f" (skip {s.skip_channels})"
        table.add_row(s.stage if s.stage != previous else "", str(s.index), block_summary(s.block), str(s.resolution),
                      channels, f"{b.cost.params / 1e6:.2f}", f"{b.cost.gflops:.2f}", *([f"{m:.1f}"] if prediction else []))
        previous = s.stage
    table.add_section()
    table.add_row("total", "", f"{c.conv_blocks} conv, {c.self_attention} SA, {c.cross_attention} CA", "", "",
                  f"{c.params / 1e6:.2f}", f"{c.gflops:.2f}", *([f"{prediction.total_ms:.1f}"] if prediction else []))
    console.print(table)
    line = f"params {c.params:,}  GFLOPs {c.gflops:.1f} (one multiply-add = one FLOP, attention matmuls included)"
    if prediction:
        meta = latency_table.metadata
        line += f"\npredicted latency {prediction.total_ms:.1f} ms on {meta['device']} ({meta['runtime']}, {meta['threads']} threads)"
    console.print(line)


def _on_the_spot(latency_table: Any) -> Any:
    """A callback that times a missing block on the table's own backend and appends it."""
    from archlab.cost.measure import backend_for

    meta = latency_table.metadata
    backend = backend_for(latency_table, warmup=int(meta["warmup"]), repeats=int(meta["repeats"]))

    def measure(spec: Any) -> None:
        timing = backend.time(spec.module(), spec.inputs(), name=spec.key)
        latency_table.append(spec.key, spec.kind, timing.median_ms, timing.spread_ms, timing.min_ms, len(timing.samples_ms))

    return measure


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
