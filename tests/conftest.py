"""Shared fixtures: a throw-away PostgreSQL server on 127.0.0.1 for the multi-worker tests."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))  # test-only helpers (the fvcore oracle) import by name

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """Start PostgreSQL (Debian's package; .ci/run installs it) in a temporary cluster."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    bindir = os.path.dirname(bins[-1])
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's default PostgreSQL driver)
    except ImportError:
        pytest.skip("psycopg is not installed")
    root = tempfile.mkdtemp(prefix="archlab-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.makedirs(sock)
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(as_user + [f"{bindir}/initdb", "-D", data, "-U", "archlab", "--auth=trust"], check=True, capture_output=True)
    subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(root, "log"), "-w", "start", "-o",
                              f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)
    try:
        for _ in range(50):
            if subprocess.run([f"{bindir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        subprocess.run([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "archlab", "studies"], check=True,
                       capture_output=True)
        yield f"postgresql://archlab@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(as_user + [f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------- real-data stand-ins (made here, nothing downloaded)

ENGLISH = ["a wooden boat drifting on a calm lake at sunset", "two children flying kites over a grassy hill",
           "an old lighthouse standing on rocky cliffs", "a bowl of fresh oranges on a kitchen table",
           "a sleepy cat curled up beside the fireplace", "snow falling quietly over a mountain village",
           "a bicycle leaning against a brick wall", "a busy market street with colourful umbrellas"]


@pytest.fixture(scope="session")
def english_folder(tmp_path_factory):
    """A Hugging Face imagefolder (images in a subfolder, metadata.jsonl with file_name and text) whose
    captions are ordinary English the synthetic domain never uses."""
    import json

    from PIL import Image

    from archlab.quality.synthetic import make_scene, render

    root = tmp_path_factory.mktemp("english")
    (root / "train").mkdir()
    rows = []
    for i in range(48):
        Image.fromarray(render(make_scene(5, i), 40)).save(root / "train" / f"{i:03d}.png")
        rows.append({"file_name": f"train/{i:03d}.png", "text": f"{ENGLISH[i % len(ENGLISH)]}, picture {i}"})
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_openclip(tmp_path_factory):
    """A tiny random OpenCLIP model (32-d text, 16 tokens, 32 px images): its config JSON and safetensors weights."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("openclip")
    config = root / "tiny-clip.json"
    config.write_text(json.dumps({"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                                                   "head_width": 16},
                                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    weights = root / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return config, weights


@pytest.fixture(scope="session")
def tiny_vae(tmp_path_factory):
    """A tiny random diffusers AutoencoderKL (4 latent channels, 2x downsampling) saved as a local folder."""
    diffusers = pytest.importorskip("diffusers")
    import torch

    root = tmp_path_factory.mktemp("vae") / "vae"
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    vae.save_pretrained(root, safe_serialization=True)
    return root


@pytest.fixture(scope="session")
def tiny_diffusers_unet(tmp_path_factory):
    """A tiny random SD-1.5-family diffusers UNet (4 latent channels, 32-d cross-attention) as a local folder."""
    diffusers = pytest.importorskip("diffusers")
    import torch

    root = tmp_path_factory.mktemp("unet") / "unet"
    config = dict(sample_size=16, block_out_channels=[32, 64], layers_per_block=1, cross_attention_dim=32, attention_head_dim=4,
                  down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                  norm_num_groups=8)
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**config)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    unet.save_pretrained(root, safe_serialization=True)
    return root
