"""Trains Dynamic-LLaVA's two predictors for a trained scene model, the way the paper trains them.

    cd tools && ../.venv/bin/python -m scenes.train_predictors --model ../models/default

Writes `predictors.safetensors` (tensors `model.image_score_predictor.*`,
`model.output_text_score_predictor.*`) beside the checkpoint and a `sparse_config` into its
config.json, which is what `glimpse --reduce dynamic` loads.

The method (Huang et al., ICLR 2025, §3): the predictors read the residual stream entering the
sparse layer. During training their keep/drop decisions are sampled with Gumbel-softmax (temperature
decaying exponentially from 1 to 0.1) and made hard with the straight-through estimator; from the
sparse layer on, a dropped token is masked out of every other token's attention by a masked softmax
(exp(s_ij) * m_j / sum_k exp(s_ik) * m_k; a token always sees itself), so the language loss flows
back into the decisions; a regulariser lambda * (mean(m) - r)^2 pulls the kept share of image tokens
to r = 0.2 and of output tokens to 0.5. The base model is frozen here (the paper also fine-tunes the
language model at a learning rate 40 times below the predictors'; a frozen base keeps the answers of
`--reduce none` unchanged).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AttentionInterface, AutoTokenizer, LlavaForConditionalGeneration

from fixturegen.predictors import Predictors

from .data import IMAGE_PLACEHOLDER, training_example
from .train import collate

MASKED = "masked_softmax"


class KeyWeights:
    """The per-token keep weights the masked softmax reads, set before the sparse layers run."""

    value: torch.Tensor | None = None


def masked_softmax_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Attention whose softmax weighs each key by its keep decision (see the module docstring)."""
    groups = query.shape[1] // key.shape[1]
    key = key.repeat_interleave(groups, dim=1)
    value = value.repeat_interleave(groups, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling + attention_mask
    scores = scores - scores.amax(dim=-1, keepdim=True).detach()
    rows = query.shape[2]
    weights = KeyWeights.value[:, None, None, :].expand(-1, 1, rows, -1)
    weights = torch.maximum(weights, torch.eye(rows, dtype=weights.dtype)[None, None])
    exp = torch.exp(scores) * weights
    probs = exp / exp.sum(dim=-1, keepdim=True)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), probs


def additive_mask(allowed: torch.Tensor) -> torch.Tensor:
    """The boolean (B, 1, T, T) mask of train.collate as the masked softmax adds it: 0 where a query
    may see a key, -inf elsewhere."""
    return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, float("-inf"))


def gumbel_keep(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hard 0/1 keep decisions (index 0 = keep) with straight-through gradients."""
    return F.gumbel_softmax(logits, tau=tau, hard=True)[..., 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sparse-layer", type=int, default=2)
    parser.add_argument("--image-keep-rate", type=float, default=0.2)
    parser.add_argument("--output-keep-rate", type=float, default=0.5)
    parser.add_argument("--mask-loss-weight", type=float, default=100.0)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--nhead", type=int, default=4)
    parser.add_argument("--feedforward", type=int, default=256)
    parser.add_argument("--log-every", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_flush_denormal(True)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = LlavaForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    model.requires_grad_(False)
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    hidden = model.config.text_config.hidden_size
    predictors = Predictors(hidden, args.d_model, args.nhead, args.feedforward, layers=2)
    optimiser = torch.optim.AdamW(predictors.parameters(), lr=args.lr, weight_decay=0.0)
    AttentionInterface.register(MASKED, masked_softmax_attention)
    text_config = model.config.text_config
    lm = model.model.language_model

    started = time.time()
    for step in range(args.steps):
        tau = 1.0 * (0.1 / 1.0) ** (step / max(1, args.steps - 1))
        examples = [training_example(args.seed * 1_000_000 + step * args.batch + i) for i in range(args.batch)]
        batch = collate(examples, tokenizer, image_token_id, tokenizer.pad_token_id)
        ids, positions = batch["input_ids"], batch["position_ids"]
        with torch.no_grad():
            vision = model.model.vision_tower(batch["pixel_values"], output_hidden_states=True)
            features = model.model.multi_modal_projector(vision.hidden_states[-2][:, 1:])
            states = lm.embed_tokens(ids).masked_scatter((ids == image_token_id)[..., None], features)
            rope = lm.rotary_emb(states, position_ids=positions)
            mask = additive_mask(batch["attention_mask"])
            text_config._attn_implementation = "sdpa"
            for layer in lm.layers[: args.sparse_layer]:
                states = layer(states, attention_mask=mask, position_ids=positions, position_embeddings=rope)

        # Keep weights: 1 for prompt text, the sampled decisions for image and answer tokens, 0 for padding.
        image_rows = ids == image_token_id
        answer_rows = batch["labels"] != -100
        image_logits = torch.stack(
            [predictors.image_score_predictor(states[b][image_rows[b]]) for b in range(ids.shape[0])]
        )
        output_logits = predictors.output_text_score_predictor(states[answer_rows])
        image_keep = gumbel_keep(image_logits, tau)
        output_keep = gumbel_keep(output_logits, tau)
        weights = (batch["turns"] >= 0).float()
        weights = weights.masked_scatter(image_rows, image_keep.reshape(-1))
        weights = weights.masked_scatter(answer_rows, output_keep)
        KeyWeights.value = weights

        text_config._attn_implementation = MASKED
        for layer in lm.layers[args.sparse_layer :]:
            states = layer(states, attention_mask=mask, position_ids=positions, position_embeddings=rope)
        text_config._attn_implementation = "sdpa"
        targets = batch["labels"][:, 1:]
        learned = targets != -100
        logits = model.lm_head(lm.norm(states)[:, :-1][learned])
        lm_loss = F.cross_entropy(logits, targets[learned])
        rate_loss = (image_keep.mean() - args.image_keep_rate) ** 2 + (output_keep.mean() - args.output_keep_rate) ** 2
        loss = lm_loss + args.mask_loss_weight * rate_loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            print(
                f"step {step:4d}  lm {lm_loss.item():.4f}  image kept {image_keep.mean().item():.3f}"
                f"  output kept {output_keep.mean().item():.3f}  tau {tau:.3f}  {(time.time() - started) / 60:.1f} min",
                flush=True,
            )

    tensors = {f"model.{name}": t.detach().contiguous() for name, t in predictors.state_dict().items()}
    save_file(tensors, args.model / "predictors.safetensors")
    config_path = args.model / "config.json"
    config = json.loads(config_path.read_text())
    config["sparse_config"] = {
        "sparse_layer": args.sparse_layer,
        "vision_keep_rate": args.image_keep_rate,
        "output_text_keep_rate": args.output_keep_rate,
        "d_model": args.d_model,
        "nhead": args.nhead,
        "dim_feedforward": args.feedforward,
        "num_layers": 2,
        "mask_loss_weight": args.mask_loss_weight,
    }
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {args.model / 'predictors.safetensors'} ({math.fsum(t.numel() for t in tensors.values()):.0f} parameters)")


if __name__ == "__main__":
    main()
