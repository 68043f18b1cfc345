#!/usr/bin/env python3
"""Regenerates the token-reduction fixtures: a Python reference of every reduction method, run on a
tiny LLaVA model.

    /work/pyenv/bin/python tools/make_reduce_fixtures.py

Writes, under test/fixtures:
  models/tiny-llava-reduce/predictors.safetensors   seeded Dynamic-LLaVA predictor heads (side file)
  expected/predictors.json                          predictor inputs and the logits torch computes

Everything is seeded: running it twice gives byte-identical files (same library versions, see
tools/requirements.txt). Needs only a CPU.
"""

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixturegen.jsonfmt import write_json  # noqa: E402
from fixturegen.reduce_catalogue import MODEL_NAME  # noqa: E402
from fixturegen.reduce_predictor_fixture import predictor_record, reduce_predictors, save_predictor_file  # noqa: E402

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "test" / "fixtures"


def main() -> None:
    started = time.monotonic()
    _make_deterministic()
    model_dir = FIXTURES_DIR / "models" / MODEL_NAME
    predictors = reduce_predictors()
    written = [save_predictor_file(predictors, model_dir)]
    written.append(FIXTURES_DIR / "expected" / "predictors.json")
    write_json(written[-1], predictor_record(predictors))
    for path in written:
        print(f"  {path.stat().st_size:>9,}  {path.relative_to(FIXTURES_DIR)}")
    print(f"done in {time.monotonic() - started:.1f} s")


def _make_deterministic() -> None:
    # One thread: float reductions then run in a fixed order, so logits are bit-for-bit repeatable.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":
    main()
