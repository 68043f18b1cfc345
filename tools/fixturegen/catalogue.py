"""The fixture models: which architecture options, prompt, images and file layout each one exercises."""

from dataclasses import dataclass

import torch

from .models import ModelSpec
from .templates import CHAT_TEMPLATE_JINJA_FILE, CHAT_TEMPLATE_JSON_STYLE, CHAT_TEMPLATE_TOKENIZER_CONFIG_STYLE


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
]
