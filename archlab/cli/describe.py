"""``archlab presets`` and ``archlab describe``: a UNet block by block."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.table import Table

from archlab.arch.editing import block_summary
from archlab.arch.presets import preset, presets, resolve
from archlab.cli.common import out_console, user_errors
from archlab.cost.predict import ModelCount, Predictor, count


def count_to_json(desc_name: str, c: ModelCount, resolution: int) -> dict[str, Any]:
    return {
        "name": desc_name, "resolution": resolution, "params": c.params, "gflops": c.gflops, "conv_blocks": c.conv_blocks,
        "self_attention": c.self_attention, "cross_attention": c.cross_attention,
        "stem": {"params": c.stem.params, "gflops": c.stem.gflops},
        "blocks": [{"stage": b.site.stage, "index": b.site.index, "kind": b.site.block.kind, "summary": block_summary(b.site.block),
                    "resolution": b.site.resolution, "in_channels": b.site.in_channels, "out_channels": b.site.out_channels,
                    "params": b.cost.params, "gflops": b.cost.gflops, **({"latency_ms": next(iter(b.ms.values()))} if b.ms else {})}
                   for b in c.blocks],
    }


@user_errors
def presets_cmd(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout.")) -> None:
    """List the registered reference architectures with their size."""
    table = Table("preset", "channels", "params (M)", "GFLOPs", "conv", "SA", "CA", "latent")
    rows = []
    for name in presets():
        d = preset(name)
        c = count(d)
        rows.append({"preset": name, "channels": list(d.channels), "params": c.params, "gflops": round(c.gflops, 2),
                     "conv_blocks": c.conv_blocks, "self_attention": c.self_attention, "cross_attention": c.cross_attention,
                     "latent": [d.resolution, d.resolution, d.in_channels]})
        table.add_row(name, str(list(d.channels)), f"{c.params / 1e6:.1f}", f"{c.gflops:.1f}", str(c.conv_blocks),
                      str(c.self_attention), str(c.cross_attention), f"{d.resolution}x{d.resolution}x{d.in_channels}")
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    out_console.print(table)


@user_errors
def describe_cmd(
    architecture: str = typer.Argument(..., help="A preset name (see `archlab presets`) or a description .yaml/.json file."),
    resolution: Optional[int] = typer.Option(None, help="Latent side (64 for 512x512 images); default: the description's."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    table_file: Optional[str] = typer.Option(None, "--table", help="A latency table (file or shipped name): add predicted ms per block."),
    measure_missing: bool = typer.Option(False, help="With --table: time blocks the table lacks now, on its backend, and add them."),
) -> None:
    """Per-block parameters and FLOPs of a UNet, stage by stage, with totals (and latency, given a table)."""
    desc = resolve(architecture)
    res = desc.resolution if resolution is None else resolution
    if res != desc.resolution:
        desc = desc.replace(resolution=res)
    tables = []
    if table_file is not None:
        from archlab.cost.table import LatencyTable

        latency_table = LatencyTable.load(table_file)
        if measure_missing:
            from archlab.tables import measure_missing as measure

            measure(latency_table, desc)
        tables = [latency_table]
    c = Predictor(tables).breakdown(desc)
    label = tables[0].label if tables else None
    if as_json:
        data = count_to_json(desc.name, c, res)
        if label is not None:
            data.update(latency_ms=c.latency_ms[label], latency_table=str(tables[0].path),
                        latency_overhead_ms=c.latency_ms[label] - c.block_sum_ms[label])
        print(json.dumps(data, indent=2))
        return
    columns = ["stage", "#", "block", "res", "channels", "params (M)", "GFLOPs"] + (["ms"] if label else [])
    title = f"{desc.name} at {res}x{res} latents" + (f", latency from {tables[0].name}" if label else "")
    table = Table(*columns, title=title)
    extra = [f"{c.latency_ms[label] - c.block_sum_ms[label]:.1f} (overhead)"] if label else []
    table.add_row("stem", "", "conv_in, time embedding, head", str(res), f"{desc.in_channels}->{desc.channels[0]}",
                  f"{c.stem.params / 1e6:.2f}", f"{c.stem.gflops:.2f}", *extra)
    previous = None
    for b in c.blocks:
        s = b.site
        channels = f"{s.in_channels}->{s.out_channels}" if s.in_channels != s.out_channels else str(s.in_channels)
        if s.skip_channels:
            channels += f" (skip {s.skip_channels})"
        table.add_row(s.stage if s.stage != previous else "", str(s.index), block_summary(s.block), str(s.resolution),
                      channels, f"{b.cost.params / 1e6:.2f}", f"{b.cost.gflops:.2f}", *([f"{b.ms[label]:.1f}"] if label else []))
        previous = s.stage
    table.add_section()
    table.add_row("total", "", f"{c.conv_blocks} conv, {c.self_attention} SA, {c.cross_attention} CA", "", "",
                  f"{c.params / 1e6:.2f}", f"{c.gflops:.2f}", *([f"{c.latency_ms[label]:.1f}"] if label else []))
    out_console.print(table)
    line = f"params {c.params:,}  GFLOPs {c.gflops:.1f} (one multiply-add = one FLOP, attention matmuls included)"
    if label:
        meta = tables[0].metadata
        line += f"\npredicted latency {c.latency_ms[label]:.1f} ms on {meta['device']} ({meta['runtime']}, {meta['threads']} threads)"
    out_console.print(line)
