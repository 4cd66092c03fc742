"""Models trained once and shared by every candidate of a search: a teacher, or a supernet.

Both live in a folder (a study keeps it beside its outputs, under ``amortised/``), named by
a hash of every setting that shapes them, so a changed setting trains a new one and never
reuses a stale one. Training checkpoints (safetensors) as it goes and resumes after a kill;
a lock file makes a second worker wait for the first instead of training the same model.
``done.json`` (written last) marks a finished model, which is then only read.

- :class:`Teacher`: one architecture (``amortised.arch`` under the proxy rule) trained for
  ``amortised.steps``; candidates are trained to match its predictions (output distillation,
  as BK-SDM and SnapFusion do) and the ``teacher_distance`` metric scores how close they came.
- :class:`Supernet`: every parameter any member of a search space has, at its largest shape,
  trained by the sandwich rule (Once-for-All, BigNAS: each step the largest member, the
  smallest and random ones, each on its slice of the shared weights); a candidate inherits its
  slice (:meth:`Supernet.inherit`) and trains on from there.

Slicing (:func:`canonical_names`, :meth:`Supernet.view`): a parameter is named by its stage,
its block's kind and ordinal among that kind in the stage (``down1.transformer0``), and the
rest of its module path, so a candidate with fewer blocks takes the leading ones and a
shallower transformer its leading layers; every tensor takes its leading channels, and a
gated feed-forward projection (GEGLU, SwiGLU) its leading rows of each half.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from archlab.arch.description import Description
from archlab.arch.presets import resolve
from archlab.arch.modules import GatedProjection
from archlab.config import to_data
from archlab.errors import ConfigError
from archlab.quality import registry
from archlab.progress import step_bar
from archlab.quality.diffusion import noisy, target
from archlab.quality.metrics import item_losses
from archlab.quality.train import (ProxyModel, Trainer, draw_batch, pack_optimizer, read_safetensors, save_trained,
                                   scheduled_lr, unpack_optimizer, write_checkpoint)

DONE = "done.json"
COVER_SAMPLES = 200  # members drawn to find the largest shape of parameters only some members have


def long_run(train: Any, a: Any) -> Any:
    """The shared model's training settings: the candidates' batch and loss, its own steps, seed and decaying rate."""
    return dataclasses.replace(train, steps=a.steps, seed=a.seed, lr=a.lr, lr_schedule="cosine", time_budget_s=None)


def _identity(pipe: Any, a: Any) -> dict[str, Any]:
    """What shapes a shared model besides its architecture: the data, the text encoder and its own training."""
    train = {k: v for k, v in to_data(long_run(pipe.cfg.train, a)).items() if k not in ("threads", "seeds", "checkpoint_every")}
    return {"data": to_data(pipe.cfg.data), "text": to_data(pipe.cfg.text), "train": train}


def folder_for(root: str | Path, kind: str, identity: dict[str, Any]) -> Path:
    """``root/<kind>-<hash>``: one folder per distinct set of settings."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return Path(root) / f"{kind}-{digest}"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (a second process waits here until the first has finished)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mark_done(folder: Path, info: dict[str, Any]) -> None:
    tmp = folder / f".{DONE}.tmp"
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, folder / DONE)


# ---------------------------------------------------------------------- the teacher


class Teacher:
    """A model of ``cfg.amortised.arch`` trained once; see the module docstring."""

    def __init__(self, pipe: Any, root: str | Path):
        a = pipe.cfg.amortised
        self.pipe = pipe
        self.full = resolve(a.arch)
        self.description = pipe.proxy(self.full)
        identity = {"description": self.description.to_dict(), **_identity(pipe, a)}
        self.folder = folder_for(root, "teacher", identity)
        self._model: ProxyModel | None = None

    @property
    def done(self) -> bool:
        return (self.folder / DONE).is_file()

    def model(self, *, progress: bool = False) -> ProxyModel:
        """The trained teacher (its averaged weights), frozen; trained here first when it is not yet."""
        if self._model is None:
            with locked(self.folder):
                if not self.done:
                    self._train(progress)
            model = self.pipe.load_trained(self.folder / "model.safetensors")
            model.eval().requires_grad_(False)
            self._model = model
        return self._model

    def _train(self, progress: bool) -> None:
        a, pipe = self.pipe.cfg.amortised, self.pipe
        model = pipe.model(self.full, seed=a.seed)  # the proxy rule is applied here, once
        cfg = long_run(pipe.cfg.train, a)
        trainer = Trainer(model, pipe.data(self.description.resolution).train, cfg, device=pipe.device,
                          precision=pipe.precision, out_dir=self.folder / "training")
        start = time.process_time()
        result = trainer.train(progress=progress)
        with trainer.averaged():
            save_trained(model, self.folder / "model.safetensors", quality=pipe.cfg, extra={"role": "teacher"})
        _mark_done(self.folder, {"kind": "teacher", "steps": result.steps, "cpu_seconds_this_call": round(time.process_time() - start, 1),
                                 "final_loss": result.final_loss})


