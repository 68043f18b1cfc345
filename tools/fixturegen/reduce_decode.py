"""Greedy decoding over per-layer caches, with the stage-3 cache policies: MustDrop output-aware
eviction and Dynamic-LLaVA output-token admission.

Step t feeds greedy token t (token 0 comes from the prefill logits) and yields token t + 1, so
n greedy tokens take n - 1 steps.
"""

from dataclasses import dataclass, field

import torch

from .reduce_llama import Row, final_logits, layer_forward
from .reduce_margins import Margins
from .reduce_weights import ReferenceModel


@dataclass
class Eviction:
    layers: list  # filter layers < L whose attention rows are accumulated
    first_layer: int  # eviction removes rows from this layer on
    share: float
    warmup: int
    key_rows: set  # Rows never evicted
    received: dict = field(default_factory=dict)  # Row -> accumulated attention A[j]


@dataclass
class Admission:
    layer: int  # the sparse layer Ls: the predictor reads the new row's input of this layer


@dataclass
class DecodeResult:
    greedy_ids: list
    steps: list  # per step: token fed, token produced, policy decision
    last_logits: torch.Tensor


def greedy_margin(logits: torch.Tensor, margins: Margins) -> int:
    top = torch.topk(logits, 2).values
    margins.add("greedy", top[0] - top[1], logits.abs().max())
    return int(torch.argmax(logits))


def decode(
    model: ReferenceModel,
    caches: list,
    first_token: int,
    prompt_length: int,
    new_tokens: int,
    compact: bool,
    eviction: Eviction | None,
    admission: Admission | None,
    margins: Margins,
) -> DecodeResult:
    embed = model.lm("embed_tokens.weight")
    tokens, steps, logits = [first_token], [], None
    for t in range(new_tokens - 1):
        row = Row("generated", prompt_length + t)
        hidden = embed[tokens[-1]][None]
        admitted, seen = None, {}
        for layer, cache in enumerate(caches):
            if admission is not None and layer == admission.layer:
                admitted = _admit(model, hidden, margins)
            # compact: the position is the row count of this layer's cache (the reference behaviour).
            position = len(cache.rows) if compact else row.position
            out = layer_forward(model, layer, hidden, [position], cache)
            if eviction is not None and layer in eviction.layers:
                seen[layer] = dict(zip(cache.rows, out.attention[0].tolist()))
            if admitted is None or admitted:
                cache.append(out.keys, out.values, [row])
            hidden = out.hidden
        logits = final_logits(model, hidden[0])
        step = {"token": tokens[-1]}
        tokens.append(greedy_margin(logits, margins))
        step["next"] = tokens[-1]
        if admitted is not None:
            step["admitted"] = admitted
        if eviction is not None:
            step["evicted"] = _evict(eviction, seen, caches, t + 1, margins)
        steps.append(step)
    return DecodeResult(tokens, steps, logits)


def _admit(model: ReferenceModel, hidden: torch.Tensor, margins: Margins) -> bool:
    with torch.no_grad():
        logits = model.predictors.output_text_score_predictor(hidden)[0]
    margins.add("admission", logits[0] - logits[1], logits.abs().max())
    return bool(logits[0] > logits[1])


def _evict(policy: Eviction, seen: dict, caches: list, steps_done: int, margins: Margins) -> list:
    """Accumulates this step's attention on the cached vision rows; after the warm-up, evicts the
    non-key rows whose share of the mean is below the threshold. Returns their stage-1 indices."""
    survivors = [row for row in caches[policy.layers[0]].rows if row.kind == "vision"]
    for row in survivors:
        received = sum(seen[layer][row] for layer in policy.layers) / len(policy.layers)
        policy.received[row] = policy.received.get(row, 0.0) + received
    if steps_done < policy.warmup:
        return []
    # The mean runs over the rows still cached (key rows included); evicted rows are gone for good.
    mean = sum(policy.received[row] for row in survivors) / len(survivors)
    evicted = []
    for row in survivors:
        if row in policy.key_rows:
            continue
        share = policy.received[row] / mean
        margins.add("eviction", share - policy.share, policy.share)
        if share < policy.share:
            evicted.append(row)
    gone = set(evicted)
    for cache in caches[policy.first_layer :]:
        cache.keep(lambda row: row not in gone)
    return sorted(t for row in evicted for t in row.tokens)
