"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, option, config, source), not a bug.

    The message must be one line that names the offending file/option and says what was
    expected. ``detector.cli`` prints ``error: <message>`` on stderr and exits with code 2.
    """

    exit_code = 2


class ConfigError(UserError):
    """A YAML config (model spec or dataset) that does not validate."""

    def __init__(self, path, key, message):
        where = str(path) if path else "<config>"
        if key:
            where += ": " + str(key)
        super().__init__(where + ": " + message)
        self.path, self.key = path, key


class FileWriteError(UserError, OSError):
    """Writing an output file failed (disk full, file size limit, permissions, a parent that is
    not a directory). A UserError for the CLI (one line, exit code 2), and still an OSError
    (``errno``, ``strerror``) for callers that tolerate failed writes, such as caches."""

    def __init__(self, path, err: OSError, message: str):
        OSError.__init__(self, err.errno, err.strerror)
        self.path, self.message = path, message

    def __str__(self) -> str:
        return self.message
