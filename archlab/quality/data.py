"""Captioned image data: the built-in synthetic domain, an image folder, a Parquet file.

Every dataset answers ``len(ds)``, ``ds.get(i) -> (array, caption)`` and
``ds.captions()`` (every caption, without loading images: the text encoder's vocabulary
is built from them). Images come as uint8 ``(R, R, 3)`` at the resolution the dataset was
opened with (latents, see :mod:`archlab.quality.latents`, as float ``(C, r, r)``).
Real images are centre-cropped, resized once and cached as ``.npy`` (``allow_pickle=False``).

:func:`split` divides a dataset into a training part and a disjoint held-out part, the
same for every candidate: the synthetic domain keeps scenes from a far offset; real data a
seeded permutation's first ``heldout`` items.

>>> ds = SyntheticData(seed=0, resolution=32)
>>> image, caption = ds.get(3)
>>> image.shape, caption
((32, 32, 3), 'three cyan triangles')
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from archlab.errors import ConfigError
from archlab.quality.synthetic import VOCABULARY, Scene, make_scene, render

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
HELDOUT_OFFSET = 10_000_000  # synthetic scenes from here on are never trained on
CAPTION_COLUMNS = ("text", "caption")  # what Hugging Face's imagefolder and most datasets call it


class CaptionedImages(Protocol):
    resolution: int

    def __len__(self) -> int: ...

    def get(self, index: int) -> tuple[np.ndarray, str]: ...

    def captions(self) -> Iterable[str]: ...


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

    def captions(self) -> Iterable[str]:
        return [" ".join(VOCABULARY)]  # every word the domain's captions use


def _open_square(source: Any, resolution: int, where: str) -> np.ndarray:
    """An image file or bytes, centre-cropped square and resized; one that PIL cannot read names itself."""
    from PIL import Image

    try:
        with Image.open(source) as image:
            return _square(image, resolution)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(where, f"cannot be read as an image ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                          "replace it or remove it from the data") from None


def _square(image: Any, resolution: int) -> np.ndarray:
    from PIL import Image

    img = image.convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.array(img.resize((resolution, resolution), Image.Resampling.BICUBIC), dtype=np.uint8)


def default_cache(source: str | Path) -> Path:
    """Where a dataset's resized images go when no cache folder is given (never beside the data)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "archlab"
    return root / hashlib.sha1(str(Path(source).resolve()).encode()).hexdigest()[:16]


class _Cache:
    def __init__(self, folder: Path, resolution: int):
        self.folder = folder  # made on the first item stored: a refused run leaves nothing behind
        self.resolution = resolution

    def load(self, ident: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        path = self.folder / f"{hashlib.sha1(f'{ident}@{self.resolution}'.encode()).hexdigest()}.npy"
        if path.exists():
            return np.load(path, allow_pickle=False)
        arr = make()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, arr, allow_pickle=False)
        tmp.replace(path)
        return arr


def _caption_of(row: dict[str, Any], column: str | None, where: str) -> str:
    names = (column,) if column else CAPTION_COLUMNS
    for name in names:
        if name in row:
            if row[name] is None:
                raise ConfigError(where, f"{name} is null: give every image a caption (an empty string is allowed)")
            return str(row[name])
    raise ConfigError(where, f"has no caption column ({' or '.join(names)}); it has {', '.join(row) or 'no columns'}")


def _metadata_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return [(n, row) for n, row in enumerate(csv.DictReader(f), 2)]
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: line {n}", "is not a JSON object") from None
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: line {n}", "is not a JSON object")
        rows.append((n, row))
    return rows


