"""Plain-torch reference of glimpse's token-reduction pipeline (notes: reduce-spec), in float64.

One call, `run_reduction`, takes a model, a spec string and a prompt and returns everything the
engine must reproduce: stage-1 tokens, the survivors of every filter layer, vision rows per layer,
prefill logits, greedy tokens with the per-step cache decisions, and the margins of every decision.

Spec points this reference had to settle (the engine must settle them the same way):
- "Text after the image" is taken per image: the non-vision rows after that image's first vision row.
- The budget schedule rounds halves up (floor(x + 0.5)); fixtures keep every x away from .5.
- SparseVLM recycled rows are vision rows from then on: later filters score, keep or recycle them
  like any other; they enter the sequence after the layer that made them (that layer's cache does
  not hold them). See reduce_recycle.py for the pool order.
- MustDrop eviction: a decode step first attends (new row appended to the cache), then accumulates
  its attention; the eviction test runs from the step that completes the warm-up on, and the mean
  of A runs over the vision rows still cached, key rows included.
- Dynamic-LLaVA: the keep count int(N_img * keep_rate) uses the image's vision rows at the filter.
"""

from dataclasses import dataclass

import torch

from . import reduce_filters as filters
from .reduce_clip import Stage1Options, encode_image
from .reduce_decode import Admission, Eviction, decode, greedy_margin
from .reduce_llama import Row, empty_cache, final_logits, layer_forward
from .reduce_margins import Margins
from .reduce_spec import ReduceSpec, parse_spec
from .reduce_weights import ReferenceModel


@dataclass
class ReferencePrompt:
    input_ids: list[int]
    pixel_values: torch.Tensor  # [images, 3, H, W] as the processor made them
    image_token_id: int


def run_reduction(model: ReferenceModel, spec_text: str, prompt: ReferencePrompt, new_tokens: int) -> dict:
    spec = parse_spec(spec_text)
    margins = Margins()
    run = _Run(model, spec, prompt, margins)
    run.encode()
    run.prefill()
    result = run.record()
    trimmed = run.stage3_trim()
    result["cache_rows_after_prefill"] = [len(cache.rows) for cache in run.caches]
    first = greedy_margin(run.logits, margins)
    decoded = decode(
        model,
        run.caches,
        first,
        len(prompt.input_ids),
        new_tokens,
        spec.compact,
        run.eviction_policy() if trimmed else None,
        run.admission_policy(),
        margins,
    )
    result["greedy_ids"] = decoded.greedy_ids
    result["steps"] = decoded.steps
    result["cache_rows_after_decode"] = [len(cache.rows) for cache in run.caches]
    result["last_logits"] = decoded.last_logits
    result["margins"] = margins
    return result


