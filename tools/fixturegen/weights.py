"""Seeded random initialisation that gives a tiny LLaVA decisive, varied outputs.

The library's default init (std 0.02) makes a 64-wide model produce near-uniform logits, so greedy
decoding would hinge on rounding noise. Here every weight is drawn so that activations keep unit
scale through the network and the final logits spread over several units; norms and biases get
non-trivial values so that an engine which ignores one of them fails the comparison.
"""

import math

import torch

# Standard deviation of the logits when the final norm outputs unit-RMS vectors.
LOGIT_SCALE = 3.0
# The output rows of control tokens (<unk>, <s>, </s>, <image>, <pad>) are shrunk by this factor so
# that greedy decoding never picks them: a generated end-of-sequence would make "exactly 16 new
# tokens" depend on how an engine treats it, and an image token has no text to show.
CONTROL_ROW_SCALE = 0.05


def _normal(generator: torch.Generator, shape: torch.Size, std: float) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32) * std


def randomize(model: torch.nn.Module, seed: int, control_token_ids: list[int]) -> None:
    """Overwrites every parameter of `model` in a fixed order from one seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            param.copy_(_draw(name, param, generator))
        lm_head = model.lm_head.weight
        lm_head[control_token_ids] *= CONTROL_ROW_SCALE


def _draw(name: str, param: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    shape = param.shape
    leaf = name.rsplit(".", 1)[-1]
    if "norm" in name or "layrnorm" in name:
        # LayerNorm / RMSNorm: gain near one, small shift.
        return 1.0 + _normal(generator, shape, 0.2) if leaf == "weight" else _normal(generator, shape, 0.1)
    if leaf == "bias":
        return _normal(generator, shape, 0.1)
    if name.endswith("embed_tokens.weight") or name.endswith("class_embedding") or name.endswith("image_newline"):
        # LLaVA-NeXT's end-of-row embedding enters the language model like a token's.
        return _normal(generator, shape, 1.0)
    if name.endswith("position_embedding.weight"):
        return _normal(generator, shape, 0.5)
    if name.endswith("patch_embedding.weight"):
        fan_in = shape[1] * shape[2] * shape[3]
        return _normal(generator, shape, 1.0 / math.sqrt(fan_in))
    if name == "lm_head.weight":
        return _normal(generator, shape, LOGIT_SCALE / math.sqrt(shape[1]))
    if param.dim() == 2:
        return _normal(generator, shape, 1.0 / math.sqrt(shape[1]))
    raise ValueError(f"no init rule for parameter {name} {tuple(shape)}")
