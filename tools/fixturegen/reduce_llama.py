"""One Llama decoder layer over an explicit list of rows, with per-row RoPE positions and an explicit
per-layer K/V cache, returning the head-mean attention rows the reduction filters read.

Rows attend causally in sequence order: a new row sees every cached row and the new rows before it
(and itself). Cached keys are stored after RoPE, so dropping a cached row never disturbs the others.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .reduce_weights import ReferenceModel


@dataclass(eq=False)
class Row:
    """What one sequence row stands for. Rows compare by identity: the same object is followed
    through every layer's cache, so trimming and eviction can name exactly the rows they remove."""

    kind: str  # "text" (prompt), "vision", "generated"
    position: int  # original RoPE position
    image: int = -1
    tokens: tuple = ()  # stage-1 token indices this vision row stands for (several once recycled)
    recycled_at: int = -1  # filter layer that created this row by recycling, -1 for stage-1 rows


@dataclass
class LayerCache:
    keys: torch.Tensor  # [kv_heads, rows, head_dim], post-RoPE
    values: torch.Tensor
    rows: list = field(default_factory=list)

    def keep(self, wanted) -> None:
        """Drops every cached row for which `wanted(row)` is false."""
        index = [i for i, row in enumerate(self.rows) if wanted(row)]
        self.keys, self.values = self.keys[:, index], self.values[:, index]
        self.rows = [self.rows[i] for i in index]

    def append(self, keys: torch.Tensor, values: torch.Tensor, rows: list) -> None:
        self.keys = torch.cat([self.keys, keys], dim=1)
        self.values = torch.cat([self.values, values], dim=1)
        self.rows = self.rows + rows


def empty_cache(model: ReferenceModel) -> LayerCache:
    cfg = model.text_config
    shape = (cfg["num_key_value_heads"], 0, _head_dim(cfg))
    return LayerCache(torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64), [])


def _head_dim(cfg: dict) -> int:
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def _rope_angles(positions: list[int], head_dim: int, theta: float) -> torch.Tensor:
    # Frequencies and angles are rounded to f32 as transformers (and the engine) compute them; the
    # rounding of an angle near 200 rad is ~1e-5, visible at the 1e-5 level of the logit comparison.
    inv_freq = 1.0 / (np.float32(theta) ** (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)))
    angles = np.asarray(positions, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)[None, :]
    return torch.from_numpy(angles.astype(np.float64))  # [rows, head_dim / 2]


def apply_rope(x: torch.Tensor, positions: list[int], theta: float) -> torch.Tensor:
    """x [heads, rows, head_dim]; rotates the pairs (i, i + head_dim/2) by position * inv_freq_i."""
    half = x.shape[-1] // 2
    angles = _rope_angles(positions, x.shape[-1], theta)
    cos, sin = torch.cos(angles), torch.sin(angles)
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


def _project(model: ReferenceModel, prefix: str, x: torch.Tensor, heads: int) -> torch.Tensor:
    return (x @ model.lm(f"{prefix}.weight").T).reshape(x.shape[0], heads, -1).transpose(0, 1)


@dataclass
class LayerOutput:
    hidden: torch.Tensor  # [new rows, d] output of the layer
    keys: torch.Tensor  # [kv_heads, new rows, head_dim] post-RoPE keys of the new rows
    values: torch.Tensor
    attention: torch.Tensor  # [new rows, cached + new rows] head-mean probabilities


def layer_forward(
    model: ReferenceModel, index: int, hidden: torch.Tensor, positions: list[int], cache: LayerCache
) -> LayerOutput:
    """Runs layer `index` on new rows `hidden` that follow the rows already in `cache`."""
    cfg = model.text_config
    heads, kv_heads, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["rms_norm_eps"]
    theta = cfg["rope_parameters"]["rope_theta"]
    prefix = f"layers.{index}"
    x = rms_norm(hidden, model.lm(f"{prefix}.input_layernorm.weight"), eps)
    q = apply_rope(_project(model, f"{prefix}.self_attn.q_proj", x, heads), positions, theta)
    k = apply_rope(_project(model, f"{prefix}.self_attn.k_proj", x, kv_heads), positions, theta)
    v = _project(model, f"{prefix}.self_attn.v_proj", x, kv_heads)

    keys = torch.cat([cache.keys, k], dim=1)
    values = torch.cat([cache.values, v], dim=1)
    group = heads // kv_heads  # query head h reads KV head h // group
    keys, values_h = keys.repeat_interleave(group, dim=0), values.repeat_interleave(group, dim=0)
    scores = q @ keys.transpose(1, 2) / math.sqrt(q.shape[-1])
    past, new = cache.keys.shape[1], hidden.shape[0]
    visible = torch.arange(past + new)[None, :] <= (past + torch.arange(new))[:, None]
    probs = torch.softmax(scores.masked_fill(~visible, -math.inf), dim=-1)
    mixed = (probs @ values_h).transpose(0, 1).reshape(new, -1)
    hidden = hidden + mixed @ model.lm(f"{prefix}.self_attn.o_proj.weight").T

    x = rms_norm(hidden, model.lm(f"{prefix}.post_attention_layernorm.weight"), eps)
    gate = torch.nn.functional.silu(x @ model.lm(f"{prefix}.mlp.gate_proj.weight").T)
    up = x @ model.lm(f"{prefix}.mlp.up_proj.weight").T
    hidden = hidden + (gate * up) @ model.lm(f"{prefix}.mlp.down_proj.weight").T
    return LayerOutput(hidden, k, v, probs.mean(0))


def final_logits(model: ReferenceModel, hidden_row: torch.Tensor) -> torch.Tensor:
    normed = rms_norm(hidden_row, model.lm("norm.weight"), model.text_config["rms_norm_eps"])
    return normed @ model["lm_head.weight"].T
