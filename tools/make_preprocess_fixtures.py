#!/usr/bin/env python3
"""Golden data for glimpse's image preprocessing (crates/glimpse-core/src/model/preprocess).

Everything here comes from the reference implementations themselves:

* resize.json   -- Pillow's `Image.resize` for every filter transformers accepts (0..5),
                   on small synthetic images, downscaling, upscaling and mixed ratios.
* pipeline.json -- transformers' PIL-backend image processors (CLIPImageProcessorPil and
                   LlavaImageProcessorPil), loaded with AutoImageProcessor from a real
                   preprocessor_config.json exactly as a checkpoint would ship it. For each
                   case we keep the uint8 image PIL produced inside `resize` (so the resize
                   can be checked bit for bit) and the final pixel values.
* configs/      -- files written by transformers' own save_pretrained: a LlavaProcessor
                   (processor_config.json with a nested "image_processor") and a bare
                   image processor (preprocessor_config.json).

Byte arrays are base64: RGB images as row-major interleaved uint8, pixel values as
little-endian float32 in CHW order. Deterministic: fixed seed, no randomness elsewhere.

Regenerate from the repository root:
    /work/pyenv/bin/python tools/make_preprocess_fixtures.py
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import PIL
import transformers
from PIL import Image
from transformers import AutoImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

OUT_DIR = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "preprocess"
SEED = 20240611


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def synthetic_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Noise over per-channel gradients: smooth areas and sharp edges, clipped highlights."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    fx = xs / max(width - 1, 1)
    fy = ys / max(height - 1, 1)
    base = np.stack([255 * fx, 255 * fy, 255 * (1 - fx) * fy], axis=-1)
    noise = rng.normal(0, 40, size=(height, width, 3))
    # A hard-edged block so the filters' negative lobes push values past 0 and 255.
    block = np.zeros((height, width, 1))
    block[height // 3 : 2 * height // 3 + 1, width // 3 : 2 * width // 3 + 1] = 1
    img = base + noise + block * np.array([200.0, -200.0, 120.0])
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_images(rng: np.random.Generator) -> dict[str, np.ndarray]:
    sizes = {
        "landscape_52x39": (52, 39),
        "landscape_96x72": (96, 72),
        "landscape_70x42": (70, 42),
        "small_16x12": (16, 12),
        "odd_37x23": (37, 23),
        "portrait_23x41": (23, 41),
        "strip_120x8": (120, 8),
        "strip_7x90": (7, 90),
        "pixel_1x1": (1, 1),
    }
    return {name: synthetic_image(rng, w, h) for name, (w, h) in sizes.items()}


def image_entry(name: str, array: np.ndarray) -> dict:
    height, width, _ = array.shape
    return {"name": name, "width": width, "height": height, "rgb": b64(array.tobytes())}


# (image, output width, output height): x1.3, x3 and x7 down, x2 up, mixed, extreme, 1x1.
# The two cases whose height loses more than twice the pixels the width loses make
# Pillow 13 run its vertical pass first.
RESIZE_CASES = [
    ("landscape_52x39", 40, 30),
    ("landscape_96x72", 32, 24),
    ("landscape_70x42", 10, 6),
    ("small_16x12", 32, 24),
    ("odd_37x23", 50, 17),
    ("portrait_23x41", 20, 9),
    ("portrait_23x41", 9, 61),
    ("strip_120x8", 45, 3),
    ("pixel_1x1", 5, 3),
]
# Pillow's filter ids as transformers accepts them (PILImageResampling 0..5).
FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def make_resize_fixture(images: dict[str, np.ndarray]) -> dict:
    cases = []
    for filter_id in FILTERS.values():
        for image_name, out_w, out_h in RESIZE_CASES:
            pil = Image.fromarray(images[image_name], mode="RGB")
            resized = np.asarray(pil.resize((out_w, out_h), resample=filter_id))
            assert resized.shape == (out_h, out_w, 3)
            cases.append(
                {
                    "image": image_name,
                    "filter": filter_id,
                    "width": out_w,
                    "height": out_h,
                    "rgb": b64(np.ascontiguousarray(resized).tobytes()),
                }
            )
    used = sorted({name for name, _, _ in RESIZE_CASES})
    return {"images": [image_entry(n, images[n]) for n in used], "cases": cases}


CLIP_MEAN_STD = {
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}

# Each config is written verbatim as preprocessor_config.json and loaded by transformers.
PIPELINE_CONFIGS = {
    "clip_default": {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": 16},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": 16, "width": 16},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        **CLIP_MEAN_STD,
        "do_convert_rgb": True,
    },
    # Old-style integer sizes (CLIPFeatureExtractor era), no explicit type fields except the
    # feature extractor name, crop larger than the resized image (zero padding in the crop).
    "clip_legacy_ints_crop_pads": {
        "feature_extractor_type": "CLIPFeatureExtractor",
        "size": 14,
        "crop_size": 20,
        "resample": 2,
        "do_center_crop": True,
        "do_normalize": True,
        **CLIP_MEAN_STD,
    },
    # Rectangular crop, lanczos, scalar mean/std (broadcast to every channel).
    "clip_rect_crop_lanczos": {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"shortest_edge": 15},
        "crop_size": {"height": 11, "width": 13},
        "resample": 1,
        "image_mean": 0.5,
        "image_std": 0.25,
    },
    # Fixed (height, width) resize without a crop, box filter, custom rescale and mean/std.
    "clip_fixed_size_box": {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"height": 12, "width": 20},
        "do_center_crop": False,
        "resample": 4,
        "rescale_factor": 0.0078125,
        "image_mean": [0.5, 0.25, 1.0],
        "image_std": [0.5, 0.75, 2.0],
    },
    # Nearest filter, no rescale but normalise (values stay in 0..255 before normalising).
    "clip_nearest_no_rescale": {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"shortest_edge": 16},
        "crop_size": {"height": 16, "width": 16},
        "resample": 0,
        "do_rescale": False,
        "image_mean": [127.5, 100.0, 50.0],
        "image_std": [64.0, 3.0, 0.7],
    },
    # Hamming, rescale only.
    "clip_hamming_rescale_only": {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"shortest_edge": 13},
        "crop_size": {"height": 13, "width": 13},
        "resample": 5,
        "do_normalize": False,
    },
    # Integer size with default_to_square: a square resize, then a crop.
    "clip_square_int_size": {
        "image_processor_type": "CLIPImageProcessor",
        "size": 14,
        "default_to_square": True,
        "crop_size": [10, 12],
    },
    # No resize: the centre crop alone crops or zero-pads each axis of the original image.
    "clip_crop_only": {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": False,
        "crop_size": {"height": 20, "width": 14},
    },
    # The PIL backend's generic padding: after normalising, bottom/right zeros to pad_size.
    "clip_pad_size": {
        "image_processor_type": "CLIPImageProcessor",
        "size": {"shortest_edge": 12},
        "crop_size": {"height": 12, "width": 12},
        "do_pad": True,
        "pad_size": {"height": 15, "width": 13},
    },
    "llava_pad_default": {
        "image_processor_type": "LlavaImageProcessor",
        "do_pad": True,
        "size": {"shortest_edge": 16},
        "crop_size": {"height": 16, "width": 16},
        "resample": 3,
        **CLIP_MEAN_STD,
    },
    # Background colour from an unusual mean (truncation of mean * 255), odd pad offsets,
    # bilinear, crop smaller than the resized square.
    "llava_pad_custom_mean": {
        "image_processor_type": "LlavaImageProcessor",
        "do_pad": True,
        "size": {"shortest_edge": 17},
        "crop_size": {"height": 11, "width": 15},
        "resample": 2,
        "image_mean": [0.5, 0.2509804, 0.999],
        "image_std": [0.2, 0.3, 0.4],
    },
    # LlavaImageProcessor with do_pad off behaves like CLIP.
    "llava_no_pad": {
        "image_processor_type": "LlavaImageProcessor",
        "do_pad": False,
        "size": {"shortest_edge": 14},
        "crop_size": {"height": 14, "width": 14},
    },
}

ALL_PIPELINE_IMAGES = [
    "landscape_52x39",
    "small_16x12",
    "odd_37x23",
    "portrait_23x41",
    "strip_120x8",
    "strip_7x90",
    "pixel_1x1",
]
# The two default layouts see every shape; the variants a few, to keep the fixture small.
PIPELINE_IMAGES = {
    "clip_default": ALL_PIPELINE_IMAGES,
    "llava_pad_default": ALL_PIPELINE_IMAGES,
    "clip_legacy_ints_crop_pads": ["landscape_52x39", "odd_37x23", "pixel_1x1"],
    "clip_rect_crop_lanczos": ["landscape_52x39", "odd_37x23", "portrait_23x41"],
    "clip_fixed_size_box": ["landscape_52x39", "portrait_23x41", "pixel_1x1"],
    "clip_nearest_no_rescale": ["landscape_52x39", "odd_37x23", "small_16x12"],
    "clip_hamming_rescale_only": ["landscape_52x39", "odd_37x23", "portrait_23x41"],
    "clip_square_int_size": ["landscape_52x39", "portrait_23x41"],
    "clip_crop_only": ["strip_120x8", "small_16x12", "odd_37x23"],
    "clip_pad_size": ["landscape_52x39", "portrait_23x41"],
    "llava_pad_custom_mean": ["landscape_52x39", "portrait_23x41", "strip_7x90", "odd_37x23"],
    "llava_no_pad": ["landscape_52x39", "strip_120x8"],
}


def run_pipeline(config: dict, image: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, str]:
    """Runs the real processor; returns the uint8 images its resize produced and the output."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "preprocessor_config.json").write_text(json.dumps(config))
        processor = AutoImageProcessor.from_pretrained(tmp, backend="pil")
    class_name = type(processor).__name__
    assert class_name.endswith("Pil"), class_name

    captured: list[np.ndarray] = []
    original_resize = processor.resize

    def capturing_resize(*args, **kwargs):
        out = original_resize(*args, **kwargs)
        captured.append(out)
        return out

    processor.resize = capturing_resize
    pil = Image.fromarray(image, mode="RGB")
    pixel_values = processor(images=pil, return_tensors="np")["pixel_values"]
    assert pixel_values.dtype == np.float32, pixel_values.dtype
    assert pixel_values.shape[0] == 1
    return captured, pixel_values[0], class_name


