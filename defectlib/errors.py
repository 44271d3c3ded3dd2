"""Exceptions that carry a message meant for a person, not a traceback.

The command line catches :class:`DefectlibError` and prints its message alone, with exit
status 2. In a notebook (IPython, Jupyter, papermill) the cell that raises one shows the
message alone too, without the traceback (:meth:`DefectlibError._render_traceback_`).
"""


class DefectlibError(Exception):
    """Base class: the message says what is wrong, where, and what to do."""

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows for this error instead of a traceback: the message."""
        return [f"{type(self).__name__}: {line}" if i == 0 else line
                for i, line in enumerate(str(self).splitlines() or [""])]


class DataError(DefectlibError):
    """Missing, malformed or corrupt data (the message names the file or folder)."""


class ConfigError(DefectlibError, ValueError):
    """An unknown parameter name, a wrong type, an out-of-range value, or an unknown profile."""


class DownloadError(DefectlibError):
    """A download that failed or whose checksum did not match."""


class UnavailableError(DefectlibError, RuntimeError):
    """A requested feature that cannot work on this machine (the message says what is missing)."""