class _Run:
    """One reduction run: stage 1 per image, the prefill with its filters, then the stage-3 setup."""

    def __init__(self, model: ReferenceModel, spec: ReduceSpec, prompt: ReferencePrompt, margins: Margins):
        self.model, self.spec, self.prompt, self.margins = model, spec, prompt, margins
        self.layers = model.text_config["num_hidden_layers"]
        self.image_seq_len = model.config["image_seq_length"]
        self.filter_layers = self._filter_layers()
        self.images = []  # per image: VisionOutput
        self.filter_records = []
        self.targets = {}  # image -> budget schedule, fixed at the first filter

    def _filter_layers(self) -> list[int]:
        spec = self.spec
        layers = {
            "none": [],
            "mustdrop": spec.get("layers"),
            "sparsevlm": spec.get("layers"),
            "fastv": [spec.get("k", 1) - 1],
            "dynamic": [self._sparse_layer() - 1],
        }[spec.method]
        if any(layer < 0 or layer >= self.layers for layer in layers) or layers != sorted(set(layers)):
            raise ValueError(f"{spec.text}: filter layers {layers} do not fit a {self.layers}-layer model")
        budget = spec.get("keep")
        if budget is not None and budget > self.image_seq_len:
            raise ValueError(f"{spec.text}: budget {budget} exceeds the image's {self.image_seq_len} tokens")
        return layers

    def _sparse_layer(self) -> int:
        return self.model.config.get("sparse_config", {}).get("sparse_layer", 2)

    def encode(self) -> None:
        stage1 = None
        if self.spec.method == "mustdrop":
            knobs = self.spec.knobs
            stage1 = Stage1Options(knobs["merge"] == "on", knobs["tau"], knobs["order"], knobs["key_rate"])
        for pixels in self.prompt.pixel_values:
            self.images.append(encode_image(self.model, pixels, stage1, self.margins))

    def _initial_rows(self):
        """Prompt rows with each image slot replaced by its stage-1 tokens, and their embeddings."""
        embed = self.model.lm("embed_tokens.weight")
        ids, rows, hidden = self.prompt.input_ids, [], []
        i = image = 0
        while i < len(ids):
            if ids[i] != self.prompt.image_token_id:
                rows.append(Row("text", i))
                hidden.append(embed[ids[i]])
                i += 1
                continue
            vision = self.images[image]
            for index, patches in enumerate(vision.tokens):
                rows.append(Row("vision", i + min(patches), image=image, tokens=(index,)))
                hidden.append(vision.features[index])
            i += self.image_seq_len
            image += 1
        return rows, torch.stack(hidden)

    def prefill(self) -> None:
        rows, hidden = self._initial_rows()
        self.raters = None
        if self.spec.method == "sparsevlm":
            self.raters = {
                image: filters.sparsevlm_raters(hidden, rows, image, self.margins) for image in range(len(self.images))
            }
        self.caches, self.layer_vision_tokens = [], []
        for layer in range(self.layers):
            positions = list(range(len(rows))) if self.spec.compact else [row.position for row in rows]
            out = layer_forward(self.model, layer, hidden, positions, empty_cache(self.model))
            cache = empty_cache(self.model)
            cache.append(out.keys, out.values, list(rows))
            self.caches.append(cache)
            self.layer_vision_tokens.append(sum(row.kind == "vision" for row in rows))
            hidden = out.hidden
            if layer in self.filter_layers:
                rows, hidden = self._filter(layer, rows, hidden, out.attention)
        self.rows, self.logits = rows, final_logits(self.model, hidden[-1])

    def _filter(self, layer: int, rows: list, hidden: torch.Tensor, attention: torch.Tensor):
        ordinal = self.filter_layers.index(layer) + 1
        selections = {}
        for image in range(len(self.images)):
            step = filters.FilterInput(layer, ordinal, rows, hidden, attention, image)
            selections[image] = self._select(step)
        rows, hidden = _apply(rows, hidden, selections)
        self.filter_records.append({"layer": layer, "images": [_survivors(rows, i) for i in range(len(self.images))]})
        return rows, hidden

    def _select(self, step: filters.FilterInput) -> filters.Selection:
        spec, margins = self.spec, self.margins
        budget_mode = spec.method in ("mustdrop", "sparsevlm") and spec.get("keep") is not None
        target = self._target(step) if budget_mode else None
        if spec.method == "mustdrop":
            keys = set(self.images[step.image].key_tokens)
            return filters.mustdrop(step, spec.knobs, keys, target, margins)
        if spec.method == "fastv":
            keep = spec.get("keep")
            if keep is None:
                keep = self.margins.truncation("count_rounding", len(step.columns) * (1 - spec["r"]))
            return filters.fastv(step, keep, margins)
        if spec.method == "sparsevlm":
            return filters.sparsevlm(step, spec.knobs, self.raters[step.image], target, margins)
        keep_rate = spec.get("keep_rate")
        if keep_rate is None:
            keep_rate = self.model.config.get("sparse_config", {}).get("vision_keep_rate", 0.2)
        return filters.dynamic(step, self.model.predictors, keep_rate, margins)

    def _target(self, step: filters.FilterInput) -> int:
        if step.image not in self.targets:
            start, count = len(step.columns), len(self.filter_layers)
            self.targets[step.image] = filters.budget_targets(self.spec["keep"], start, count, self.margins)
        return self.targets[step.image][step.ordinal - 1]

    def stage3_trim(self) -> bool:
        """MustDrop C: layers from the first to the last filter layer keep only the final survivors."""
        if self.spec.method != "mustdrop" or not self.filter_layers:
            return False
        survivors = set(row for row in self.rows if row.kind == "vision")
        for cache in self.caches[self.filter_layers[0] : self.filter_layers[-1] + 1]:
            cache.keep(lambda row: row.kind != "vision" or row in survivors)
        return True

    def eviction_policy(self) -> Eviction | None:
        share = self.spec["evict"]
        if share <= 0:
            return None
        keys = {
            row for row in self.rows if row.kind == "vision" and row.tokens[0] in set(self.images[row.image].key_tokens)
        }
        layers = [layer for layer in self.filter_layers if layer < self.layers]
        return Eviction(layers, self.filter_layers[0], share, self.spec["warmup"], keys)

    def admission_policy(self) -> Admission | None:
        if self.spec.method != "dynamic" or self.spec["text"] != "on":
            return None
        return Admission(self._sparse_layer())

    def record(self) -> dict:
        images = []
        for vision in self.images:
            image = {"tokens": vision.tokens}
            if vision.windows is not None:
                image["windows"] = vision.windows
            if vision.key_tokens is not None:
                image["key_tokens"] = vision.key_tokens
            images.append(image)
        vision_in = self.image_seq_len * len(self.images)
        return {
            "stage1": images,
            "filters": self.filter_records,
            "stats": {
                "vision_tokens_in": vision_in,
                "after_encoder": sum(len(vision.tokens) for vision in self.images),
                "after_prefill": sum(row.kind == "vision" for row in self.rows),
                "layer_vision_tokens": self.layer_vision_tokens,
                "equal_tokens": round(sum(self.layer_vision_tokens) / self.layers / len(self.images), 6),
            },
            "prefill_logits": self.logits,
        }


def _apply(rows: list, hidden: torch.Tensor, selections: dict):
    """Drops the unselected vision rows; recycled rows go right after their image's last kept row."""
    kept = {index for selection in selections.values() for index in selection.kept}
    last_kept = {image: max(selection.kept) for image, selection in selections.items() if selection.recycled}
    new_rows, new_hidden = [], []
    for index, row in enumerate(rows):
        if row.kind == "vision" and index not in kept:
            continue
        new_rows.append(row)
        new_hidden.append(hidden[index])
        if row.kind == "vision" and last_kept.get(row.image) == index:
            for recycled_row, recycled_hidden in selections[row.image].recycled:
                new_rows.append(recycled_row)
                new_hidden.append(recycled_hidden)
    return new_rows, torch.stack(new_hidden)


def _survivors(rows: list, image: int) -> dict:
    vision = [row for row in rows if row.kind == "vision" and row.image == image]
    return {
        "vision_rows": len(vision),
        "kept": [row.tokens[0] for row in vision if row.recycled_at < 0],
        "recycled": [
            {"members": list(row.tokens), "position": row.position, "created_at": row.recycled_at}
            for row in vision
            if row.recycled_at >= 0
        ],
    }
