"""CLIP vision tower and projector, with the MustDrop stage-1 hooks (A1 window merge after layer 0,
A2 key tokens from the last layer's CLS attention row).

Rows are CLS first, then tokens; every token records the raster patch indices it covers.
"""

import math
from dataclasses import dataclass

import torch

from .reduce_margins import Margins
from .reduce_weights import ReferenceModel

WINDOW = 3


@dataclass
class Stage1Options:
    merge: bool
    tau: float
    order: str  # "raster" | "reference"
    key_rate: float


@dataclass
class VisionOutput:
    features: torch.Tensor  # [tokens, lm hidden] projector output, one row per stage-1 token
    tokens: list[list[int]]  # covered raster patches of each stage-1 token, in output order
    windows: list[dict] | None  # A1: id, similarity, merged (None without stage 1)
    key_tokens: list[int] | None  # A2: indices into `tokens` (None without stage 1)


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _linear(model: ReferenceModel, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return x @ model[f"{prefix}.weight"].T + model[f"{prefix}.bias"]


def _embed(model: ReferenceModel, pixels: torch.Tensor) -> torch.Tensor:
    cfg = model.vision_config
    patch = cfg["patch_size"]
    weight = model.vision("embeddings.patch_embedding.weight")
    patches = torch.nn.functional.conv2d(pixels.to(weight.dtype)[None], weight, stride=patch)[0]
    patches = patches.flatten(1).T  # [N, C], raster order
    rows = torch.cat([model.vision("embeddings.class_embedding")[None], patches])
    rows = rows + model.vision("embeddings.position_embedding.weight")
    eps = cfg["layer_norm_eps"]
    return _layer_norm(rows, model.vision("pre_layrnorm.weight"), model.vision("pre_layrnorm.bias"), eps)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.reshape(x.shape[0], heads, -1).transpose(0, 1)  # [heads, rows, head_dim]


def _layer(model: ReferenceModel, index: int, x: torch.Tensor) -> torch.Tensor:
    cfg = model.vision_config
    prefix = f"model.vision_tower.encoder.layers.{index}"
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    h = _layer_norm(x, model[f"{prefix}.layer_norm1.weight"], model[f"{prefix}.layer_norm1.bias"], eps)
    q, k, v = (_heads(_linear(model, f"{prefix}.self_attn.{n}_proj", h), heads) for n in "qkv")
    probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
    mixed = (probs @ v).transpose(0, 1).reshape(x.shape)
    x = x + _linear(model, f"{prefix}.self_attn.out_proj", mixed)
    h = _layer_norm(x, model[f"{prefix}.layer_norm2.weight"], model[f"{prefix}.layer_norm2.bias"], eps)
    h = _linear(model, f"{prefix}.mlp.fc1", h)
    h = h * torch.sigmoid(1.702 * h)  # quick_gelu
    return x + _linear(model, f"{prefix}.mlp.fc2", h)


def _window_members(grid: int) -> list[list[int]]:
    """Raster patch indices of each 3x3 window, windows in raster order of the window grid."""
    per_side = grid // WINDOW
    return [
        [(WINDOW * gy + ty) * grid + WINDOW * gx + tx for ty in range(WINDOW) for tx in range(WINDOW)]
        for gy in range(per_side)
        for gx in range(per_side)
    ]


def _merge(x: torch.Tensor, grid: int, options: Stage1Options, margins: Margins):
    """A1 on the layer-0 output: returns the merged rows, covered patches per token, window records."""
    if grid % WINDOW:
        raise ValueError(f"patch grid {grid}x{grid} is not a multiple of {WINDOW}")
    patches = x[1:]
    windows = []
    for wid, members in enumerate(_window_members(grid)):
        unit = patches[members] / patches[members].norm(dim=-1, keepdim=True)
        cos = unit @ unit.T
        similarity = (cos.sum() - cos.diagonal().sum()) / (len(members) * (len(members) - 1))
        merged = bool(similarity >= options.tau)
        margins.add("merge_threshold", similarity - options.tau)
        windows.append({"id": wid, "similarity": float(similarity), "merged": merged, "members": members})

    tokens = [(w["members"], patches[w["members"]].mean(0)) for w in windows if w["merged"]]
    covered = {p for w in windows if w["merged"] for p in w["members"]}
    singles = [([p], patches[p]) for p in range(grid * grid) if p not in covered]
    if options.order == "raster":
        tokens = sorted(tokens + singles, key=lambda token: min(token[0]))
    else:
        # Reference order: merged windows by descending similarity (ties: lower window id), then the rest.
        merged = sorted((w for w in windows if w["merged"]), key=lambda w: (-w["similarity"], w["id"]))
        for first, second in zip(merged, merged[1:]):
            margins.add("merge_order", first["similarity"] - second["similarity"])
        tokens = [(w["members"], patches[w["members"]].mean(0)) for w in merged] + singles
    rows = torch.cat([x[:1], torch.stack([row for _, row in tokens])])
    records = [{key: w[key] for key in ("id", "similarity", "merged")} for w in windows]
    return rows, [sorted(members) for members, _ in tokens], records


def _key_tokens(model: ReferenceModel, x: torch.Tensor, key_rate: float, margins: Margins) -> list[int]:
    """A2: top ceil(key_rate * N') tokens by the last layer's head-mean CLS attention row."""
    cfg = model.vision_config
    prefix = f"model.vision_tower.encoder.layers.{cfg['num_hidden_layers'] - 1}"
    norm_weight, norm_bias = model[f"{prefix}.layer_norm1.weight"], model[f"{prefix}.layer_norm1.bias"]
    h = _layer_norm(x, norm_weight, norm_bias, cfg["layer_norm_eps"])
    heads = cfg["num_attention_heads"]
    q = _heads(_linear(model, f"{prefix}.self_attn.q_proj", h[:1]), heads)
    k = _heads(_linear(model, f"{prefix}.self_attn.k_proj", h), heads)
    row = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1).mean(0)[0]
    scores = row[1:]
    count = math.ceil(key_rate * scores.numel())
    margins.add("key_count_rounding", key_rate * scores.numel() - round(key_rate * scores.numel()))
    margins.topk_boundary("key_topk", scores, count)
    order = sorted(range(scores.numel()), key=lambda j: (-float(scores[j]), j))
    return sorted(order[:count])


