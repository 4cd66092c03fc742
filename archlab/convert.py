"""Model conversion, in one place: ONNX, LiteRT (.tflite) and Core ML (.mlpackage).

The latency backends, the phone export (one file per block) and ``archlab export`` (the
chosen full-size model) all convert through these functions, so a block timed on a runtime
and the model handed on are converted the same way.

A whole UNet is converted through :class:`ForwardWrapper`, whose forward takes plain
tensors ``(latents, timesteps, text)``; :func:`model_and_inputs` builds one with seeded
example inputs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from archlab.arch.builder import build
from archlab.arch.description import Description
from archlab.errors import ArchlabError, ConfigError

# a flatbuffer cannot hold more than 2 GB: about 500M float32 parameters
FLATBUFFER_LIMIT_BYTES = 2 * 1024**3
FORMATS = ("onnx", "tflite", "coreml")


class ConversionUnavailable(ArchlabError):
    """A converter is not installed, or the model cannot be converted to that format."""


class ForwardWrapper(nn.Module):
    """A UNet with a plain tensor signature, for exporters: (latents, timesteps, text)."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.unet(latents, timesteps, text)


def model_and_inputs(desc: Description, *, batch: int = 1, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The built UNet of ``desc`` (seeded random init) wrapped for export, and example inputs."""
    torch.manual_seed(seed)
    model = ForwardWrapper(build(desc)).eval()
    return model, example_inputs(desc, batch=batch, seed=seed)


def example_inputs(desc: Description, *, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded example inputs of ``desc``'s UNet: latents, timesteps (500), text embeddings."""
    g = torch.Generator().manual_seed(seed)
    r = desc.resolution
    return (torch.randn(batch, desc.in_channels, r, r, generator=g), torch.full((batch,), 500.0),
            torch.randn(batch, desc.text_tokens, desc.text_dim, generator=g))


def safe_name(name: str) -> str:
    """A file name made of ``name`` (block keys hold ``|``, ``=`` and ``,``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Redirect file descriptors 1 and 2 to /dev/null: converters print progress (C++ logging
    included) straight to the process's stdout, which must stay clean for ``--json``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def missing_modules(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def export_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path, *, exporter: str = "torchscript") -> None:
    """ONNX, opset 17. ``torchscript`` (no onnxscript needed; what the latency backends convert blocks with, so
    tables keep their graphs) or ``dynamo`` (torch.export: about a third of the memory for a whole UNet, the
    weights always in one ``<name>.data`` file beside it; what ``archlab export`` uses)."""
    path = Path(path)
    names = [f"input{i}" for i in range(len(inputs))]
    if exporter == "dynamo":
        if missing_modules("onnxscript"):
            raise ConversionUnavailable("the dynamo ONNX exporter needs onnxscript (pip install 'archlab[runtimes]')")
        with quiet_fds(), torch.no_grad():
            torch.onnx.export(module.eval(), inputs, str(path), input_names=names, output_names=["output"], opset_version=18,
                              dynamo=True, external_data=True)
        return
    with quiet_fds(), torch.no_grad():
        torch.onnx.export(module.eval(), inputs, str(path), input_names=names, output_names=["output"], opset_version=17,
                          dynamo=False)


def weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def export_tflite(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path) -> None:
    """litert-torch conversion to a .tflite flatbuffer (what LiteRT/XNNPACK runs on Android)."""
    if missing_modules("litert_torch"):
        raise ConversionUnavailable("tflite needs litert-torch (pip install 'archlab[runtimes]')")
    n_bytes = weight_bytes(module)
    if n_bytes >= FLATBUFFER_LIMIT_BYTES:
        raise ConversionUnavailable(f"litert: {n_bytes / 1e9:.1f} GB of weights do not fit one .tflite flatbuffer (2 GB)")
    import litert_torch

    with quiet_fds(), torch.no_grad():
        litert_torch.convert(module.eval(), inputs).export(str(path))


def export_coreml(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path) -> None:
    """coremltools conversion of a traced module to an ML program (.mlpackage, iOS 17, float32)."""
    if missing_modules("coremltools"):
        raise ConfigError("format", "coreml needs coremltools (pip install 'archlab[phones]')")
    import coremltools as ct

    with quiet_fds(), torch.no_grad():
        traced = torch.jit.trace(module.eval(), inputs)
        mlmodel = ct.convert(traced, inputs=[ct.TensorType(name=f"input{i}", shape=tuple(t.shape)) for i, t in enumerate(inputs)],
                             convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                             compute_precision=ct.precision.FLOAT32)
        mlmodel.save(str(path))


def export(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path, fmt: str) -> None:
    """Convert ``module`` to ``fmt`` (onnx, tflite or coreml) at ``path``."""
    if fmt not in FORMATS:
        raise ConfigError("format", f"{fmt!r} is not one of {', '.join(FORMATS)}")
    {"onnx": export_onnx, "tflite": export_tflite, "coreml": export_coreml}[fmt](module, inputs, path)
