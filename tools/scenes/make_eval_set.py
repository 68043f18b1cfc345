"""Writes the held-out evaluation set: scene PNGs and eval.jsonl for `glimpse eval`.

    cd tools && ../.venv/bin/python -m scenes.make_eval_set --out ../examples/scenes

The seed is never used for training scenes (train.py numbers those from (seed + 1) * 10^7).
"""

import argparse
import shutil
from pathlib import Path

from .data import write_eval_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=424242)
    parser.add_argument("--scenes", type=int, default=120)
    args = parser.parse_args()
    if (args.out / "images").exists():
        shutil.rmtree(args.out / "images")
    lines = write_eval_set(args.out, args.seed, args.scenes)
    print(f"{args.scenes} scenes, {lines} questions in {args.out / 'eval.jsonl'}")


if __name__ == "__main__":
    main()
