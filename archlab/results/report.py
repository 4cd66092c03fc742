"""A study's results as one self-contained HTML file (plotly, its JavaScript embedded).

Sections: the Pareto front table (objectives with standard errors, and which members the
noise cannot tell apart); the front plot (every trial coloured by feasibility, front
highlighted, quality figures drawn with +-1 standard-error bars; hover shows trial,
objectives and architecture; reference presets drawn at their predicted latency); the
per-block latency of the front's designs as stacked bars by stage and block kind; and the
optimisation history.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import optuna
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from archlab.arch.presets import preset
from archlab.cost.predict import LATENCY, Predictor, parse_metric
from archlab.cost.table import LatencyTable, MissingBlocks
from archlab.files import write_text
from archlab.quality import registry
from archlab.results.pareto import (
    complete,
    front_rows,
    is_feasible,
    noise_note,
    pareto,
    racing_spend,
    spend_line,
    standard_error,
)
from archlab.search.study import StudyConfig

REFERENCE_PRESETS = ("sd15", "snapfusion", "mobilediffusion", "mobilediffusion-lite")


def _hover(t: optuna.trial.FrozenTrial, names: list[str]) -> str:
    vals = "<br>".join(f"{n}: {v:.4g}" + (f" ± {standard_error(t, n):.2g}" if standard_error(t, n) else "")
                       for n, v in zip(names, t.values or []))
    return f"trial {t.number}<br>{vals}<br>{html.escape(t.user_attrs.get('summary', ''))}"


def _preset_value(name: str, metric: str, tables: dict[str, LatencyTable]) -> float | None:
    """A reference preset's cheap metric (quality would need the preset's own proxy training)."""
    kind, label = parse_metric(metric)
    if kind not in ("params", "gflops", LATENCY):
        return None
    table = tables.get(label) if label else None
    if kind == LATENCY and table is None:
        return None
    try:
        score = Predictor([table] if table is not None else []).score(preset(name))
    except MissingBlocks:
        return None
    if kind == "params":
        return float(score.params)
    if kind == "gflops":
        return score.gflops
    return score.latency_ms[label]


def axis_title(cfg: StudyConfig, name: str) -> str:
    """An objective's axis title: its name, unit, and which way is better (what a quality metric is: under the page's
    table, :func:`metric_notes`)."""
    o = next((o for o in cfg.objectives if o.name == name), None)
    better = "" if o is None else ("lower is better" if o.direction == "minimize" else "higher is better")
    kind, label = parse_metric(name)
    unit = {LATENCY: f"ms on {label}", "params": "parameters", "gflops": "GFLOPs"}.get(kind)
    return f"{kind} ({unit}; {better})" if unit else f"{name} ({better})"


def metric_notes(cfg: StudyConfig) -> str:
    """One line per quality objective: what it measures."""
    return " ".join(f"<b>{html.escape(o.name)}</b>: {html.escape(registry.get(o.name).summary)}."
                    for o in cfg.objectives if registry.is_metric(o.name))


# one hue per block kind, a shade per stage (light at the top of the down path, dark at the top of the up path)
KIND_SCALES = {"resnet": "Blues", "transformer": "Oranges", "downsample": "Greens", "upsample": "Purples"}


def block_colour(kind: str, stage: str, stages: list[str]) -> str:
    from plotly.colors import sample_colorscale

    position = stages.index(stage) / max(1, len(stages) - 1) if stage in stages else 0.5
    return sample_colorscale(KIND_SCALES.get(kind, "Greys"), [0.35 + 0.6 * position])[0]


def _error_bars(trials: list[optuna.trial.FrozenTrial], name: str) -> dict[str, Any] | None:
    errors = [standard_error(t, name) for t in trials]
    return {"type": "data", "array": errors, "visible": True, "thickness": 1} if any(errors) else None


def front_figure(study: optuna.Study, cfg: StudyConfig, tables: dict[str, LatencyTable]) -> go.Figure:
    names = [o.name for o in cfg.objectives]
    done = complete(study)
    front, hv, ref = pareto(study, cfg)
    front_ids = {t.number for t in front}
    yi = 1 if len(names) > 1 else 0
    x_name, y_name = names[0], names[yi]
    fig = go.Figure()
    for label, colour, keep in (("infeasible", "#bbbbbb", lambda t: not is_feasible(t)),
                                ("feasible", "#4c78a8", lambda t: is_feasible(t) and t.number not in front_ids),
                                ("Pareto front", "#e45756", lambda t: t.number in front_ids)):
        ts = sorted((t for t in done if keep(t)), key=lambda t: t.values[0])
        fig.add_trace(go.Scatter(x=[t.values[0] for t in ts], y=[t.values[yi] for t in ts],
                                 error_x=_error_bars(ts, x_name), error_y=_error_bars(ts, y_name),
                                 mode="markers+lines" if label == "Pareto front" else "markers", name=label,
                                 marker={"color": colour, "size": 11 if label == "Pareto front" else 8},
                                 line={"dash": "dot"} if label == "Pareto front" else None,
                                 text=[_hover(t, names) for t in ts], hoverinfo="text"))
    for name in REFERENCE_PRESETS:
        x = _preset_value(name, x_name, tables)
        y = _preset_value(name, y_name, tables)
        if x is not None and y is not None:
            fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text", text=[name], textposition="top center",
                                     marker={"symbol": "star", "size": 14, "color": "#54a24b"}, name=name))
        elif x is not None:
            fig.add_vline(x=x, line_dash="dash", line_color="#54a24b", annotation_text=name, annotation_position="top")
    fig.update_layout(title=f"{cfg.name}: {x_name} vs {y_name} (hypervolume {hv:.4g}); bars: ±1 standard error",
                      xaxis_title=axis_title(cfg, x_name), yaxis={"title": axis_title(cfg, y_name), "automargin": True},
                      template="plotly_white", height=520, margin={"t": 70},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def breakdown_figure(study: optuna.Study, cfg: StudyConfig) -> go.Figure | None:
    front, _, _ = pareto(study, cfg)
    key = next((k for t in front for k in t.user_attrs if k.startswith("block_latency.")), None)
    if key is None:
        return None
    groups: dict[str, dict[int, float]] = {}
    for t in front:
        desc_blocks = {f"{s}.{i}": b for s, body in t.user_attrs["description"]["stages"].items() for i, b in enumerate(body["blocks"])}
        for name, ms in t.user_attrs.get(key, []):
            block = desc_blocks.get(name)
            kind = block if isinstance(block, str) else next(iter(block)) if block else "?"
            label = f"{name.split('.')[0]} {kind}"
            groups.setdefault(label, {})
            groups[label][t.number] = groups[label].get(t.number, 0.0) + ms
    trials = [f"trial {t.number}" for t in front]
    stage_order = sorted({g.split()[0] for g in groups}, key=_stage_rank)
    fig = go.Figure()
    for label in sorted(groups, key=lambda g: (_stage_rank(g.split()[0]), g)):
        stage, kind = label.split()[0], label.split()[1]
        fig.add_trace(go.Bar(name=label, x=trials, y=[groups[label].get(t.number, 0.0) for t in front],
                             marker_color=block_colour(kind, stage, stage_order)))
    fig.update_layout(barmode="stack", title=f"Per-block latency of the front's designs ({key.split('.', 1)[1]}), by stage and block kind",
                      yaxis_title="ms (block figures, before the overhead term)", template="plotly_white", height=520)
    return fig


def history_figure(study: optuna.Study, cfg: StudyConfig) -> go.Figure:
    """Each objective per trial, and its best so far among feasible trials (a line)."""
    fig = go.Figure()
    done = complete(study)
    for i, o in enumerate(cfg.objectives):
        axis = "y" if i == 0 else f"y{i + 1}"
        fig.add_trace(go.Scatter(x=[t.number for t in done], y=[t.values[i] for t in done], mode="markers",
                                 error_y=_error_bars(done, o.name), name=o.name, yaxis=axis))
        best, xs, ys = None, [], []
        for t in done:
            if is_feasible(t) and (best is None or (t.values[i] < best if o.direction == "minimize" else t.values[i] > best)):
                best = t.values[i]
            if best is not None:
                xs.append(t.number)
                ys.append(best)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv"}, name=f"{o.name}: best so far (feasible)",
                                 yaxis=axis))
    layout: dict[str, Any] = {"title": "Optimisation history", "xaxis_title": "trial", "template": "plotly_white", "height": 500,
                              "margin": {"t": 80}, "legend": {"orientation": "h", "y": -0.25},
                              "yaxis": {"title": axis_title(cfg, cfg.objectives[0].name), "automargin": True}}
    for i, o in enumerate(cfg.objectives[1:], start=2):
        layout[f"yaxis{i}"] = {"title": axis_title(cfg, o.name), "overlaying": "y", "side": "right",
                               "anchor": "free" if i > 2 else "x", "autoshift": True, "automargin": True}
    fig.update_layout(**layout)
    return fig


def _stage_rank(stage: str) -> tuple[int, int]:
    """down0 .. downN, mid, upN .. up0: the order a UNet runs its stages."""
    if stage.startswith("down"):
        return (0, int(stage[4:]))
    if stage == "mid":
        return (1, 0)
    return (2, -int(stage[2:])) if stage.startswith("up") else (3, 0)


def _samples_cell(trial_number: int, study: optuna.Study, cfg: StudyConfig) -> str:
    """The trial's sample grid (its Optuna artifact), inline, or a dash."""
    import base64
    import os

    trial = study.trials[trial_number]
    artifact = trial.user_attrs.get("samples_artifact")
    path = os.path.join(cfg.out_dir, "artifacts", artifact) if artifact else None
    if not path or not os.path.isfile(path):
        return "-"
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="height:96px" alt="samples of trial {trial_number}">'


