"""Small procedural RGB test images with non-square sizes.

Each image mixes flat shapes (hard edges), a smooth gradient and seeded noise, so that resizing with
PIL's bicubic filter produces values a wrong kernel or a wrong rounding step would not reproduce.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _gradient_with_noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 40 + 150 * xs / max(width - 1, 1)
    green = 60 + 120 * ys / max(height - 1, 1)
    blue = 200 - 90 * (xs + ys) / max(width + height - 2, 1)
    pixels = np.stack([red, green, blue], axis=-1) + rng.integers(-12, 13, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def shapes_64x40() -> Image.Image:
    """Wide image (upscaled by the shortest-edge resize): circle, triangle and a bar."""
    image = _gradient_with_noise(64, 40, seed=11)
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, 30, 30), fill=(220, 30, 30))
    draw.polygon([(36, 34), (50, 5), (62, 34)], fill=(250, 210, 20))
    draw.rectangle((0, 36, 63, 39), fill=(20, 20, 20))
    return image


def stripes_45x70() -> Image.Image:
    """Tall image with an odd width: green and white stripes under a purple square."""
    image = _gradient_with_noise(45, 70, seed=12)
    draw = ImageDraw.Draw(image)
    for top in range(0, 70, 10):
        draw.rectangle((0, top, 44, top + 4), fill=(30, 160, 60) if (top // 10) % 2 == 0 else (245, 245, 245))
    draw.rectangle((12, 24, 32, 44), fill=(130, 40, 170))
    return image


def rings_90x72() -> Image.Image:
    """Larger image (downscaled by the resize): concentric rings and a diagonal line."""
    image = _gradient_with_noise(90, 72, seed=13)
    draw = ImageDraw.Draw(image)
    for radius, colour in ((30, (0, 90, 200)), (21, (255, 140, 0)), (12, (255, 255, 255)), (5, (200, 0, 120))):
        draw.ellipse((45 - radius, 36 - radius, 45 + radius, 36 + radius), fill=colour)
    draw.line((0, 71, 89, 0), fill=(10, 10, 10), width=3)
    return image


IMAGES = {
    "shapes-64x40.png": shapes_64x40,
    "stripes-45x70.png": stripes_45x70,
    "rings-90x72.png": rings_90x72,
}


def write_images(directory: Path) -> dict[str, Path]:
    """Writes every test image as PNG into `directory`; returns file name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in IMAGES.items():
        path = directory / name
        make().save(path, format="PNG", optimize=False)
        paths[name] = path
    return paths
