"""Matching boxes by IoU: the overlap matrix and an optimal one-to-one assignment.

:func:`match` maximises the summed IoU over pairs at or above a threshold. Pairs that can
match at all are few (objects overlap only their neighbours), so the matrix is split into
its connected groups: a group of one track and one box is a match at once, and only groups
with a choice to make run the Hungarian method (:func:`hungarian`, numpy-vectorised rows).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), both x1, y1, x2, y2."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def hungarian(cost: np.ndarray) -> List[Tuple[int, int]]:
    """Minimum-cost assignment of a rectangular cost matrix: min(rows, cols) (row, col) pairs
    (shortest augmenting paths with potentials, O(n^2 m))."""
    cost = np.asarray(cost, dtype=np.float64)
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape                       # n <= m: every row gets a column
    u, v = np.zeros(n + 1), np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # owner[j]: the row (1-based) holding column j
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        owner[0], j0 = i, 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            cand = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(cand)) + 1
            delta = cand[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    pairs = [(int(owner[j]) - 1, j - 1) for j in range(1, m + 1) if owner[j]]
    return sorted((c, r) for r, c in pairs) if transposed else sorted(pairs)


def _groups(allowed: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Connected groups (rows, cols) of the bipartite graph of ``allowed`` pairs."""
    n = allowed.shape[0]
    parent = list(range(n + allowed.shape[1]))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    rows, cols = np.nonzero(allowed)
    for r, c in zip(rows.tolist(), cols.tolist()):
        a, b = find(r), find(n + c)
        if a != b:
            parent[a] = b
    groups = {}
    for r, c in zip(rows.tolist(), cols.tolist()):
        g = groups.setdefault(find(r), (set(), set()))
        g[0].add(r)
        g[1].add(c)
    return [(np.array(sorted(g[0])), np.array(sorted(g[1]))) for g in groups.values()]


def match(iou: np.ndarray, threshold: float) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """One-to-one (row, col) pairs with IoU >= ``threshold`` and the largest summed IoU, and
    the unmatched rows and columns."""
    n, m = iou.shape
    if n == 0 or m == 0:
        return [], list(range(n)), list(range(m))
    allowed = iou >= threshold
    per_row, per_col = allowed.sum(1), allowed.sum(0)
    lone = allowed & (per_row == 1)[:, None] & (per_col == 1)[None, :]
    lone_r, lone_c = np.nonzero(lone)
    pairs = list(zip(lone_r.tolist(), lone_c.tolist()))
    if len(pairs) < np.count_nonzero(per_row):          # a row has a choice to make
        rest = allowed.copy()
        rest[lone_r] = False
        rest[:, lone_c] = False
        big = float(n + m + 1)                  # more than any sum of allowed costs
        for rows, cols in _groups(rest):
            sub = iou[np.ix_(rows, cols)]
            cost = np.where(sub >= threshold, 1.0 - sub, big)
            for r, c in hungarian(cost):
                if sub[r, c] >= threshold:
                    pairs.append((int(rows[r]), int(cols[c])))
        pairs.sort()
    used_r, used_c = np.ones(n, dtype=bool), np.ones(m, dtype=bool)
    if pairs:
        pr, pc = zip(*pairs)
        used_r[list(pr)] = used_c[list(pc)] = False
    return pairs, np.nonzero(used_r)[0].tolist(), np.nonzero(used_c)[0].tolist()
