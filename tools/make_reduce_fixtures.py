#!/usr/bin/env python3
"""Regenerates the token-reduction fixtures: a tiny LLaVA model and what a float64 reference of every
reduction method (tools/fixturegen/reduce_reference.py) computes on it.

    /work/pyenv/bin/python tools/make_reduce_fixtures.py

Writes, under test/fixtures:
  models/tiny-llava-reduce/          random tiny LLaVA (20 LM layers, GQA, 4 CLIP layers, bf16) saved
                                     by transformers, with `sparse_config` in config.json and the
                                     Dynamic-LLaVA predictor heads in predictors.safetensors
  expected/predictors.json           predictor inputs and the logits torch computes for them
  expected/reduce-<case>.json        per reduction spec: stage-1 tokens, survivors of every filter
                                     layer, vision rows per layer, prefill logits, 8 greedy tokens
                                     with the per-step cache decisions, last-step logits, and the
                                     margins of every discrete decision

Before writing the cases, the reference is checked against transformers on the same files (the
unreduced run must give its logits and greedy tokens). Every selection must clear a relative margin
of 1e-3 so that an f32 engine reproduces the selected sets exactly; the script fails otherwise.
Everything is seeded: running it twice gives byte-identical files (same library versions, see
tools/requirements.txt). Needs only a CPU; `--verify` recomputes everything from the committed
files and compares instead of writing. Run it after tools/make_fixtures.py, which writes the images
used here and clears test/fixtures/models and test/fixtures/expected.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixturegen.jsonfmt import dumps, write_json  # noqa: E402
from fixturegen.reduce_catalogue import CASES, MODEL_NAME  # noqa: E402
from fixturegen.reduce_fixture import (  # noqa: E402
    build_model_dir,
    case_record,
    check_against_transformers,
    load_fixture,
)
from fixturegen.reduce_predictor_fixture import predictor_record, reduce_predictors, save_predictor_file  # noqa: E402

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "test" / "fixtures"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verify", action="store_true", help="compare with the committed files instead of writing")
    args = parser.parse_args()
    started = time.monotonic()
    _make_deterministic()

    predictors = reduce_predictors()
    if args.verify:
        fixture = load_fixture(FIXTURES_DIR)
    else:
        fixture = build_model_dir(FIXTURES_DIR)  # also writes predictors.safetensors
    print(check_against_transformers(fixture))

    records = {"predictors.json": predictor_record(predictors)}
    for name, spec in CASES.items():
        record = case_record(fixture, name, spec)
        records[f"reduce-{name}.json"] = record
        print(f"  {spec:<55} greedy {record['greedy_ids']}  min margin {record['margins']['min']:.2e}")

    stale = [path for path in (FIXTURES_DIR / "expected").glob("reduce-*.json") if path.name not in records]
    if stale and args.verify:
        raise SystemExit(f"no case writes {', '.join(path.name for path in stale)}")
    for path in stale:
        path.unlink()
    for file_name, record in records.items():
        path = FIXTURES_DIR / "expected" / file_name
        if args.verify:
            if path.read_text(encoding="utf-8") != dumps(record) + "\n":
                raise SystemExit(f"{path} differs from what the reference computes")
        else:
            write_json(path, record)
    if args.verify:
        _same_predictor_file(predictors, fixture.directory)
    _report_sizes([fixture.directory, *(FIXTURES_DIR / "expected" / name for name in records)])
    print(f"{'verified' if args.verify else 'done'} in {time.monotonic() - started:.1f} s")


def _same_predictor_file(predictors, directory: Path) -> None:
    committed = (directory / "predictors.safetensors").read_bytes()
    scratch = directory.parent / f".{MODEL_NAME}-check"
    fresh = save_predictor_file(predictors, scratch).read_bytes()
    (scratch / "predictors.safetensors").unlink()
    scratch.rmdir()
    if fresh != committed:
        raise SystemExit("predictors.safetensors differs from the seeded predictors")


def _make_deterministic() -> None:
    # One thread: float reductions then run in a fixed order, so logits are bit-for-bit repeatable.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _report_sizes(paths: list[Path]) -> None:
    files = [p for path in paths for p in (sorted(path.rglob("*")) if path.is_dir() else [path]) if p.is_file()]
    for path in files:
        print(f"  {path.stat().st_size:>9,}  {path.relative_to(FIXTURES_DIR)}")
    print(f"  {sum(path.stat().st_size for path in files):>9,}  total")


if __name__ == "__main__":
    main()
