"""Procedural scenes for the embedded demo model: images, questions with short answers, captions.

Everything is a pure function of the seed: `Scene.sample(random.Random(seed))` draws the layout,
`render` paints it at 336x336 (the LLaVA-1.5 input size, 24x24 patches of 14 px), `questions` and
`caption` describe it. The same module makes the training stream and the held-out evaluation set.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 336
PATCH = 14
GRID = SIZE // PATCH
# A patch belongs to an object when the object covers at least this share of its pixels.
PATCH_COVER = 0.25

COLOURS = {
    "red": (215, 38, 38),
    "green": (34, 160, 60),
    "blue": (38, 80, 215),
    "yellow": (238, 206, 32),
    "purple": (135, 55, 185),
    "orange": (245, 135, 25),
}
SHAPES = ["circle", "square", "triangle", "star", "diamond"]
# Glyphs chosen to look unlike each other and unlike the shapes.
GLYPHS = ["A", "B", "E", "H", "K", "M", "R", "X", "3", "7"]
# Neutral backgrounds that none of the object colours resembles.
BACKGROUNDS = [(236, 236, 232), (214, 214, 210), (246, 240, 226), (92, 92, 96), (200, 210, 220)]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six"]

# A relation is asked only when the two centres differ by at least this much on its axis,
# so the answer is plain to see.
RELATION_MARGIN = 24


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    x: float
    y: float
    radius: float
    rotation: float
    shade: tuple[int, int, int]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Glyph:
    text: str
    x: float
    y: float
    height: int


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    glyph: Glyph | None
    background: tuple[int, int, int]
    texture: str  # "plain", "stripes", "checks" or "noise"
    texture_seed: int

    @staticmethod
    def sample(rng: random.Random) -> Scene:
        count = rng.randint(1, 6)
        placed: list[tuple[float, float, float]] = []
        glyph = None
        if rng.random() < 0.2:
            height = rng.randint(84, 112)
            gx, gy = _free_spot(rng, placed, height * 0.62)
            if gx is not None:
                glyph = Glyph(rng.choice(GLYPHS), gx, gy, height)
                placed.append((gx, gy, height * 0.62))
        objects = []
        for _ in range(count):
            radius = rng.choice([rng.uniform(20, 28), rng.uniform(32, 44)])
            x, y = _free_spot(rng, placed, radius)
            if x is None:
                break
            placed.append((x, y, radius))
            colour = rng.choice(list(COLOURS))
            shade = tuple(max(0, min(255, c + rng.randint(-14, 14))) for c in COLOURS[colour])
            objects.append(SceneObject(rng.choice(SHAPES), colour, x, y, radius, rng.uniform(-0.3, 0.3), shade))
        return Scene(
            objects=tuple(objects),
            glyph=glyph,
            background=rng.choice(BACKGROUNDS),
            texture=rng.choice(["plain", "plain", "stripes", "checks", "noise"]),
            texture_seed=rng.randrange(1 << 30),
        )

    def render(self) -> Image.Image:
        image = Image.new("RGB", (SIZE, SIZE), self.background)
        _paint_texture(image, self.texture, self.background, random.Random(self.texture_seed))
        draw = ImageDraw.Draw(image)
        for obj in self.objects:
            _draw_shape(draw, obj)
        if self.glyph is not None:
            ink = (20, 20, 20) if sum(self.background) > 400 else (245, 245, 245)
            _draw_glyph(draw, self.glyph, ink)
        return image

    def patch_labels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """What the GRID x GRID patches show, for the vision tower's training probe: per patch,
        its colour class (0 none, 1.. in COLOURS order), its owner (0 none, 1.. the objects in
        order, then the glyph) and the object whose centre lies in it (0 none; numbered like
        owners); and the shape class of each owner (SHAPES, then one class per glyph), in owner
        order."""
        mask = Image.new("L", (SIZE, SIZE), 0)
        draw = ImageDraw.Draw(mask)
        for index, obj in enumerate(self.objects):
            _draw_shape(draw, obj, fill=index + 1)
        glyph_label = len(self.objects) + 1
        if self.glyph is not None:
            _draw_glyph(draw, self.glyph, glyph_label)
        pixels = np.asarray(mask).reshape(GRID, PATCH, GRID, PATCH).transpose(0, 2, 1, 3).reshape(GRID * GRID, -1)
        counts = np.stack([(pixels == label).sum(axis=1) for label in range(glyph_label + 1)], axis=1)
        counts[:, 0] = 0
        owner = counts.argmax(axis=1)
        owner[counts.max(axis=1) < PATCH_COVER * PATCH * PATCH] = 0
        colour_of = [0] + [list(COLOURS).index(o.colour) + 1 for o in self.objects] + [0]
        centres = np.zeros(GRID * GRID, dtype=np.int64)
        for index, obj in enumerate(self.objects):
            centres[int(obj.y) // PATCH * GRID + int(obj.x) // PATCH] = index + 1
        owner_shapes = [SHAPES.index(o.shape) for o in self.objects]
        if self.glyph is not None:
            owner_shapes.append(len(SHAPES) + GLYPHS.index(self.glyph.text))
        return np.array(colour_of)[owner], owner, centres, owner_shapes

    def caption(self) -> str:
        """One sentence naming every object, left to right, then the glyph if any."""
        return caption_sentence([phrase for phrase, _ in self.caption_parts()])

    def caption_parts(self) -> list[tuple[str, int]]:
        """The caption's phrases in order, each with the owner (as in `patch_labels`) it names."""
        order = sorted(range(len(self.objects)), key=lambda i: self.objects[i].x)
        parts = [(_with_article(self.objects[i].name), i + 1) for i in order]
        if self.glyph is not None:
            parts.append((f"the {'digit' if self.glyph.text.isdigit() else 'letter'} {self.glyph.text}", self.glyph_owner))
        return parts

    @property
    def glyph_owner(self) -> int:
        return len(self.objects) + 1

    def mentions(self) -> list[str]:
        """Phrases a caption of this scene must contain."""
        phrases = sorted({obj.name for obj in self.objects})
        if self.glyph is not None:
            phrases.append(f"{'digit' if self.glyph.text.isdigit() else 'letter'} {self.glyph.text.lower()}")
        return phrases

    def questions(self, rng: random.Random) -> list[Question]:
        """Every kind of question this scene can answer, one of each, in a shuffled order."""
        asked = [
            q
            for q in (
                self._colour_question(rng),
                self._shape_question(rng),
                self._count_question(rng),
                self._existence_question(rng),
                self._relation_question(rng),
                self._glyph_question(rng),
            )
            if q is not None
        ]
        rng.shuffle(asked)
        return asked

    # -- question kinds -------------------------------------------------------------------------

    def _colour_question(self, rng: random.Random) -> Question | None:
        unique = [o for o in self.objects if sum(p.shape == o.shape for p in self.objects) == 1]
        if not unique:
            return None
        obj = rng.choice(unique)
        spelling = rng.choice(["colour", "color"])
        text = rng.choice([f"What {spelling} is the {obj.shape}?", f"Which {spelling} is the {obj.shape}?"])
        return Question("colour", text, obj.colour, [obj.colour], (Pointer(obj.shape, self._owners(obj)),))

    def _shape_question(self, rng: random.Random) -> Question | None:
        unique = [o for o in self.objects if sum(p.colour == o.colour for p in self.objects) == 1]
        if not unique:
            return None
        obj = rng.choice(unique)
        text = rng.choice([f"What shape is the {obj.colour} object?", f"Which shape is {obj.colour}?"])
        return Question("shape", text, obj.shape, [obj.shape], (Pointer(obj.colour, self._owners(obj)),))

    def _count_question(self, rng: random.Random) -> Question:
        target = rng.choice(["all", "colour", "shape"])
        if target == "all":
            counted, text, phrase = list(self.objects), "How many objects are there?", "objects"
        elif target == "colour":
            colour = rng.choice([o.colour for o in self.objects] + list(COLOURS))
            counted = [o for o in self.objects if o.colour == colour]
            text, phrase = f"How many {colour} objects are there?", f"{colour} objects"
        else:
            shape = rng.choice([o.shape for o in self.objects] + SHAPES)
            counted = [o for o in self.objects if o.shape == shape]
            text, phrase = f"How many {shape}s are there?", f"{shape}s"
        count = len(counted)
        pointer = Pointer(phrase, self._owners(*counted), by_centre=True)
        return Question("count", text, str(count), [str(count), NUMBER_WORDS[count]], (pointer,))

    def _existence_question(self, rng: random.Random) -> Question:
        present = {o.name for o in self.objects}
        if rng.random() < 0.5:
            name = rng.choice(sorted(present))
        else:
            # Near misses first: a present colour with another shape, or the reverse.
            obj = rng.choice(self.objects)
            candidates = [f"{obj.colour} {s}" for s in SHAPES] + [f"{c} {obj.shape}" for c in COLOURS]
            absent = [n for n in candidates if n not in present]
            name = rng.choice(absent)
        answer = "yes" if name in present else "no"
        pointer = Pointer(name, self._owners(*[o for o in self.objects if o.name == name]), by_centre=True)
        return Question("exists", f"Is there {_with_article(name)}?", answer, [answer], (pointer,))

    def _relation_question(self, rng: random.Random) -> Question | None:
        named = [o for o in self.objects if sum(p.name == o.name for p in self.objects) == 1]
        pairs = []
        for a in named:
            for b in named:
                if a is b:
                    continue
                if abs(a.x - b.x) >= RELATION_MARGIN:
                    pairs.append((a, b, "left of" if rng.random() < 0.5 else "right of"))
                if abs(a.y - b.y) >= RELATION_MARGIN:
                    pairs.append((a, b, "above" if rng.random() < 0.5 else "below"))
        if not pairs:
            return None
        a, b, relation = rng.choice(pairs)
        truth = {
            "left of": a.x < b.x,
            "right of": a.x > b.x,
            "above": a.y < b.y,
            "below": a.y > b.y,
        }[relation]
        answer = "yes" if truth else "no"
        pointers = (Pointer(a.name, self._owners(a)), Pointer(b.name, self._owners(b)))
        return Question("relation", f"Is the {a.name} {relation} the {b.name}?", answer, [answer], pointers)

    def _glyph_question(self, rng: random.Random) -> Question | None:
        if self.glyph is None:
            return None
        text = rng.choice(["What letter is written?", "What is written in the image?", "Which character is shown?"])
        # The question's last word ("written", "image", "shown") stands for the glyph.
        pointer = Pointer(text.rstrip("?").split(" ")[-1], (self.glyph_owner,))
        return Question("text", text, self.glyph.text, [self.glyph.text.lower()], (pointer,))

    def _owners(self, *objects: SceneObject) -> tuple[int, ...]:
        """The owner numbers (as in `patch_labels`) of these objects."""
        return tuple(i + 1 for i, o in enumerate(self.objects) if any(o is p for p in objects))


