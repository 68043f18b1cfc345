"""Stage-2 prefill filters: which vision rows of one image survive layer l (and, for SparseVLM, which
recycled rows are added). Each filter reads the layer's head-mean attention over the current rows.

Every ranking breaks ties by the lower sequence index; kept rows stay in sequence order.
"""

import math
from dataclasses import dataclass, field

import torch

from .reduce_margins import Margins
from .reduce_recycle import recycle, recycled_count

# torch.linalg.matrix_rank's default tolerance factor for f32 input (the SparseVLM reference's dtype).
F32_EPS = 1.1920929e-7


@dataclass
class FilterInput:
    layer: int
    ordinal: int  # 1-based index of this filter among the method's filter layers
    rows: list  # Row per current sequence row
    hidden: torch.Tensor  # [rows, d] output of the layer
    attention: torch.Tensor  # [rows, rows] head-mean probabilities of the layer
    image: int

    @property
    def columns(self) -> list[int]:
        return [i for i, row in enumerate(self.rows) if row.kind == "vision" and row.image == self.image]

    def text_after_image(self) -> list[int]:
        # Every non-vision row after this image's first vision row.
        first = self.columns[0]
        return [i for i, row in enumerate(self.rows) if i > first and row.kind != "vision"]


@dataclass
class Selection:
    kept: list  # sequence indices of kept vision rows, ascending
    recycled: list = field(default_factory=list)  # (Row, hidden row) to insert after the kept rows


def top_indices(scores: torch.Tensor, count: int) -> list[int]:
    """Positions of the `count` highest scores (ties: lower position), ascending."""
    order = sorted(range(scores.numel()), key=lambda j: (-float(scores[j]), j))
    return sorted(order[:count])


def budget_targets(budget: int, start: int, filters: int, margins: Margins) -> list[int]:
    """Vision tokens of one image after each filter: a geometric schedule from `start` down to `budget`."""
    if budget >= start:
        return [start] * filters
    targets = []
    for f in range(1, filters + 1):
        exact = start * (budget / start) ** (f / filters)
        # Rounding is half-up (the spec's `round` leaves halves open); the margin keeps values off .5.
        margins.add("budget_rounding", exact - math.floor(exact) - 0.5)
        targets.append(max(budget, math.floor(exact + 0.5)))
    return targets


def mustdrop(step: FilterInput, knobs, key_tokens: set, target: int | None, margins: Margins) -> Selection:
    """Dual-attention filter: global share g and individual max m of the text-after-image rows."""
    columns = step.columns
    probs = step.attention[step.text_after_image()][:, columns]
    g, m = probs.sum(0), probs.max(0).values
    total = g.sum()
    is_key = [step.rows[c].tokens[0] in key_tokens for c in columns]
    if target is None:
        g_thr, i_thr = total * knobs["g"], knobs["i"]
        kept = []
        for j, column in enumerate(columns):
            low_g, low_m = bool(g[j] < g_thr), bool(m[j] < i_thr)
            if not is_key[j]:
                _and_margin(margins, "mustdrop_threshold", (g[j] - g_thr) / g_thr, (m[j] - i_thr) / i_thr, low_g, low_m)
            if is_key[j] or not (low_g and low_m):
                kept.append(column)
        return Selection(kept)
    keys = [c for c, key in zip(columns, is_key) if key]
    if len(keys) > knobs["keep"]:
        raise ValueError(f"budget {knobs['keep']} is below the {len(keys)} key tokens")
    others = [j for j, key in enumerate(is_key) if not key]
    # Highest g first, ties by higher m, then lower index.
    ranked = sorted(others, key=lambda j: (-float(g[j]), -float(m[j]), j))
    wanted = target - len(keys)
    margins.topk_boundary("mustdrop_budget", g[others], wanted)
    return Selection(sorted(keys + [columns[j] for j in ranked[:wanted]]))


