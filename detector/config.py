"""YAML configs (model specs, dataset files) read and validated with clear errors.

Every error names the file, the key (dotted path, e.g. ``layers[3].filters``) and what is
allowed, e.g. ``voc.yaml: split 'train': expected a list of DIR/LIST strings``.
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional

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
        raise ConfigError(path, None, f"expected a mapping at the top level, got {_kind(data)}")
    return data


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


class Section:
    """Typed access to one mapping of a config, with errors that name file and key."""

    def __init__(self, data: dict, path: Optional[str], prefix: str = ""):
        if not isinstance(data, dict):
            raise ConfigError(path, prefix or None, f"expected a mapping, got {_kind(data)}")
        self.data, self.path, self.prefix = data, path, prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: Optional[str], message: str) -> ConfigError:
        return ConfigError(self.path, self.key(name) if name else (self.prefix or None), message)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for k in self.data:
            if k not in allowed:
                raise self.error(str(k), "unknown key; allowed keys: " + ", ".join(allowed))

    def _get(self, name, default):
        if name in self.data and self.data[name] is not None:
            return self.data[name]
        if default is REQUIRED:
            raise self.error(name, "missing")
        return default

    def int(self, name, default=REQUIRED, lo=None, hi=None, choices=None) -> int:
        v = self._get(name, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(name, f"expected an integer, got {_kind(v)} {v!r}")
        return self._range(name, v, lo, hi, choices)

    def float(self, name, default=REQUIRED, lo=None, hi=None) -> float:
        v = self._get(name, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.error(name, f"expected a number, got {_kind(v)} {v!r}")
        if v != v:
            raise self.error(name, "expected a number, got NaN")
        return float(self._range(name, v, lo, hi, None))

    def bool(self, name, default=REQUIRED) -> bool:
        v = self._get(name, default)
        if not isinstance(v, bool):
            raise self.error(name, f"expected true or false, got {_kind(v)} {v!r}")
        return v

    def str(self, name, default=REQUIRED, choices=None) -> str:
        v = self._get(name, default)
        if not isinstance(v, str):
            raise self.error(name, f"expected a string, got {_kind(v)} {v!r}")
        if choices is not None and v not in choices:
            raise self.error(name, f"{v!r} is not allowed; allowed values: {', '.join(choices)}")
        return v

    def list(self, name, default=REQUIRED) -> list:
        v = self._get(name, default)
        if v is None and default is None:
            return None
        if not isinstance(v, list):
            raise self.error(name, f"expected a list, got {_kind(v)}")
        return v

    def section(self, name, default=REQUIRED) -> "Section":
        v = self._get(name, default)
        return Section(v, self.path, self.key(name))

    def _range(self, name, v, lo, hi, choices):
        if choices is not None and v not in choices:
            raise self.error(name, f"{v!r} is not allowed; allowed values: "
                             + ", ".join(str(c) for c in choices))
        if lo is not None and v < lo:
            raise self.error(name, f"{v!r} is too small; allowed: >= {lo}")
        if hi is not None and v > hi:
            raise self.error(name, f"{v!r} is too large; allowed: <= {hi}")
        return v
