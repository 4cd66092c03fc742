"""Page faults per run and time of whole models, under the system allocator and then the steady one, in one process.

Models are sampled from a table's space (``--table``) or named from a validation's stored
timings (``--timings FILE --models NAME ...``, e.g. an unseen-space run's), and with
``--blocks`` each model's ReLU-attention blocks are timed alone too. ``system`` runs first:
``steady`` is process-wide and cannot be undone. Not interleaved, so the host's drift between
the two halves is not separated from the allocator's effect; the fault counts are exact.

    .venv/bin/python -m benchmarks.latency.page_faults --table x86-2core_torch-cpu --samples 4 --seed 91 \
        --out benchmarks/results/page_faults/page_faults_default_space.json
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

from archlab.arch.description import layout
from archlab.arch.reading import description_from_dict
from archlab.convert import model_and_inputs
from archlab.cost.backends import get_backend
from archlab.cost.keys import spec_of
from archlab.cost.table import LatencyTable
from archlab.tables import sample_table_models
from benchmarks.common import write_result


def faults_and_ms(backend, run, repeats: int) -> tuple[float, int]:
    """Fastest of ``repeats`` runs after one warm-up, and the minor page faults per run."""
    run()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    timing = backend.measure(run, warmup=0, repeats=repeats)
    return round(timing.min_ms, 1), int((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / repeats)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--table", help="sample models from this table's space")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=91)
    p.add_argument("--timings", type=Path, help="a validation's stored timings, to take named models from")
    p.add_argument("--models", nargs="*", default=[], help="with --timings: model names (or their endings)")
    p.add_argument("--blocks", action="store_true", help="also time each model's ReLU-attention blocks alone")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    if a.timings:
        stored = json.loads(a.timings.read_text())["models"]
        descs = [description_from_dict(stored[next(n for n in stored if n.endswith(m))]["description"]) for m in a.models]
    else:
        descs = sample_table_models(LatencyTable.load(a.table), n=a.samples, seed=a.seed)
    out: dict[str, dict] = {}
    for mode in ("system", "steady"):
        backend = get_backend("torch-cpu", threads=a.threads, warmup=0, repeats=a.repeats, allocator=mode)
        for desc in descs:
            model, inputs = model_and_inputs(desc)
            out.setdefault(desc.name, {})[mode] = faults_and_ms(backend, backend.prepare(model, inputs), a.repeats)
            print(desc.name, mode, "ms, faults per run:", out[desc.name][mode], flush=True)
            del model
            for site in layout(desc) if a.blocks else []:
                spec = spec_of(site, desc.time_embed_dim, desc.text_dim, desc.text_tokens, desc.norm_groups, 1, "float32")
                if "att=relu" in spec.key and f"{spec.key}|{mode}" not in out[desc.name]:
                    out[desc.name][f"{spec.key}|{mode}"] = faults_and_ms(
                        backend, backend.prepare(spec.module(), spec.inputs(), name=spec.key), a.repeats)
        backend.close()
    if a.out:
        write_result(a.out, out)


if __name__ == "__main__":
    main()