def make_pipeline_fixture(images: dict[str, np.ndarray]) -> dict:
    configs = []
    cases = []
    for config_name, config in PIPELINE_CONFIGS.items():
        class_name = None
        for image_name in PIPELINE_IMAGES[config_name]:
            captured, pixel_values, class_name = run_pipeline(config, images[image_name])
            case = {
                "config": config_name,
                "image": image_name,
                "channels": pixel_values.shape[0],
                "height": pixel_values.shape[1],
                "width": pixel_values.shape[2],
                "pixel_values_f32": b64(np.ascontiguousarray(pixel_values, dtype="<f4").tobytes()),
            }
            if captured:
                (resized,) = captured
                assert resized.dtype == np.uint8 and resized.shape[0] == 3
                hwc = np.ascontiguousarray(np.moveaxis(resized, 0, -1))
                case["resized"] = {
                    "width": hwc.shape[1],
                    "height": hwc.shape[0],
                    "rgb": b64(hwc.tobytes()),
                }
            cases.append(case)
        configs.append(
            {"name": config_name, "processor_class": class_name, "json": json.dumps(config, indent=2)}
        )
    return {
        "images": [image_entry(n, images[n]) for n in ALL_PIPELINE_IMAGES],
        "configs": configs,
        "cases": cases,
    }


