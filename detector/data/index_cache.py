"""The index cache: what reading each item of a dataset split found (parsed labels, image size,
or why the item is unusable), kept between runs in the user cache.

One JSON file per split source (named by a hash of the source files), holding
``{key: [[stat of each file], record]}``. A record is reused only while every file it came
from has the same size and mtime; anything else is read again. An unreadable or foreign cache
file is rebuilt, never an error; a cache that cannot be written is skipped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..host import cache_dir as user_cache_dir
from ..io.atomic import atomic_write_bytes

log = logging.getLogger("detector.data")

CACHE_VERSION = 1
Item = Tuple[str, Tuple[str, ...]]          # (key, the files the record is read from)


def file_stat(path: str) -> Optional[List[int]]:
    """``[mtime_ns, size]`` of a file, None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_mtime_ns), int(st.st_size)]


def cache_file(kind: str, cache: Union[bool, str, None], sources: Sequence[str]
               ) -> Optional[str]:
    """The cache file of a split read from ``sources`` (list or label files): in the
    ``kind`` folder of the user cache (``cache`` True), in the folder ``cache``, or None
    (``cache`` False)."""
    if cache is False or cache is None:
        return None
    d = user_cache_dir(kind) if cache is True else os.fspath(cache)
    key = "\n".join(os.path.abspath(s) for s in sources)
    return os.path.join(d, hashlib.sha1(key.encode("utf-8")).hexdigest()[:20] + ".json")


def load_entries(path: Optional[str], fmt: str) -> dict:
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        if data.get("format") != fmt or data.get("version") != CACHE_VERSION:
            return {}
        entries = data["entries"]
        return entries if isinstance(entries, dict) else {}
    except Exception:  # an unreadable cache is rebuilt, never an error
        log.debug("ignoring unreadable cache %s", path)
        return {}


def save_entries(path: Optional[str], fmt: str, entries: dict) -> None:
    if not path or not _can_make(path):
        return
    blob = json.dumps({"format": fmt, "version": CACHE_VERSION, "entries": entries},
                      separators=(",", ":")).encode("utf-8")
    try:
        atomic_write_bytes(path, blob)
    except OSError as e:
        log.debug("cannot write cache %s: %s", path, e)


def cached_records(items: Sequence[Item], read: Callable[[Tuple[str, ...], list], dict],
                   path: Optional[str], fmt: str, workers: int = 4) -> Dict[str, dict]:
    """``{key: record}`` for every item: from the cache file ``path`` where the item's files
    are unchanged, else ``read(files, stats)`` (in ``workers`` threads when there are many),
    and the cache file rewritten when anything changed."""
    old = load_entries(path, fmt)
    new: Dict[str, list] = {}
    todo = []
    for key, files in items:
        st = [file_stat(p) for p in files]
        prev = old.get(key)
        if isinstance(prev, list) and len(prev) == 2 and prev[0] == st \
                and isinstance(prev[1], dict):
            new[key] = prev
        else:
            todo.append((key, files, st))
    if todo:
        def work(t):
            key, files, st = t
            return key, [st, read(files, st)]
        if workers > 1 and len(todo) > 32:
            with ThreadPoolExecutor(workers) as ex:
                new.update(ex.map(work, todo))
        else:
            new.update(map(work, todo))
    if path and (todo or len(old) != len(new)):
        save_entries(path, fmt, new)
    return {k: v[1] for k, v in new.items()}


def _can_make(path: str) -> bool:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return True
    except OSError:
        return False
