"""Captioned image data: the built-in synthetic domain, an image folder, a Parquet file.

Every dataset answers ``len(ds)`` and ``ds.get(i) -> (uint8 image (R, R, 3), caption)`` at
the resolution it was opened with. Real images are centre-cropped, resized once and cached
as ``.npy`` (``allow_pickle=False``) under a cache folder, so later epochs and later
candidates read arrays, not JPEGs. A Parquet file is read one row group at a time.

>>> ds = SyntheticData(seed=0, resolution=32)
>>> image, caption = ds.get(3)
>>> image.shape, caption
((32, 32, 3), 'three cyan triangles')
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Protocol

import numpy as np

from archlab.errors import ConfigError
from archlab.quality.synthetic import Scene, make_scene, render

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class CaptionedImages(Protocol):
    resolution: int

    def __len__(self) -> int: ...

    def get(self, index: int) -> tuple[np.ndarray, str]: ...


class SyntheticData:
    """Scenes ``offset .. offset + size`` of the synthetic domain with ``seed``."""

    def __init__(self, *, seed: int = 0, resolution: int = 32, size: int = 1_000_000, offset: int = 0):
        self.seed, self.resolution, self.size, self.offset = seed, resolution, size, offset

    def __len__(self) -> int:
        return self.size

    def scene(self, index: int) -> Scene:
        return make_scene(self.seed, self.offset + index)

    def get(self, index: int) -> tuple[np.ndarray, str]:
        scene = self.scene(index)
        return render(scene, self.resolution), scene.caption


def _square(image, resolution: int) -> np.ndarray:
    from PIL import Image

    img = image.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((resolution, resolution), Image.Resampling.BICUBIC), dtype=np.uint8)


class _Cache:
    def __init__(self, folder: Path | None, resolution: int):
        self.folder = folder
        self.resolution = resolution
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def load(self, ident: str, make) -> np.ndarray:
        if self.folder is None:
            return make()
        path = self.folder / f"{hashlib.sha1(f'{ident}@{self.resolution}'.encode()).hexdigest()}.npy"
        if path.exists():
            return np.load(path, allow_pickle=False)
        arr = make()
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, arr, allow_pickle=False)
        tmp.replace(path)
        return arr


class ImageFolder:
    """Images with captions in ``captions.jsonl`` (``{"file": ..., "caption": ...}`` per line)
    or in a ``.txt`` file beside each image."""

    def __init__(self, folder: str | Path, *, resolution: int, cache: str | Path | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError("data.path", f"{self.folder} is not a folder")
        self.resolution = resolution
        self.cache = _Cache(Path(cache) if cache else None, resolution)
        jsonl = self.folder / "captions.jsonl"
        items: list[tuple[Path, str]] = []
        if jsonl.is_file():
            for n, line in enumerate(jsonl.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    items.append((self.folder / row["file"], str(row["caption"])))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ConfigError(f"{jsonl}: line {n}", 'must be {"file": ..., "caption": ...}') from None
        else:
            for path in sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                txt = path.with_suffix(".txt")
                if not txt.is_file():
                    raise ConfigError(str(path), "has no caption: put a .txt beside it or use captions.jsonl")
                items.append((path, txt.read_text().strip()))
        missing = [p for p, _ in items if not p.is_file()]
        if missing:
            raise ConfigError(str(missing[0]), "is listed in captions.jsonl but does not exist")
        if not items:
            raise ConfigError("data.path", f"{self.folder} holds no captioned images")
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int) -> tuple[np.ndarray, str]:
        from PIL import Image

        path, caption = self.items[index]
        return self.cache.load(str(path.resolve()), lambda: _square(Image.open(path), self.resolution)), caption


class ParquetImages:
    """A Parquet file with an image-bytes column and a caption column, read by row group."""

    def __init__(self, path: str | Path, *, resolution: int, cache: str | Path | None = None,
                 image_column: str = "image", caption_column: str = "caption"):
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            self.file = pq.ParquetFile(self.path)
        except (OSError, Exception) as exc:  # pyarrow raises its own error types
            raise ConfigError("data.path", f"{self.path} is not a readable Parquet file ({exc})") from None
        names = self.file.schema_arrow.names
        for col in (image_column, caption_column):
            if col not in names:
                raise ConfigError("data.columns", f"{self.path} has no column {col!r}; it has {', '.join(names)}")
        self.image_column, self.caption_column = image_column, caption_column
        self.resolution = resolution
        self.cache = _Cache(Path(cache) if cache else None, resolution)
        meta = self.file.metadata
        self.starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        self._group: tuple[int, list, list] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _row(self, index: int) -> tuple[bytes | dict, str]:
        g = int(np.searchsorted(self.starts, index, side="right") - 1)
        if self._group is None or self._group[0] != g:  # stream: one row group in memory at a time
            table = self.file.read_row_group(g, columns=[self.image_column, self.caption_column])
            self._group = (g, table.column(self.image_column).to_pylist(), table.column(self.caption_column).to_pylist())
        _, images, captions = self._group
        return images[index - int(self.starts[g])], str(captions[index - int(self.starts[g])])

    def get(self, index: int) -> tuple[np.ndarray, str]:
        from PIL import Image

        raw, caption = self._row(index)
        data = raw["bytes"] if isinstance(raw, dict) else raw  # HF datasets store {"bytes", "path"}
        return self.cache.load(f"{self.path.resolve()}#{index}", lambda: _square(Image.open(io.BytesIO(data)), self.resolution)), caption


def open_data(kind: str, *, resolution: int, path: str | None = None, seed: int = 0, cache: str | None = None) -> CaptionedImages:
    """``synthetic``, ``folder`` or ``parquet``."""
    if kind == "synthetic":
        return SyntheticData(seed=seed, resolution=resolution)
    if path is None:
        raise ConfigError("data.path", f"{kind} data needs a path")
    if kind == "folder":
        return ImageFolder(path, resolution=resolution, cache=cache)
    if kind == "parquet":
        return ParquetImages(path, resolution=resolution, cache=cache)
    raise ConfigError("data.kind", f"{kind!r} is not one of synthetic, folder, parquet")


class ShuffledCaptions:
    """A control: every image paired with another image's caption (a fixed permutation)."""

    def __init__(self, data: CaptionedImages, *, seed: int = 0, pool: int = 100_000):
        self.data, self.resolution = data, data.resolution
        n = min(len(data), pool)
        self.perm = np.random.default_rng(seed + 99).permutation(n)

    def __len__(self) -> int:
        return len(self.perm)

    def get(self, index: int) -> tuple[np.ndarray, str]:
        image, _ = self.data.get(index)
        return image, self.data.get(int(self.perm[index]))[1]
