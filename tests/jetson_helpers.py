"""Helpers for the Jetson deployment tests: a small Dockerfile reader and .dockerignore matcher
(enough for Dockerfile.l4t; no Docker engine needed)."""
from __future__ import annotations

import json
import os
import re
import shlex
from typing import List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(REPO, "Dockerfile.l4t")


def dockerfile_instructions(path: str = DOCKERFILE) -> List[Tuple[str, str]]:
    """(KEYWORD, arguments) for every instruction, continuation lines joined and comment
    lines (also those inside a continuation) dropped, as Docker reads them."""
    out: List[Tuple[str, str]] = []
    buf = ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if not buf and not line.strip():
                continue
            if line.endswith("\\"):
                buf += line[:-1] + " "
                continue
            buf += line
            keyword, _, args = buf.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            buf = ""
    if buf.strip():
        keyword, _, args = buf.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def exec_form(args: str) -> Optional[List[str]]:
    """The JSON (exec) form of CMD/ENTRYPOINT/COPY arguments, or None for shell form."""
    try:
        value = json.loads(args)
    except ValueError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def copy_sources(path: str = DOCKERFILE) -> List[str]:
    """Sources of every COPY/ADD from the build context (not --from another stage)."""
    sources: List[str] = []
    for keyword, args in dockerfile_instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        parts = exec_form(args) or shlex.split(args)
        flags = [p for p in parts if p.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [p for p in parts if not p.startswith("--")]
        assert len(paths) >= 2, f"{keyword} {args}: needs a source and a destination"
        sources.extend(paths[:-1])
    return sources


def _pattern_regex(pattern: str) -> "re.Pattern[str]":
    """Go filepath.Match plus ``**``, as .dockerignore uses them."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(path: str) -> List[Tuple[bool, "re.Pattern[str]"]]:
    rules = []
    if not os.path.isfile(path):
        return rules
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pat = os.path.normpath(line[1:] if negate else line).lstrip("/")
            rules.append((negate, _pattern_regex(pat)))
    return rules


def ignored(rel: str, rules) -> bool:
    """True when the context path ``rel`` is left out of the build context (the last
    matching rule wins; a rule matching a parent directory applies to its files)."""
    rel = os.path.normpath(rel)
    parts = rel.split(os.sep)
    prefixes = [os.sep.join(parts[:i]) for i in range(1, len(parts) + 1)]
    result = False
    for negate, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not negate
    return result
