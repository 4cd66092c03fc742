"""Export a chosen architecture for the expensive stages that follow a search.

Writes the description (YAML and JSON), the full-size model's weights (safetensors; random
init, or inherited block by block from a local pretrained SD UNet where the blocks match),
ONNX checked in onnxruntime against PyTorch, optionally LiteRT and Core ML packages, a
model card, and a hand-off file with the published recipes' settings for step
distillation (SnapFusion's CFG-aware loss) and one-step GAN finetuning (UFOGen).
"""

from __future__ import annotations

import gc
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

from archlab import resources
from archlab.arch.builder import UNet, build
from archlab.arch.description import Description
from archlab.arch.diffusers_export import diffusers_config, export_diffusers
from archlab.arch.diffusers_import import diffusers_prefixes, read_description, read_weights
from archlab.convert import ForwardWrapper, example_inputs, export_coreml, export_onnx, export_tflite, missing_modules
from archlab.cost.keys import block_specs
from archlab.cost.predict import Predictor, count, parse_metric
from archlab.cost.table import LatencyTable, MissingBlocks
from archlab.errors import ConfigError
from archlab.files import staged_folder
from archlab.results.pareto import complete, is_feasible

PICK = re.compile(r"^\s*([A-Za-z_@.\-0-9]+)\s*(<=|>=)\s*([0-9.eE+\-]+)\s*$")


def pick_trial(study: Any, cfg: Any, *, trial: int | None = None, pick: str | None = None) -> Any:
    """The trial to export: by number, or the best feasible one meeting ``metric<=value``.

    "Best" is the first objective that is not the picked metric (a quality objective when the
    pick is a latency budget), in its direction.
    """
    done = complete(study)
    if trial is not None:
        found = [t for t in done if t.number == trial]
        if not found:
            raise ConfigError("--trial", f"no complete trial {trial} in study {cfg.name}")
        return found[0]
    candidates = [t for t in done if is_feasible(t)]
    metric = None
    if pick:
        m = PICK.match(pick)
        if not m:
            raise ConfigError("--pick", f"{pick!r} is not of the form metric<=value or metric>=value")
        metric, op, bound = m.group(1), m.group(2), float(m.group(3))

        def value(t: Any) -> float:
            attrs = {k[len("metric."):]: v for k, v in t.user_attrs.items() if k.startswith("metric.") and not k.endswith("_se")}
            hits = [v for k, v in attrs.items() if k == metric or parse_metric(k)[0] == metric]
            if not hits:
                raise ConfigError("--pick", f"{metric!r} is not a metric of this study ({', '.join(sorted(attrs))})")
            return hits[0]

        candidates = [t for t in candidates if (value(t) <= bound if op == "<=" else value(t) >= bound)]
    if not candidates:
        raise ConfigError("--pick", f"no feasible complete trial meets {pick or 'the constraints'}")
    idx = next((i for i, o in enumerate(cfg.objectives) if not metric or o.metric != parse_metric(metric)[0]), 0)
    sign = 1 if cfg.objectives[idx].direction == "minimize" else -1
    return min(candidates, key=lambda t: sign * t.values[idx])


@dataclass
class Inheritance:
    copied: list[tuple[str, str]]  # (our block, its source in the pretrained UNet)
    fresh: list[str]  # blocks left at random init


def inherit_from_diffusers(model: UNet, folder: str | Path) -> Inheritance:
    """Copy weights from a local diffusers UNet wherever a block of ours has an identical block
    (same kind, choices and shapes) in the same stage of the pretrained model, in order."""
    source_desc = read_description(folder)
    weights = read_weights(folder)
    prefixes = diffusers_prefixes(source_desc)
    ours = model.description
    state = model.state_dict()
    src_by_stage: dict[str, list[tuple[str, str]]] = {}
    for site, spec in block_specs(source_desc):
        src_by_stage.setdefault(site.stage, []).append((f"stages.{site.name}", spec.key))
    copied, fresh = [], []
    for site, spec in block_specs(ours):
        name = f"stages.{site.name}"
        pool = src_by_stage.get(site.stage, [])
        match = next((i for i, (_, key) in enumerate(pool) if key == spec.key), None)
        if match is None:
            fresh.append(site.name)
            continue
        src_name, _ = pool.pop(match)
        src_prefix = prefixes[src_name]
        for key in [k for k in state if k.startswith(name + ".")]:
            state[key] = weights[src_prefix + key[len(name):]]
        copied.append((site.name, src_prefix))
    for stem in ("conv_in", "time_embedding", "conv_norm_out", "conv_out", "add_embedding"):
        keys = [k for k in state if k.startswith(stem + ".")]
        if keys and all(k in weights and weights[k].shape == state[k].shape for k in keys):
            for k in keys:
                state[k] = weights[k]
            copied.append((stem, stem))
        elif keys:
            fresh.append(stem)
    model.load_state_dict(state)
    return Inheritance(copied, fresh)