def _with_article(name: str) -> str:
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


@dataclass(frozen=True)
class Question:
    kind: str
    text: str
    answer: str  # what the model is trained to say
    accepted: list[str]
    # The phrases of `text` that name what the answer is about, in order (for the grounding loss).
    pointers: tuple[Pointer, ...] = ()


@dataclass(frozen=True)
class Pointer:
    """A phrase of a question and the owners (as in `patch_labels`) it names: the language model is
    taught to look at them from the phrase's last token. `by_centre`: at each owner's centre patch
    and at the first token equally, so what the look brings back tells how many there are (none:
    the first token alone)."""

    phrase: str
    owners: tuple[int, ...]
    by_centre: bool = False


def caption_sentence(phrases: list[str]) -> str:
    """"A, B and C." from its phrases."""
    if len(phrases) == 1:
        return f"{phrases[0][0].upper()}{phrases[0][1:]}."
    sentence = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"{sentence[0].upper()}{sentence[1:]}."


def caption_prompt(rng: random.Random) -> str:
    return rng.choice(
        [
            "Describe the image in one sentence.",
            "Describe the image.",
            "What is in the image?",
            "Write a short caption for this image.",
        ]
    )


def _free_spot(
    rng: random.Random, placed: list[tuple[float, float, float]], radius: float
) -> tuple[float | None, float | None]:
    """A centre whose disc stays inside the frame and clear of every placed disc."""
    margin = radius + 6
    for _ in range(200):
        x, y = rng.uniform(margin, SIZE - margin), rng.uniform(margin, SIZE - margin)
        if all(math.hypot(x - px, y - py) > radius + pr + 10 for px, py, pr in placed):
            return x, y
    return None, None


