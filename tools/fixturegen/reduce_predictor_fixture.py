"""predictors.safetensors (the side file of the reduce fixture model) and predictors.json: random
input rows and the logits torch computes for them, so an engine can test its predictor heads alone."""

from pathlib import Path

import torch
from safetensors.torch import save_file

from .jsonfmt import round_float
from .predictors import Predictors, build_predictors
from .reduce_catalogue import HIDDEN_SIZE, MODEL_NAME, PREDICTOR_FILE, PREDICTOR_SEED, SPARSE_CONFIG

INPUT_SEED = 7
IMAGE_ROWS = 10
TEXT_ROWS = 3
# Inputs are multiples of 1/64: exact in f32 and short in JSON, so the engine reads the very same values.
INPUT_STEP = 1.0 / 64


def reduce_predictors() -> Predictors:
    config = SPARSE_CONFIG
    return build_predictors(
        HIDDEN_SIZE, config["d_model"], config["nhead"], config["dim_feedforward"], config["num_layers"], PREDICTOR_SEED
    )


def save_predictor_file(predictors: Predictors, model_dir: Path) -> Path:
    """Writes the side file with checkpoint names (`model.` prefix), f32."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{name}": tensor.detach().contiguous() for name, tensor in predictors.state_dict().items()}
    path = model_dir / PREDICTOR_FILE
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def _input_rows(rows: int, generator: torch.Generator) -> torch.Tensor:
    # Unit-scale rows with a shared offset, like residual-stream rows of one sequence.
    spread = torch.randn(rows, HIDDEN_SIZE, generator=generator)
    offset = torch.randn(HIDDEN_SIZE, generator=generator)
    values = 1.5 * spread + 0.5 * offset
    return torch.round(values / INPUT_STEP) * INPUT_STEP


def _logit_rows(logits: torch.Tensor) -> list[list[float]]:
    return [[round_float(value) for value in row] for row in logits.tolist()]


@torch.no_grad()
def predictor_record(predictors: Predictors) -> dict:
    generator = torch.Generator().manual_seed(INPUT_SEED)
    image_rows = _input_rows(IMAGE_ROWS, generator)
    text_rows = _input_rows(TEXT_ROWS, generator)
    image_logits = predictors.image_score_predictor(image_rows)
    text_logits = predictors.output_text_score_predictor(text_rows)
    image_score = image_logits[:, 0] - image_logits[:, 1]
    return {
        "weights": f"models/{MODEL_NAME}/{PREDICTOR_FILE}",
        "hidden_size": HIDDEN_SIZE,
        "sparse_config": SPARSE_CONFIG,
        "seed": PREDICTOR_SEED,
        "image": {
            "rows": image_rows.tolist(),
            "logits": _logit_rows(image_logits),
            # Row indices by descending logit0 - logit1 (what a keep top-k ranks by).
            "ranking": torch.argsort(image_score, descending=True, stable=True).tolist(),
        },
        "text": {
            "rows": text_rows.tolist(),
            "logits": _logit_rows(text_logits),
            "admit": (text_logits[:, 0] > text_logits[:, 1]).tolist(),
        },
    }