def encode_image(model: ReferenceModel, pixels: torch.Tensor, stage1: Stage1Options | None, margins: Margins):
    cfg = model.vision_config
    grid = cfg["image_size"] // cfg["patch_size"]
    layers = cfg["num_hidden_layers"]
    feature_layer = model.config["vision_feature_layer"]
    # hidden_states[0] is the embedding output, hidden_states[i + 1] the output of layer i.
    feature_index = feature_layer % (layers + 1)
    # Run up to the feature layer, and with stage 1 up to the input of the last layer (key tokens).
    last_needed = max(feature_index, layers - 1) if stage1 is not None else feature_index
    hidden_states = [_embed(model, pixels)]
    tokens = [[p] for p in range(grid * grid)]
    windows = key_tokens = None
    for index in range(last_needed):
        x = _layer(model, index, hidden_states[-1])
        if index == 0 and stage1 is not None and stage1.merge:
            x, tokens, windows = _merge(x, grid, stage1, margins)
        hidden_states.append(x)
    if stage1 is not None:
        key_tokens = _key_tokens(model, hidden_states[layers - 1], stage1.key_rate, margins)
    features = hidden_states[feature_index]
    if model.config["vision_feature_select_strategy"] == "default":
        features = features[1:]
    hidden = _linear(model, "model.multi_modal_projector.linear_1", features)
    hidden = torch.nn.functional.gelu(hidden)
    return VisionOutput(_linear(model, "model.multi_modal_projector.linear_2", hidden), tokens, windows, key_tokens)
