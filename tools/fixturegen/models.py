"""Configurations, random weights and processors of the tiny LLaVA fixtures."""

from dataclasses import dataclass

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

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

    @property
    def image_tokens_per_image(self) -> int:
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
    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=1024,
        rms_norm_eps=spec.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=spec.image_tokens_per_image,
        projector_hidden_act="gelu",
        vision_feature_layer=spec.vision_feature_layer,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
    )


def build_model(config: LlavaConfig, seed: int, storage_dtype: torch.dtype, control_token_ids: list[int]):
    """A randomly initialised model in f32 whose weights are exactly representable in `storage_dtype`."""
    model = LlavaForConditionalGeneration(config)
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
    if spec.pad_to_square:
        return LlavaImageProcessorPil(do_pad=True, **common)
    return CLIPImageProcessorPil(**common)


def build_processor(spec: ModelSpec, tokenizer, chat_template: str | None) -> LlavaProcessor:
    return LlavaProcessor(
        image_processor=build_image_processor(spec),
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy=spec.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # the CLS position of the CLIP vision tower
        chat_template=chat_template,
    )
