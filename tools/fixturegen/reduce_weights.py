"""The saved fixture model as plain float64 tensors, for the reference forward passes.

Weights come from the files on disk (loaded by transformers, so names are its in-memory ones) and
the predictor side file; float64 keeps the reference's own rounding far below the f32 engine's.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from .predictors import Predictors
from .reduce_catalogue import PREDICTOR_FILE
from .reference import load_checkpoint

DTYPE = torch.float64


@dataclass
class ReferenceModel:
    tensors: dict  # transformers state-dict name -> f64 tensor
    config: dict  # config.json as written
    predictors: Predictors | None  # f64 modules, or None without a side file

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def vision(self, name: str) -> torch.Tensor:
        return self.tensors[f"model.vision_tower.{name}"]

    def lm(self, name: str) -> torch.Tensor:
        return self.tensors[f"model.language_model.{name}"]

    @property
    def text_config(self) -> dict:
        return self.config["text_config"]

    @property
    def vision_config(self) -> dict:
        return self.config["vision_config"]


def load_reference_model(directory: Path) -> ReferenceModel:
    model = load_checkpoint(directory, torch.float32)
    tensors = {name: tensor.detach().to(DTYPE) for name, tensor in model.state_dict().items()}
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    return ReferenceModel(tensors=tensors, config=config, predictors=_load_predictors(directory, config))


def _load_predictors(directory: Path, config: dict) -> Predictors | None:
    path = directory / PREDICTOR_FILE
    if not path.exists():
        return None
    sparse = config["sparse_config"]
    hidden = config["text_config"]["hidden_size"]
    predictors = Predictors(hidden, sparse["d_model"], sparse["nhead"], sparse["dim_feedforward"], sparse["num_layers"])
    state = {name.removeprefix("model."): tensor for name, tensor in load_file(str(path)).items()}
    predictors.load_state_dict(state)
    return predictors.to(DTYPE).eval()
