"""YOLO9000's WordTree: the class hierarchy of a region layer with ``tree=``.

A tree file (darknet's ``9k.tree``) has one line per class, ``<name> <parent index>``, with
``-1`` for a root. Darknet's ``read_tree`` forms the softmax groups from runs of consecutive
lines with the same parent: each run is one group (siblings), a softmax is taken over each
group separately, and ``child[p]`` is the group whose parent is ``p`` (the last such run).
A class's absolute probability is the product of the conditional probabilities on its path
to the root.

Here a tree needs every parent to come before its children (true of darknet's trees); that
makes the product along the path one pass in file order, as darknet computes it.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np


class TreeError(ValueError):
    """A tree that darknet would misread: ``line`` (1-based) and what is wrong."""

    def __init__(self, line: Optional[int], what: str):
        self.line, self.what = line, what
        super().__init__(f"line {line}: {what}" if line else what)


def parse_tree(text: str) -> Tuple[List[str], List[int]]:
    """(names, parents) of a tree file's text, as darknet's ``read_tree`` reads each line
    (``sscanf("%s %d")``: a name, then the parent index; a missing index is -1)."""
    names: List[str] = []
    parents: List[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            raise TreeError(n, "empty line (darknet would read it as a class)")
        try:
            parent = int(parts[1]) if len(parts) > 1 else -1
        except ValueError:
            raise TreeError(n, f"parent index {parts[1]!r} is not an integer") from None
        names.append(parts[0])
        parents.append(parent)
    check_parents(parents)
    return names, parents


def check_parents(parents: Sequence[int]) -> None:
    """TreeError unless the tree has a root first and every parent before its children."""
    if not parents:
        raise TreeError(None, "no classes")
    if parents[0] != -1:
        raise TreeError(1, "the first class must be a root (parent -1)")
    for i, p in enumerate(parents):
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not -1 <= p < i:
            raise TreeError(i + 1, f"parent {p!r} must be -1 or the index of an earlier class")


class WordTree:
    """A checked tree with darknet's group structure (numpy int arrays):

    ``parent[i]``, ``group[i]`` (its group), ``group_offset[g]``, ``group_size[g]``,
    ``child[i]`` (the group of its children, -1 for a leaf), ``leaf[i]``."""

    def __init__(self, names: Sequence[str], parents: Sequence[int]):
        if len(names) != len(parents):
            raise TreeError(None, f"{len(names)} names for {len(parents)} parents")
        check_parents(parents)
        self.names = list(names)
        self.parent = np.asarray(parents, np.int64)
        n = len(parents)
        starts = [0] + [i for i in range(1, n) if parents[i] != parents[i - 1]]
        self.group_offset = np.asarray(starts, np.int64)
        self.group_size = np.diff(np.append(self.group_offset, n))
        self.group = np.repeat(np.arange(len(starts)), self.group_size)
        self.child = np.full(n, -1, np.int64)
        for g, start in enumerate(starts):       # the last run with a parent wins (darknet)
            if parents[start] >= 0:
                self.child[parents[start]] = g
        self.leaf = self.child < 0
        self.leaf[np.unique(self.parent[self.parent >= 0])] = False
        depth = np.zeros(n, np.int64)
        for i in range(n):
            if parents[i] >= 0:
                depth[i] = depth[parents[i]] + 1
        # classes by depth below the roots, for the level-by-level product of probabilities
        self.levels = [np.flatnonzero(depth == d) for d in range(1, int(depth.max()) + 1)]

    @property
    def size(self) -> int:
        return len(self.parent)

    @property
    def groups(self) -> int:
        return len(self.group_offset)

    def parents(self) -> List[int]:
        return [int(p) for p in self.parent]

    def path(self, c: int) -> List[int]:
        """Class ``c`` and its ancestors, ``c`` first."""
        out = []
        while c >= 0:
            out.append(int(c))
            c = int(self.parent[c])
        return out

    def __eq__(self, other) -> bool:
        return isinstance(other, WordTree) and self.names == other.names \
            and np.array_equal(self.parent, other.parent)

    def __repr__(self) -> str:
        return f"WordTree({self.size} classes, {self.groups} groups)"
