"""The course's small transformer: timm's ``VisionTransformer``, configured tiny for the 8x8 digits.

Each image is cut into 16 patches of 2x2 pixels (the tokens), a class token is prepended, and 4 blocks of
width 32 with 2 heads process them: about 35 k parameters. The attribute names are timm's (``cls_token``,
``pos_embed``, ``patch_embed``, ``blocks.0`` .. ``blocks.3``, ``norm``, ``head``), so param-group code
written for it runs unchanged on timm's full-size ViTs. It is pretrained on the clean source digits by
``scripts/pretrain_vit.py``; the checkpoint ships in ``lrdiff_helpers/weights/`` and is checked by sha256
on every load. Introduced in ``notebooks/07_transformers.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn

from .hub import load_state_dict

__all__ = ["VIT_CHECKPOINT", "pretrained_tiny_vit", "tiny_vit"]

#: Name of the pretrained ViT in the checkpoint registry (``lrdiff_helpers.hub.CHECKPOINTS``).
VIT_CHECKPOINT = "tiny_vit_digits"


def tiny_vit(num_classes: int = 10, embed_dim: int = 32, depth: int = 4, num_heads: int = 2, **kwargs) -> nn.Module:
    """A timm ``VisionTransformer`` for 8x8 single-channel images (2x2 patches, MLP ratio 2).

    Args:
        num_classes: outputs of the head ``head``.
        embed_dim: the width of every token.
        depth: the number of blocks.
        num_heads: attention heads per block.
        **kwargs: passed on to ``timm.models.vision_transformer.VisionTransformer``.

    >>> m = tiny_vit()
    >>> m(torch.zeros(2, 1, 8, 8)).shape, len(m.blocks)
    (torch.Size([2, 10]), 4)
    """
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=8, patch_size=2, in_chans=1, num_classes=num_classes, embed_dim=embed_dim,
                             depth=depth, num_heads=num_heads, mlp_ratio=2.0, **kwargs)


def pretrained_tiny_vit(num_classes: int = 10, seed: int | None = None) -> nn.Module:
    """``tiny_vit()`` with the pretrained blocks and embeddings (checksum-verified) and a new, random head.

    Args:
        num_classes: outputs of the new head.
        seed: seeds the new head's initialization (through the global RNG, which it re-seeds); ``None`` uses
            the global RNG as it is.

    >>> m = pretrained_tiny_vit(seed=0)
    >>> m.head.out_features
    10
    """
    if seed is not None:
        torch.manual_seed(seed)
    model = tiny_vit(num_classes=num_classes)
    missing, unexpected = model.load_state_dict(load_state_dict(VIT_CHECKPOINT), strict=False)
    if unexpected or set(missing) != {"head.weight", "head.bias"}:
        raise RuntimeError(f"checkpoint does not fit tiny_vit: missing={missing}, unexpected={unexpected}")
    return model
