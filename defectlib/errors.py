"""Exceptions that carry a message meant for a person, not a traceback.

The command line catches :class:`DefectlibError` and prints its message alone, with a
non-zero exit status.
"""


class DefectlibError(Exception):
    """Base class: the message says what is wrong, where, and what to do."""


class DataError(DefectlibError):
    """Missing, malformed or corrupt data (the message names the file or folder)."""


class ConfigError(DefectlibError, ValueError):
    """An unknown parameter name, a wrong type, or an unknown profile."""


class DownloadError(DefectlibError):
    """A download that failed or whose checksum did not match."""


class UnavailableError(DefectlibError, RuntimeError):
    """A requested feature that cannot work on this machine (the message says what is missing)."""
