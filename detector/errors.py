"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""
from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, option, config, source), not a bug.

    The message must be one line that names the offending file/option and says what was
    expected. ``detector.cli`` prints ``error: <message>`` on stderr and exits with code 2.
    """

    exit_code = 2


_NO_VALUE = object()


class ParamError(UserError):
    """A bad value of a named parameter of the library (``img_size``, ``conf``, ``weights``).

    The library speaks of its own parameters: ``str(e)`` is ``"img_size=33: must be a
    multiple of 32"``. The command line knows which flag sets each parameter and shows
    ``"--img-size 33: must be a multiple of 32"`` instead (``render``)."""

    def __init__(self, param: str, message: str, value=_NO_VALUE):
        self.param, self.message, self.value = param, message, value
        super().__init__(self.render(param, "="))

    def render(self, name: str, sep: str = " ") -> str:
        """The message with ``name`` (a flag) for the parameter."""
        if self.value is _NO_VALUE:
            return f"{name}: {self.message}"
        value = self.value if isinstance(self.value, str) or sep == " " else repr(self.value)
        return f"{name}{sep}{value}: {self.message}"


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
