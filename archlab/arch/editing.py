"""Editing descriptions: which blocks can go, removing or copying one, and a block's short label."""

from __future__ import annotations

import functools

from archlab.arch.description import Block, Description, ResnetBlock, TransformerBlock, layout
from archlab.errors import ConfigError

def edit(desc: Description, name: str, action: str) -> Description:
    """``desc`` with block ``name`` (``"mid.1"``) removed, or copied right after itself."""
    stage, index = name.rsplit(".", 1)
    blocks = list(desc.stage(stage).blocks)
    if action == "remove":
        del blocks[int(index)]
    elif action == "copy":
        blocks.insert(int(index) + 1, blocks[int(index)])
    else:
        raise ValueError(f"action {action!r} is not remove or copy")
    return desc.with_blocks(stage, blocks)


@functools.lru_cache(maxsize=4096)
def removable(desc: Description) -> tuple[str, ...]:
    """Blocks the identity can stand in for, and that can be deleted from the description.

    A ResNet or transformer block is removable when it keeps its width, takes no skip, and
    deleting it leaves every other block's shapes and skips unchanged. This one rule serves
    SnapFusion's robust training (blocks skipped at random), its removal evaluation (a block
    skipped in the forward) and the description edit that follows.

    >>> from archlab import preset
    >>> names = removable(preset("sd15"))
    >>> "down0.1" in names, "mid.0" in names, "up0.0" in names
    (True, True, False)
    """
    sites = tuple(layout(desc))
    out = []
    for site in sites:
        if not isinstance(site.block, (ResnetBlock, TransformerBlock)) or site.in_channels != site.out_channels or site.skip_channels:
            continue
        try:
            smaller = edit(desc, site.name, "remove")
        except ConfigError:
            continue
        shapes = lambda ss: [(s.in_channels, s.out_channels, s.skip_channels) for s in ss]  # noqa: E731
        if shapes(s for s in sites if s is not site) == shapes(layout(smaller)):
            out.append(site.name)
    return tuple(out)




def block_summary(block: Block) -> str:
    """A short human label: ``resnet``, ``resnet(sep)``, ``transformer(SA+CA x2, ff6 relu kv)``."""
    if isinstance(block, TransformerBlock):
        parts = "+".join(p for p, on in (("SA", block.self_attention), ("CA", block.cross_attention)) if on)
        if block.layers > 1:
            parts += f" x{block.layers}"
        extras = []
        if block.ff_ratio != 4.0:
            extras.append(f"ff{block.ff_ratio:g}")
        if block.ff != "geglu":
            extras.append(block.ff)
        if block.attention != "softmax":
            extras.append(block.attention)
        if block.shared_kv:
            extras.append("kv")
        return f"transformer({', '.join([parts] + extras)})"
    if block.conv == "separable":
        return f"{block.kind}(sep)"
    return block.kind