def write_saved_configs() -> None:
    """Lets transformers write both config layouts a checkpoint can ship."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    config_dir = OUT_DIR / "configs"
    shutil.rmtree(config_dir, ignore_errors=True)

    vocab = {"<unk>": 0, "<image>": 1, "a": 2}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})

    image_processor = LlavaImageProcessorPil(
        do_pad=True, size={"shortest_edge": 30}, crop_size={"height": 28, "width": 26}, resample=2
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
    )
    with tempfile.TemporaryDirectory() as tmp:
        processor.save_pretrained(tmp)
        nested = config_dir / "nested"
        nested.mkdir(parents=True)
        shutil.copy(Path(tmp) / "processor_config.json", nested / "processor_config.json")
        assert "image_processor" in json.loads((nested / "processor_config.json").read_text())

    flat = config_dir / "flat"
    image_processor.save_pretrained(flat)
    assert sorted(p.name for p in flat.iterdir()) == ["preprocessor_config.json"]


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    images = make_images(rng)
    versions = {"transformers": transformers.__version__, "pillow": PIL.__version__}

    resize = make_resize_fixture(images)
    pipeline = make_pipeline_fixture(images)
    for name, data in (("resize.json", resize), ("pipeline.json", pipeline)):
        data = {"generated_by": "tools/make_preprocess_fixtures.py", "versions": versions, **data}
        (OUT_DIR / name).write_text(json.dumps(data, indent=1) + "\n")
    write_saved_configs()

    total = sum(p.stat().st_size for p in OUT_DIR.rglob("*") if p.is_file())
    print(f"wrote {OUT_DIR} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
