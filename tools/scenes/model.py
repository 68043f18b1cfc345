"""The demo model: LLaVA-1.5's architecture at a size that trains and runs on a laptop CPU.

The vision tower keeps LLaVA-1.5's geometry (336 px, patch 14: 576 image tokens, a CLS token, the
penultimate layer's patch features), so token budgets such as 192 / 128 / 64 mean what they mean
for LLaVA-1.5-7B. Everything else is small: a 3-layer, 64-wide tower, a 2-layer GELU projector, and
a 6-layer, 96-wide Llama with multi-query attention over a ~420-token vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from .generator import COLOURS, GLYPHS, SHAPES

IMAGE_SIZE = 336
PATCH = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
MAX_OBJECTS = 6
# Patch owners: none, up to MAX_OBJECTS objects, a glyph.
OWNER_SLOTS = MAX_OBJECTS + 2


def llava_config(vocab_size: int, image_token_id: int, pad_token_id: int) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=64,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=6,
        num_attention_heads=3,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=IMAGE_TOKENS,
        tie_word_embeddings=False,
    )


class SceneProbe(nn.Module):
    """Training-only probes on the vision tower; not exported.

    On the penultimate layer, which the projector reads: per patch, the colour it shows and
    whether an object's centre lies in it; per object (and glyph), its shape (or character) from
    the mean of its patches' features. Dense targets teach the tower far faster than the language
    loss alone, which matters when training on a CPU. The shape is read from the object's mean
    because one patch shows little of it: per-patch shape targets stayed at chance, while the
    pooled one learns (and the language model reads an object the same way, by attending over its
    patches). On the final CLS state: the object count and which colours and shapes are present.
    LLaVA reads the penultimate layer, so nothing else would train the last one; this gives its
    CLS token a reason to attend to the objects, which makes MustDrop's key tokens (chosen by that
    attention) meaningful.
    """

    def __init__(self, width: int):
        super().__init__()
        self.patch_colour = nn.Linear(width, len(COLOURS) + 1)
        self.patch_centre = nn.Linear(width, 1)
        self.object_shape = nn.Linear(width, len(SHAPES) + len(GLYPHS))
        self.count = nn.Linear(width, MAX_OBJECTS + 1)
        self.present = nn.Linear(width, len(COLOURS) + len(SHAPES))

    def object_logits(self, patches: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Shape logits of every object present (from its patches' mean feature) and their labels."""
        members = F.one_hot(batch["patch_owners"], OWNER_SLOTS).to(patches.dtype)  # (B, 576, slots)
        sums = members.transpose(1, 2) @ patches
        counts = members.sum(dim=1)
        means = sums / counts.clamp(min=1).unsqueeze(-1)
        labels = batch["owner_shapes"]
        present = (labels >= 0) & (counts > 0)
        return self.object_shape(means[present]), labels[present]

    def loss(self, patches: torch.Tensor, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        flat = patches.reshape(-1, patches.shape[-1])
        shape_logits, shape_labels = self.object_logits(patches, batch)
        dense = (
            F.cross_entropy(self.patch_colour(flat), batch["patch_colours"].reshape(-1))
            + F.binary_cross_entropy_with_logits(self.patch_centre(flat).squeeze(-1), batch["patch_centres"].reshape(-1))
            + F.cross_entropy(shape_logits, shape_labels)
        )
        scene = F.cross_entropy(self.count(pooled), batch["count"]) + F.binary_cross_entropy_with_logits(
            self.present(pooled), batch["present"]
        )
        return dense + scene

    @torch.no_grad()
    def accuracy(self, patches: torch.Tensor, pooled: torch.Tensor, batch: dict) -> dict[str, float]:
        """Per-probe accuracy; colour over the patches objects cover, where predicting "nothing"
        everywhere would otherwise look near perfect."""
        flat = patches.reshape(-1, patches.shape[-1])
        covered = batch["patch_owners"].reshape(-1) > 0
        colours = batch["patch_colours"].reshape(-1)
        shape_logits, shape_labels = self.object_logits(patches, batch)
        return {
            "colour": (self.patch_colour(flat).argmax(-1) == colours)[covered].float().mean().item(),
            "shape": (shape_logits.argmax(-1) == shape_labels).float().mean().item(),
            "count": (self.count(pooled).argmax(-1) == batch["count"]).float().mean().item(),
        }


def build(config: LlavaConfig, seed: int) -> tuple[LlavaForConditionalGeneration, SceneProbe]:
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    probe = SceneProbe(config.vision_config.hidden_size)
    return model, probe
