"""A stored table validation as the row of benchmarks/README.md's table of validations.

Bold marks a goal met (``archlab.tables.GOALS``) or a lead over FLOPs beyond 2 paired bootstrap
standard errors, as the README's legend says; every figure is read from the file, none typed.

    .venv/bin/python -m benchmarks.latency.validation_row \\
        benchmarks/results/table_validations/validate_xeon-2core-snapgen_torch-cpu_seed71_settle.json \\
        --label '`xeon-2core-snapgen_torch-cpu` (seed 71)'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from archlab.tables.validation_result import FIGURES, Validation


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def row(v: Validation, label: str) -> str:
    """``| label | within10 t/f/r | within5 t/f | RMSPE t/f/r | Spearman t/f | differences | closer |``."""
    goals = v.goals()
    r = v.retest
    within10 = f"{_bold(_pct(v.table.within_10), goals['within_10'])} / {_pct(v.flops.within_10)}" + (
        f" / {_pct(r.within_10)}%" if r else "%")
    within5 = f"{_pct(v.table.within_5)} / {_pct(v.flops.within_5)}%"
    rmspe = f"{_bold(_pct(v.table.rmspe), goals['rmspe_over_retest'])} / {_pct(v.flops.rmspe)}" + (
        f" / {_pct(r.rmspe)}%" if r else "%")
    spearman = f"{_bold(f'{v.table.spearman:.3f}', goals['spearman'])} / {v.flops.spearman:.3f}"
    diffs = []
    for figure in ("within_10", "within_5", "rmspe"):
        d = (v.table_minus_flops or {}).get(figure)
        if d is None:
            diffs.append("n/a")
        elif d.difference == 0 and d.se == 0:
            diffs.append("0")
        else:
            text = f"{100 * d.difference:+.1f} +- {100 * d.se:.1f}"
            diffs.append(_bold(text, d.beyond_noise(figure)))
    closer = "n/a"
    if v.table_closer is not None:
        c = v.table_closer
        closer = f"{c.closer} of {c.closer + c.farther} (p {c.sign_test_p:.2g})"
    return f"| {label} | {within10} | {within5} | {rmspe} | {spearman} | {', '.join(diffs)} | {closer} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("validation", type=Path)
    p.add_argument("--label", required=True)
    p.add_argument("--as-stored", action="store_true",
                   help="a --recalibrate validation: the row of the fit the table had before, on the same timings")
    a = p.parse_args()
    v = Validation.from_dict(json.loads(a.validation.read_text()))
    if a.as_stored:
        if v.as_stored is None:
            raise SystemExit(f"error: {a.validation}: no as-stored fit (it was not run with --recalibrate); drop --as-stored")
        v = v.as_stored
    print(row(v, a.label))
    met = v.goals()
    print(f"goals met: {', '.join(k for k, ok in met.items() if ok) or 'none'}; missed: "
          f"{', '.join(k for k, ok in met.items() if not ok) or 'none'}; beyond noise vs FLOPs: "
          f"{', '.join(k for k, ok in (v.beyond_noise() or {}).items() if ok) or 'none'} (of {', '.join(FIGURES)})")


if __name__ == "__main__":
    main()
