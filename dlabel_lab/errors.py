"""The package's typed errors.

Every exception that dlabel_lab raises on purpose derives from
:class:`DLabelError`. Media problems derive from :class:`MediaError`, store
problems from :class:`StoreError`, model problems from :class:`ModelError`.
Each message says what went wrong and what to do about it.

Example:
    >>> import dlabel_lab as dl
    >>> issubclass(dl.TruncatedMedia, dl.DLabelError)
    True
"""

from __future__ import annotations


class DLabelError(Exception):
    """Base class of every error raised by dlabel_lab."""


class ConfigError(DLabelError, ValueError):
    """An argument or option has a value the package cannot use."""


class UnknownLabel(DLabelError, ValueError):
    """A label is not one of the model's classes."""


# --- media -----------------------------------------------------------------
class MediaError(DLabelError):
    """A clip could not be read."""


class MissingMedia(MediaError, FileNotFoundError):
    """The path does not exist or is not a regular file."""


class UnsupportedMedia(MediaError):
    """The input is not a video OpenCV can decode (an image, a PDF, text, ...)."""


class EmptyMedia(MediaError):
    """The input is a video container with no decodable frames."""


class TruncatedMedia(MediaError):
    """Fewer frames decode than the container declares."""


class MediaTooLarge(MediaError):
    """Decoding would exceed the memory budget of the clip spec."""


class UnsafeSource(MediaError):
    """A URL, stream scheme or playlist that OpenCV would follow elsewhere."""


# --- store -----------------------------------------------------------------
class StoreError(DLabelError):
    """The payload store cannot do what was asked."""


class StoreLocked(StoreError):
    """Another process holds the store open for writing."""


class StoreCorrupt(StoreError):
    """The database file or its write-ahead log is damaged."""


class SchemaVersionError(StoreError):
    """The store was written by a newer (unsupported) schema version."""


class DuplicateScoringId(StoreError):
    """A different payload was logged under a scoring id that already exists."""


class UnknownRecord(StoreError, KeyError):
    """A scoring id, model version or dataset version is not in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


# --- models ----------------------------------------------------------------
class ModelError(DLabelError):
    """A model could not be built, loaded or run."""


class CheckpointError(ModelError):
    """A checkpoint is missing, unsafe or does not match the model."""


class WeightsUnavailable(ModelError):
    """Pretrained weights were asked for but cannot be had offline."""


# --- the scoring service ---------------------------------------------------------
class ServiceError(DLabelError):
    """The scoring service cannot be reached, or answered with an error of no more specific type."""


class Unauthorized(ServiceError):
    """The scoring service refused the request: the bearer token is missing or wrong."""