class ImageFolder:
    """Captioned images in a folder, in any of the layouts users already have.

    In order of preference: Hugging Face's imagefolder ``metadata.jsonl`` or
    ``metadata.csv`` (``file_name`` relative to the folder, captions in ``text`` or
    ``caption``); archlab's ``captions.jsonl`` (``{"file": ..., "caption": ...}``); or a
    ``.txt`` beside each image (subfolders included).
    """

    def __init__(self, folder: str | Path, *, resolution: int, cache: str | Path | None = None,
                 caption_column: str | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError("data.path", f"{self.folder} is not a folder")
        self.resolution = resolution
        self.cache = _Cache(Path(cache) if cache else default_cache(self.folder), resolution)
        self.items = self._items(caption_column)
        missing = [p for p, _ in self.items if not p.is_file()]
        if missing:
            raise ConfigError(str(missing[0]), "is listed in the folder's captions but does not exist")
        if not self.items:
            raise ConfigError("data.path", f"{self.folder} holds no captioned images")
        check_captions([c for _, c in self.items], str(self.folder))

    def _items(self, caption_column: str | None) -> list[tuple[Path, str]]:
        for name in ("metadata.jsonl", "metadata.csv"):
            meta = self.folder / name
            if meta.is_file():
                out = []
                for n, row in _metadata_rows(meta):
                    if "file_name" not in row:
                        raise ConfigError(f"{meta}: line {n}", "has no file_name (Hugging Face imagefolder's column)")
                    out.append((self.folder / str(row["file_name"]), _caption_of(row, caption_column, f"{meta}: line {n}")))
                return out
        jsonl = self.folder / "captions.jsonl"
        if jsonl.is_file():
            out = []
            for n, row in _metadata_rows(jsonl):
                if "file" not in row or "caption" not in row:
                    raise ConfigError(f"{jsonl}: line {n}", 'must be {"file": ..., "caption": ...}')
                out.append((self.folder / str(row["file"]), str(row["caption"])))
            return out
        out = []
        for path in sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            txt = path.with_suffix(".txt")
            if not txt.is_file():
                raise ConfigError(str(path), "has no caption: put a .txt beside it, or a metadata.jsonl with file_name and text")
            out.append((path, txt.read_text().strip()))
        return out

    def __len__(self) -> int:
        return len(self.items)

    def get(self, index: int) -> tuple[np.ndarray, str]:

        path, caption = self.items[index]
        return self.cache.load(str(path.resolve()), lambda: _open_square(path, self.resolution, str(path))), caption

    def captions(self) -> Iterable[str]:
        return [c for _, c in self.items]


class ParquetImages:
    """A Parquet file with an image-bytes column and a caption column, read by row group."""

    def __init__(self, path: str | Path, *, resolution: int, cache: str | Path | None = None,
                 image_column: str = "image", caption_column: str | None = None):
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            self.file = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises its own error types
            raise ConfigError("data.path", f"{self.path} is not a readable Parquet file ({exc})") from None
        names = self.file.schema_arrow.names
        if caption_column is None:
            caption_column = next((c for c in CAPTION_COLUMNS if c in names), CAPTION_COLUMNS[0])
        for col in (image_column, caption_column):
            if col not in names:
                raise ConfigError("data", f"{self.path} has no column {col!r}; it has {', '.join(names)}")
        self.image_column, self.caption_column = image_column, caption_column
        check_captions(list(self.captions()), str(self.path))
        self.resolution = resolution
        self.cache = _Cache(Path(cache) if cache else default_cache(self.path), resolution)
        meta = self.file.metadata
        self.starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        self._group: tuple[int, list, list] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _row(self, index: int) -> tuple[Any, str]:
        g = int(np.searchsorted(self.starts, index, side="right") - 1)
        if self._group is None or self._group[0] != g:  # stream: one row group in memory at a time
            table = self.file.read_row_group(g, columns=[self.image_column, self.caption_column])
            self._group = (g, table.column(self.image_column).to_pylist(), table.column(self.caption_column).to_pylist())
        _, images, captions = self._group
        return images[index - int(self.starts[g])], str(captions[index - int(self.starts[g])])

    def get(self, index: int) -> tuple[np.ndarray, str]:
        raw, caption = self._row(index)
        data = raw["bytes"] if isinstance(raw, dict) else raw  # HF datasets store {"bytes", "path"}
        if not isinstance(data, (bytes, bytearray)):
            raise ConfigError(f"{self.path}: row {index}", f"column {self.image_column!r} holds no image bytes")
        return self.cache.load(f"{self.path.resolve()}#{index}", lambda: _open_square(
            io.BytesIO(data), self.resolution, f"{self.path}: row {index}")), caption

    def captions(self) -> Iterable[str]:
        return [str(c) for c in self.file.read(columns=[self.caption_column]).column(self.caption_column).to_pylist()]


def check_captions(captions: Sequence[str], where: str) -> None:
    """Refuse data whose captions are all empty: nothing would tie images to text and every text metric would read 0."""
    empty = sum(1 for c in captions if not str(c).strip())
    if captions and empty == len(captions):
        raise ConfigError(where, f"all {empty} captions are empty: text-to-image quality needs captions")


class Subset:
    """Some items of a dataset, by index."""

    def __init__(self, data: CaptionedImages, indices: Sequence[int]):
        self.data, self.indices = data, list(indices)
        self.resolution = data.resolution

    def __len__(self) -> int:
        return len(self.indices)

    def get(self, index: int) -> tuple[np.ndarray, str]:
        return self.data.get(self.indices[index])

    def captions(self) -> Iterable[str]:
        return self.data.captions()  # the vocabulary covers the whole dataset


def split(data: CaptionedImages, heldout: int, *, seed: int = 0) -> tuple[CaptionedImages, CaptionedImages]:
    """(training, held-out) parts, disjoint and the same for every candidate."""
    if isinstance(data, SyntheticData):
        return data, SyntheticData(seed=data.seed, resolution=data.resolution, size=heldout, offset=HELDOUT_OFFSET)
    n = len(data)
    if heldout >= n:
        raise ConfigError("data.heldout", f"{heldout} held-out items leave none of the {n} to train on; lower data.heldout "
                          "(and eval.heldout / eval.samples) or add data")
    order = np.random.default_rng([seed, 7]).permutation(n)
    return Subset(data, sorted(order[heldout:].tolist())), Subset(data, sorted(order[:heldout].tolist()))


def open_data(kind: str, *, resolution: int, path: str | Path | None = None, seed: int = 0, cache: str | Path | None = None,
              image_column: str = "image", caption_column: str | None = None) -> CaptionedImages:
    """``synthetic``, ``folder`` or ``parquet`` data at ``resolution`` (the whole set; see :func:`split`)."""
    if kind == "synthetic":
        return SyntheticData(seed=seed, resolution=resolution)
    if path is None:
        raise ConfigError("data.path", f"{kind} data needs a path")
    if kind == "folder":
        return ImageFolder(path, resolution=resolution, cache=cache, caption_column=caption_column)
    if kind == "parquet":
        return ParquetImages(path, resolution=resolution, cache=cache, image_column=image_column, caption_column=caption_column)
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

    def captions(self) -> Iterable[str]:
        return self.data.captions()
