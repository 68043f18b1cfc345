"""The demo model: LLaVA-1.5's architecture at a size that trains and runs on a laptop CPU.

The vision tower keeps LLaVA-1.5's geometry (336 px, patch 14: 576 image tokens, a CLS token, the
penultimate layer's patch features), so token budgets such as 192 / 128 / 64 mean what they mean
for LLaVA-1.5-7B. Everything else is small: a 4-layer, 64-wide tower, a 2-layer GELU projector, and
a 6-layer, 96-wide Llama with multi-query attention over a ~420-token vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from .generator import COLOURS, GLYPHS, SHAPES

IMAGE_SIZE = 336
PATCH = 14
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2
MAX_OBJECTS = 6


def llava_config(vocab_size: int, image_token_id: int, pad_token_id: int) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
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

    Per patch, on the penultimate layer the projector reads: the colour and shape (or glyph) the
    patch shows and whether an object's centre lies in it. Dense targets teach the tower far faster
    than the language loss alone, which matters when training on a CPU. On the final CLS state: the
    object count and which colours and shapes are present. LLaVA reads the penultimate layer, so
    nothing else would train the last one; this gives its CLS token a reason to attend to the
    objects, which makes MustDrop's key tokens (chosen by that attention) meaningful.
    """

    def __init__(self, width: int):
        super().__init__()
        self.patch_colour = nn.Linear(width, len(COLOURS) + 1)
        self.patch_shape = nn.Linear(width, len(SHAPES) + len(GLYPHS) + 1)
        self.patch_centre = nn.Linear(width, 1)
        self.count = nn.Linear(width, MAX_OBJECTS + 1)
        self.present = nn.Linear(width, len(COLOURS) + len(SHAPES))

    def loss(self, patches: torch.Tensor, pooled: torch.Tensor, batch: dict) -> torch.Tensor:
        flat = patches.reshape(-1, patches.shape[-1])
        shapes = batch["patch_shapes"].reshape(-1)
        covered = shapes > 0
        # Shape is learned on the patches along an object's or glyph's outline (the generator marks
        # inner patches -1), averaged over those alone: nine in ten patches are background, and
        # averaged over all of them the shape term was too faint to learn.
        dense = (
            F.cross_entropy(self.patch_colour(flat), batch["patch_colours"].reshape(-1))
            + F.cross_entropy(self.patch_shape(flat[covered]), shapes[covered])
            + F.binary_cross_entropy_with_logits(self.patch_centre(flat).squeeze(-1), batch["patch_centres"].reshape(-1))
        )
        scene = F.cross_entropy(self.count(pooled), batch["count"]) + F.binary_cross_entropy_with_logits(
            self.present(pooled), batch["present"]
        )
        return dense + scene

    @torch.no_grad()
    def accuracy(self, patches: torch.Tensor, pooled: torch.Tensor, batch: dict) -> dict[str, float]:
        """Per-probe accuracy; the patch ones over patches on an outline, where predicting "nothing"
        everywhere would otherwise look near perfect."""
        flat = patches.reshape(-1, patches.shape[-1])
        shapes = batch["patch_shapes"].reshape(-1)
        covered = shapes > 0
        colours = batch["patch_colours"].reshape(-1)
        # Over outline patches only, like the loss.
        return {
            "colour": (self.patch_colour(flat).argmax(-1) == colours)[covered].float().mean().item(),
            "shape": (self.patch_shape(flat).argmax(-1) == shapes)[covered].float().mean().item(),
            "count": (self.count(pooled).argmax(-1) == batch["count"]).float().mean().item(),
        }


def build(config: LlavaConfig, seed: int) -> tuple[LlavaForConditionalGeneration, SceneProbe]:
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    embeddings = model.model.vision_tower.embeddings
    with torch.no_grad():
        embeddings.position_embedding.weight.copy_(grid_position_init(config.vision_config.hidden_size))
        oriented_patch_filters(embeddings.patch_embedding.weight)
        for layer in model.model.vision_tower.encoder.layers:
            mimetic_attention_init(layer.self_attn)
    probe = SceneProbe(config.vision_config.hidden_size)
    return model, probe


def oriented_patch_filters(weight: torch.Tensor, orientations: int = 8) -> None:
    """Replaces the first patch-embedding filters with Gabor pairs (even and odd phase, one period
    per patch, Gaussian window) at `orientations` angles, on luminance, and three with each colour
    channel's mean; the rest keep their random start. Each keeps the norm of a random filter.

    An outline's direction is what tells the shapes apart locally (a histogram of edge directions
    alone separates them about half the time), and a from-scratch tower this small had found none
    after thousands of scenes. Training may change these filters like any others.
    """
    channels, _, size, _ = weight.shape
    norm = weight[orientations * 2 + 3 :].flatten(1).norm(dim=1).mean()
    centre = (size - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(size) - centre, torch.arange(size) - centre, indexing="ij")
    window = torch.exp(-(xs**2 + ys**2) / (2 * (size / 3) ** 2))
    filters = []
    for k in range(orientations):
        angle = math.pi * k / orientations
        phase = 2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / size
        filters += [torch.cos(phase) * window, torch.sin(phase) * window]
    luminance = [f.expand(3, size, size) for f in filters]
    colour = [torch.eye(3)[c].view(3, 1, 1).expand(3, size, size) for c in range(3)]
    for index, f in enumerate(luminance + colour):
        if index >= channels:
            break
        weight[index] = f / f.norm() * norm


def mimetic_attention_init(attention: nn.Module, scale: float = 0.15) -> None:
    """Starts each tower attention layer with keys equal to queries (so W_q W_k^T is positive
    semi-definite) at a scale where attention is sharp: every patch then attends to patches like it,
    in content and position, from the first step (Trockman & Kolter's mimetic initialisation). A
    tower this small, started from uniform attention, learned no shape in hundreds of steps."""
    attention.q_proj.weight.normal_(0.0, scale)
    attention.k_proj.weight.copy_(attention.q_proj.weight + torch.randn_like(attention.q_proj.weight) * scale * 0.1)


def grid_position_init(width: int) -> torch.Tensor:
    """Starting values for the tower's learned position embeddings: 2-D sine/cosine codes of each
    patch's row and column (half the width each), zero for CLS.

    From random values a tower this small spends most of its training learning which patches are
    neighbours; from these, attention can find an object's other patches from the first step,
    which is what telling a square from a circle needs.
    """
    grid = IMAGE_SIZE // PATCH
    quarter = width // 4
    frequencies = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij")
    angles_row = rows.reshape(-1, 1) * frequencies
    angles_col = cols.reshape(-1, 1) * frequencies
    codes = torch.cat([angles_row.sin(), angles_row.cos(), angles_col.sin(), angles_col.cos()], dim=1)
    return torch.cat([torch.zeros(1, width), codes], dim=0)
