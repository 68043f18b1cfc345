"""Training examples and the held-out evaluation set, both drawn from the scene generator.

A training example is one scene and many question/answer turns about it, one of them a caption,
packed into one sequence: every turn sees the image but not the other turns, so each is the
single-question prompt the model answers at run time. Only the answers (and the end-of-sequence
token closing each) are learned.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .generator import COLOURS, SIZE, Scene, caption_prompt

# CLIP's normalisation, which the exported preprocessor_config.json declares too.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

IMAGE_PLACEHOLDER = "<image>"
END_OF_TURN = "</s>"


@dataclass
class Example:
    pixels: np.ndarray  # (3, 336, 336) float32, normalised
    text: str  # the conversation with one image placeholder
    answer_spans: list[tuple[int, int]]  # characters of `text` the loss covers
    # Targets of the vision tower's training probe (see model.SceneProbe).
    count: int
    colours: list[str]
    shapes: list[str]
    patch_colours: np.ndarray  # (576,) class per patch
    patch_owners: np.ndarray  # (576,) 0 none, 1.. the objects, then the glyph
    patch_centres: np.ndarray  # (576,) 1.0 where an object's centre lies
    owner_shapes: list[int]  # shape (or glyph) class of owner 1, 2, ...
    owner_places: list[tuple[float, float]]  # centre of owner 1, 2, ... as a share of the image side
    image_keep: np.ndarray  # (576,) bool: the image tokens the language model sees when thinned
    centre_owners: np.ndarray  # (576,) the owner whose centre lies in the patch, else 0
    focus: list[Focus]  # where the language model is taught to look, and from which tokens
    turn_starts: list[int]  # characters of `text` where each packed turn begins


@dataclass(frozen=True)
class Focus:
    """Characters of the conversation and the owners the grounding heads attend to there.

    A question's Focus is a phrase naming objects (generator.Pointer): its last token looks at them.
    A caption's is a phrase naming the next object: the tokens that predict the phrase look at it,
    in a later layer, because which object comes next depends on the one named before."""

    start: int
    end: int
    owners: tuple[int, ...]
    by_centre: bool
    caption: bool
    # What a question's pointer token should know once it has looked (model.PointerReadout):
    # the object's colour and shape class (as in `patch_labels`), or the count; -100 where none.
    colour: int = -100
    shape: int = -100
    count: int = -100


def packed_turns(turns: list[tuple[str, str]]) -> tuple[str, list[tuple[int, int]], list[int]]:
    """The turns as one text, `USER: <image>\nQ1 ASSISTANT: A1</s>Q2 ASSISTANT: A2</s>...`: the
    shared prefix is the exported chat template's prompt up to the question, and each turn is what
    follows it in a single-question prompt. Returns the text, the character span of each answer
    with its closing `</s>` (what the loss covers) and where each turn begins. The attention mask
    (train.collate) keeps the turns apart, and each starts at the position right after the prefix."""
    text, spans, starts = f"USER: {IMAGE_PLACEHOLDER}\n", [], []
    for question, answer in turns:
        starts.append(len(text))
        text += f"{question} ASSISTANT:"
        start = len(text)
        text += f" {answer}{END_OF_TURN}"
        spans.append((start, len(text)))
    return text, spans, starts


# Rounds of `Scene.questions` (one question of each kind a round, about objects drawn afresh) per
# training example. The image tokens dominate a step's cost and packed turns share them, so more
# questions cost little and give the step more answers to learn from.
QUESTION_ROUNDS = 3


def training_example(seed: int) -> Example:
    rng = random.Random(seed)
    scene = Scene.sample(rng)
    asked, seen = [], set()
    for _ in range(QUESTION_ROUNDS):
        for question in scene.questions(rng):
            if question.text not in seen:
                seen.add(question.text)
                asked.append(question)
    asked.insert(rng.randint(0, len(asked)), None)  # the caption turn
    turns = [(caption_prompt(rng), scene.caption()) if q is None else (q.text, q.answer) for q in asked]
    text, spans, turn_starts = packed_turns(turns)
    patch_colours, patch_owners, centre_owners, owner_shapes = scene.patch_labels()
    focus = []
    for question, (start, _) in zip(asked, spans):
        answer_start = start + 1  # after the space that opens every answer
        if question is None:
            focus.extend(caption_focus(scene, text, answer_start))
        else:
            focus.extend(question_focus(scene, owner_shapes, question, text, start))
    return Example(
        pixels=normalise(scene.render()),
        text=text,
        answer_spans=spans,
        count=len(scene.objects),
        colours=sorted({o.colour for o in scene.objects}),
        shapes=sorted({o.shape for o in scene.objects}),
        patch_colours=patch_colours,
        patch_owners=patch_owners,
        patch_centres=(centre_owners > 0).astype(np.float32),
        owner_shapes=owner_shapes,
        owner_places=owner_places(scene),
        image_keep=thinned_image(rng, patch_owners) | (centre_owners > 0),
        centre_owners=centre_owners,
        focus=focus,
        turn_starts=turn_starts,
    )


def question_focus(scene: Scene, owner_shapes: list[int], question, text: str, end: int) -> list[Focus]:
    """One Focus per pointer of the question whose turn ends at `text[end]`."""
    focus, cursor = [], text.rindex(question.text, 0, end)
    for pointer in question.pointers:
        at = text.index(pointer.phrase, cursor)
        cursor = at + len(pointer.phrase)
        if pointer.by_centre:
            known = {"count": len(pointer.owners)}
        else:
            (owner,) = pointer.owners
            colour = list(COLOURS).index(scene.objects[owner - 1].colour) if owner <= len(scene.objects) else -100
            known = {"colour": colour, "shape": owner_shapes[owner - 1]}
        focus.append(Focus(at, cursor, pointer.owners, pointer.by_centre, False, **known))
    return focus


def caption_focus(scene: Scene, text: str, start: int) -> list[Focus]:
    """One Focus per phrase of the caption that begins at `text[start]`: the phrase's object."""
    focus, cursor = [], start
    lowered = text.lower()
    for phrase, owner in scene.caption_parts():
        at = lowered.index(phrase.lower(), cursor)
        cursor = at + len(phrase)
        focus.append(Focus(at, cursor, (owner,), False, True))
    return focus


