"""The ``archlab`` command line.

Every user error (a wrong field in a file, an unknown preset) is printed as one line
naming the field, with exit code 2 and no traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from archlab.arch.description import block_summary
from archlab.arch.presets import list_presets, preset, resolve
from archlab.cost.counting import ModelCount, count
from archlab.errors import ArchlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Architecture search and profiling for mobile text-to-image diffusion UNets.")
# wide enough for the per-block table when piped (rich assumes 80 columns off a terminal)
console = Console(width=None if sys.stdout.isatty() else 140)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`ArchlabError` into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ArchlabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


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
) -> None:
    """Per-block parameters and FLOPs of a UNet, stage by stage, with totals."""
    desc = resolve(architecture)
    res = desc.resolution if resolution is None else resolution
    c = count(desc, resolution=res)
    if as_json:
        print(json.dumps(count_to_json(desc.name, c, res), indent=2))
        return
    table = Table("stage", "#", "block", "res", "channels", "params (M)", "GFLOPs", title=f"{desc.name} at {res}x{res} latents")
    table.add_row("stem", "", "conv_in, time embedding, head", str(res), f"{desc.in_channels}->{desc.channels[0]}",
                  f"{c.stem.params / 1e6:.2f}", f"{c.stem.gflops:.2f}")
    previous = None
    for b in c.blocks:
        s = b.site
        channels = f"{s.in_channels}->{s.out_channels}" if s.in_channels != s.out_channels else str(s.in_channels)
        if s.skip_channels:
            channels += f" (skip {s.skip_channels})"
        table.add_row(s.stage if s.stage != previous else "", str(s.index), block_summary(s.block), str(s.resolution),
                      channels, f"{b.cost.params / 1e6:.2f}", f"{b.cost.gflops:.2f}", end_section=False)
        previous = s.stage
    table.add_section()
    table.add_row("total", "", f"{c.conv_blocks} conv, {c.self_attention} SA, {c.cross_attention} CA", "", "",
                  f"{c.params / 1e6:.2f}", f"{c.gflops:.2f}")
    console.print(table)
    console.print(f"params {c.params:,}  GFLOPs {c.gflops:.1f} (one multiply-add = one FLOP, attention matmuls included)")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
