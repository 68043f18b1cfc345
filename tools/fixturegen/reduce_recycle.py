"""SparseVLM token recycling: the best-scored deleted rows are clustered by density-peak kNN and each
cluster comes back as one row (mean of its members' hidden rows at the filter layer's output).

Exact ties are part of the method, not accidents: with one neighbour, two mutual nearest neighbours
have the same density (and in a pool of two, the same delta * density). The spec breaks them by the
lower index; such bit-exact ties are exempt from the margin check, near-ties are not.

Index convention (the spec says "lower index" without naming the order): the pool is taken in
sequence order, so every tie and the order of the recycled rows follow sequence order.
"""

import math

import torch

from .reduce_llama import Row
from .reduce_margins import Margins


def pool_size(deleted: int) -> int:
    size = int(0.3 * deleted) + 1
    # Guards the float product against the exact integer rule (3 * n) // 10 an engine may use.
    assert size == (3 * deleted) // 10 + 1
    return size


def recycled_count(deleted: int) -> int:
    """Clusters (= recycled rows) made from `deleted` deleted rows."""
    return pool_size(deleted) // 10 + 1


def recycle(deleted: list[int], scores: torch.Tensor, hidden: torch.Tensor, rows: list, layer: int, margins: Margins):
    """deleted: ascending sequence indices; scores: their filter scores. Returns [(Row, hidden row)]."""
    size = pool_size(len(deleted))
    margins.topk_boundary("recycle_pool", scores, size)
    order = sorted(range(len(deleted)), key=lambda j: (-float(scores[j]), j))
    pool = sorted(deleted[j] for j in order[:size])
    clusters = _cluster(hidden[pool], recycled_count(len(deleted)), margins)
    recycled = []
    for center, members in clusters:
        member_rows = [rows[pool[m]] for m in members]
        tokens = tuple(sorted(t for row in member_rows for t in row.tokens))
        center_row = rows[pool[center]]
        row = Row("vision", center_row.position, image=center_row.image, tokens=tokens, recycled_at=layer)
        recycled.append((row, hidden[[pool[m] for m in members]].mean(0)))
    return recycled


def _cluster(points: torch.Tensor, count: int, margins: Margins) -> list[tuple[int, list[int]]]:
    """Density-peak clustering: [(center, members)] with centers ascending."""
    n = points.shape[0]
    if n == 1:
        return [(0, [0])]  # no neighbours to measure a density with; the token is its own cluster
    # Differences, not the |a|^2 + |b|^2 - 2ab expansion: d[i, j] and d[j, i] are then bit-identical,
    # which the tie rules below rely on (with k = 1, mutual nearest neighbours have equal densities).
    distance = ((points[:, None] - points[None]) ** 2).sum(-1).sqrt() / math.sqrt(points.shape[1])
    neighbours = min(count, n - 1)
    # Exclude self by pushing the diagonal past every real distance before taking the k nearest.
    off_diagonal = distance + torch.diag(torch.full((n,), math.inf, dtype=distance.dtype))
    nearest = torch.sort(off_diagonal, dim=1).values[:, :neighbours]
    density = torch.exp(-(nearest**2).mean(1))
    ranked = sorted(range(n), key=lambda i: (-float(density[i]), i))
    for a, b in zip(ranked, ranked[1:]):
        margins.add_unless_tied("recycle_density", density[a] - density[b], density[a])

    delta = torch.empty(n, dtype=distance.dtype)
    for place, i in enumerate(ranked):
        higher = ranked[:place]  # strictly denser, or equally dense with a lower index
        delta[i] = distance[i, higher].min() if higher else distance.max()
    gamma = delta * density
    margins.topk_boundary("recycle_centers", gamma, count, allow_exact_tie=True)
    centers = sorted(sorted(range(n), key=lambda i: (-float(gamma[i]), i))[:count])

    members = {center: [] for center in centers}
    for i in range(n):
        to_centers = distance[i, centers]
        if len(centers) > 1:
            two = torch.sort(to_centers).values[:2]
            margins.add("recycle_assign", two[1] - two[0], two[1])
        members[centers[int(torch.argmin(to_centers))]].append(i)
    return [(center, members[center]) for center in centers]
