"""Config files read and validated with clear errors: YAML files (model specs, dataset files)
and :class:`Section`, the typed access to one mapping that the spec reader and the darknet cfg
reader share.

Every error names the file, the key (dotted path, e.g. ``layers[3].filters``, or the line
and section of a cfg) and what is allowed, e.g. ``voc.yaml: split 'train': expected a list of
DIR/LIST strings``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Optional

import yaml

from .errors import ConfigError, UserError

REQUIRED = object()


def load_yaml(path: str) -> dict:
    """Read a YAML mapping from ``path``; any problem is a ``UserError`` naming the file."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            raw = f.read(16 * 1024 * 1024 + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if len(raw) > 16 * 1024 * 1024:
        raise ConfigError(path, None, "file larger than 16 MiB, not a config")
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not UTF-8 text") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(path, None, f"invalid YAML: {where}{problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"expected a mapping at the top level, got {kind_of(data)}")
    return data


def kind_of(v: Any) -> str:
    """How an error message names the type of a config value ("an integer", "a list")."""
    if v is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


class Section:
    """Typed access to one mapping of a config, with errors that name the file and the key.

    YAML mappings name a key by its dotted path (``layers[3].filters``). Text formats with
    named sections (darknet's ``.cfg``) pass ``lines``, the line of each key, and ``line``,
    the section's own: errors then say ``line 12 [convolutional] filters``, with ``prefix``
    the section's name. A default that breaks the range of a getter is an error too (a format
    whose default the reader cannot compute, such as darknet's reorg stride 1).
    """

    def __init__(self, data: dict, path: Optional[str], prefix: str = "",
                 lines: Optional[Dict[str, int]] = None, line: Optional[int] = None):
        if not isinstance(data, dict):
            raise ConfigError(path, prefix or None, f"expected a mapping, got {kind_of(data)}")
        self.data, self.path, self.prefix = data, path, prefix
        self.lines, self.line = lines, line

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def where(self, name: Optional[str]) -> Optional[str]:
        """How an error names ``name`` (None: the section itself)."""
        if self.lines is not None:
            line = self.lines.get(name, self.line) if name else self.line
            return f"line {line} [{self.prefix}]" + (f" {name}" if name else "")
        return self.key(name) if name else (self.prefix or None)

    def error(self, name: Optional[str], message: str) -> ConfigError:
        return ConfigError(self.path, self.where(name), message)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for k in self.data:
            if k not in allowed:
                raise self.error(str(k), "unknown key; allowed keys: " + ", ".join(allowed))

    def _get(self, name, default):
        if name in self.data and self.data[name] is not None:
            return self.data[name], True
        if default is REQUIRED:
            raise self.error(name, "missing")
        return default, False

    def int(self, name, default=REQUIRED, lo=None, hi=None, choices=None) -> int:
        v, given = self._get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(name, f"expected an integer, got {kind_of(v)} {v!r}")
        return self._range(name, v, lo, hi, choices, given)

    def float(self, name, default=REQUIRED, lo=None, hi=None) -> float:
        v, given = self._get(name, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(name, f"expected a number, got {kind_of(v)} {v!r}")
        if v != v:
            raise self.error(name, "expected a number, got NaN")
        return float(self._range(name, v, lo, hi, None, given))

    def bool(self, name, default=REQUIRED) -> bool:
        v, _ = self._get(name, default)
        if not isinstance(v, bool):
            raise self.error(name, f"expected true or false, got {kind_of(v)} {v!r}")
        return v

    def str(self, name, default=REQUIRED, choices=None) -> str:
        v, _ = self._get(name, default)
        if not isinstance(v, str):
            raise self.error(name, f"expected a string, got {kind_of(v)} {v!r}")
        if choices is not None and v not in choices:
            raise self.error(name, f"{v!r} is not allowed; allowed values: {', '.join(choices)}")
        return v

    def list(self, name, default=REQUIRED) -> list:
        v, _ = self._get(name, default)
        if v is None and default is None:
            return None
        if not isinstance(v, list):
            raise self.error(name, f"expected a list, got {kind_of(v)}")
        return v

    def section(self, name, default=REQUIRED) -> "Section":
        v, _ = self._get(name, default)
        return Section(v, self.path, self.key(name))

    def _range(self, name, v, lo, hi, choices, given=True):
        if choices is not None and v not in choices:
            raise self.error(name, f"{v!r} is not allowed; allowed values: "
                             + ", ".join(str(c) for c in choices))
        for bad, what, limit in ((lo is not None and v < lo, "small", f">= {lo}"),
                                 (hi is not None and v > hi, "large", f"<= {hi}")):
            if bad and not given:
                raise self.error(None, f"missing key '{name}': the default {v!r} is not "
                                       f"supported here; allowed: {limit}")
            if bad:
                raise self.error(name, f"{v!r} is too {what}; allowed: {limit}")
        return v
