"""The synthetic domain and its evaluator, real-data readers, latents, text encoders."""

import io
import json

import numpy as np
import pytest
import torch

from typer.testing import CliRunner

from archlab import ConfigError
from archlab.cli import app
from archlab.quality.data import ImageFolder, ParquetImages, ShuffledCaptions, SyntheticData, open_data, split
from archlab.quality.synthetic import COLOURS, evaluate, evaluate_many, frechet_distance, make_scene, render
from archlab.quality.text import OpenCLIP, OpenCLIPTextEncoder, SmallTextEncoder, vocabulary


def test_scenes_are_deterministic_and_varied():
    assert make_scene(0, 5) == make_scene(0, 5) and make_scene(0, 5) != make_scene(1, 5)
    kinds = {make_scene(0, i).kind for i in range(100)}
    assert kinds == {"single", "relation", "count"}


def test_evaluator_is_exact_on_the_domain_and_low_off_it():
    scenes = [make_scene(0, i) for i in range(300)]
    assert evaluate_many([render(s, 32) for s in scenes], scenes)["score"] == 1.0
    assert evaluate_many([render(s, 16) for s in scenes], scenes)["score"] > 0.98
    mismatched = evaluate_many([render(scenes[i + 1], 32) for i in range(200)], scenes[:200])["score"]
    blank = evaluate_many([np.zeros((32, 32, 3), np.uint8)] * 50, scenes[:50])["score"]
    assert mismatched < 0.5 and blank < 0.5


def test_evaluator_ignores_sampling_speckle():
    scenes = [make_scene(0, i) for i in range(100)]
    rng = np.random.default_rng(0)
    speckled = []
    for s in scenes:
        img = render(s, 16)
        for _ in range(4):  # 2x2 specks of random palette colours: too small to be any object
            r, c = rng.integers(0, 15, 2)
            img[r:r + 2, c:c + 2] = list(COLOURS.values())[rng.integers(len(COLOURS))]
        speckled.append(img)
    noise = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in scenes]
    assert evaluate_many(speckled, scenes)["clean"] > 0.9
    assert evaluate_many(noise, scenes)["colour"] < 0.2


def test_evaluator_checks_each_stated_attribute():
    scene = next(s for s in (make_scene(0, i) for i in range(100)) if s.kind == "single" and s.position == "on the left")
    moved = render(scene, 32)[:, ::-1]  # mirrored: the object is now on the right
    result = evaluate(moved, scene)
    assert result["colour"] == 1.0 and result["position"] == 0.0


def test_frechet_distance_separates_distributions():
    a = [render(make_scene(0, i), 32) for i in range(100)]
    b = [render(make_scene(1, i), 32) for i in range(100)]
    noise = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(100)]
    assert frechet_distance(a, b) < 0.2 * frechet_distance(a, noise)


def _images(tmp_path, n=3):
    from PIL import Image

    paths = []
    for i in range(n):
        img = Image.fromarray(render(make_scene(0, i), 48))
        path = tmp_path / f"img{i}.png"
        img.save(path)
        paths.append(path)
    return paths


def test_image_folder_layouts_users_already_have(tmp_path):
    paths = _images(tmp_path)
    for i, p in enumerate(paths):
        p.with_suffix(".txt").write_text(make_scene(0, i).caption)
    ds = ImageFolder(tmp_path, resolution=32, cache=tmp_path / "cache")
    image, caption = ds.get(1)
    assert image.shape == (32, 32, 3) and caption == make_scene(0, 1).caption
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert (ds.get(1)[0] == image).all()
    # archlab's captions.jsonl
    jsonl = tmp_path / "j"
    jsonl.mkdir()
    for p in paths:
        p.rename(jsonl / p.name)
    (jsonl / "captions.jsonl").write_text("\n".join(json.dumps({"file": p.name, "caption": f"c{i}"}) for i, p in enumerate(paths)))
    assert ImageFolder(jsonl, resolution=16, cache=tmp_path / "c2").get(2)[1] == "c2"
    (jsonl / "captions.jsonl").write_text('{"file": "missing.png", "caption": "x"}')
    with pytest.raises(ConfigError, match="does not exist"):
        ImageFolder(jsonl, resolution=16, cache=tmp_path / "c2")
    # Hugging Face imagefolder: metadata.jsonl (file_name, text) or metadata.csv (file_name, caption), subfolders
    (jsonl / "captions.jsonl").unlink()
    (jsonl / "sub").mkdir()
    (jsonl / paths[0].name).rename(jsonl / "sub" / paths[0].name)
    names = ["sub/" + paths[0].name] + [p.name for p in paths[1:]]
    (jsonl / "metadata.jsonl").write_text("\n".join(json.dumps({"file_name": n, "text": f"hf {i}"}) for i, n in enumerate(names)))
    assert ImageFolder(jsonl, resolution=16, cache=tmp_path / "c3").get(0)[1] == "hf 0"
    (jsonl / "metadata.jsonl").unlink()
    (jsonl / "metadata.csv").write_text("file_name,caption\n" + "".join(f"{n},csv {i}\n" for i, n in enumerate(names)))
    assert [c for c in ImageFolder(jsonl, resolution=16, cache=tmp_path / "c3").captions()] == ["csv 0", "csv 1", "csv 2"]
    (jsonl / "metadata.csv").write_text("file_name,label\n" + "".join(f"{n},x\n" for n in names))
    with pytest.raises(ConfigError, match="has no caption column"):
        ImageFolder(jsonl, resolution=16, cache=tmp_path / "c3")


