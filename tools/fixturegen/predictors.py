"""The two Dynamic-LLaVA predictor heads, as torch modules with the checkpoint's parameter names.

The image predictor scores one image's rows at the input of the sparse layer (keep = logit 0); the
output-text predictor decides, per generated token, whether its K/V enter the caches of the layers
from the sparse layer on. The module trees mirror the upstream ones so that `state_dict()` gives the
names an engine loads (`image_score_predictor.down_mlp.0.weight`, ...), without the `model.` prefix.

Random weights: the upstream default init would give logits within a hair of each other, so every
decision would hinge on rounding. Here each Linear is drawn with std 1/sqrt(fan_in) (unit-scale
activations), norms get gains near one and non-trivial shifts, and biases are non-zero, so the
logits are O(1) and an engine that skips a bias or a norm fails the comparison. The last Linear of
each head is drawn LOGIT_GAIN times larger, which spreads the logit differences the decisions use.
"""

import math

import torch
from torch import nn

LOGIT_GAIN = 3.0
FINAL_LINEARS = ("image_score_predictor.output_mlp.4.weight", "output_text_score_predictor.output_mlp.7.weight")


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention; qkv is one bias-free Linear split as [q | k | v]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, width = x.shape
        head_dim = width // self.heads
        q, k, v = self.qkv(x).split(width, dim=-1)
        # [heads, rows, head_dim]: each head owns a contiguous slice of the width.
        q, k, v = (t.reshape(rows, self.heads, head_dim).transpose(0, 1) for t in (q, k, v))
        probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(head_dim), dim=-1)
        mixed = (probs @ v).transpose(0, 1).reshape(rows, width)
        return self.proj(mixed)


class FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()  # exact (erf) form
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm ViT layout, no layer scale)."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = FeedForward(width, hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.attn(self.norm1(z))
        return z + self.mlp(self.norm2(z))


class ImagePredictor(nn.Module):
    """Logits [n, 2] for the n rows of one image; index 0 means keep."""

    def __init__(self, hidden: int, d_model: int, heads: int, feedforward: int, layers: int):
        super().__init__()
        self.d_model = d_model
        self.down_mlp = nn.Sequential(nn.LayerNorm(hidden, eps=1e-5), nn.Linear(hidden, d_model), nn.GELU())
        self.transformer = nn.ModuleList(Block(d_model, heads, feedforward) for _ in range(layers))
        self.output_mlp = nn.Sequential(
            nn.Linear(d_model, d_model // 2),
            nn.GELU(),
            nn.Linear(d_model // 2, d_model // 4),
            nn.GELU(),
            nn.Linear(d_model // 4, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.down_mlp(x)
        for block in self.transformer:
            z = block(z)
        half = self.d_model // 2
        # Each row keeps its own first half and shares the image-wide mean of the second half.
        shared = z[:, half:].mean(dim=0, keepdim=True).expand(z.shape[0], -1)
        return self.output_mlp(torch.cat([z[:, :half], shared], dim=-1))


class TextPredictor(nn.Module):
    """Logits [n, 2] for n independent rows (one generated token each); index 0 means admit."""

    def __init__(self, hidden: int, d_model: int):
        super().__init__()
        self.output_mlp = nn.Sequential(
            nn.LayerNorm(hidden, eps=1e-5),
            nn.Linear(hidden, d_model),
            nn.GELU(),
            nn.Linear(d_model, d_model // 2),
            nn.GELU(),
            nn.Linear(d_model // 2, d_model // 4),
            nn.GELU(),
            nn.Linear(d_model // 4, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_mlp(x)


class Predictors(nn.Module):
    """Both heads under the attribute names the checkpoint uses."""

    def __init__(self, hidden: int, d_model: int, heads: int, feedforward: int, layers: int):
        super().__init__()
        self.image_score_predictor = ImagePredictor(hidden, d_model, heads, feedforward, layers)
        self.output_text_score_predictor = TextPredictor(hidden, d_model)


def build_predictors(hidden: int, d_model: int, heads: int, feedforward: int, layers: int, seed: int) -> Predictors:
    """Seeded f32 predictors; parameters are drawn in sorted-name order from one generator."""
    predictors = Predictors(hidden, d_model, heads, feedforward, layers)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(predictors.named_parameters()):
            param.copy_(_draw(name, param.shape, generator))
    return predictors.eval()


def _draw(name: str, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    is_norm = len(shape) == 1 and _is_norm(name)
    if is_norm and name.endswith("weight"):
        return 1.0 + 0.2 * noise
    if name.endswith("bias"):
        return 0.1 * noise
    gain = LOGIT_GAIN if name in FINAL_LINEARS else 1.0
    return gain * noise / math.sqrt(shape[1])


def _is_norm(name: str) -> bool:
    # LayerNorms are `norm1`/`norm2` in the blocks and index 0 of the two input Sequentials.
    return ".norm" in name or name.startswith("image_score_predictor.down_mlp.0.") or (
        name.startswith("output_text_score_predictor.output_mlp.0.")
    )