def _paint_texture(image: Image.Image, texture: str, base: tuple[int, int, int], rng: random.Random) -> None:
    if texture == "plain":
        return
    draw = ImageDraw.Draw(image)
    light = sum(base) > 400
    shift = -22 if light else 22
    tone = tuple(max(0, min(255, c + shift)) for c in base)
    if texture == "stripes":
        width = rng.randint(6, 16)
        for offset in range(-SIZE, SIZE, 2 * width):
            draw.polygon(
                [(offset, 0), (offset + width, 0), (offset + width + SIZE, SIZE), (offset + SIZE, SIZE)],
                fill=tone,
            )
    elif texture == "checks":
        cell = rng.randint(16, 40)
        for row in range(0, SIZE, cell):
            for col in range(0, SIZE, cell):
                if (row // cell + col // cell) % 2:
                    draw.rectangle([col, row, col + cell - 1, row + cell - 1], fill=tone)
    elif texture == "noise":
        for _ in range(900):
            x, y = rng.randrange(SIZE), rng.randrange(SIZE)
            r = rng.randint(1, 3)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tone)


def _draw_glyph(draw: ImageDraw.ImageDraw, glyph: Glyph, fill) -> None:
    font = ImageFont.load_default(size=glyph.height)
    draw.text((glyph.x, glyph.y), glyph.text, fill=fill, font=font, anchor="mm")