# A thinned image keeps every object patch and this share of the background (drawn per
# conversation), at the background's own positions.
THINNED_BACKGROUND = (0.1, 0.5)


def thinned_image(rng: random.Random, patch_owners: np.ndarray) -> np.ndarray:
    """Which image tokens a training conversation keeps. Background tokens are most of the 576 and
    carry nothing a question asks, so dropping many of them makes a language-model step about twice
    as cheap; the model also learns to answer from a part of the image, as reductions make it do.
    Whether a conversation is thinned at all is decided per batch (train.SceneBatches)."""
    share = rng.uniform(*THINNED_BACKGROUND)
    noise = np.random.default_rng(rng.randrange(1 << 30)).random(patch_owners.shape)
    return (patch_owners > 0) | (noise < share)


def owner_places(scene: Scene) -> list[tuple[float, float]]:
    """Centres of the patch owners of `Scene.patch_labels` (the objects, then the glyph)."""
    places = [(o.x, o.y) for o in scene.objects]
    if scene.glyph is not None:
        places.append((scene.glyph.x, scene.glyph.y))
    return [(x / SIZE, y / SIZE) for x, y in places]


def normalise(image) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def write_eval_set(out_dir: Path, seed: int, scenes: int) -> int:
    """`scenes` held-out scenes as PNGs plus eval.jsonl: every question each scene can answer and a
    caption request scored by the objects it must name. Returns the number of lines."""
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(scenes):
        rng = random.Random(seed * 1_000_003 + index)
        scene = Scene.sample(rng)
        name = f"images/scene-{index:04d}.png"
        scene.render().save(out_dir / name, optimize=True)
        for q in scene.questions(rng):
            lines.append({"image": name, "question": q.text, "answers": q.accepted, "kind": q.kind})
        lines.append(
            {
                "image": name,
                "question": "Describe the image in one sentence.",
                "must_mention": scene.mentions(),
                "kind": "caption",
                "max_tokens": 64,
            }
        )
    with open(out_dir / "eval.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return len(lines)
