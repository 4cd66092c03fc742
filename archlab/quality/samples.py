"""What a model generates: a grid of samples, each with its caption written under it.

Used by ``archlab sample`` (a trained proxy, a distilled student or a one-step generator)
and by studies, which keep a small grid per trial as an Optuna artifact (optuna-dashboard
shows it beside the trial, the report beside each front member).
"""

from __future__ import annotations

import dataclasses
import io
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from archlab.errors import ConfigError
from archlab.files import write_bytes

CELL = 128  # pixels per sample in the grid (proxies sample at 16 px: shown enlarged, nearest neighbour)
TEXT_LINES = 3


def read_captions(captions: Sequence[str], file: str | Path | None) -> list[str]:
    """Captions given one by one, and/or one per line of a text file."""
    out = list(captions)
    if file is not None:
        path = Path(file)
        try:
            out += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise ConfigError(str(path), "is not a UTF-8 text file of captions, one per line") from None
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if not out:
        raise ConfigError("--caption", "give at least one caption (--caption TEXT, or --captions FILE with one per line)")
    return out


def generate(pipe, model, captions: Sequence[str], *, steps: int | None = None, guidance: float | None = None,
             seed: int | None = None) -> torch.Tensor:
    """Samples of ``model`` for ``captions`` as pixels in [0, 1], (B, 3, H, W); the pipeline's evaluation
    settings (DDIM steps, CFG scale, noise seed) unless given."""
    if seed is not None:
        pipe = _with_seed(pipe, seed)
    with torch.no_grad():
        return pipe.sample_pixels(model, list(captions), steps=steps, guidance=guidance)


def _with_seed(pipe, seed: int):
    clone = object.__new__(type(pipe))
    clone.__dict__.update(pipe.__dict__)
    clone.cfg = dataclasses.replace(pipe.cfg, eval=dataclasses.replace(pipe.cfg.eval, seed=seed))
    return clone


def grid(pixels01: torch.Tensor, captions: Sequence[str], *, columns: int | None = None):
    """A PIL image: the samples in a grid, each enlarged to ``CELL`` pixels with its caption beneath."""
    from PIL import Image, ImageDraw, ImageFont

    n = len(captions)
    columns = columns or min(n, 4)
    rows = -(-n // columns)
    font = ImageFont.load_default()
    line_h = 12
    text_h = TEXT_LINES * line_h + 6
    sheet = Image.new("RGB", (columns * CELL, rows * (CELL + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    images = (pixels01.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    for i, (image, caption) in enumerate(zip(images, captions)):
        x, y = (i % columns) * CELL, (i // columns) * (CELL + text_h)
        sheet.paste(Image.fromarray(image).resize((CELL, CELL), Image.Resampling.NEAREST), (x, y))
        lines = textwrap.wrap(caption, width=CELL // 6)[:TEXT_LINES]
        for j, line in enumerate(lines):
            draw.text((x + 3, y + CELL + 3 + j * line_h), line, fill="black", font=font)
    return sheet


def save_png(image, path: str | Path) -> Path:
    """Write a PIL image as PNG, whole or not at all."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())
