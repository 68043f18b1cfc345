"""Goldens of LLaVA-NeXT's "anyres" geometry, from transformers' own functions.

    .venv/bin/python tools/make_anyres_cases.py      # writes test/fixtures/anyres/geometry.json

For image sizes of every aspect (tiny, huge, exact grid sizes, one pixel off them) and two grid
lists (LLaVA-NeXT's and a small one for tiny test models), the grid of tiles the processor picks,
the size it resizes the image to and the padding around it, the feature rows and columns the model
keeps after unpadding, and the number of image tokens the processor puts in the prompt.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
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


if __name__ == "__main__":
    main()