def _and_margin(margins: Margins, kind: str, gap_a: float, gap_b: float, a: bool, b: bool) -> None:
    """Margin of `a and b`: flipping it takes flipping every true part, or one false part."""
    gap_a, gap_b = abs(float(gap_a)), abs(float(gap_b))
    if a and b:
        margins.add(kind, min(gap_a, gap_b))
    elif a or b:
        margins.add(kind, gap_b if a else gap_a)
    else:
        margins.add(kind, max(gap_a, gap_b))


def fastv(step: FilterInput, keep: int, margins: Margins) -> Selection:
    """Keep the vision rows the last prompt row attends to most."""
    columns = step.columns
    scores = step.attention[len(step.rows) - 1, columns]
    margins.topk_boundary("fastv_topk", scores, keep)
    return Selection([columns[j] for j in top_indices(scores, min(keep, len(columns)))])


def dynamic(step: FilterInput, predictors, keep_rate: float, margins: Margins) -> Selection:
    """Dynamic-LLaVA image predictor on the image's rows at the input of the sparse layer."""
    columns = step.columns
    with torch.no_grad():
        logits = predictors.image_score_predictor(step.hidden[columns])
    scores = logits[:, 0] - logits[:, 1]
    count = margins.truncation("count_rounding", len(columns) * keep_rate)
    margins.topk_boundary("dynamic_topk", scores, count, signed=True)
    return Selection([columns[j] for j in top_indices(scores, count)])


def sparsevlm_raters(embeddings: torch.Tensor, rows: list, image: int, margins: Margins) -> list:
    """Text rows after the image whose mean softmax weight from the vision rows is above average."""
    vision = [i for i, row in enumerate(rows) if row.kind == "vision" and row.image == image]
    text = [i for i, row in enumerate(rows) if i > vision[0] and row.kind != "vision"]
    weights = torch.softmax(embeddings[vision] @ embeddings[text].T, dim=-1).mean(0)
    mean = weights.mean()
    margins.threshold("sparsevlm_raters", weights, float(mean))
    return [rows[t] for t, weight in zip(text, weights) if weight > mean]


def sparsevlm(step: FilterInput, knobs, raters: list, target: int | None, margins: Margins) -> Selection:
    """SparseVLM v1: rater rows' mean attention; rank rule or budget; recycling of deleted rows."""
    columns = step.columns
    rater_index = [i for i, row in enumerate(step.rows) if row in set(raters)]
    ratings = step.attention[rater_index][:, columns]
    scores = ratings.mean(0)
    total = len(columns)
    recycling = knobs["recycle"] == "on"
    if target is None:
        rank = _rank(ratings, margins)
        if total == rank:
            return Selection(columns)
        keep = min(margins.truncation("count_rounding", rank * knobs["scale"] + knobs["bias"]), total - 1)
    elif target >= total:
        return Selection(columns)
    else:
        # The recycled rows count against the budget: keep fewer so kept + recycled = target.
        keep = target - recycled_count(total - target) if recycling else target
    margins.topk_boundary("sparsevlm_topk", scores, keep)
    kept_positions = top_indices(scores, keep)
    selection = Selection([columns[j] for j in kept_positions])
    deleted = [j for j in range(total) if j not in set(kept_positions)]
    if recycling and deleted:
        if target is not None and keep + recycled_count(len(deleted)) != target:
            # The spec sizes the clusters from V - target but recycles len(deleted) = V - keep rows; the
            # two counts can differ when the pool size crosses a multiple of ten. Fixtures avoid that.
            raise ValueError(f"layer {step.layer}: kept + recycled would not equal the target {target}")
        selection.recycled = recycle(
            [columns[j] for j in deleted], scores[deleted], step.hidden, step.rows, step.layer, margins
        )
    return selection


def _rank(matrix: torch.Tensor, margins: Margins) -> int:
    singular = torch.linalg.svdvals(matrix)
    tolerance = singular.max() * max(matrix.shape) * F32_EPS
    for value in singular.tolist():
        # Relative to the larger of the two: a singular value at rounding-noise level is far below.
        margins.add("sparsevlm_rank", value - tolerance, max(value, float(tolerance)))
    return int((singular > tolerance).sum())

