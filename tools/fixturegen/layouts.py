"""Rewrites a transformers-5 `save_pretrained` directory into the other on-disk forms seen on the Hub.

transformers 5 writes processor_config.json (with the image processor nested inside), a
chat_template.jinja, config.json with `rope_parameters`, and checkpoint keys such as
`vision_tower.embeddings.*`. Checkpoints published earlier (llava-hf/llava-1.5-*) use
preprocessor_config.json + a flat processor_config.json + chat_template.json, `rope_theta`,
`torch_dtype`, and `vision_tower.vision_model.*` keys. The engine must read both; each function here
produces one older form, and the caller checks that transformers still loads the result unchanged.
"""

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


PROCESSOR_CONFIG = "processor_config.json"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
CHAT_TEMPLATE_JINJA = "chat_template.jinja"
CHAT_TEMPLATE_JSON = "chat_template.json"
INDEX_FILE = "model.safetensors.index.json"


def _read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_config(path: Path, value: dict) -> None:
    # The same spelling transformers uses for its own JSON files.
    path.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def split_processor_config(directory: Path) -> None:
    """processor_config.json{image_processor: {...}} -> preprocessor_config.json + flat processor_config.json."""
    processor = _read(directory / PROCESSOR_CONFIG)
    image_processor = processor.pop("image_processor")
    image_processor["processor_class"] = processor["processor_class"]
    _write_config(directory / PREPROCESSOR_CONFIG, image_processor)
    _write_config(directory / PROCESSOR_CONFIG, processor)


def chat_template_to_json_file(directory: Path) -> None:
    """chat_template.jinja -> chat_template.json {"chat_template": ...}."""
    template = (directory / CHAT_TEMPLATE_JINJA).read_text(encoding="utf-8")
    (directory / CHAT_TEMPLATE_JINJA).unlink()
    _write_config(directory / CHAT_TEMPLATE_JSON, {"chat_template": template})


def chat_template_to_tokenizer_config(directory: Path) -> None:
    """chat_template.jinja -> the "chat_template" key of tokenizer_config.json."""
    template = (directory / CHAT_TEMPLATE_JINJA).read_text(encoding="utf-8")
    (directory / CHAT_TEMPLATE_JINJA).unlink()
    config = _read(directory / TOKENIZER_CONFIG)
    config["chat_template"] = template
    _write_config(directory / TOKENIZER_CONFIG, config)


def legacy_model_config(directory: Path, llava_defaults: dict, text_defaults: dict, vision_defaults: dict) -> None:
    """config.json in the pre-5 style of llava-hf's published configs: `rope_theta` instead of
    `rope_parameters`, `torch_dtype`, no `head_dim`, and keys equal to the library defaults left out."""
    config = _read(directory / "config.json")
    config["torch_dtype"] = config.pop("dtype")
    text = config.pop("text_config")
    vision = config.pop("vision_config")
    rope = text.pop("rope_parameters")
    if rope.get("rope_type", "default") != "default":
        raise ValueError("only plain RoPE has a legacy rope_theta spelling")
    text["rope_theta"] = rope["rope_theta"]
    if text.get("head_dim") == text["hidden_size"] // text["num_attention_heads"]:
        del text["head_dim"]
    config = _drop_defaults(config, llava_defaults)
    config["text_config"] = _drop_defaults(text, text_defaults)
    config["vision_config"] = _drop_defaults(vision, vision_defaults)
    _write_config(directory / "config.json", config)


# Keys a published config carries even when they match the defaults.
ALWAYS_KEPT = ("model_type", "architectures", "transformers_version")


def _drop_defaults(section: dict, defaults: dict) -> dict:
    kept = {}
    for key, value in section.items():
        if key not in ALWAYS_KEPT and key in defaults and defaults[key] == value:
            continue
        kept[key] = value
    return kept


def hub_weight_names(directory: Path) -> None:
    """Renames `vision_tower.X` checkpoint keys to llava-hf's `vision_tower.vision_model.X` in every shard."""
    index = _read(directory / INDEX_FILE)
    renamed_map = {}
    for shard in sorted(set(index["weight_map"].values())):
        path = directory / shard
        with safe_open(path, framework="pt") as reader:
            metadata = reader.metadata()
            tensors = {_hub_name(key): reader.get_tensor(key) for key in reader.keys()}
        save_file(tensors, path, metadata=metadata)
    for key, shard in index["weight_map"].items():
        renamed_map[_hub_name(key)] = shard
    index["weight_map"] = dict(sorted(renamed_map.items()))
    _write_config(directory / INDEX_FILE, index)


def _hub_name(key: str) -> str:
    prefix = "vision_tower."
    return "vision_tower.vision_model." + key[len(prefix) :] if key.startswith(prefix) else key