def _draw_shape(draw: ImageDraw.ImageDraw, obj: SceneObject, fill=None) -> None:
    """Paints the object in its shade, or in `fill` (a label, when drawing masks)."""
    fill = obj.shade if fill is None else fill
    x, y, r, turn = obj.x, obj.y, obj.radius, obj.rotation
    if obj.shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        return
    if obj.shape == "square":
        points = _polygon(x, y, r, 4, turn + math.pi / 4)
    elif obj.shape == "diamond":
        points = _polygon(x, y, r * 1.05, 4, turn * 0.3, squash=0.62)
    elif obj.shape == "triangle":
        points = _polygon(x, y, r * 1.1, 3, turn - math.pi / 2)
    else:  # star
        outer = _polygon(x, y, r * 1.1, 5, turn - math.pi / 2)
        inner = _polygon(x, y, r * 0.45, 5, turn - math.pi / 2 + math.pi / 5)
        points = [p for pair in zip(outer, inner) for p in pair]
    draw.polygon(points, fill=fill)


def _polygon(x: float, y: float, r: float, sides: int, start: float, squash: float = 1.0) -> list[tuple[float, float]]:
    """Regular polygon vertices; `squash` narrows it horizontally (a diamond is a thin square)."""
    return [
        (x + r * squash * math.cos(start + 2 * math.pi * k / sides), y + r * math.sin(start + 2 * math.pi * k / sides))
        for k in range(sides)
    ]
