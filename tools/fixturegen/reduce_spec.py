"""Parses `--reduce` spec strings (`mustdrop:keep=24,tau=0.62`) into knobs with their defaults.

Only what the reference needs: the engine owns the user-facing error messages, so a bad spec here
is simply a ValueError naming the problem.
"""

from dataclasses import dataclass, field

METHODS = ("none", "mustdrop", "fastv", "sparsevlm", "dynamic")

DEFAULTS = {
    "none": {},
    "mustdrop": {
        "tau": 0.8,
        "merge": "on",
        "key_rate": 0.08,
        "layers": [2, 6, 10, 14],
        "order": "raster",
        "evict": 0.1,
        "warmup": 32,
    },
    "fastv": {"k": 2},
    "sparsevlm": {"layers": [2, 6, 15, 19], "recycle": "on"},
    "dynamic": {"text": "on"},
}
# Knobs without a default that a method accepts (mutually exclusive groups are checked below).
OPTIONAL = {
    "none": (),
    "mustdrop": ("keep", "g", "i"),
    "fastv": ("keep", "r"),
    "sparsevlm": ("keep", "scale", "bias"),
    "dynamic": ("keep_rate",),
}
INT_KNOBS = {"keep", "k", "warmup"}
FLOAT_KNOBS = {"tau", "key_rate", "evict", "g", "i", "r", "scale", "bias", "keep_rate"}
LIST_KNOBS = {"layers"}
CHOICES = {
    "merge": ("on", "off"),
    "order": ("raster", "reference"),
    "recycle": ("on", "off"),
    "text": ("on", "off"),
    "positions": ("original", "compact"),
}


@dataclass(frozen=True)
class ReduceSpec:
    text: str
    method: str
    knobs: dict = field(default_factory=dict)

    def __getitem__(self, name: str):
        return self.knobs[name]

    def get(self, name: str, default=None):
        return self.knobs.get(name, default)

    @property
    def compact(self) -> bool:
        return self.knobs["positions"] == "compact"


def parse_spec(text: str) -> ReduceSpec:
    method, _, rest = text.partition(":")
    if method not in METHODS:
        raise ValueError(f"unknown reduction method {method!r}")
    knobs = dict(DEFAULTS[method], positions="original")
    allowed = set(knobs) | set(OPTIONAL[method])
    for item in filter(None, rest.split(",")):
        name, sep, value = item.partition("=")
        if not sep or name not in allowed:
            raise ValueError(f"{method}: unknown knob {item!r}")
        knobs[name] = _value(name, value)
    _check_groups(method, knobs)
    return ReduceSpec(text=text, method=method, knobs=knobs)


def _value(name: str, value: str):
    if name in INT_KNOBS:
        return int(value)
    if name in FLOAT_KNOBS:
        return float(value)
    if name in LIST_KNOBS:
        return [int(part) for part in value.split("/")]
    if value not in CHOICES[name]:
        raise ValueError(f"{name}={value!r} is not one of {CHOICES[name]}")
    return value


def _check_groups(method: str, knobs: dict) -> None:
    if method == "mustdrop" and ("keep" in knobs) == ("g" in knobs or "i" in knobs):
        raise ValueError("mustdrop needs exactly one of keep=N or g=G,i=I")
    if method == "mustdrop" and "keep" not in knobs and not ("g" in knobs and "i" in knobs):
        raise ValueError("mustdrop threshold mode needs both g and i")
    if method == "fastv":
        if "keep" in knobs and "r" in knobs:
            raise ValueError("fastv takes keep=N or r=R, not both")
        if "keep" not in knobs and "r" not in knobs:
            knobs["keep"] = 288
    if method == "sparsevlm" and ("keep" in knobs) == ("scale" in knobs and "bias" in knobs):
        raise ValueError("sparsevlm needs exactly one of keep=N or scale=S,bias=B")
