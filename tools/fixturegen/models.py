"""Configurations, random weights and processors of the tiny LLaVA and LLaVA-NeXT fixtures."""

from dataclasses import dataclass

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextProcessor,
    LlavaProcessor,
    MistralConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from .weights import randomize

IMAGE_SIZE = 48
PATCH_SIZE = 4
PATCHES_PER_IMAGE = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 144


@dataclass(frozen=True)
class ModelSpec:
    """What differs between the fixture models; everything else is shared by all of them."""

    num_key_value_heads: int = 4
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "default"
    pad_to_square: bool = False
    storage_dtype: torch.dtype = torch.float32
    # LLaVA-NeXT's tile grids (height, width in pixels, whole tiles of IMAGE_SIZE); None for LLaVA.
    grid_pinpoints: tuple[tuple[int, int], ...] | None = None
    # "llama" or "mistral" (LLaVA-NeXT's Mistral variant: the same network, its own config class).
    text_model: str = "llama"
    # NeXT images take several hundred tokens each.
    max_position_embeddings: int = 1024

    @property
    def is_next(self) -> bool:
        return self.grid_pinpoints is not None

    @property
    def image_tokens_per_image(self) -> int:
        """LLaVA only: NeXT's count depends on each image's size."""
        # "default" drops the CLS position of the vision tower output, "full" keeps it.
        return PATCHES_PER_IMAGE if self.vision_feature_select_strategy == "default" else PATCHES_PER_IMAGE + 1


def build_config(spec: ModelSpec, vocab_size: int, image_token_id: int, pad_token_id: int) -> LlavaConfig:
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        hidden_act="quick_gelu",
        projection_dim=32,
        layer_norm_eps=1e-5,
    )
    text_config_class = MistralConfig if spec.text_model == "mistral" else LlamaConfig
    # Mistral's sliding window is off in LLaVA-NeXT's Mistral (its config says null).
    extra = {"sliding_window": None} if spec.text_model == "mistral" else {}
    text = text_config_class(
        **extra,
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=spec.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    common = dict(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
    )
    if spec.is_next:
        grids = [list(grid) for grid in spec.grid_pinpoints]
        return LlavaNextConfig(image_grid_pinpoints=grids, image_seq_length=PATCHES_PER_IMAGE, **common)
    return LlavaConfig(image_seq_length=spec.image_tokens_per_image, **common)


def build_model(config: LlavaConfig, seed: int, storage_dtype: torch.dtype, control_token_ids: list[int]):
    """A randomly initialised model in f32 whose weights are exactly representable in `storage_dtype`."""
    model_class = LlavaNextForConditionalGeneration if isinstance(config, LlavaNextConfig) else LlavaForConditionalGeneration
    model = model_class(config)
    randomize(model, seed, control_token_ids)
    if storage_dtype != torch.float32:
        # Round through the storage type so the in-memory f32 model equals the saved one upcast.
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(param.to(storage_dtype).to(torch.float32))
    model.config._attn_implementation = "eager"
    return model.eval()


def build_image_processor(spec: ModelSpec):
    """The PIL ("slow") image processors: the engine reproduces PIL's bicubic resize, not torchvision's."""
    common = dict(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=3,  # PIL.Image.BICUBIC
        do_center_crop=True,
    )
    if spec.is_next:
        return LlavaNextImageProcessorPil(image_grid_pinpoints=[list(grid) for grid in spec.grid_pinpoints], **common)
    if spec.pad_to_square:
        return LlavaImageProcessorPil(do_pad=True, **common)
    return CLIPImageProcessorPil(**common)


def build_processor(spec: ModelSpec, tokenizer, chat_template: str | None):
    processor_class = LlavaNextProcessor if spec.is_next else LlavaProcessor
    return processor_class(
        image_processor=build_image_processor(spec),
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # the CLS position of the CLIP vision tower
        chat_template=chat_template,
    )
