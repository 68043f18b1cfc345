"""The tiny-llava-reduce model: deep enough for four filter layers (20 LM layers, GQA), a 4-layer
CLIP tower (so the key-token layer differs from the feature layer), and sharpened attention.

The shared fixture init (weights.py) gives attention logits of unit scale, so softmax rows over 150
keys are nearly flat and every ranking a reduction method makes would sit within rounding noise of a
tie. Scaling the query and key projections by ATTENTION_SHARPEN (each, so logits grow by its square)
makes rows peaky and rankings decisive. The factor is a power of two: scaled bf16 values stay exact.
"""

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration

from .models import build_config
from .reduce_catalogue import LM_LAYERS, REDUCE_FIXTURE, SPARSE_CONFIG, VISION_LAYERS
from .weights import randomize

ATTENTION_SHARPEN = 2.0


def build_reduce_config(vocab_size: int, image_token_id: int, pad_token_id: int) -> LlavaConfig:
    config = build_config(REDUCE_FIXTURE.spec, vocab_size, image_token_id, pad_token_id)
    config.text_config.num_hidden_layers = LM_LAYERS
    config.vision_config.num_hidden_layers = VISION_LAYERS
    # Unknown to transformers; kept verbatim in config.json where the engine reads it.
    config.sparse_config = dict(SPARSE_CONFIG)
    return config


def build_reduce_model(config: LlavaConfig, seed: int, control_token_ids: list[int]) -> LlavaForConditionalGeneration:
    """Random f32 model whose weights are exactly representable in the storage dtype (bf16)."""
    model = LlavaForConditionalGeneration(config)
    randomize(model, seed, control_token_ids)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight", "q_proj.bias", "k_proj.bias")):
                param.mul_(ATTENTION_SHARPEN)
            param.copy_(param.to(REDUCE_FIXTURE.spec.storage_dtype).to(torch.float32))
    model.config._attn_implementation = "eager"
    return model.eval()