def teacher_distance(m: Any) -> dict[str, np.ndarray]:
    """Per held-out item: the distance between the candidate's prediction and the teacher's (fixed timesteps and noise)."""
    teacher = m.pipe.teacher().model()
    e, t = m.cfg.eval, m.cfg.train
    return {"teacher_distance": item_losses(m.model, m.held(m.heldout_n), schedule=t.schedule, prediction=t.prediction,
                                            seed=e.seed, batch=e.batch, precision=m.pipe.precision, against=teacher)}


registry.register(registry.Metric(
    "teacher_distance", False, "held-out distance to the shared teacher's predictions", teacher_distance,
    applies=lambda cfg: None if cfg.amortised.kind == "teacher" else "needs a teacher (quality.amortised.kind: teacher)",
    default=False))


# ---------------------------------------------------------------------- the supernet


def canonical_names(model: ProxyModel) -> dict[str, str]:
    """Each parameter's name in a supernet: blocks by stage, kind and ordinal among their kind (see the module docstring)."""
    desc = model.description
    out = {}
    for name, _ in model.named_parameters():
        parts = name.split(".")
        if parts[:2] == ["unet", "stages"]:
            stage, index = parts[2], int(parts[3])
            blocks = next(s for s in desc.stages if s.name == stage).blocks
            kind = blocks[index].kind
            ordinal = sum(b.kind == kind for b in blocks[:index])
            name_in_supernet = ".".join(["unet", "stages", stage, f"{kind}{ordinal}", *parts[4:]])
        else:
            name_in_supernet = name
        out[name] = name_in_supernet
    return out


def gated_parameters(model: torch.nn.Module) -> set[str]:
    """Parameters whose first dimension is two halves (a gated feed-forward's projection)."""
    return {f"{mod}.proj.{p}" for mod, module in model.named_modules() if isinstance(module, GatedProjection)
            for p in ("weight", "bias")}


def _slice(source: torch.Tensor, shape: torch.Size, gated: bool) -> torch.Tensor:
    if gated:
        half, want = source.shape[0] // 2, shape[0] // 2
        source = torch.cat([source[:want], source[half:half + want]])
    return source[tuple(slice(0, n) for n in shape)]


