"""Goldens of LLaVA-NeXT's "anyres" preprocessing, from transformers' own code.

    .venv/bin/python tools/make_anyres_cases.py      # writes test/fixtures/anyres/

geometry.json: for image sizes of every aspect (tiny, huge, exact grid sizes, one pixel off them)
and two grid lists (LLaVA-NeXT's and a small one for tiny test models), the grid of tiles the
processor picks, the size it resizes the image to and the padding around it, the feature rows and
columns the model keeps after unpadding, and the number of image tokens the prompt holds.

pixels.json and processor/: the PIL-backend LlavaNextImageProcessor (saved with save_pretrained,
as a checkpoint ships it) on small synthetic images of several aspects with the small grid list:
every tile's pixel values (base image first), little-endian float32 in base64.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from PIL import Image
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.llava_next.modeling_llava_next import unpad_image
from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor

# (name, grid pinpoints, tile side in pixels, vision patch size)
GRIDS = [
    ("llava-next", [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]], 336, 14),
    ("tiny", [[28, 56], [56, 28], [56, 56], [84, 28]], 28, 14),
]


def sizes(tile: int, pinpoints: list[list[int]], rng: random.Random) -> list[tuple[int, int]]:
    chosen = {(1, 1), (tile, tile), (tile - 1, tile + 1), (3, 4000), (4000, 3), (5000, 5000)}
    for height, width in pinpoints:
        chosen |= {(height, width), (height + 1, width), (height, width - 1), (height // 2, width // 3)}
    while len(chosen) < 60:
        chosen.add((rng.randint(2, 4 * tile), rng.randint(2, 4 * tile)))
    return sorted(chosen)


def case(size: tuple[int, int], pinpoints: list[list[int]], tile: int, patch: int) -> dict:
    height, width = size
    best = select_best_resolution((height, width), pinpoints)
    image = np.zeros((3, height, width), dtype=np.uint8)
    resized = get_patch_output_size(image, best, input_data_format=ChannelDimension.FIRST)
    (top, _), (left, _) = LlavaNextImageProcessorPil._get_padding_size(None, resized, best)
    side = tile // patch
    grid = (best[0] // tile, best[1] // tile)
    features = torch.zeros(1, grid[0] * side, grid[1] * side)
    kept = unpad_image(features, [height, width]).shape[1:]
    processor = SimpleNamespace(
        image_processor=SimpleNamespace(image_grid_pinpoints=pinpoints), patch_size=patch, num_additional_image_tokens=1
    )
    processor._get_unpadded_features = lambda *a: LlavaNextProcessor._get_unpadded_features(processor, *a)
    # The prompt's count with the "default" feature strategy, which drops CLS.
    tokens = LlavaNextProcessor._get_number_of_features(processor, height, width, tile, tile) - 1
    return {
        "size": [height, width],
        "best": list(best),
        "resized": list(resized),
        "padding": [top, left],
        "grid": list(grid),
        "kept": [kept[0], kept[1]],
        "kept_from": [(grid[0] * side - kept[0]) // 2, (grid[1] * side - kept[1]) // 2],
        "tokens": tokens,
    }


def pixel_cases(out: Path) -> None:
    _, pinpoints, tile, _ = GRIDS[1]
    processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": tile},
        crop_size={"height": tile, "width": tile},
        image_grid_pinpoints=pinpoints,
    )
    processor.save_pretrained(out / "processor")
    processor = LlavaNextImageProcessorPil.from_pretrained(out / "processor")
    rng = np.random.default_rng(7)
    cases = []
    for height, width in [(40, 61), (90, 20), (28, 28), (13, 100), (70, 70)]:
        ys, xs = np.mgrid[0:height, 0:width]
        gradient = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], -1)
        pixels = np.clip(gradient + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)
        values = processor(images=Image.fromarray(pixels), return_tensors="np")["pixel_values"][0].astype("<f4")
        cases.append(
            {
                "size": [height, width],
                "rgb": base64.b64encode(pixels.tobytes()).decode("ascii"),
                "tiles": values.shape[0],
                "values": base64.b64encode(values.tobytes()).decode("ascii"),
            }
        )
    (out / "pixels.json").write_text(json.dumps({"tile": tile, "cases": cases}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent.parent / "test/fixtures/anyres")
    args = parser.parse_args()
    rng = random.Random(2026)
    grids = []
    for name, pinpoints, tile, patch in GRIDS:
        cases = [case(size, pinpoints, tile, patch) for size in sizes(tile, pinpoints, rng)]
        grids.append({"name": name, "pinpoints": pinpoints, "tile": tile, "patch": patch, "cases": cases})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "geometry.json").write_text(json.dumps({"grids": grids}, indent=1) + "\n")
    pixel_cases(args.out)


if __name__ == "__main__":
    main()
