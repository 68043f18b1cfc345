"""Margins of the discrete decisions a reduction run makes.

The Rust engine computes in f32 while this reference computes in f64; the two agree to about 1e-6
relative. Every selection (a threshold test, a top-k boundary, an argmax) is only reproducible if
the compared quantities are further apart than that. Each decision records its gap as a fraction of
a natural scale for its kind (the largest score of the ranking, the threshold itself, ...); the
smallest gap per kind goes into the fixture, and the generator fails when one is below MIN_MARGIN.
"""

import math

import torch

MIN_MARGIN = 1e-3


class MarginTooSmall(RuntimeError):
    pass


class Margins:
    def __init__(self):
        self.smallest: dict[str, float] = {}

    def add(self, kind: str, gap: float, scale: float = 1.0) -> None:
        """Records |gap| / |scale| for one decision of this kind."""
        relative = abs(float(gap)) / abs(float(scale)) if scale else math.inf
        self.smallest[kind] = min(self.smallest.get(kind, math.inf), relative)

    def add_unless_tied(self, kind: str, gap: float, scale: float = 1.0) -> None:
        """As `add`, but a bit-exact tie (one the method creates by construction, broken by index) is fine."""
        if float(gap) != 0.0:
            self.add(kind, gap, scale)

    def truncation(self, kind: str, value: float) -> int:
        """int(value) for a count computed from a float product; an f32 engine truncates the same
        way unless the product sits just next to an integer (an exact integer is fine)."""
        self.add_unless_tied(kind, value - round(value))
        return int(value)

    def topk_boundary(self, kind: str, scores: torch.Tensor, kept: int, signed: bool = False, allow_exact_tie=False):
        """Gap between the last kept and the first dropped score of a top-`kept` selection.

        Positive scores (probabilities, densities) carry relative errors, so the gap is measured
        against the two values compared; signed scores (logit differences) carry absolute errors of
        the size of the largest score, so the gap is measured against that.
        """
        if 0 < kept < scores.numel():
            ordered = torch.sort(scores, descending=True).values
            gap = ordered[kept - 1] - ordered[kept]
            scale = ordered.abs().max() if signed else ordered[kept - 1].abs()
            if allow_exact_tie:
                self.add_unless_tied(kind, gap, scale)
            else:
                self.add(kind, gap, scale)

    def threshold(self, kind: str, values: torch.Tensor, threshold: float) -> None:
        """Distance of every value from a threshold it is compared with, relative to the threshold."""
        for value in values.tolist():
            self.add(kind, value - threshold, threshold)

    def check(self, case: str) -> None:
        for kind, value in self.smallest.items():
            if value < MIN_MARGIN:
                raise MarginTooSmall(f"{case}: {kind} margin {value:.3e} is below {MIN_MARGIN:g}")

    def record(self) -> dict:
        values = {kind: float(f"{value:.4g}") for kind, value in sorted(self.smallest.items()) if value != math.inf}
        values["min"] = min(values.values())
        return values