class Supernet:
    """The shared weights of a search space's members; see the module docstring."""

    def __init__(self, pipe: Any, space: Any, root: str | Path):
        a = pipe.cfg.amortised
        self.pipe, self.space = pipe, space
        self.cover = [pipe.proxy(d) for d in cover(space)]
        self.largest, self.smallest = pipe.proxy(extreme(space, largest=True)), pipe.proxy(extreme(space, largest=False))
        identity = {"space": space.name, "options": {k: list(v) for k, v in space.options.items()}, "members": a.members,
                    "proxy": to_data(pipe.cfg.proxy), **_identity(pipe, a)}
        self.folder = folder_for(root, "supernet", identity)
        torch.manual_seed(a.seed)
        shapes: dict[str, torch.Size] = {}
        init: dict[str, torch.Tensor] = {}
        # the largest member and the cover hold every parameter at its largest but those some members lack (a 1x1
        # shortcut where a ResNet's widths differ): a sample of the space finds their largest shapes too
        sample = [pipe.proxy(d) for _, d in space.samples(min(COVER_SAMPLES, space.size()), a.seed)]
        for desc in [self.largest, *self.cover, *sample]:
            model = self._member(desc)
            names, gated = canonical_names(model), gated_parameters(model)
            for name, p in model.named_parameters():
                c = names[name]
                if c not in shapes or any(a > b for a, b in zip(p.shape, shapes[c])):
                    if c in shapes and len(p.shape) != len(shapes[c]):
                        raise ValueError(f"supernet parameter {c} changes rank between members")
                    new = torch.Size(max(a, b) for a, b in zip(p.shape, shapes.get(c, p.shape)))
                    shapes[c] = new
                    init[c] = p.detach().clone() if new == p.shape else _grow(init.get(c), p.detach(), new, name in gated)
        self.params = {c: torch.nn.Parameter(init[c].to(pipe.device)) for c in shapes}
        self.step = 0
        self._trained = False

    # ------------------------------------------------------------------ members

    def _member(self, proxy_desc: Description) -> ProxyModel:
        return ProxyModel(proxy_desc, text_encoder=self.pipe.text_encoder())

    def view(self, model: ProxyModel) -> dict[str, torch.Tensor]:
        """``model``'s parameters as slices of the shared ones (differentiable: training a view trains the supernet)."""
        names, gated = canonical_names(model), gated_parameters(model)
        out = {}
        for name, p in model.named_parameters():
            source = self.params.get(names[name])
            if source is not None and source.ndim == p.ndim and all(a >= b for a, b in zip(source.shape, p.shape)):
                out[name] = _slice(source, p.shape, name in gated)
        return out

    def inherit(self, model: ProxyModel) -> float:
        """Copy ``model``'s slice of the trained shared weights into it; the share of its parameters inherited."""
        self.ensure()
        total = inherited = 0
        with torch.no_grad():
            view = self.view(model)
            for name, p in model.named_parameters():
                total += p.numel()
                if name in view:
                    p.copy_(view[name].to(p.device))
                    inherited += p.numel()
        return inherited / max(total, 1)

    def members(self, step: int) -> list[Description]:
        """The sandwich for one step: the largest, the smallest, then random members (seeded by the step)."""
        rng = np.random.default_rng([self.pipe.cfg.amortised.seed, step, 11])
        extra = [self.pipe.proxy(self.space.sample(rng)[1]) for _ in range(self.pipe.cfg.amortised.members - 2)]
        return [self.largest, self.smallest, *extra]

    # ------------------------------------------------------------------ training

    @property
    def done(self) -> bool:
        return (self.folder / DONE).is_file()

    def ensure(self, *, progress: bool = False) -> None:
        """Train (or resume, or read) the shared weights."""
        if self._trained:
            return
        with locked(self.folder):
            if self.done:
                self._load(self.folder / "supernet.safetensors")
            else:
                self._train(progress)
        self._trained = True

    def _train(self, progress: bool) -> None:
        pipe, a = self.pipe, self.pipe.cfg.amortised
        cfg = long_run(pipe.cfg.train, a)
        torch.set_num_threads(cfg.threads)
        optimizer = torch.optim.AdamW(list(self.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
        checkpoint = self.folder / "checkpoint.safetensors"
        if checkpoint.is_file():
            self._load(checkpoint, optimizer)
        data = pipe.data(self.largest.resolution).train
        acp = cfg.schedule.alphas_cumprod().to(pipe.device)
        cached = {d: self._member(d).to(pipe.device) for d in (self.largest, self.smallest)}
        start = time.process_time()
        with step_bar("supernet (sandwich)", a.steps, self.step, enabled=progress) as advance:
            while self.step < a.steps:
                for group in optimizer.param_groups:
                    group["lr"] = scheduled_lr(cfg, self.step)
                rng = np.random.default_rng([a.seed, self.step])
                x0, captions = draw_batch(data, rng, cfg.batch)
                captions = ["" if rng.random() < cfg.guidance_dropout else c for c in captions]
                g = torch.Generator().manual_seed(a.seed * 1_000_003 + self.step)
                t = torch.randint(0, cfg.schedule.steps, (x0.shape[0],), generator=g)
                noise = torch.randn(x0.shape, generator=g)
                x0, noise, t = x0.to(pipe.device), noise.to(pipe.device), t.to(pipe.device)
                xt, goal = noisy(x0, noise, t, acp), target(x0, noise, t, acp, cfg.prediction)
                optimizer.zero_grad(set_to_none=True)
                total = 0.0
                members = self.members(self.step)
                for desc in members:
                    model = cached.get(desc) or self._member(desc).to(pipe.device)
                    out = run_view(model, self.view(model), xt, t.float(), captions)
                    loss = F.mse_loss(out.float(), goal) / len(members)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"supernet loss is {loss.item()} at step {self.step}")
                    loss.backward()
                    total += loss.item()
                torch.nn.utils.clip_grad_norm_(list(self.params.values()), 1.0)
                optimizer.step()
                self.step += 1
                advance(self.step, f"{total:.4f}")
                if self.step % cfg.checkpoint_every == 0:
                    self._save(checkpoint, optimizer)
        self._save(checkpoint, optimizer)
        self._save(self.folder / "supernet.safetensors")
        _mark_done(self.folder, {"kind": "supernet", "steps": self.step, "parameters": sum(p.numel() for p in self.params.values()),
                                 "cpu_seconds_this_call": round(time.process_time() - start, 1)})

    def _save(self, path: Path, optimizer: torch.optim.Optimizer | None = None) -> None:
        tensors = {f"param.{k}": v.detach().cpu().contiguous() for k, v in self.params.items()}
        if optimizer is not None:
            tensors.update(pack_optimizer("optim", optimizer))
        write_checkpoint(path, tensors, {"step": str(self.step), "folder": self.folder.name})

    def _load(self, path: Path, optimizer: torch.optim.Optimizer | None = None) -> None:
        meta, tensors = read_safetensors(path)
        if meta.get("folder") != self.folder.name:
            raise ConfigError(str(path), "belongs to another supernet (other settings); delete it to train anew")
        with torch.no_grad():
            for k, p in self.params.items():
                if f"param.{k}" not in tensors or tensors[f"param.{k}"].shape != p.shape:
                    raise ConfigError(str(path), f"does not hold {k} at {tuple(p.shape)}; delete it to train anew")
                p.copy_(tensors[f"param.{k}"])
        if optimizer is not None:
            unpack_optimizer("optim", optimizer, tensors)
        self.step = int(meta["step"])


def _grow(old: torch.Tensor | None, new: torch.Tensor, shape: torch.Size, gated: bool) -> torch.Tensor:
    """A tensor of ``shape`` holding ``old`` (or else ``new``) in its leading corner (each half's, when gated); the rest
    drawn at ``new``'s scale (constant vectors, norms' ones and zero biases, stay constant)."""
    constant = new.numel() > 0 and bool(torch.all(new == new.flatten()[0]))
    out = torch.full(shape, float(new.flatten()[0])) if constant else torch.randn(shape) * float(new.std())
    keep = old if old is not None else new
    if gated:
        half, have = shape[0] // 2, keep.shape[0] // 2
        rest = tuple(slice(0, n) for n in keep.shape[1:])
        out[(slice(0, have), *rest)] = keep[:have]
        out[(slice(half, half + have), *rest)] = keep[have:]
        return out
    out[tuple(slice(0, n) for n in keep.shape)] = keep
    return out


def run_view(model: ProxyModel, params: dict[str, torch.Tensor], xt: torch.Tensor, t: torch.Tensor,
             captions: list[str]) -> torch.Tensor:
    """``model``'s prediction with ``params`` (a supernet view) in place of its own weights."""
    text = {k[len("text."):]: v for k, v in params.items() if k.startswith("text.")}
    unet = {k[len("unet."):]: v for k, v in params.items() if k.startswith("unet.")}
    context = functional_call(model.text, text, (list(captions),)).to(xt.device)
    return functional_call(model.unet, unet, (xt, t, context))


def cover(space: Any) -> list[Description]:
    """Members that hold, between them, every parameter any member has at its largest: the largest choices at each
    depth, with each conv kind, each key/value form and each feed-forward kind."""
    out = []
    for depth in space.options["depth"]:
        for separable in (False, True):
            for shared_kv in space.options["transformer.shared_kv"]:
                for ff in space.options["transformer.ff"]:
                    choices = _largest_choices(space, depth)
                    for level in range(depth):
                        opts = space.options[f"level{level}.separable"]
                        choices[f"level{level}.separable"] = separable if separable in opts else opts[0]
                    opts = space.options["mid.separable"]
                    choices["mid.separable"] = separable if separable in opts else opts[0]
                    choices["transformer.shared_kv"], choices["transformer.ff"] = shared_kv, ff
                    out.append(space.decode(choices, name=f"{space.name}-cover"))
    return out


def _largest_choices(space: Any, depth: int) -> dict[str, Any]:
    choices: dict[str, Any] = {"depth": depth}
    for name in space.active(depth)[1:]:
        opts = space.options[name]
        choices[name] = True if set(opts) == {False, True} and name.endswith("self_attention") else max(opts) \
            if not isinstance(opts[0], (bool, str)) else opts[0]
    return choices


def extreme(space: Any, *, largest: bool) -> Description:
    """The space's largest member (every numeric choice at its maximum, regular convs) or its smallest."""
    if largest:
        choices = _largest_choices(space, max(space.options["depth"]))
        for name in choices:
            if name.endswith("separable") or name.endswith("shared_kv"):
                choices[name] = False if False in space.options[name] else space.options[name][0]
        return space.decode(choices, name=f"{space.name}-largest")
    depth = min(space.options["depth"])
    choices = {"depth": depth}
    for name in space.active(depth)[1:]:
        opts = space.options[name]
        if name.endswith("self_attention"):
            choices[name] = False if False in opts else opts[0]
        elif name.endswith("separable") or name.endswith("shared_kv"):
            choices[name] = True if True in opts else opts[0]
        else:
            choices[name] = min(opts) if not isinstance(opts[0], str) else opts[0]
    return space.decode(choices, name=f"{space.name}-smallest")
