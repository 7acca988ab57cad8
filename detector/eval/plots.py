"""Precision-recall curves as PNG files, one per class.

matplotlib is optional (the ``train``/``dev`` extras): it is imported only here, through its
object-oriented API with the Agg canvas (no pyplot, no global backend switch, no display).
Without matplotlib one warning is logged and no plot is written.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence

import numpy as np

log = logging.getLogger("detector.eval")
_warned = False


def _figure():
    global _warned
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        if not _warned:
            log.warning("matplotlib is not installed: precision-recall plots are skipped "
                        "(pip install matplotlib)")
            _warned = True
        return None
    fig = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _pr_points(r):
    """The precision envelope as plotted by the all-point AP (step curve)."""
    rec = np.concatenate([[0.0], r.recall, [r.recall[-1] if len(r.recall) else 0.0]])
    prec = np.concatenate([[1.0], r.precision, [0.0]])
    env = np.maximum.accumulate(prec[::-1])[::-1]
    return rec, prec, env


def plot_pr_curves(classes: Sequence, names: Sequence[str], out_dir: str,
                   title: Optional[str] = None) -> List[str]:
    """Write ``pr_<class>.png`` for every class with ground truth and ``pr_all.png``
    (all classes on one plot); returns the paths written (empty without matplotlib).
    ``classes``: :class:`detector.eval.voc_ap.ClassEval` per class, in ``names`` order."""
    if _figure() is None:
        return []
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    fig_all = _figure()
    ax_all = fig_all.add_subplot(1, 1, 1)
    for name, r in zip(names, classes):
        if r.ap is None:
            continue
        rec, prec, env = _pr_points(r)
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        ax.plot(rec, prec, color="0.7", lw=1, label="precision")
        ax.step(rec, env, where="post", color="C0", lw=2,
                label=f"envelope: AP {r.ap:.3f} (VOC07 {r.ap07:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"{title + ': ' if title else ''}{name} ({r.npos} objects)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        p = os.path.join(out_dir, f"pr_{name}.png")
        fig.savefig(p)
        paths.append(p)
        ax_all.step(rec, env, where="post", lw=1.5, label=f"{name} {r.ap:.2f}")
    ax_all.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=title or "precision-recall (all-point AP)")
    ax_all.grid(True, alpha=0.3)
    if paths:
        ax_all.legend(loc="lower left", fontsize="small", ncol=2)
    p = os.path.join(out_dir, "pr_all.png")
    fig_all.savefig(p)
    paths.append(p)
    return paths
