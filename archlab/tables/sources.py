"""What a table is measured for: search spaces, presets and description files, by name.

A table records its sources in its metadata (``sources``), so calibration and validation
can sample their whole models from the same spaces the blocks were measured for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence, TypeVar

from archlab.arch.description import Description
from archlab.arch.presets import preset, presets
from archlab.arch.reading import load_description
from archlab.config import read_yaml
from archlab.cost.keys import BlockSpec, distinct_specs
from archlab.errors import ConfigError
from archlab.resources import looks_like_path
from archlab.search.space import SearchSpace, load_space, spaces

T = TypeVar("T")


def _is_space_file(path: Path) -> bool:
    try:
        data = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(data, dict) and "levels" in data


def resolve_sources(sources: Sequence[str]) -> tuple[list[SearchSpace], list[Description]]:
    """Names or files of search spaces and descriptions (``preset:NAME`` / ``space:NAME`` force the kind)."""
    found_spaces: list[SearchSpace] = []
    descs: list[Description] = []
    for src in sources:
        if src.startswith("preset:"):
            descs.append(preset(src.split(":", 1)[1]))
        elif src.startswith("space:"):
            found_spaces.append(load_space(src))
        elif looks_like_path(src):  # a file: a space file has levels, a description stages
            path = Path(src)
            if not path.is_file():
                raise ConfigError(src, "no such file")
            if _is_space_file(path):
                found_spaces.append(load_space(path))
            else:
                descs.append(load_description(path))
        elif src in spaces():
            found_spaces.append(load_space(src))
        elif src in presets():
            descs.append(preset(src))
        else:
            raise ConfigError("source", f"{src!r} is not a search space ({', '.join(spaces())}), a preset "
                              f"({', '.join(presets())}) or a .yaml/.json file")
    return found_spaces, descs


def source_specs(sources: Sequence[str], *, batch: int = 1, dtype: str = "float32"
                 ) -> tuple[dict[str, BlockSpec], list[SearchSpace], list[Description]]:
    """Every distinct block the sources can hold (key -> spec), and the sources themselves."""
    found_spaces, descs = resolve_sources(sources)

    def all_descs() -> Iterator[Description]:
        for space in found_spaces:
            yield from space.iter_stage_variants()
        yield from descs

    return distinct_specs(all_descs(), batch=batch, dtype=dtype), found_spaces, descs


def spread_by_size(space: SearchSpace, n: int, seed: int, pool: int = 20) -> list[Description]:
    """``n`` models of ``space`` at evenly spaced quantiles of parameter count, from ``pool * n`` samples.

    Calibration models, so that they span the sizes: random draws bunch in the middle, where a
    per-weight-byte overhead term cannot be told from the block sum (the shipped torch-cpu
    table's 8 random models spanned 0.95-1.00 in measured / block sum, its validation models
    under-predicted the largest by 12%).
    """
    from archlab.cost.predict import Predictor

    counter = Predictor([])
    drawn = sorted(((counter.score(d).params, i, d) for i, (_, d) in enumerate(space.samples(max(n, pool * n), seed))),
                   key=lambda x: x[:2])
    return [x[2] for x in at_quantiles(drawn, n)]


def at_quantiles(ordered: Sequence[T], n: int) -> list[T]:
    """``n`` items of ``ordered`` at evenly spaced quantiles (the middle of each n-th)."""
    return [ordered[min(len(ordered) - 1, int((i + 0.5) * len(ordered) / n))] for i in range(n)]


def sample_models(found_spaces: Sequence[SearchSpace], descs: Sequence[Description], n: int, seed: int,
                  max_params: float | None = None) -> list[Description]:
    """Calibration models: spread over the first space's sizes (under a runtime's size limit), else the descriptions."""
    if found_spaces:
        space = found_spaces[0] if max_params is None else found_spaces[0].with_constraints(max_params=max_params)
        return spread_by_size(space, n, seed)
    return list(descs[:n])
