"""The demo model: LLaVA-1.5's architecture at a size that trains and runs on a laptop CPU.

The vision tower keeps LLaVA-1.5's geometry (336 px, patch 14: 576 image tokens, a CLS token, the
penultimate layer's patch features), so token budgets such as 192 / 128 / 64 mean what they mean
for LLaVA-1.5-7B. Everything else is small: a 4-layer, 128-wide tower, a 2-layer GELU projector, and
a 6-layer, 128-wide Llama with four heads over a ~540-token vocabulary.
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
# Four layers: LLaVA reads the third's patches (the penultimate layer); the last one only feeds CLS.
TOWER_LAYERS = 4
# hidden_states index of the layer whose patches are pooled per object (the second layer's output),
# and the layer (0-based) whose first head learns to attend over a patch's own object.
POOLED_LAYER = 2
GROUPING_LAYER = 2


def llava_config(vocab_size: int, image_token_id: int, pad_token_id: int) -> LlavaConfig:
    # 128 wide with four heads: at 64 wide with two (one of them the grouping head), the tower's
    # pooled features told an object's shape 81 % of the time after 700 steps and still rising
    # slowly, and every question but "how many objects" depends on the shape.
    vision = CLIPVisionConfig(
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=TOWER_LAYERS,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=64,
    )
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=6,
        num_attention_heads=4,
        # A key per head, and a RoPE base of 10^6: a question's words sit 600 tokens after the
        # image patches they look up, and only the rotary dimensions that barely turn over such a
        # distance can match content there. With one shared key and base 10^4 that left about
        # eight dimensions, and the grounding heads told "the object" from the background but not
        # one object from another.
        num_key_value_heads=4,
        head_dim=32,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=1000000.0,
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

    Dense targets teach the tower far faster than the language loss alone, which matters when
    training on a CPU. They build, in two steps, patch features that say what the patch's whole
    object is, so the language model finds "the triangle" or "the red object" by looking at single
    patches rather than by learning to gather each object itself:

    - Second layer: the object's shape (or character) read from the mean of its patches' features.
      One patch shows little of a shape and per-patch shape targets stayed at chance here, while the
      pooled one learns (a "deep sets" reading: per-patch features, then their mean).
    - Third layer: its first head attends over the patch's own object (target: uniform over the
      object's patches), which hands every patch that mean; on its output, the one LLaVA reads, each
      patch is asked its colour, whether an object's centre lies in it, and its object's shape and
      centre.
    - Final CLS state: the object count and which colours and shapes are present. LLaVA reads the
      penultimate layer, so nothing else would train the last one; this gives its CLS token a reason
      to attend to the objects, which makes MustDrop's key tokens (chosen by that attention)
      meaningful.
    """

    def __init__(self, width: int):
        super().__init__()
        shapes = len(SHAPES) + len(GLYPHS)
        self.pooled_shape = nn.Linear(width, shapes)
        self.patch_colour = nn.Linear(width, len(COLOURS) + 1)
        self.patch_centre = nn.Linear(width, 1)
        self.patch_shape = nn.Linear(width, shapes)
        self.patch_place = nn.Linear(width, 2)
        self.count = nn.Linear(width, MAX_OBJECTS + 1)
        self.present = nn.Linear(width, len(COLOURS) + len(SHAPES))

    def heads(self, vision, batch: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(prediction, target) of every probe, over the patches (or objects) it applies to."""
        owners = batch["patch_owners"]
        owned = owners > 0
        pooled_patches = vision.hidden_states[POOLED_LAYER][:, 1:]
        members = F.one_hot(owners, OWNER_SLOTS).to(pooled_patches.dtype)  # (B, 576, slots)
        sums = members.transpose(1, 2) @ pooled_patches
        counts = members.sum(dim=1)
        means = sums / counts.clamp(min=1).unsqueeze(-1)
        shapes = batch["owner_shapes"]
        present = (shapes >= 0) & (counts > 0)
        patches = vision.hidden_states[-2][:, 1:]
        patch_shapes = shapes.gather(1, owners)
        patch_places = batch["owner_places"].gather(1, owners.unsqueeze(-1).expand(-1, -1, 2))
        return {
            "pooled_shape": (self.pooled_shape(means[present]), shapes[present]),
            "colour": (self.patch_colour(patches).flatten(0, 1), batch["patch_colours"].flatten()),
            "centre": (self.patch_centre(patches).flatten(), batch["patch_centres"].flatten()),
            "shape": (self.patch_shape(patches[owned]), patch_shapes[owned]),
            "place": (self.patch_place(patches[owned]), patch_places[owned]),
            "count": (self.count(vision.pooler_output), batch["count"]),
            "present": (self.present(vision.pooler_output), batch["present"]),
        }

    @staticmethod
    def grouping(attention: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the grouping head's attention (B, 577, 577; GroupingHead) against
        "uniform over my object", over object patches, and the attention mass those patches put
        on their own object."""
        attention = attention[:, 1:, 1:]  # CLS left out
        owners = batch["patch_owners"]
        same = (owners.unsqueeze(2) == owners.unsqueeze(1)) & (owners > 0).unsqueeze(2)
        same = same.to(attention.dtype)
        size = same.sum(dim=2)
        rows = size > 0
        log_attention = attention.clamp(min=1e-9).log()
        loss = -((same * log_attention).sum(dim=2)[rows] / size[rows]).mean()
        mass = (same * attention).sum(dim=2)[rows].mean()
        return loss, mass

    def loss(self, vision, grouping_attention: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        heads = self.heads(vision, batch)
        grouping, mass = self.grouping(grouping_attention, batch)
        place, place_target = heads["place"]
        total = (
            grouping
            + sum(F.cross_entropy(*heads[name]) for name in ("pooled_shape", "colour", "shape", "count"))
            + sum(F.binary_cross_entropy_with_logits(*heads[name]) for name in ("centre", "present"))
            # Centres as shares of the side: errors are small numbers, so the weight keeps them felt.
            + 10 * F.mse_loss(torch.sigmoid(place), place_target)
        )
        return total, self.accuracy(heads, mass, batch)

    @staticmethod
    @torch.no_grad()
    def accuracy(heads: dict, mass: torch.Tensor, batch: dict) -> dict[str, float]:
        """Per-probe scores; colour over the patches objects cover, where predicting "nothing"
        everywhere would otherwise look near perfect; place as the mean distance in pixels."""
        covered = batch["patch_owners"].flatten() > 0
        colour_logits, colours = heads["colour"]
        place, place_target = heads["place"]

        def hits(name):
            prediction, target = heads[name]
            return (prediction.argmax(-1) == target).float().mean().item()

        return {
            "group": mass.item(),
            "pooled": hits("pooled_shape"),
            "colour": (colour_logits.argmax(-1) == colours)[covered].float().mean().item(),
            "shape": hits("shape"),
            "place_px": ((torch.sigmoid(place) - place_target).norm(dim=-1).mean() * IMAGE_SIZE).item(),
            "count": hits("count"),
        }


class AttentionInput:
    """Within its `with` block, keeps what an attention module was last called with: its input
    (`hidden`) and keyword arguments. The training probes that read attention recompute the few
    heads (and rows) they need from it, so the models run with SDPA, which returns no weights;
    asking for them (eager attention) makes every layer materialise and return all of its heads."""

    def __init__(self, attention):
        self.attention = attention

    def __enter__(self):
        def keep(module, args, kwargs):
            self.hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            self.kwargs = kwargs

        self.handle = self.attention.register_forward_pre_hook(keep, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


class GroupingHead(AttentionInput):
    """The tower's GROUPING_LAYER attention, whose first head SceneProbe teaches to spread over a
    patch's own object."""

    def __init__(self, tower):
        super().__init__(tower.encoder.layers[GROUPING_LAYER].self_attn)

    def weights(self) -> torch.Tensor:
        """(B, T, T) softmax attention of the layer's first head, with gradients."""
        size = self.attention.head_dim
        queries = self.attention.q_proj(self.hidden)[..., :size]
        keys = self.attention.k_proj(self.hidden)[..., :size]
        return (queries @ keys.transpose(1, 2) * self.attention.scale).softmax(-1)


class PointerReadout(nn.Module):
    """Training-only probe on the language model; not exported.

    Read from the residual stream of a question's pointer token right after the grounding layer:
    the named object's colour and shape (or character), or, for a counting pointer, how many there
    are. The grounding loss teaches where to look; this teaches the look to bring back what the
    answer needs (through the values of the image tokens), which the answers alone taught too slowly.
    A second one asks the same of the token that predicts the answer, a few layers on: the hop from
    the phrase to the answer.
    """

    def __init__(self, width: int):
        super().__init__()
        self.colour = nn.Linear(width, len(COLOURS))
        self.shape = nn.Linear(width, len(SHAPES) + len(GLYPHS))
        self.count = nn.Linear(width, MAX_OBJECTS + 1)

    def loss(self, hidden: torch.Tensor, batch: dict, at: str) -> tuple[torch.Tensor, float]:
        """Summed cross-entropies over the tokens with `at`'s targets (`{at}_colour` ...), and the
        share of those targets hit."""
        total, hits, targets = hidden.new_zeros(()), 0, 0
        for head, name in ((self.colour, f"{at}_colour"), (self.shape, f"{at}_shape"), (self.count, f"{at}_count")):
            wanted = batch[name] >= 0
            if wanted.any():
                logits = head(hidden[wanted])
                total = total + F.cross_entropy(logits, batch[name][wanted])
                hits += (logits.argmax(-1) == batch[name][wanted]).sum().item()
                targets += int(wanted.sum())
        return total, hits / max(1, targets)


def build(config: LlavaConfig, seed: int) -> tuple[LlavaForConditionalGeneration, SceneProbe]:
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    probe = SceneProbe(config.vision_config.hidden_size)
    return model, probe
