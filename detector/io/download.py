"""Downloading a file into the cache: written as ``NAME.part`` and renamed only once verified,
resumed with an HTTP Range request where a transfer was cut, with a progress bar.

A file in the cache is either complete and verified (size, hash, and any check of its
contents the caller gives) or absent: a download that fails verification is removed. A
``.part`` file is kept when the network fails, so that the next try resumes it. A mirror
(``$FASTDSC_YOLO_MIRROR``: a base URL) replaces the published URLs, for sites without
internet access. Uses urllib only (proxies from the usual environment variables).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Tuple

from tqdm import tqdm

from ..errors import FileWriteError, UserError
from .atomic import atomic_write_bytes

MIRROR_ENV = "FASTDSC_YOLO_MIRROR"
CHUNK = 1 << 20
ATTEMPTS = 5                  # tries in a row that get no byte, before giving up on a URL
TIMEOUT_S = 30.0
USER_AGENT = "fastdsc-yolo"


class DownloadError(UserError):
    """A download that could not be made or did not verify (one line, exit code 2)."""


@dataclass(frozen=True)
class Expected:
    """What the file must be: its size in bytes, its SHA-256 or SHA-512 (hex), and
    ``check(path)``, which returns what is wrong with the file's contents or None."""
    size: Optional[int] = None
    sha256: Optional[str] = None
    sha512: Optional[str] = None
    check: Optional[Callable[[str], Optional[str]]] = None


def source_urls(filename: str, urls: Sequence[str]) -> Tuple[str, ...]:
    """Where to get ``filename``: the mirror's ``BASE/filename`` when ``$FASTDSC_YOLO_MIRROR``
    is set (nothing else is tried then), else the published ``urls``."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return (mirror.rstrip("/") + "/" + filename,)
    return tuple(urls)


def ensure_file(urls: Sequence[str], dest: str, expected: Expected, progress: bool = True) -> str:
    """``dest``, verified: downloaded from the first of ``urls`` that serves it when absent.
    A file already there (downloaded before, or put there by hand) is verified once; what
    was verified is recorded beside it (``dest.verified``), so later calls only compare the
    file's size and time."""
    if not os.path.isfile(dest):
        return download(urls, dest, expected, progress)
    if _recorded(dest) is None:
        problem = verify(dest, expected)
        if problem:
            raise DownloadError(f"{dest}: {problem}; delete it to download it again, or "
                                f"replace it with the published file ({urls[0]})")
        _record(dest)
    return dest


def download(urls: Sequence[str], dest: str, expected: Expected, progress: bool = True) -> str:
    """Download ``dest`` from the first of ``urls`` that serves it, resuming ``dest.part``;
    verify it and rename it into place. Raises :class:`DownloadError` (one line naming the
    URL and where to put the file by hand) when no URL serves it."""
    if not urls:
        raise ValueError("no URL to download from")
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    with file_lock(dest + ".lock"):
        if os.path.isfile(dest):                  # another process finished it meanwhile
            return ensure_file(urls, dest, expected, progress)
        reason = ""
        for url in urls:
            try:
                _download_from(url, dest, expected, progress)
                return dest
            except _Unreachable as e:
                reason = str(e)
        name = os.path.basename(dest)
        raise DownloadError(f"cannot download {name} from {urls[0]} ({reason}); download it "
                            f"by hand and put it at {dest}, or set {MIRROR_ENV} to a server "
                            f"that has {name}")


class _Unreachable(Exception):
    """This URL does not serve the file now (network down, refused, HTTP error)."""


def _download_from(url: str, dest: str, expected: Expected, progress: bool) -> None:
    part = dest + ".part"
    resumed = os.path.isfile(part) and os.path.getsize(part) > 0
    with _Progress(url, dest, progress) as bar:
        _transfer(url, part, expected.size, bar)
    problem = verify(part, expected)
    if problem and resumed:               # the part may have come from another file: anew
        _remove(part)
        return _download_from(url, dest, expected, progress)
    if problem:
        _remove(part)
        raise DownloadError(f"{url}: {problem}; nothing was kept in the cache ({dest})")
    os.replace(part, dest)
    _record(dest)


