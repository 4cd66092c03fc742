"""Text encoders: a small trainable one over CLIP's tokenizer, and a frozen OpenCLIP tower.

Both map a list of captions to ``(batch, tokens, width)`` embeddings; the empty caption is
the unconditional input used for classifier-free guidance.

:class:`SmallTextEncoder` tokenizes with the CLIP BPE tokenizer that open_clip ships (no
download), so it takes any caption. Its embedding table holds only the tokens the training
data's captions use (plus one for tokens it never saw), which keeps the proxy small: the
full CLIP vocabulary would be 49,408 rows, most of them never used.

:class:`OpenCLIP` reads an open_clip model from a local checkpoint; its text tower encodes
captions frozen (:class:`OpenCLIPTextEncoder`) and both towers give CLIP scores.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@functools.lru_cache(maxsize=8)
def clip_tokenizer(context_length: int):
    """open_clip's CLIP BPE tokenizer (its vocabulary ships inside the package)."""
    try:
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError:
        raise ConfigError("text", "the CLIP tokenizer needs open_clip_torch (pip install open_clip_torch)") from None
    return SimpleTokenizer(context_length=context_length)


def vocabulary(captions: Iterable[str]) -> list[int]:
    """The sorted CLIP token ids the captions use (start and end tokens included)."""
    tok = clip_tokenizer(77)
    ids = {tok.sot_token_id, tok.eot_token_id}
    for caption in captions:
        ids.update(tok.encode(caption))
    return sorted(ids)


class SmallTextEncoder(nn.Module):
    """Token embeddings + positions + a small transformer encoder, trained with the UNet.

    ``vocab`` lists the CLIP token ids it has rows for (see :func:`vocabulary`); any other
    token maps to one shared "unknown" row, so held-out captions with new words still encode.
    The vocabulary is a buffer: it is saved with the weights and checked when they are loaded.
    """

    PAD, UNKNOWN = 0, 1

    def __init__(self, vocab: Sequence[int], *, width: int = 64, tokens: int = 20, layers: int = 2, heads: int = 4):
        super().__init__()
        self.tokens = tokens
        self.register_buffer("vocab", torch.tensor(sorted(vocab), dtype=torch.long), persistent=True)
        self._index = {int(t): i + 2 for i, t in enumerate(sorted(vocab))}
        self.embed = nn.Embedding(len(vocab) + 2, width, padding_idx=self.PAD)
        self.position = nn.Parameter(torch.randn(tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=width * 4, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self._ids: dict[str, torch.Tensor] = {}

    @property
    def width(self) -> int:
        return self.embed.embedding_dim

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "SmallTextEncoder":
        """An encoder shaped like the one whose weights ``state`` holds (its vocabulary included), weights loaded."""
        layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
        enc = cls(state["vocab"].tolist(), width=state["embed.weight"].shape[1], tokens=state["position"].shape[0], layers=layers)
        enc.load_state_dict(state)
        return enc

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        out = []
        for caption in captions:
            ids = self._ids.get(caption)
            if ids is None:
                raw = clip_tokenizer(self.tokens)([caption])[0]  # start, words, end, zero padding (truncated to fit)
                ids = torch.tensor([self._index.get(int(t), self.UNKNOWN) if t else self.PAD for t in raw])
                self._ids[caption] = ids
            out.append(ids)
        return torch.stack(out)

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        ids = self.tokenize(captions).to(self.position.device)
        x = self.embed(ids) + self.position
        return self.norm(self.encoder(x, src_key_padding_mask=ids == self.PAD))


class OpenCLIP:
    """An open_clip model read from a local checkpoint; nothing is downloaded.

    ``model`` names the architecture (MobileDiffusion and SD-1.5: ``ViT-L-14``, 768-d text,
    77 tokens); ``model_config`` is a JSON file describing one open_clip does not know;
    ``checkpoint`` is a local ``.safetensors`` or weights-only ``.pt``/``.bin`` file.
    """

    def __init__(self, checkpoint: str | Path, model: str = "ViT-L-14", model_config: str | Path | None = None,
                 device: str = "cpu"):
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError("checkpoint", f"{path} does not exist (archlab never downloads weights; give a local file)")
        try:
            import open_clip
        except ImportError:
            raise ConfigError("text", "open_clip_torch is not installed (pip install open_clip_torch)") from None
        if model_config is not None:
            if not Path(model_config).is_file():
                raise ConfigError("model_config", f"{model_config} does not exist")
            open_clip.add_model_config(str(model_config))
            model = Path(model_config).stem
        if model.startswith(("hf-hub:", "http")):
            raise ConfigError("model", f"{model!r} would be downloaded; name an architecture and give a local checkpoint")
        # weights_only: open_clip reads .safetensors directly and anything else without unpickling objects
        self.model = open_clip.create_model(model, pretrained=str(path), weights_only=True, device=device).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model)
        self.device = device

    @property
    def text_width(self) -> int:
        return int(self.model.token_embedding.embedding_dim)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @torch.no_grad()
    def token_embeddings(self, captions: Sequence[str]) -> torch.Tensor:
        """Per-token embeddings from the text tower's last layer (what SD's UNet attends to)."""
        m = self.model
        tokens = self.tokenizer(list(captions)).to(self.device)
        x = m.token_embedding(tokens) + m.positional_embedding
        x = m.transformer(x, attn_mask=m.attn_mask)
        return m.ln_final(x)

    @torch.no_grad()
    def score(self, images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """CLIP score per pair: 100 x max(cosine(image, caption), 0); images in [0, 1], (B, 3, H, W)."""
        size = self.model.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        x = F.interpolate(images.float().to(self.device), size=(size, size), mode="bicubic", align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)
        img = F.normalize(self.model.encode_image((x - mean) / std), dim=-1)
        txt = F.normalize(self.model.encode_text(self.tokenizer(list(captions)).to(self.device)), dim=-1)
        return (100.0 * (img * txt).sum(-1).clamp(min=0)).cpu()


class OpenCLIPTextEncoder(nn.Module):
    """A frozen OpenCLIP text tower as the UNet's text encoder; embeddings cached per caption."""

    def __init__(self, clip: OpenCLIP):
        super().__init__()
        self.clip = clip
        self.tokens = clip.context_length
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def width(self) -> int:
        return self.clip.text_width

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if missing:
            for caption, emb in zip(missing, self.clip.token_embeddings(missing).cpu()):
                self._cache[caption] = emb
        return torch.stack([self._cache[c] for c in captions])
