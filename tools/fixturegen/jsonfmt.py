"""Compact, stable JSON for expected outputs: objects indented, lists of scalars on one line."""

import json
from pathlib import Path

SIGNIFICANT_DIGITS = 8


def round_float(value: float) -> float:
    """Rounds to 8 significant digits: enough for f32 values (about 7.2 digits), half the bytes of repr."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def _scalar(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def dumps(value, indent: int = 0) -> str:
    pad = "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad * (indent + 1)}{_scalar(key)}: {dumps(item, indent + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad * indent + "}"
    if isinstance(value, (list, tuple)):
        if all(not isinstance(item, (dict, list, tuple)) for item in value):
            return "[" + ",".join(_scalar(item) for item in value) + "]"
        items = [f"{pad * (indent + 1)}{dumps(item, indent + 1)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad * indent + "]"
    return _scalar(value)


def write_json(path: Path, value) -> None:
    """Writes `value` as UTF-8 JSON with a final newline."""
    path.write_text(dumps(value) + "\n", encoding="utf-8")