def _cell(row: dict[str, Any], name: str) -> str:
    se = row.get(f"{name}_se")
    return f"{row[name]:.4g}" + (f" ± {se:.2g}" if se else "")


def write_report(study: optuna.Study, cfg: StudyConfig, out: str | Path) -> Path:
    tables = {}
    for ref in cfg.tables():
        table = LatencyTable.load(ref)
        tables[table.label] = table
    figures = [f for f in (front_figure(study, cfg, tables), breakdown_figure(study, cfg), history_figure(study, cfg)) if f]
    front, hv, ref = pareto(study, cfg)
    names = [o.name for o in cfg.objectives]
    rows = "".join(
        f"<tr><td>{r['trial']}</td>" + "".join(f"<td>{_cell(r, n)}</td>" for n in names)
        + f"<td>{r.get('seeds', 1)}</td><td>{', '.join(map(str, r['not_distinguishable_from'])) or '-'}</td><td>{html.escape(r['summary'])}</td>"
        + f"<td>{_samples_cell(r['trial'], study, cfg)}</td></tr>"
        for r in front_rows(front, cfg))
    spend = racing_spend(study, cfg)
    body = "\n".join(f.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot{i}") for i, f in enumerate(figures))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>archlab report: {html.escape(cfg.name)}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;margin:24px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px}}</style>
</head><body>
<h1>Study {html.escape(cfg.name)}</h1>
<p>{len(complete(study))} complete trials; Pareto front of {len(front)};
hypervolume {hv:.4g} against reference point {", ".join(f"{n}={r:.4g}" for n, r in zip(names, ref))}.
Quality figures are shown ± one standard error. "Not distinguishable from" lists the front members that are as good
on every objective within two combined standard errors: the data does not show this design beating them.
{html.escape(noise_note(cfg)) if cfg.needs_proxy else ""} {html.escape(spend_line(spend)) if spend else ""} {metric_notes(cfg)}</p>
<table><tr><th>trial</th>{"".join(f"<th>{html.escape(n)}</th>" for n in names)}<th>proxy seeds</th><th>not distinguishable from</th><th>architecture</th><th>samples</th></tr>{rows}</table>
{body}
</body></html>"""
    return write_text(out, page)
