"""Atomic file writes: a reader (or a crash) never sees a half-written file.

A write that fails (full disk, file size limit, permissions) leaves the previous file as it
was and raises :class:`~detector.errors.FileWriteError`: one line for the CLI, and an
``OSError`` for callers that can live without the file."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from typing import Optional

from ..errors import FileWriteError, UserError

_OS_ERROR_TEXT = re.compile(r"\(os error (\d+)\)")     # Rust's io::Error (safetensors)


def os_error_of(exc: BaseException) -> Optional[OSError]:
    """The OSError behind ``exc``: itself, one it was raised from or during (torch wraps a
    failed ``write`` in a RuntimeError), or one a Rust library names as ``(os error N)``."""
    seen = set()
    e: Optional[BaseException] = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        m = _OS_ERROR_TEXT.search(str(e))
        if m:
            n = int(m.group(1))
            return OSError(n, os.strerror(n))
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _write_error(path: str, err: OSError) -> FileWriteError:
    kept = "; the previous file is kept" if os.path.isfile(path) else ""
    return FileWriteError(path, err, f"cannot write {path}: {err.strerror or err}{kept}")


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over
    ``path``. On any error the temporary file is removed and ``path`` is left untouched;
    an OSError of the write (also one wrapped by a serialiser) becomes FileWriteError."""
    path = os.path.abspath(path)
    d = os.path.dirname(path)
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=d)
        os.close(fd)
    except OSError as exc:
        if os.path.exists(d) and not os.path.isdir(d):
            err = NotADirectoryError(errno.ENOTDIR, f"{d} is not a directory")
        else:
            err = OSError(exc.errno, f"cannot create a file in {d}: {exc.strerror or exc}")
        raise _write_error(path, err) from None
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, Exception) and not isinstance(e, UserError):
            err = os_error_of(e)
            if err is not None:
                raise _write_error(path, err) from None
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_json(path: str, value) -> None:
    """``value`` as indented JSON text (one trailing newline), written atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2) + "\n").encode())