def test_held_out_split_is_disjoint_deterministic_and_refused_when_too_small(english_folder, tmp_path):
    ds = ImageFolder(english_folder, resolution=16, cache=tmp_path / "c")
    train, held = split(ds, 8, seed=0)
    again_train, again_held = split(ds, 8, seed=0)
    assert held.indices == again_held.indices and len(held) == 8 and len(train) == len(ds) - 8
    assert not set(train.indices) & set(held.indices)
    with pytest.raises(ConfigError, match="data.heldout: 48 held-out items leave none of the 48"):
        split(ds, 48)
    synthetic_train, synthetic_held = split(SyntheticData(seed=0, resolution=16), 16)
    assert synthetic_held.get(0)[1] != synthetic_train.get(0)[1] or synthetic_held.offset > 0


def test_parquet_of_image_bytes_streams_by_row_group(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    blobs, captions = [], []
    for i in range(10):
        buf = io.BytesIO()
        Image.fromarray(render(make_scene(0, i), 40)).save(buf, format="PNG")
        blobs.append(buf.getvalue())
        captions.append(make_scene(0, i).caption)
    pq.write_table(pa.table({"image": blobs, "caption": captions}), tmp_path / "d.parquet", row_group_size=4)
    ds = ParquetImages(tmp_path / "d.parquet", resolution=32, cache=tmp_path / "c")
    assert len(ds) == 10 and ds.get(9)[1] == captions[9] and ds.get(5)[0].shape == (32, 32, 3)
    with pytest.raises(ConfigError, match="no column 'text'"):
        ParquetImages(tmp_path / "d.parquet", resolution=32, caption_column="text")
    assert list(ds.captions()) == captions
    with pytest.raises(ConfigError, match="data.kind"):
        open_data("webdataset", resolution=32, path="x")


def test_shuffled_captions_keep_images_and_move_captions():
    ds = SyntheticData(seed=0, resolution=16)
    shuffled = ShuffledCaptions(ds, pool=1000)
    same = sum(shuffled.get(i)[1] == ds.get(i)[1] for i in range(50))
    assert (shuffled.get(3)[0] == ds.get(3)[0]).all() and same < 10


def test_small_text_encoder_takes_any_caption():
    vocab = vocabulary(["a red circle on the left"])
    enc = SmallTextEncoder(vocab, width=32, tokens=10)
    out = enc(["a red circle on the left", "", "a purple hexagon nobody trained on"])
    assert out.shape == (3, 10, 32) and torch.isfinite(out).all()
    ids = enc.tokenize(["a purple hexagon"])
    assert (ids == SmallTextEncoder.UNKNOWN).any()  # unseen words map to the unknown row, not an error
    assert enc.embed.num_embeddings == len(vocab) + 2  # only the tokens the data uses


def test_openclip_reads_a_local_checkpoint_and_scores(tiny_openclip):
    config, weights = tiny_openclip
    clip = OpenCLIP(weights, model_config=config)
    enc = OpenCLIPTextEncoder(clip)
    emb = enc(["a boat on a lake", "a boat on a lake", ""])
    assert emb.shape == (3, 16, 32) and torch.equal(emb[0], emb[1])
    scores = clip.score(torch.rand(2, 3, 32, 32), ["a boat", "a cat"])
    assert scores.shape == (2,) and (scores >= 0).all()
    with pytest.raises(ConfigError, match="never downloads"):
        OpenCLIP("/nonexistent/open_clip_vit_l14.safetensors")
    with pytest.raises(ConfigError, match="would be downloaded"):
        OpenCLIP(weights, model="hf-hub:laion/CLIP-ViT-L-14")


def test_english_captions_train_through_proxy_train(english_folder, tmp_path):
    """Captions with words the synthetic domain never uses train, and are judged on a disjoint split."""
    result = CliRunner().invoke(app, ["proxy", "train", "tiny", "--data", "folder", "--data-path", str(english_folder),
                                      "--heldout", "8", "--eval-heldout", "8", "--eval-samples", "4", "--steps", "3",
                                      "--batch", "4", "--width", "1", "--device", "cpu", "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["metrics"]) == {"heldout_loss", "text_gap"}  # no evaluator on real data; no CLIP model given
    for m in report["metrics"].values():
        assert m["n"] == 8 and np.isfinite(m["value"]) and np.isfinite(m["se"])
    bad = CliRunner().invoke(app, ["proxy", "train", "tiny", "--data", "folder", "--data-path", str(english_folder),
                                   "--heldout", "8", "--eval-heldout", "8", "--eval-samples", "4", "--metric", "eval_score"])
    assert bad.exit_code == 2 and "eval_score needs the synthetic domain" in bad.stderr


def test_vae_latents_are_encoded_once_and_cached(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    from archlab.quality.latents import LatentData

    vae = diffusers.AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    data = LatentData(SyntheticData(seed=0, resolution=32), tmp_path / "vae", cache=tmp_path / "cache")
    latent, caption = data.get(0)
    assert latent.shape == (4, 16, 16) and data.resolution == 16 and caption == make_scene(0, 0).caption
    assert (data.get(0)[0] == latent).all() and len(list(data.cache.glob("*.safetensors"))) == 1
    assert data.decode(torch.from_numpy(latent)[None]).shape == (1, 3, 32, 32)
    with pytest.raises(ConfigError, match="no config.json"):
        LatentData(SyntheticData(), tmp_path / "nothing", cache=tmp_path)