def memory_needed(desc: Description, *, onnx: bool = True) -> int:
    """Bytes an export needs at its peak: the float32 weights held once, plus what the ONNX export and check add.
    Fitted on measured peaks (``/usr/bin/time -v archlab export``, 2026-12-05): mobilediffusion (1.5 GB of
    weights) 4.4 GB, sd15 (3.4 GB) 9.0 GB, so about 0.75 GB + 2.4x the weights with ONNX; without it the
    weights once and the interpreter. A margin of 10% is added."""
    weights = 4 * count(desc).params
    return int(1.1 * ((0.75 * 2**30 + 2.4 * weights) if onnx else (0.75 * 2**30 + 1.2 * weights)))


def available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def onnx_difference(path: Path, inputs: tuple[torch.Tensor, ...], expected: np.ndarray) -> float:
    """The max abs difference between onnxruntime's output for ``inputs`` and PyTorch's (``expected``)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
    return float(np.abs(got - expected).max())


def latency_on_tables(desc: Description) -> dict[str, Any]:
    """Predicted latency of ``desc`` on every shipped table (a table lacking a block says how many).

    Each figure is for its table's own device, named beside it, not for this machine, so a
    table from another machine (the H100's, here) is not warned about.
    """
    out: dict[str, Any] = {}
    for name in resources.names("tables"):
        table = LatencyTable.load(name)
        try:
            ms = Predictor([table], check_device=False).score(desc).latency_ms[table.label]
            out[table.name] = {"ms": round(ms, 2),
                               "device": table.meta.device, "runtime": table.meta.runtime,
                               "threads": table.meta.threads}
        except MissingBlocks as exc:
            out[table.name] = {"ms": None, "missing_blocks": len(exc.keys)}
    return out


HANDOFF_NOTES = """\
# The few-step hand-off: `archlab distill handoff.yaml` (SnapFusion's CFG-aware step distillation
# to {student} steps), then `archlab gan-finetune handoff.yaml` (one-step UFOGen / DiffusionGAN
# finetuning; generator and discriminator both start from model.safetensors).
# The teacher must be trained: a full-size export has {weights} weights. Train it first, or
# point `teacher:` at a trained model (a proxy from `archlab proxy train --out DIR`: DIR/model.safetensors).
# For this full-size model, give `quality` its data (images with data.vae, a local AutoencoderKL
# folder) and text tower (text: {{encoder: openclip, checkpoint: ...}}); see archlab.quality.config.
"""


def write_handoff(out: Path, origin: str) -> None:
    """``handoff.yaml``: the distill file ``archlab distill`` and ``archlab gan-finetune`` read, with the published settings."""
    from archlab.config import to_data
    from archlab.distill.config import DistillConfig, GanConfig

    data = {"teacher": ".", "quality": {"proxy": {"width": 1.0, "resolution": None}},
            "distill": to_data(DistillConfig()), "gan": to_data(GanConfig()), "out": "distilled"}
    notes = HANDOFF_NOTES.format(student=DistillConfig().student_steps, weights=origin)
    (out / "handoff.yaml").write_text(notes + yaml.safe_dump(data, sort_keys=False))


def export_architecture(desc: Description, out: str | Path, *, provenance: dict[str, Any] | None = None,
                        metrics: dict[str, Any] | None = None, weights: Mapping[str, torch.Tensor] | None = None,
                        from_diffusers: str | Path | None = None, onnx: bool = True, tflite: bool = False, coreml: bool = False,
                        diffusers: bool = False, seed: int = 0) -> dict[str, Any]:
    """Write everything for one architecture into ``out``; returns the model card as a dict.

    Weights: ``weights`` (a state dict of this description's UNet, e.g. an evolved
    pretrained model; every key and shape is checked), else inherited block by block from
    a local diffusers UNet (``from_diffusers``), else a seeded random init. Everything is
    written into a hidden folder beside ``out`` and moved in at the end: an interrupted
    export leaves ``out`` as it was. An export the machine's free memory cannot hold is refused
    before anything is built (:func:`memory_needed`).
    """
    if diffusers:
        diffusers_config(desc)  # refused in one line, before anything is built, when diffusers cannot express it
    need, have = memory_needed(desc, onnx=onnx), available_memory()
    if have is not None and need > have:
        raise ConfigError("export", f"{desc.name} needs about {need / 2**30:.1f} GB of memory to export "
                          f"({'with' if onnx else 'without'} ONNX), this machine has {have / 2**30:.1f} GB available; "
                          "free memory" + (" or pass --no-onnx" if onnx else ""))
    with staged_folder(out) as stage:
        return _write_export(desc, stage, provenance=provenance, metrics=metrics, weights=weights,
                             from_diffusers=from_diffusers, onnx=onnx, tflite=tflite, coreml=coreml, diffusers=diffusers, seed=seed)


def _write_export(desc: Description, out: Path, *, provenance: dict[str, Any] | None, metrics: dict[str, Any] | None,
                  weights: Mapping[str, torch.Tensor] | None, from_diffusers: str | Path | None, onnx: bool, tflite: bool,
                  coreml: bool, diffusers: bool, seed: int) -> dict[str, Any]:
    (out / "description.yaml").write_text(desc.to_yaml())
    (out / "description.json").write_text(desc.to_json())
    torch.manual_seed(seed)
    model = build(desc).eval()
    inheritance = None
    if weights is not None:
        missing = model.load_state_dict(dict(weights), strict=False)
        if missing.missing_keys or missing.unexpected_keys:
            bad = (missing.missing_keys or missing.unexpected_keys)[0]
            raise ConfigError("weights", f"do not fit the description ({bad} is {'missing' if missing.missing_keys else 'extra'})")
        origin = "trained (given with the description)"
    elif from_diffusers:
        inheritance = inherit_from_diffusers(model, from_diffusers)
        origin = f"inherited from {from_diffusers}"
    else:
        origin = f"random init (seed {seed})"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"),
              metadata={"description": desc.to_json(), "weights": origin})
    c = count(desc)
    card: dict[str, Any] = {
        "name": desc.name, **(provenance or {}), "params": c.params, "gflops": c.gflops,
        "conv_blocks": c.conv_blocks, "self_attention": c.self_attention, "cross_attention": c.cross_attention,
        "resolution": desc.resolution, "latency": latency_on_tables(desc), "proxy_metrics": metrics or {}, "weights": origin,
    }
    if inheritance is not None:
        card["inherited_blocks"] = [{"block": a, "from": b} for a, b in inheritance.copied]
        card["fresh_blocks"] = inheritance.fresh
    if diffusers:  # a UNet2DConditionModel folder: from_pretrained(out / "diffusers")
        export_diffusers(model, out / "diffusers")
        card["diffusers"] = "diffusers/ (UNet2DConditionModel.from_pretrained)"
    wrapper, inputs = ForwardWrapper(model).eval(), example_inputs(desc, seed=seed)  # the one model: no second copy
    if tflite:
        export_tflite(wrapper, inputs, out / "model.tflite")
    if coreml:
        export_coreml(wrapper, inputs, out / "model.mlpackage")
    if onnx:  # last: the PyTorch model is let go before onnxruntime loads its own copy of the weights
        with torch.no_grad():
            expected = wrapper(*inputs).numpy()
        export_onnx(wrapper, inputs, out / "model.onnx", exporter="dynamo" if not missing_modules("onnxscript") else "torchscript")
        del wrapper, model
        gc.collect()
        card["onnx_max_abs_diff"] = onnx_difference(out / "model.onnx", inputs, expected)
    (out / "model_card.json").write_text(json.dumps(card, indent=1))
    write_handoff(out, origin)
    lines = [f"# {desc.name}", ""]
    lines += [f"From {', '.join(f'{k} {v}' for k, v in (provenance or {}).items())}.", ""] if provenance else []
    lines += [f"- parameters: {c.params:,}", f"- GFLOPs at {desc.resolution}x{desc.resolution} latents: {c.gflops:.1f}",
              f"- conv blocks / self-attention / cross-attention: {c.conv_blocks} / {c.self_attention} / {c.cross_attention}",
              f"- weights: {origin}"]
    for name, lat in card["latency"].items():
        lines.append(f"- predicted latency on {name}: " + (f"{lat['ms']} ms ({lat['device']}, {lat['runtime']}, {lat['threads']} threads)"
                                                            if lat.get("ms") is not None else f"n/a ({lat['missing_blocks']} blocks not in the table)"))
    for k, v in (metrics or {}).items():
        if isinstance(v, Mapping) and "value" in v:
            lines.append(f"- proxy {k}: {v['value']:.4g} ± {v['se']:.2g} (standard error, {v['n']} items)")
        else:
            lines.append(f"- proxy {k}: {v:.4g}" if isinstance(v, float) else f"- proxy {k}: {v}")
    if "onnx_max_abs_diff" in card:
        lines.append(f"- ONNX (onnxruntime) vs PyTorch max abs difference: {card['onnx_max_abs_diff']:.2e}")
    lines += ["", "Next: `archlab distill handoff.yaml` (8-step CFG-aware distillation), then `archlab gan-finetune` on its "
              "output (one-step UFOGen finetuning); `handoff.yaml` holds their settings."]
    (out / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    return card


def load_evolve_output(folder: str | Path) -> tuple[Description, dict[str, torch.Tensor] | None, dict[str, Any]]:
    """An ``archlab evolve`` output folder: its result description, the full-size weights when the
    run trained a pretrained UNet itself (a proxy run's weights are the proxy's: None), and its
    final metrics."""
    from archlab.arch.reading import load_description
    from archlab.quality.train import read_trained

    folder = Path(folder)
    if not (folder / "result.yaml").is_file():
        raise ConfigError(str(folder), "has no result.yaml: not an evolve output folder")
    desc = load_description(folder / "result.yaml")
    weights = None
    if (folder / "model.safetensors").is_file():
        trained = read_trained(folder / "model.safetensors")
        if trained.description.replace(name=desc.name) == desc:
            weights = {k[len("unet."):]: v for k, v in trained.tensors.items() if k.startswith("unet.")}
    log = json.loads((folder / "log.json").read_text()) if (folder / "log.json").is_file() else {}
    return desc, weights, log.get("final_metrics", {})
