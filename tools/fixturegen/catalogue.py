"""The fixture models: which architecture options, prompt, images and file layout each one exercises."""

from dataclasses import dataclass

import torch

from .models import IMAGE_SIZE, ModelSpec
from .templates import (
    CHAT_TEMPLATE_JINJA_FILE,
    CHAT_TEMPLATE_JSON_STYLE,
    CHAT_TEMPLATE_MISTRAL_STYLE,
    CHAT_TEMPLATE_TOKENIZER_CONFIG_STYLE,
)


@dataclass(frozen=True)
class Fixture:
    name: str
    first_seed: int  # seeds are tried from here until the model passes the quality checks
    spec: ModelSpec
    images: list[str]
    messages: list[dict]
    chat_template: str
    # Where the chat template is stored: "chat_template.json", "chat_template.jinja" or "tokenizer_config.json".
    chat_template_file: str
    # "split": preprocessor_config.json + flat processor_config.json (llava-hf layout);
    # "nested": one processor_config.json with the image processor inside (what transformers 5 writes).
    processor_files: str
    # Largest shard size for save_pretrained; None keeps a single model.safetensors.
    max_shard_size: str | None = None
    # Older config.json spelling and llava-hf checkpoint key names (see layouts.py).
    legacy_checkpoint: bool = False
    # Reuse the seed (hence the identical weights file) of an earlier fixture with the same config,
    # instead of searching for a new one: keeps the committed fixtures small.
    weights_of: str | None = None


# LLaVA-NeXT's grid list scaled to the fixtures' tile: 1×2, 2×1, 2×2, 3×1 and 1×3 tiles.
TINY_NEXT_GRIDS = tuple((rows * IMAGE_SIZE, cols * IMAGE_SIZE) for rows, cols in [(1, 2), (2, 1), (2, 2), (3, 1), (1, 3)])


def _user(*parts: dict) -> dict:
    return {"role": "user", "content": list(parts)}


IMAGE = {"type": "image"}


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


FIXTURES = [
    Fixture(
        name="tiny-llava-mha",
        first_seed=1000,
        spec=ModelSpec(),
        images=["shapes-64x40.png"],
        messages=[_user(IMAGE, _text("What is shown in this image?"))],
        chat_template=CHAT_TEMPLATE_JSON_STYLE,
        chat_template_file="chat_template.json",
        processor_files="split",
    ),
    Fixture(
        name="tiny-llava-gqa",
        first_seed=2000,
        spec=ModelSpec(
            num_key_value_heads=2,
            rope_theta=1000.0,
            rms_norm_eps=1e-6,
            vision_feature_layer=-1,
            vision_feature_select_strategy="full",
            pad_to_square=True,
        ),
        images=["stripes-45x70.png"],
        messages=[
            {"role": "system", "content": "You are a helpful assistant that describes images."},
            _user(IMAGE, _text("Describe the colours and shapes you can see.")),
        ],
        chat_template=CHAT_TEMPLATE_TOKENIZER_CONFIG_STYLE,
        chat_template_file="tokenizer_config.json",
        processor_files="nested",
        max_shard_size="300KB",
        legacy_checkpoint=True,
    ),
    Fixture(
        name="tiny-llava-two-images",
        first_seed=3000,
        weights_of="tiny-llava-mha",
        spec=ModelSpec(),
        images=["shapes-64x40.png", "stripes-45x70.png"],
        messages=[
            _user(IMAGE, IMAGE, _text("What is different between the two images?")),
            {"role": "assistant", "content": [_text("The first has a red circle, the second has stripes.")]},
            _user(_text("Describe the second image.")),
        ],
        chat_template=CHAT_TEMPLATE_JINJA_FILE,
        chat_template_file="chat_template.jinja",
        processor_files="nested",
    ),
    Fixture(
        name="tiny-llava-bf16",
        first_seed=4000,
        spec=ModelSpec(storage_dtype=torch.bfloat16),
        images=["rings-90x72.png"],
        messages=[_user(IMAGE, _text("Describe this image in detail."))],
        chat_template=CHAT_TEMPLATE_JSON_STYLE,
        chat_template_file="chat_template.json",
        processor_files="split",
    ),
    # LLaVA-NeXT, Mistral variant: a wide image on a 1×2 grid, padded above and below, so whole
    # feature columns go at unpadding.
    Fixture(
        name="tiny-llava-next-mistral",
        first_seed=5000,
        spec=ModelSpec(
            num_key_value_heads=2,
            grid_pinpoints=TINY_NEXT_GRIDS,
            text_model="mistral",
            max_position_embeddings=2048,
        ),
        images=["shapes-64x40.png"],
        messages=[_user(IMAGE, _text("What is shown in this image?"))],
        chat_template=CHAT_TEMPLATE_MISTRAL_STYLE,
        chat_template_file="chat_template.json",
        processor_files="split",
    ),
    # LLaVA-NeXT, Vicuna variant: a tall image on a 2×1 grid and a near-square one on 2×2, each
    # unpadded, in one prompt, so the two image slots differ in length.
    Fixture(
        name="tiny-llava-next-vicuna",
        first_seed=6000,
        spec=ModelSpec(grid_pinpoints=TINY_NEXT_GRIDS, max_position_embeddings=2048),
        images=["stripes-45x70.png", "rings-90x72.png"],
        messages=[_user(IMAGE, IMAGE, _text("What is different between the two images?"))],
        chat_template=CHAT_TEMPLATE_JINJA_FILE,
        chat_template_file="chat_template.jinja",
        processor_files="nested",
    ),
]
