"""Error types that tfprune users see.

Every error names the problem and the fix. They subclass ``ValueError`` (bad arguments or
unsupported models) so that ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class TfpruneError(ValueError):
    """Base class of every error raised deliberately by tfprune."""


class UnsupportedModelError(TfpruneError):
    """The model cannot be analysed (subclassed, unbuilt, or nothing in it can be pruned)."""


class InvalidArgumentError(TfpruneError):
    """An argument is out of range or of the wrong kind; the message names the argument."""


class IncompatiblePlanError(TfpruneError):
    """A saved pruning plan or checkpoint does not fit the model it is applied to."""


class DatasetNotFoundError(TfpruneError, FileNotFoundError):
    """A dataset path is missing; the message names the files that were expected."""


class ConfigError(TfpruneError):
    """A configuration file or override is invalid; the message names the field."""


class NothingPrunedWarning(UserWarning):
    """A pruning step ended without removing anything: masks never set, or all ones."""
