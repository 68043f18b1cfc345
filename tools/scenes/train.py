"""Trains the embedded demo model on generated scenes and saves it in the llava-hf layout.

    cd tools && ../.venv/bin/python -m scenes.train --out ../models/default

Seeded end to end: the tokenizer, the initial weights and every training example follow from
`--seed`, so the same command on the same library versions gives the same model (thread count
aside: float reductions on more threads may round differently).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import LlavaForConditionalGeneration
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from fixturegen.tokenizer import build_llama_tokenizer

from .data import CLIP_MEAN, CLIP_STD, IMAGE_PLACEHOLDER, training_example
from .generator import COLOURS, SHAPES, Scene, caption_prompt
from .model import IMAGE_SIZE, IMAGE_TOKENS, OWNER_SLOTS, PATCH, AttentionInput, GroupingHead, PointerReadout, build, llava_config

# Token ids 0..BASE_VOCAB-1 are learned pieces (with the Llama-2 specials and byte fallback);
# `<image>` and `<pad>` follow. 542 holds every piece BPE finds in the scene texts, so every word an
# answer can start with is one token: with fewer, "yes" and "yellow" began with the same piece, and
# "no", "purple" and the digits with a bare "▁", which left the first answer token saying nothing.
BASE_VOCAB = 542

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'system' %}{{ parts[0]['text'] + '\n' }}"
    "{% elif message['role'] == 'user' %}USER: "
    "{% for part in parts %}{% if part['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for part in parts %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %} "
    "{% else %}ASSISTANT: "
    "{% for part in parts %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def tokenizer_corpus(seed: int, scenes: int = 3000) -> list[str]:
    rng = random.Random(seed)
    corpus = ["USER: ASSISTANT:"]
    for _ in range(scenes):
        scene = Scene.sample(rng)
        corpus.append(f"USER: {caption_prompt(rng)} ASSISTANT: {scene.caption()}")
        corpus.extend(f"USER: {q.text} ASSISTANT: {q.answer}" for q in scene.questions(rng))
    return corpus


# Grounding heads of the language model (0-based layers; the first GROUNDING_HEADS heads). A
# question's phrase naming objects ("the red star") looks them up at POINTER_LAYER, from its own
# last token: the second layer, so the first can bring a word's neighbours into it. The answer then
# only has to read that token. A caption's next object is found at CAPTION_LAYER, late enough for
# the layers between to bring in the object named just before.
POINTER_LAYER = 1
CAPTION_LAYER = 4
GROUNDING_HEADS = 2
# Where model.PointerReadout reads (the layer whose output it probes): the phrase token right after
# it has looked, and the token that predicts the answer, which has to fetch that from the phrase.
READOUTS = {"pointer": POINTER_LAYER, "answer": 3}
READOUT_TARGETS = ("colour", "shape", "count")
# Kinds of grounding target per token (see encode).
NO_FOCUS, POINTER_FOCUS, COUNTING_FOCUS, CAPTION_FOCUS = range(4)


def encode(tokenizer, example, image_token_id: int, thin: bool) -> dict[str, np.ndarray]:
    """One conversation as the language model sees it:

    - ids, with the image placeholder expanded to its image tokens (all IMAGE_TOKENS, or the
      example's `image_keep` ones when `thin`);
    - labels (-100 where no loss applies);
    - positions: a thinned image keeps its tokens' own positions, so text after it sits where it
      always does; every packed turn starts right after the image's prefix (data.packed_turns);
    - turns: 0 for the shared prefix (first token, `USER:`, the image), 1.. for the packed turns;
    - weights: one over its answer's token count, so that every answer weighs the same. A caption
      is many tokens and a one-word answer two; weighted by token, captions would take most of the
      gradient, and the short answers that need the image most would take little;
    - the grounding targets: each token's owner and centre owner (image tokens only), and where the
      grounding heads look from a token, what they should attend to (focus_kind, and the owners,
      focus_owners): from the last token of a question's pointer phrase, and from each token that
      predicts a word of a caption's object phrase; and what a pointer token should know once it
      has looked (pointer_colour, pointer_shape, pointer_count; -100 elsewhere) and what the token
      predicting a one-pointer answer should know (answer_colour, ...)."""
    encoding = tokenizer(example.text, return_offsets_mapping=True)
    kept = np.flatnonzero(example.image_keep) if thin else np.arange(IMAGE_TOKENS)
    ids, labels, positions, answers, owners, centres, spans, turns = [], [], [], [], [], [], [], []
    images, position, turn = 0, 0, 0
    for token, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"]):
        if turn < len(example.turn_starts) and start >= example.turn_starts[turn]:
            if turn == 0:
                prefix_end = position
            position = prefix_end
            turn += 1
        if token == image_token_id:
            images += 1
            ids.extend([image_token_id] * len(kept))
            labels.extend([-100] * len(kept))
            answers.extend([-1] * len(kept))
            positions.extend((position + kept).tolist())
            owners.extend(example.patch_owners[kept].tolist())
            centres.extend(example.centre_owners[kept].tolist())
            spans.extend([(0, 0)] * len(kept))
            turns.extend([0] * len(kept))
            position += IMAGE_TOKENS
            continue
        ids.append(token)
        turns.append(turn)
        positions.append(position)
        position += 1
        answer = next((i for i, (lo, hi) in enumerate(example.answer_spans) if lo <= start < hi), -1)
        labels.append(token if answer >= 0 else -100)
        answers.append(answer)
        owners.append(0)
        centres.append(0)
        spans.append((start, end))
    if images != 1:
        raise RuntimeError("a training conversation must hold exactly one image")
    sizes = {a: answers.count(a) for a in set(answers)}
    focus_kind = np.full(len(ids), NO_FOCUS, dtype=np.int64)
    focus_owners = np.zeros((len(ids), OWNER_SLOTS), dtype=np.float32)
    readout = {f"{at}_{what}": np.full(len(ids), -100, dtype=np.int64) for at in READOUTS for what in READOUT_TARGETS}
    answer_starts = [start for start, _ in example.answer_spans]
    pointers_before = {}  # answer start -> the pointer foci of its question
    for focus in example.focus:
        if not focus.caption:
            pointers_before.setdefault(min(a for a in answer_starts if a > focus.end), []).append(focus)
    for focus in example.focus:
        inside = [i for i in range(1, len(ids)) if spans[i][0] < focus.end and spans[i][1] > focus.start]
        # A caption's tokens are predicted by the token before each; a pointer looks from its last.
        looking = [i - 1 for i in inside] if focus.caption else inside[-1:]
        focus_kind[looking] = CAPTION_FOCUS if focus.caption else COUNTING_FOCUS if focus.by_centre else POINTER_FOCUS
        for index in looking:
            focus_owners[index, list(focus.owners)] = 1
        if not focus.caption:
            for what in READOUT_TARGETS:
                readout[f"pointer_{what}"][looking] = getattr(focus, what)
    # The token that predicts a one-pointer question's answer is asked the same, a few layers on.
    for answer_start, foci in pointers_before.items():
        if len(foci) == 1:
            before = max(i for i in range(len(ids)) if spans[i][1] <= answer_start and spans[i] != (0, 0))
            for what in READOUT_TARGETS:
                readout[f"answer_{what}"][before] = getattr(foci[0], what)
    return {
        "input_ids": np.array(ids),
        "labels": np.array(labels),
        "position_ids": np.array(positions),
        "label_weights": np.array([1.0 / sizes[a] if a >= 0 else 0.0 for a in answers], dtype=np.float32),
        "token_owners": np.array(owners),
        "token_centres": np.array(centres),
        "focus_kind": focus_kind,
        "focus_owners": focus_owners,
        "turns": np.array(turns),
        **readout,
    }


def collate(examples, tokenizer, image_token_id: int, pad_id: int, thin: bool = False) -> dict[str, torch.Tensor]:
    encoded = [encode(tokenizer, e, image_token_id, thin) for e in examples]
    width = max(len(e["input_ids"]) for e in encoded)
    fill = {"input_ids": pad_id, "labels": -100} | {name: -100 for name in encoded[0] if name.split("_")[0] in READOUTS}
    sequences = {}
    for name, first in encoded[0].items():
        batch = np.full((len(examples), width, *first.shape[1:]), fill.get(name, 0), dtype=first.dtype)
        for row, e in enumerate(encoded):
            batch[row, : len(e[name])] = e[name]
        sequences[name] = torch.from_numpy(batch)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        mask[row, : len(e["input_ids"])] = 1
    sequences["turns"][mask == 0] = -1
    # Slot 0 is "no owner"; slots without an object keep -100 (no loss).
    owner_shapes = torch.full((len(examples), OWNER_SLOTS), -100, dtype=torch.long)
    for row, e in enumerate(examples):
        owner_shapes[row, 1 : 1 + len(e.owner_shapes)] = torch.tensor(e.owner_shapes, dtype=torch.long)
    owner_places = torch.zeros((len(examples), OWNER_SLOTS, 2))
    for row, e in enumerate(examples):
        owner_places[row, 1 : 1 + len(e.owner_places)] = torch.tensor(e.owner_places)
    present = torch.zeros((len(examples), len(COLOURS) + len(SHAPES)))
    for row, e in enumerate(examples):
        for colour in e.colours:
            present[row, list(COLOURS).index(colour)] = 1
        for shape in e.shapes:
            present[row, len(COLOURS) + SHAPES.index(shape)] = 1
    return {
        "pixel_values": torch.from_numpy(np.stack([e.pixels for e in examples])),
        "patch_colours": torch.from_numpy(np.stack([e.patch_colours for e in examples])).long(),
        "patch_owners": torch.from_numpy(np.stack([e.patch_owners for e in examples])).long(),
        "owner_shapes": owner_shapes,
        "owner_places": owner_places,
        "patch_centres": torch.from_numpy(np.stack([e.patch_centres for e in examples])),
        **sequences,
        "attention_mask": turn_mask(sequences["turns"]),
        "image_keep": torch.from_numpy(np.stack([e.image_keep if thin else np.ones(IMAGE_TOKENS, dtype=bool) for e in examples])),
        "count": torch.tensor([e.count for e in examples]),
        "present": present,
    }


# One language-model batch in this many sees whole images; the others thinned ones. Decided per
# batch rather than per conversation because a batch is padded to its longest: one whole image among
# thinned ones made every row 576 image tokens long.
FULL_IMAGE_EVERY = 4


def turn_mask(turns: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, T) boolean attention mask of packed turns (`turns`: (B, T), -1 for padding): causal,
    and a token sees the shared prefix (turn 0) and its own turn only. Padding sees itself, so that
    no softmax row is empty."""
    length = turns.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    query, key = turns.unsqueeze(2), turns.unsqueeze(1)
    visible = causal & (key >= 0) & ((key == 0) | (key == query))
    return (visible | torch.eye(length, dtype=torch.bool)).unsqueeze(1)


class SceneBatches(torch.utils.data.Dataset):
    """Batch `i` of a training phase: scenes `first + i * size` onward, collated. A dataset so that
    worker processes can draw and render scenes while the model trains (on a GPU, rendering on one
    core would be the bottleneck); batch `i` is the same whichever process makes it. When `thin`,
    every FULL_IMAGE_EVERY-th batch still shows whole images."""

    def __init__(self, first: int, size: int, steps: int, tokenizer, image_token_id: int, pad_id: int, thin: bool):
        self.first, self.size, self.steps, self.thin = first, size, steps, thin
        self.tokenizer, self.image_token_id, self.pad_id = tokenizer, image_token_id, pad_id

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        examples = [training_example(self.first + index * self.size + i) for i in range(self.size)]
        thin = self.thin and index % FULL_IMAGE_EVERY != 0
        return collate(examples, self.tokenizer, self.image_token_id, self.pad_id, thin)


def vision_features(model, pixel_values: torch.Tensor):
    """The tower's output with hidden states: LLaVA reads the penultimate layer's patches."""
    return model.model.vision_tower(pixel_values, output_hidden_states=True)


def tower_losses(model, probe, batch) -> tuple[torch.Tensor, dict[str, float]]:
    with GroupingHead(model.model.vision_tower) as grouping:
        vision = vision_features(model, batch["pixel_values"])
    return probe.loss(vision, grouping.weights(), batch)


def language_losses(model, readouts, batch, image_token_id: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """LM loss over answer tokens (each answer weighing the same), the grounding loss (the grounding
    heads' attention, plus what the pointer tokens read: model.PointerReadout), and scores:
    answer-token accuracy, the grounding heads' attention mass on their targets and the readout's
    hits, with the (frozen) tower run without gradients.

    The same computation as LlavaForConditionalGeneration.forward, spelled out so the tower can
    run outside autograd and a thinned image feeds only its kept tokens, at their own positions.
    """
    inner = model.model
    with torch.no_grad():
        patches = vision_features(model, batch["pixel_values"]).hidden_states[-2][:, 1:]
    features = inner.multi_modal_projector(patches[batch["image_keep"]])
    embeds = inner.language_model.embed_tokens(batch["input_ids"])
    slots = (batch["input_ids"] == image_token_id).unsqueeze(-1)
    embeds = embeds.masked_scatter(slots, features.to(embeds.dtype))
    layers = inner.language_model.layers
    with LanguageAttention(layers[POINTER_LAYER].self_attn) as pointer, LanguageAttention(layers[CAPTION_LAYER].self_attn) as caption:
        output = inner.language_model(
            inputs_embeds=embeds,
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            output_hidden_states=True,
        )
    targets = batch["labels"][:, 1:]
    learned = targets != -100
    logits = model.lm_head(output.last_hidden_state[:, :-1][learned])
    weights = batch["label_weights"][:, 1:][learned]
    lm_loss = (F.cross_entropy(logits, targets[learned], reduction="none") * weights).sum() / weights.sum()
    question_loss, question_mass = grounding_loss(pointer, batch, (POINTER_FOCUS, COUNTING_FOCUS))
    caption_loss, caption_mass = grounding_loss(caption, batch, (CAPTION_FOCUS,))
    # hidden_states[0] is the embeddings: a layer's output is one further on.
    readout_loss, readout_hits = 0, {}
    for at, layer in READOUTS.items():
        loss, readout_hits[f"{at} readout"] = readouts[at].loss(output.hidden_states[layer + 1], batch, at)
        readout_loss = readout_loss + loss
    scores = {
        "answer-token acc": (logits.argmax(-1) == targets[learned]).float().mean().item(),
        "question focus": question_mass,
        "caption focus": caption_mass,
        **readout_hits,
    }
    return lm_loss, question_loss + caption_loss + readout_loss, scores


class LanguageAttention(AttentionInput):
    """A language-model attention layer, whose weights for a few heads from a few tokens the
    grounding loss needs (a handful of rows of two layers; every layer's full weights made a step
    ~40 % slower)."""

    def weights(self, rows: torch.Tensor, columns: torch.Tensor, attention_mask: torch.Tensor, heads: int) -> torch.Tensor:
        """Attention (N, heads, T) of the first `heads` heads from token `columns[n]` of sequence
        `rows[n]`: the softmax the layer computed under the (B, 1, T, T) `attention_mask`, with
        gradients."""
        attention, hidden = self.attention, self.hidden
        batch, length, _ = hidden.shape
        size = attention.head_dim
        queries = attention.q_proj(hidden).view(batch, length, -1, size)[:, :, :heads].transpose(1, 2)  # (B, heads, T, d)
        keys = attention.k_proj(hidden).view(batch, length, -1, size).transpose(1, 2)  # (B, kv heads, T, d)
        keys = keys[:, torch.arange(heads, device=keys.device) // attention.num_key_value_groups]
        queries, keys = apply_rotary_pos_emb(queries, keys, *self.kwargs["position_embeddings"])
        # Every row of the few heads is cheap next to the layer; picking rows first would copy each
        # selected row's sequence of keys.
        scores = (queries @ keys.transpose(2, 3))[rows, :, columns] * attention.scaling
        allowed = attention_mask[rows, 0, columns]
        return scores.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)


def grounding_loss(looked: LanguageAttention, batch, kinds: tuple[int, ...]) -> tuple[torch.Tensor, float]:
    """Cross-entropy of the grounding heads' attention against their targets at the tokens whose
    focus kind is one of `kinds`: uniform over the target owners' image tokens, or, when counting,
    over their centre tokens and the first token. Teaching the look-up directly is what lets a small
    language model trained on a CPU find "the triangle" among 576 image tokens; from the answers
    alone it kept answering from the question. Returns the loss and the mass the heads put on their
    targets."""
    rows, columns = torch.nonzero(torch.isin(batch["focus_kind"], torch.tensor(kinds, device=batch["focus_kind"].device)), as_tuple=True)
    if rows.numel() == 0:
        return looked.hidden.new_zeros(()), float("nan")
    counting = batch["focus_kind"][rows, columns] == COUNTING_FOCUS
    owners = torch.where(counting.unsqueeze(-1), batch["token_centres"][rows], batch["token_owners"][rows])  # (N, T)
    wanted = batch["focus_owners"][rows, columns]  # (N, slots); slot 0 ("no owner") is never a target
    target = wanted.gather(1, owners)  # (N, T)
    target[:, 0] += counting.to(target.dtype)  # the first token, when counting
    target = target.unsqueeze(1).expand(-1, GROUNDING_HEADS, -1)  # the same for every grounding head
    probabilities = looked.weights(rows, columns, batch["attention_mask"], GROUNDING_HEADS)  # (N, heads, T)
    total = target.sum(-1)
    valid = total > 0
    target = target[valid] / total[valid].unsqueeze(-1)
    probabilities = probabilities[valid]
    loss = -(target * probabilities.clamp(min=1e-9).log()).sum(-1).mean()
    mass = (probabilities * (target > 0)).sum(-1).mean().item()
    return loss, mass


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def save(model, tokenizer, out: Path, config_note: dict) -> None:
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    out.mkdir(parents=True, exist_ok=True)
    # Stored in bf16 (half the bytes); the engine computes in f32 either way.
    copy.deepcopy(model).to("cpu", torch.bfloat16).save_pretrained(out)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=3,
        do_center_crop=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(config_note, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3000, help="language-model steps")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--grounding", type=float, default=1.0, help="weight of the language model's grounding loss")
    parser.add_argument(
        "--grounding-lr-scale", type=float, default=5.0, help="learning-rate factor of the grounding layers' queries and keys"
    )
    parser.add_argument("--tower-steps", type=int, default=1300, help="probe-only steps of the vision tower")
    parser.add_argument("--tower-batch", type=int, default=32)
    parser.add_argument("--tower-lr", type=float, default=3e-3)
    parser.add_argument(
        "--tower-from", type=Path, help="take the vision tower of this saved model (a run's phase-1 save) and skip phase 1"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--workers", type=int, default=0, help="processes drawing and rendering scenes (0: the training process itself)"
    )
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on from the training state the last save left beside --out (the same command otherwise)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # Tiny activations and gradients of a freshly initialised model are often denormal floats,
    # which the CPU handles many times slower than normal ones.
    torch.set_flush_denormal(True)

    tokenizer = build_llama_tokenizer(tokenizer_corpus(args.seed), BASE_VOCAB)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    pad_id = tokenizer.pad_token_id
    config = llava_config(len(tokenizer), image_token_id, pad_id)
    model, probe = build(config, args.seed)
    model.to(args.device)
    probe.to(args.device)
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,} (+{sum(p.numel() for p in probe.parameters()):,} probe)")
    # Training scenes are numbered from a seed-derived base far from the evaluation set's.
    base = (args.seed + 1) * 10_000_000
    started = time.time()

    def batches(first_scene: int, size: int, steps: int, thin: bool, start: int = 0):
        scenes = SceneBatches(base + first_scene, size, steps, tokenizer, image_token_id, pad_id, thin)
        scenes = torch.utils.data.Subset(scenes, range(start, steps))
        loader = torch.utils.data.DataLoader(scenes, batch_size=None, num_workers=args.workers)
        return ({k: v.to(args.device) for k, v in batch.items()} for batch in loader)

    def elapsed() -> str:
        return f"{(time.time() - started) / 60:.1f} min"

    # Phase 1: the vision tower alone, on the probe's dense targets. Without the language model in
    # the loop a step is several times cheaper, and the language model later starts from features
    # that already say which colour and shape each patch shows; trained jointly from scratch, the
    # language model settles on answers guessed from the question before the image means anything.
    tower = model.model.vision_tower
    if args.tower_from is not None:
        tower.load_state_dict(LlavaForConditionalGeneration.from_pretrained(args.tower_from).model.vision_tower.state_dict())
    tower_parameters = list(tower.parameters()) + list(probe.parameters())
    optimiser = torch.optim.AdamW(tower_parameters, lr=args.tower_lr, betas=(0.9, 0.98), weight_decay=0.05)
    # Each save also writes everything a resumed run needs to go on as this one would have (f32
    # weights, the probes, Adam's moments), beside the model, which is what ships.
    state_path = args.out.with_name(args.out.name + ".training-state.pt")
    resumed = torch.load(state_path, map_location=args.device) if args.resume else None
    resumed_phase = None if resumed is None else resumed["phase"]

    def save_state(phase: str, steps_done: int, **parts) -> None:
        state = {name: part.state_dict() for name, part in parts.items()}
        torch.save(state | {"phase": phase, "steps_done": steps_done}, state_path)

    tower_start = 0
    if resumed_phase == "tower":
        model.load_state_dict(resumed["model"])
        probe.load_state_dict(resumed["probe"])
        optimiser.load_state_dict(resumed["optimiser"])
        tower_start = resumed["steps_done"]
    tower_steps = 0 if args.tower_from is not None or resumed_phase == "language" else args.tower_steps
    for step, batch in enumerate(batches(0, args.tower_batch, tower_steps, thin=False, start=tower_start), start=tower_start):
        set_learning_rate(optimiser, learning_rate(step, args.tower_steps, args.tower_lr, args.warmup))
        loss, accuracy = tower_losses(model, probe, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tower_parameters, 1.0)
        optimiser.step()
        if step % args.log_every == 0 or step == args.tower_steps - 1:
            scores = "  ".join(f"{k} {v:.3f}" for k, v in accuracy.items())
            print(f"tower {step:5d}  probe {loss.item():.4f}  {scores}  {elapsed()}", flush=True)
        if (step + 1) % args.save_every == 0:
            save_state("tower", step + 1, model=model, probe=probe, optimiser=optimiser)

    if tower_steps:
        save(model, tokenizer, args.out, {"tower_steps": args.tower_steps, "language_steps_done": 0})

    # Phase 2: projector and language model on the conversations, the tower frozen.
    tower.requires_grad_(False)
    tower.eval()
    # Calibrated on the tower phase's first scenes (the language phase's come after them).
    calibrate_projector(model, next(iter(batches(0, args.batch, 1, thin=False))))
    readouts = torch.nn.ModuleDict({at: PointerReadout(config.text_config.hidden_size) for at in READOUTS}).to(args.device)
    if resumed_phase == "language":
        model.load_state_dict(resumed["model"])
        readouts.load_state_dict(resumed["readouts"])
    language_parameters = [p for p in model.parameters() if p.requires_grad] + list(readouts.parameters())
    # The grounding layers' queries and keys learn at a higher rate: fitted alone on the same
    # features, a query/key pair finds the named object within a few hundred steps at 1e-2, while
    # at the language model's rate it had not after 200.
    looking = [
        projection.weight
        for layer in (POINTER_LAYER, CAPTION_LAYER)
        for projection in (model.model.language_model.layers[layer].self_attn.q_proj, model.model.language_model.layers[layer].self_attn.k_proj)
    ]
    rest = [p for p in language_parameters if all(p is not q for q in looking)]
    optimiser = torch.optim.AdamW(
        [{"params": rest, "scale": 1.0}, {"params": looking, "scale": args.grounding_lr_scale}],
        lr=args.lr,
        betas=(0.9, 0.98),
        weight_decay=0.05,
    )
    start = 0
    if resumed_phase == "language":
        optimiser.load_state_dict(resumed["optimiser"])
        start = resumed["steps_done"]
    first_language_scene = args.tower_steps * args.tower_batch
    for step, batch in enumerate(batches(first_language_scene, args.batch, args.steps, thin=True, start=start), start=start):
        set_learning_rate(optimiser, learning_rate(step, args.steps, args.lr, args.warmup))
        lm_loss, focus_loss, scores = language_losses(model, readouts, batch, image_token_id)
        optimiser.zero_grad(set_to_none=True)
        (lm_loss + args.grounding * focus_loss).backward()
        torch.nn.utils.clip_grad_norm_(language_parameters, 1.0)
        optimiser.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            print(
                f"language {step:5d}  lm {lm_loss.item():.4f}  grounding {focus_loss.item():.4f}  "
                + "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
                + f"  lr {optimiser.param_groups[0]['lr']:.2e}  {elapsed()}",
                flush=True,
            )
        if (step + 1) % args.save_every == 0 or step == args.steps - 1:
            note = {
                "command": "python -m scenes.train " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
                "tower_steps": args.tower_steps,
                "language_steps_done": step + 1,
                "minutes": round((time.time() - started) / 60, 1),
                "last_lm_loss": round(lm_loss.item(), 4),
            }
            save(model, tokenizer, args.out, note)
            save_state("language", step + 1, model=model, readouts=readouts, optimiser=optimiser)


@torch.no_grad()
def calibrate_projector(model, batch) -> None:
    """Data-dependent start for the projector, from the frozen tower's features on one batch.

    The tower's patch features share a large common part (mean norm ~25 of ~29) and differ by
    colour far less than by object against background; through a randomly initialised projector
    they entered the language model ~30 times larger than word embeddings. Adam moves each weight
    by about the learning rate a step, so undoing offsets that size took longer than training ran:
    the language model told objects from background but not one colour from another. So the first
    layer starts on standardised features (each dimension's mean removed, divided by its spread)
    and the second is scaled so image tokens enter at the size of word embeddings."""
    projector = model.model.multi_modal_projector
    features = vision_features(model, batch["pixel_values"]).hidden_states[-2][:, 1:].flatten(0, 1)
    mean, spread = features.mean(0), features.std(0).clamp(min=1e-3)
    projector.linear_1.weight.div_(spread)
    projector.linear_1.bias.sub_(projector.linear_1.weight @ mean)
    out = projector(features).norm(dim=-1).mean()
    words = model.model.language_model.embed_tokens.weight.norm(dim=-1).mean()
    projector.linear_2.weight.mul_(words / out)
    projector.linear_2.bias.mul_(words / out)


def set_learning_rate(optimiser, lr: float) -> None:
    for group in optimiser.param_groups:
        group["lr"] = lr * group.get("scale", 1.0)


if __name__ == "__main__":
    main()