class _Progress:
    """The progress bar of a download, shown from the first answer of the server (a URL that
    cannot be reached prints nothing but the error)."""

    def __init__(self, url: str, dest: str, enabled: bool):
        self.url, self.dest, self.enabled = url, dest, enabled
        self.bar: Optional[tqdm] = None

    def start(self, total: Optional[int], have: int) -> None:
        """A response arrived: the file has ``total`` bytes (None: unknown), ``have`` of
        them are already on disk."""
        if self.bar is None:
            if self.enabled:
                print(f"downloading {self.url} -> {self.dest}", file=sys.stderr)
            self.bar = tqdm(total=total, initial=have, unit="B", unit_scale=True,
                            unit_divisor=1024, desc=os.path.basename(self.dest),
                            file=sys.stderr, disable=not self.enabled, mininterval=0.5)
        else:
            self.bar.reset(total=total)
            self.bar.update(have)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _transfer(url: str, part: str, size: Optional[int], bar: _Progress) -> None:
    """Fill ``part`` with the whole of ``url``, resuming it where it ends. A transfer that is
    cut is resumed at once; where it then gets nothing, it is tried again after a pause, up to
    ``ATTEMPTS`` tries in a row. A URL that cannot be reached before any byte came fails at
    once (offline, refused, HTTP error)."""
    idle, progressed = 0, False
    while True:
        have = os.path.getsize(part) if os.path.isfile(part) else 0
        if size is not None and have > size:
            _remove(part)
            have = 0
        try:
            got, complete = _request(url, part, have, size, bar)
        except _Unreachable:
            if not progressed or idle + 1 >= ATTEMPTS:
                raise
            got, complete = 0, False
        if complete:
            return
        progressed = progressed or got > 0
        idle = 0 if got else idle + 1
        if idle >= ATTEMPTS:
            raise _Unreachable(f"the transfer stopped after {have + got} bytes, {ATTEMPTS} "
                               "times in a row")
        time.sleep(0 if got else min(0.5 * 2 ** idle, 5.0))


def _request(url: str, part: str, have: int, size: Optional[int], bar: _Progress
             ) -> Tuple[int, bool]:
    """One HTTP request for ``url`` from byte ``have``: (bytes appended, whether the file is
    now complete)."""
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have and (size is None or have == size):
            return 0, True                        # the part already holds the whole file
        if e.code == 416:
            _remove(part)
            return 0, False
        raise _Unreachable(f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Unreachable(_why(e)) from None
    with resp:
        start, length = _range_of(resp, have)
        total = None if length is None else start + length
        if size is not None and total is not None and total != size:
            _remove(part)
            raise DownloadError(f"{url} serves {total} bytes, but {os.path.basename(part)[:-5]}"
                                f" is {size} bytes; nothing was downloaded")
        bar.start(size or total, start)
        return _copy(resp, part, start, length, bar)


def _range_of(resp, have: int) -> Tuple[int, Optional[int]]:
    """(first byte the response holds, bytes it holds or None where unknown)."""
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if resp.status == 206:
        rng = resp.headers.get("Content-Range", "")
        try:
            first = int(rng.split()[1].split("-")[0])
        except (IndexError, ValueError):
            first = -1
        if first == have:
            return have, length
        raise _Unreachable(f"the server answered a range request with {rng!r}")
    return 0, length                              # 200: the whole file (Range ignored)


def _copy(resp, part: str, start: int, length: Optional[int], bar: _Progress
          ) -> Tuple[int, bool]:
    got = 0
    try:
        with open(part, "ab" if start else "wb") as f:
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException, socket.timeout):
                    break                         # cut: the caller resumes
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    except OSError as e:                          # the disk, not the network
        raise FileWriteError(part, e, f"cannot write {part}: {e.strerror or e}") from None
    complete = got == length if length is not None else got > 0
    return got, complete


def _why(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or e
    if isinstance(reason, socket.timeout):
        return "timed out"
    text = getattr(reason, "strerror", None) or str(reason)
    return " ".join(str(text).split()) or type(e).__name__


def verify(path: str, expected: Expected) -> Optional[str]:
    """What is wrong with the file at ``path`` (size, hash, contents), or None."""
    size = os.path.getsize(path)
    if expected.size is not None and size != expected.size:
        return f"{size} bytes, expected {expected.size}"
    for algo in ("sha256", "sha512"):
        want = getattr(expected, algo)
        if want:
            have = file_digest(path, algo)
            if have != want.lower():
                return f"{algo} {have[:16]}... does not match the published {want[:16]}..."
    if expected.check is not None:
        return expected.check(path)
    return None


def file_digest(path: str, algo: str = "sha256") -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _record(path: str) -> None:
    st = os.stat(path)
    blob = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_digest(path)}
    atomic_write_bytes(path + ".verified", json.dumps(blob).encode())


def _recorded(path: str) -> Optional[dict]:
    """The verification record of ``path`` if the file is unchanged since, else None."""
    try:
        with open(path + ".verified", encoding="utf-8") as f:
            blob = json.load(f)
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if blob.get("size") != st.st_size or blob.get("mtime_ns") != st.st_mtime_ns:
        return None
    return blob


def recorded_sha256(path: str) -> Optional[str]:
    """The SHA-256 recorded when ``path`` was verified (None if it changed since)."""
    blob = _recorded(path)
    return None if blob is None else blob.get("sha256")


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if need be): one writer of a cache entry at a
    time, across processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
