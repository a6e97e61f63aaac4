"""A Vision Transformer from torchvision (VisionTransformer, the vit_b_16 builder's class) as a
backbone with our growing head, with token-level access for prompting methods (L2P)."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

from rainbow_runner.runner.models.networks import ContinualModel

log = logging.getLogger(__name__)


class VisionTransformerModel(ContinualModel):
    """torchvision's ViT ([CLS] features) + GrowingHead; tokens() and encode() split its forward
    so that a method can insert tokens (prompts) between the embedding and the encoder."""

    def __init__(self, vit: nn.Module, n_classes: int) -> None:
        super().__init__(vit, vit.hidden_dim, n_classes)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """[CLS] + patch embeddings with their position embeddings: (N, 1 + patches, D).

        Images are resized to the ViT's image_size and grey ones repeated to three channels
        (a pretrained patch embedding takes RGB)."""
        vit = self.backbone
        if x.shape[-1] != vit.image_size or x.shape[-2] != vit.image_size:
            x = F.interpolate(x, size=(vit.image_size, vit.image_size), mode="bilinear")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        patches = vit._process_input(x)
        cls = vit.class_token.expand(len(x), -1, -1)
        return vit.encoder.dropout(torch.cat([cls, patches], 1) + vit.encoder.pos_embedding)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The encoder's layers and final LayerNorm over any token sequence."""
        encoder = self.backbone.encoder
        return encoder.ln(encoder.layers(tokens))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(self.tokens(x))[:, 0]


def vit(
    in_shape: tuple[int, int, int],
    n_classes: int,
    image_size: int = 8,
    patch_size: int = 2,
    num_layers: int = 2,
    num_heads: int = 2,
    hidden_dim: int = 32,
    mlp_dim: int = 64,
    weights: str | None = None,
) -> VisionTransformerModel:
    """torchvision.models.VisionTransformer of the given sizes; weights: a local checkpoint of
    that ViT (state_dict, loaded with weights_only=True; its classifier is dropped)."""
    from torchvision.models import VisionTransformer  # only this network needs it

    if in_shape[0] not in (1, 3):
        raise ValueError(f"model=vit takes grey or RGB images, not {in_shape[0]} channels.")
    backbone = VisionTransformer(image_size, patch_size, num_layers, num_heads, hidden_dim, mlp_dim)
    backbone.heads = nn.Identity()
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = {key: value for key, value in state.items() if not key.startswith("heads.")}
        backbone.load_state_dict(state)
        log.info("vit: weights loaded from %s", weights)
    else:
        log.info("vit: no model.weights given: the backbone is randomly initialised")
    return VisionTransformerModel(backbone, n_classes)
