"""Error types that tfprune users see, all of them in this one module.

Every error names the problem and the fix. They subclass ``ValueError`` (bad arguments or
unsupported models) so that ordinary ``except ValueError`` code keeps working. The command-line
tools print any :class:`TfpruneError` as one line; any other exception keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def did_you_mean(key: str, known: Iterable[str], n: int = 1) -> str:
    """`` (did you mean 'x'?)`` naming the ``n`` closest of ``known`` to ``key``, or ``""``.

    What every "unknown name" message appends, e.g. ``f"unknown method {name!r}{hint}"``.
    """
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=n, cutoff=0.6)
    if not close:
        return ""
    names = [repr(c) for c in close]
    text = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f" (did you mean {text}?)"


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


class RecipeValueError(ConfigError):
    """A recipe field has a bad value: ``field``, ``requirement`` and ``value`` say which and why.

    The message calls the field ``name`` (``recipe.<field>`` unless the recipe was read from
    somewhere else: a config section or a tool's flag).
    """

    def __init__(self, field: str, requirement: str, value: Any, name: str = "") -> None:
        self.field, self.requirement, self.value = field, requirement, value
        self.name = name or f"recipe.{field}"
        super().__init__(f"{self.name} must be {requirement}, got {value!r}")

    def __reduce__(self) -> tuple:
        return RecipeValueError, (self.field, self.requirement, self.value, self.name)

    def renamed(self, name: str) -> RecipeValueError:
        """The same error, its field called ``name``."""
        return RecipeValueError(self.field, self.requirement, self.value, name)


class NoFinishedRunsError(TfpruneError, FileNotFoundError):
    """A results folder has no finished run to report; the message says how to make them."""


class ExportError(TfpruneError):
    """Exporting a model failed; nothing was left at the target path."""


class ExportDirectoryNotEmptyError(ExportError):
    """The export folder is not empty: others' files, or a tfprune export without ``overwrite``."""


class ExportMismatchError(ExportError):
    """The reloaded SavedModel computes something different from the Keras model."""


class VersionExistsError(TfpruneError):
    """The requested TF Serving version folder already exists."""


class RuntimeMismatchError(TfpruneError):
    """A converted model (TFLite/ONNX) computes something different from the SavedModel."""


class FoldError(TfpruneError):
    """The optimised model does not compute what the original model computes."""


class RunFailedError(TfpruneError, RuntimeError):
    """One or more runs raised (with ``runner.continue_on_error``); their ``error.json`` say why.

    The message is one line: how many runs failed, each distinct cause with the runs it
    stopped, where their logs are, and that a rerun retries only them.

    Attributes:
      failed: ``{run_id: "ExceptionType: message"}``.
      total: Runs this process tried (failed or not), or None when unknown.
    """

    def __init__(
        self,
        failed: Mapping[str, str],
        output_dir: str | Path,
        total: int | None = None,
        labels: Mapping[str, str] | None = None,
    ):
        self.failed = dict(failed)
        self.total = total
        by_cause: dict[str, list[str]] = {}
        for run_id, cause in self.failed.items():
            label = (labels or {}).get(run_id)
            by_cause.setdefault(cause, []).append(f"{run_id} ({label})" if label else run_id)
        causes = "; ".join(
            f"{', '.join(runs)}: {' '.join(cause.split())}" for cause, runs in by_cause.items()
        )
        of = f" of {total}" if total is not None else ""
        super().__init__(
            f"{len(self.failed)}{of} run(s) failed: {causes} (logs: "
            f"{Path(output_dir) / 'runs'}/<run id>/error.json; rerunning the same command "
            "retries only the unfinished runs)"
        )


class NothingPrunedWarning(UserWarning):
    """A pruning step ended without removing anything: masks never set, or all ones."""
