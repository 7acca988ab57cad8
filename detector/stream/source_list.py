"""Several sources in one run: the list file (one SOURCE a line) and a name for each source.

A source's name is what ``{name}`` in an output path becomes (``out-{name}.mp4``), and what the
per-frame lines and the statistics call it: a file's or folder's stem (``clip`` for
``videos/clip.mp4``), ``camN`` for a camera index, ``videoN`` for ``/dev/videoN``, ``csiN``,
the last part of a stream URL's path (else its host), a GStreamer pipeline's first element.
Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``; repeated names get
``-2``, ``-3``, ... in order.
"""
from __future__ import annotations

import os
import re
import shlex
from typing import Dict, List, Sequence

from ..errors import UserError
from .sources import uri_scheme

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def read_source_list(path: str) -> List[str]:
    """The sources listed in ``path``: one a line; blank lines and lines starting with ``#``
    are skipped, surrounding spaces dropped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the source list: "
                        f"{getattr(e, 'strerror', None) or e}") from None
    sources = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not sources:
        raise UserError(f"{path}: no sources in the list (one SOURCE a line)")
    return sources


def _raw_name(text: str) -> str:
    if text.startswith("gst:") and not text.startswith("gst://"):
        try:
            tokens = shlex.split(text[4:])
        except ValueError:
            tokens = []
        return tokens[0] if tokens else "gst"
    if text.isdigit():
        return f"cam{text}"
    scheme = uri_scheme(text)
    if scheme is None or scheme == "file":
        path = text[len("file://"):] if scheme else text
        path = path.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0] \
            if any(c in path for c in "*?[") else path
        base = os.path.basename(path.rstrip("/" + os.sep)) or \
            os.path.basename(os.path.dirname(path.rstrip("/" + os.sep)))
        return os.path.splitext(base)[0] if os.path.splitext(base)[1] else base
    rest = text[len(scheme) + 3:]
    if scheme in ("csi", "v4l2"):
        return f"{'csi' if scheme == 'csi' else 'video'}{rest.rsplit('video', 1)[-1]}"
    host, _, path = rest.split("?", 1)[0].partition("/")
    last = [p for p in path.split("/") if p]
    return os.path.splitext(last[-1])[0] if last else host.rsplit("@", 1)[-1].split(":")[0]


def source_name(text: str) -> str:
    """The name of one SOURCE text (see the module docstring), before making names unique."""
    name = _UNSAFE.sub("_", _raw_name(text)).strip("._") or "source"
    return name


def source_names(texts: Sequence[str]) -> List[str]:
    """A unique name for each SOURCE text, in order."""
    names = [source_name(t) for t in texts]
    seen: Dict[str, int] = {}
    taken = set(names)
    out = []
    for name in names:
        k = seen.get(name, 0) + 1
        seen[name] = k
        unique = name if k == 1 else f"{name}-{k}"
        while k > 1 and unique in taken:
            k += 1
            unique = f"{name}-{k}"
        seen[name] = k
        taken.add(unique)
        out.append(unique)
    return out
