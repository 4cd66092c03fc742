"""Text encoders: a small trainable one for the synthetic domain, a frozen OpenCLIP tower for real data.

Both map a list of captions to ``(batch, tokens, width)`` embeddings; the empty caption is the
unconditional input used for classifier-free guidance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from archlab.errors import ConfigError
from archlab.quality.synthetic import VOCABULARY


class SmallTextEncoder(nn.Module):
    """Word embeddings + positions + a small transformer encoder, trained with the UNet.

    Words come from the synthetic domain's fixed vocabulary; a word outside it is an error
    (this encoder is not for free text: use :class:`OpenCLIPTextEncoder` on real data).
    """

    PAD = 0

    def __init__(self, width: int = 64, tokens: int = 10, layers: int = 2, heads: int = 4,
                 vocabulary: Sequence[str] = VOCABULARY):
        super().__init__()
        self.tokens = tokens
        self.index = {w: i + 1 for i, w in enumerate(vocabulary)}
        self.embed = nn.Embedding(len(vocabulary) + 1, width, padding_idx=self.PAD)
        self.position = nn.Parameter(torch.randn(tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=width * 4, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        ids = torch.zeros(len(captions), self.tokens, dtype=torch.long)
        for i, caption in enumerate(captions):
            words = caption.split()
            if len(words) > self.tokens:
                raise ConfigError("caption", f"{caption!r} has {len(words)} words; the encoder takes {self.tokens}")
            for j, w in enumerate(words):
                if w not in self.index:
                    raise ConfigError("caption", f"word {w!r} is not in the synthetic vocabulary")
                ids[i, j] = self.index[w]
        return ids

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        ids = self.tokenize(captions).to(self.position.device)
        x = self.embed(ids) + self.position
        return self.norm(self.encoder(x))


class OpenCLIPTextEncoder(nn.Module):
    """A frozen open_clip text tower read from a local checkpoint; embeddings cached per caption.

    ``model`` names the open_clip architecture (MobileDiffusion: ``ViT-L-14``, 768-d, 77
    tokens); ``checkpoint`` is a local file. Nothing is downloaded: a missing file is an error.
    """

    def __init__(self, checkpoint: str | Path, model: str = "ViT-L-14"):
        super().__init__()
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError("text_encoder.checkpoint", f"{path} does not exist (archlab never downloads weights; give a local file)")
        try:
            import open_clip
        except ImportError:
            raise ConfigError("text_encoder", "open_clip_torch is not installed (pip install 'archlab[clip]')") from None
        clip, _, _ = open_clip.create_model_and_transforms(model, pretrained=str(path))
        self.clip = clip.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _encode(self, captions: list[str]) -> torch.Tensor:
        """Per-token embeddings from the text tower's last layer (what SD's UNet attends to)."""
        clip = self.clip
        tokens = self.tokenizer(captions)
        x = clip.token_embedding(tokens) + clip.positional_embedding
        x = clip.transformer(x, attn_mask=clip.attn_mask)
        return clip.ln_final(x)

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if missing:
            for caption, emb in zip(missing, self._encode(missing)):
                self._cache[caption] = emb
        return torch.stack([self._cache[c] for c in captions])

    @torch.no_grad()
    def image_text_score(self, images: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """CLIP score: 100 x cosine(image, text), per pair; images in [0, 1], (B, 3, H, W)."""
        import torch.nn.functional as F

        size = self.clip.visual.image_size
        size = size[0] if isinstance(size, (tuple, list)) else size
        x = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
        img = F.normalize(self.clip.encode_image((x - mean) / std), dim=-1)
        txt = F.normalize(self.clip.encode_text(self.tokenizer(list(captions))), dim=-1)
        return 100.0 * (img * txt).sum(-1).clamp(min=0)
