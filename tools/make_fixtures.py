#!/usr/bin/env python3
"""Regenerates the tiny LLaVA test fixtures and the outputs transformers computes for them.

    /work/pyenv/bin/python tools/make_fixtures.py --out test/fixtures

Writes, under --out:
  images/*.png                       procedural RGB test images (non-square)
  models/tiny-llava-*/               random tiny LLaVA checkpoints in Hugging Face format, saved by
                                     transformers (model + LlavaProcessor), some rewritten into older
                                     Hub layouts (see tools/fixturegen/layouts.py)
  expected/tiny-llava-*.json         prompt, token ids, pixel values, last-position logits and 16
                                     greedy tokens computed by transformers from the saved files
  expected/tokenizer-cases.json      encode/decode cases for the fixture tokenizer

Everything is seeded: running it twice gives byte-identical files (same library versions, see
tools/requirements.txt). Needs only a CPU. At the end every directory is loaded back by transformers
and compared with the stored numbers; `--verify` runs only that check on existing fixtures.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixturegen.build import build_fixture  # noqa: E402
from fixturegen.catalogue import FIXTURES  # noqa: E402
from fixturegen.images import write_images  # noqa: E402
from fixturegen.jsonfmt import write_json  # noqa: E402
from fixturegen.reference import load_processor  # noqa: E402
from fixturegen.tokenizer import build_tokenizer  # noqa: E402
from fixturegen.tokenizer_cases import build_cases  # noqa: E402
from fixturegen.verify import verify_all  # noqa: E402

TOKENIZER_SEED = 1234
OUTPUT_SUBDIRS = ("images", "models", "expected")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_out = Path(__file__).resolve().parent.parent / "test" / "fixtures"
    parser.add_argument("--out", type=Path, default=default_out, help="fixture root (default: test/fixtures)")
    parser.add_argument("--verify", action="store_true", help="only check existing fixtures against transformers")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="rebuild only these fixture models, keep the rest")
    args = parser.parse_args()

    started = time.monotonic()
    _make_deterministic()
    out_dir = args.out
    if args.only:
        _rebuild(out_dir, args.only)
    elif not args.verify:
        _generate(out_dir)
    for line in verify_all(out_dir):
        print(f"verified {line}")
    _report_sizes(out_dir)
    print(f"done in {time.monotonic() - started:.1f} s")


def _generate(out_dir: Path) -> None:
    for name in OUTPUT_SUBDIRS:
        shutil.rmtree(out_dir / name, ignore_errors=True)
    (out_dir / "expected").mkdir(parents=True)

    tokenizer = build_tokenizer(TOKENIZER_SEED)
    write_images(out_dir / "images")
    seeds = {}
    for fixture in FIXTURES:
        print(f"building {fixture.name}")
        fixed_seed = seeds[fixture.weights_of] if fixture.weights_of else None
        record = build_fixture(fixture, tokenizer, out_dir, fixed_seed)
        seeds[fixture.name] = record["seed"]
        write_json(out_dir / "expected" / f"{fixture.name}.json", record)
        print(f"  seed {record['seed']}, greedy {record['greedy_ids']}")

    # Cases come from the tokenizer as transformers loads it back from a fixture directory.
    mha_dir = out_dir / "models" / FIXTURES[0].name
    cases = build_cases(load_processor(mha_dir).tokenizer, mha_dir / "tokenizer.json")
    write_json(out_dir / "expected" / "tokenizer-cases.json", cases)


def _rebuild(out_dir: Path, names: list[str]) -> None:
    """Rebuilds the named fixtures in place; the tokenizer and images are the committed ones' (seeded)."""
    unknown = set(names) - {fixture.name for fixture in FIXTURES}
    if unknown:
        raise SystemExit(f"unknown fixture(s): {', '.join(sorted(unknown))}")
    tokenizer = build_tokenizer(TOKENIZER_SEED)
    for fixture in FIXTURES:
        if fixture.name not in names:
            continue
        print(f"building {fixture.name}")
        fixed_seed = None
        if fixture.weights_of:
            fixed_seed = json.loads((out_dir / "expected" / f"{fixture.weights_of}.json").read_text())["seed"]
        record = build_fixture(fixture, tokenizer, out_dir, fixed_seed)
        write_json(out_dir / "expected" / f"{fixture.name}.json", record)
        print(f"  seed {record['seed']}, greedy {record['greedy_ids']}")


def _make_deterministic() -> None:
    # One thread: float reductions then run in a fixed order, so logits are bit-for-bit repeatable.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _report_sizes(out_dir: Path) -> None:
    total = 0
    for name in OUTPUT_SUBDIRS:
        for path in sorted((out_dir / name).rglob("*")):
            if path.is_file():
                size = path.stat().st_size
                total += size
                print(f"  {size:>9,}  {path.relative_to(out_dir)}")
    print(f"  {total:>9,}  total")


if __name__ == "__main__":
    main()
