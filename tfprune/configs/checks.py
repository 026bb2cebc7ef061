"""Field checks shared by every config: dataset (and its files), model, ratio, schedule, seeds.

Each check raises :class:`~tfprune.errors.ConfigError` (or
:class:`~tfprune.errors.DatasetNotFoundError` for missing dataset files) with a message that
names the field, the bad value and the fix. They only look at names and paths; nothing is
trained or read beyond a directory listing.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from tfprune import selection
from tfprune.data import DATASET_NAMES, cifar, imagenet, mnist
from tfprune.data.bundle import missing_files_error, resolve_data_dir
from tfprune.errors import ConfigError, DatasetNotFoundError, InvalidArgumentError, did_you_mean
from tfprune.models import list_models
from tfprune.training.schedules import parse_schedule

__all__ = [
    "LR",
    "BatchSize",
    "Dataset",
    "EpochList",
    "EpochMap",
    "Epochs",
    "LRList",
    "Model",
    "Ratio",
    "Ratios",
    "Recipe",
    "Schedule",
    "ScheduleMap",
    "Seeds",
    "check_dataset",
    "check_dataset_files",
    "check_epochs",
    "check_fields",
    "field_check",
    "check_lr",
    "check_model",
    "check_ratio",
    "check_schedule",
    "check_seeds",
    "schedule_epochs",
]

_PIECEWISE_ITEM = re.compile(r"^\s*(-?\d+)\s*:\s*([-+0-9.eE]+)\s*$")
SCHEDULE_KINDS = ("ft", "fixed", "steps", "cosine", "halving", "lrw", "slr", "clr")


def check_dataset(name: Any, where: str = "dataset") -> str:
    """``name`` must be a dataset known to :func:`tfprune.data.load_dataset`."""
    if name not in DATASET_NAMES:
        raise ConfigError(
            f"{where}={name!r} is not a known dataset{did_you_mean(str(name), DATASET_NAMES)}; "
            f"use one of {', '.join(DATASET_NAMES)}"
        )
    return str(name)


def check_dataset_files(name: str, data_dir: str | os.PathLike[str] | None) -> None:
    """Check that the files of dataset ``name`` exist (without reading them).

    Uses the readers' own file lists and error messages: MNIST needs at least the two t10k IDX
    files, CIFAR the pickled batches, ImageNet TFRecord shards or class folders. ``digits`` is
    embedded and must not get a ``data_dir``.

    Raises:
      DatasetNotFoundError: the message names the folder and the expected files.
      ConfigError: ``data_dir`` was given for ``digits``.
    """
    check_dataset(name)
    if name == "digits":
        if data_dir is not None:
            raise ConfigError(
                "data_dir must be empty (null) for dataset 'digits': it is embedded in "
                f"scikit-learn, got data_dir={str(data_dir)!r}"
            )
        return
    folder = resolve_data_dir(name, data_dir)
    if name == "mnist":
        found = mnist.find_mnist_files(folder) if folder is not None and folder.is_dir() else None
        if found is None or not (found["test_images"] and found["test_labels"]):
            expected = [stem + "[.gz]" for stem in mnist.MNIST_FILES.values()]
            raise missing_files_error("MNIST", folder, expected, mnist.HOW_TO_GET)
        return
    if name in ("cifar10", "cifar100"):
        n = 10 if name == "cifar10" else 100
        sub, train, test = cifar.CIFAR_LAYOUT[n]
        ok = folder is not None and any(
            all((c / f).is_file() for f in train + test) for c in (folder, folder / sub)
        )
        if not ok:
            expected = [f"{sub}/{f}" for f in train + test]
            raise missing_files_error(
                f"CIFAR-{n}",
                folder,
                expected,
                f"Download and extract {cifar.CIFAR_URLS[n]} into that folder (data_dir may "
                f"also be the {sub} folder itself).",
            )
        return
    if name == "imagenet":
        expected = [
            "train-00000-of-NNNNN ... (TFRecord shards)",
            "validation-00000-of-NNNNN ... (TFRecord shards)",
            "or train/<wnid>/*.JPEG and val/<wnid>/*.JPEG",
        ]
        root = Path(folder) if folder is not None else None
        ok = root is not None and root.is_dir()
        if ok:
            shards = any(root.glob("train-*")) and any(root.glob("validation-*"))
            folders = (root / "train").is_dir() and any(
                (root / v).is_dir() for v in ("val", "validation")
            )
            ok = shards or folders
        if not ok:
            raise missing_files_error("ImageNet", root, expected, imagenet.HOW_TO_GET)
        return
    raise DatasetNotFoundError(f"no file check for dataset {name!r}")  # pragma: no cover


def check_model(name: Any, where: str = "model") -> str:
    """``name`` must be in :func:`tfprune.models.list_models` (or ``keras:<Application>``)."""
    known = list_models(include_applications=True)
    if name not in known:
        zoo = list_models(include_applications=False)
        raise ConfigError(
            f"{where}={name!r} is not a known model{did_you_mean(str(name), known)}; "
            f"use one of {', '.join(zoo)} or keras:<Application> (e.g. keras:ResNet50)"
        )
    return str(name)


def check_ratio(value: Any, where: str = "ratio") -> Any:
    """A pruning ratio in [0, 1), a ``{layer regex: ratio}`` mapping, or a list of those.

    Each ratio is checked by :func:`tfprune.selection.check_ratio`, as the library checks it;
    a mapping comes back as a dict of floats.
    """
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"{where} must not be an empty list")
        return [check_ratio(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: check_ratio(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number in [0, 1), got {value!r}")
    try:
        return selection.check_ratio(value, where)
    except InvalidArgumentError as err:
        raise ConfigError(str(err)) from None


def check_epochs(value: Any, where: str = "epochs") -> int:
    """A non-negative whole number of epochs."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ConfigError(f"{where} must be a whole number of epochs, got {value!r}")
    if value < 0:
        raise ConfigError(f"{where}={value!r} is negative; use 0 or more epochs")
    return int(value)


def schedule_epochs(schedule: str) -> list[int] | None:
    """The epoch milestones of a piecewise ``"0:0.01,30:0.001"`` schedule, else None."""
    items = [s for s in str(schedule).split(",") if s.strip()]
    matches = [_PIECEWISE_ITEM.match(s) for s in items]
    if not items or not all(matches):
        return None
    return [int(m.group(1)) for m in matches if m]


def check_schedule(schedule: Any, where: str = "schedule", epochs: int | None = None) -> str:
    """An LR schedule string.

    Piecewise schedules ``"epoch:lr,..."`` must start at epoch 0 with strictly increasing epochs
    and positive LRs; named schedules (``cosine:0.01:1e-4``, ``ft:0.001``, ...) must use a known
    kind and parse with :func:`tfprune.training.schedules.parse_schedule`.
    """
    if not isinstance(schedule, str) or not schedule.strip():
        raise ConfigError(
            f"{where} must be a non-empty LR schedule string like '0:0.01,30:0.001' or "
            f"'cosine:0.01:1e-4', got {schedule!r}"
        )
    milestones = schedule_epochs(schedule)
    if milestones is not None:
        if any(e < 0 for e in milestones):
            raise ConfigError(f"{where}={schedule!r} has a negative epoch; epochs start at 0")
        if milestones[0] != 0:
            raise ConfigError(f"{where}={schedule!r} must start at epoch 0 (e.g. '0:0.01,...')")
        for a, b in zip(milestones, milestones[1:]):
            if b <= a:
                raise ConfigError(
                    f"{where}={schedule!r} has decreasing epochs ({a} then {b}); list the "
                    "'epoch:lr' steps in increasing epoch order"
                )
        for item in schedule.split(","):
            lr = float(item.split(":")[1])
            if not lr > 0:
                raise ConfigError(f"{where}={schedule!r} has a non-positive LR {lr}")
        parse_schedule(schedule, max(int(epochs or 1), 1), field=where)
        return schedule
    if "{" in schedule:  # a template filled in by the protocol (e.g. "lrw:{base}")
        return schedule
    kind = schedule.split(":", 1)[0].strip().lower()
    if kind not in SCHEDULE_KINDS:
        raise ConfigError(
            f"{where}={schedule!r} is not a known schedule{did_you_mean(kind, SCHEDULE_KINDS)}: "
            "use 'epoch:lr,...' (e.g. '0:0.01,30:0.001') or one of "
            + ", ".join(f"'{k}:...'" for k in SCHEDULE_KINDS)
        )
    parse_schedule(schedule, max(int(epochs or 1), 1), field=where)
    return schedule


def check_seeds(seeds: Any, where: str = "seeds") -> list[int] | int:
    """A seed count ``n >= 1`` (seeds ``0..n-1``) or a non-empty list of distinct ints >= 0."""
    if isinstance(seeds, bool) or not isinstance(seeds, (int, list, tuple)):
        raise ConfigError(f"{where} must be a count >= 1 or a list of integer seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(
                f"{where}={seeds} must be >= 1 (the number of seeds to run), or a list of seeds"
            )
        return int(seeds)
    if not seeds:
        raise ConfigError(f"{where} must list at least one seed, e.g. [0, 1, 2]")
    out = []
    for v in seeds:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"{where} must hold integers >= 0, got {v!r}")
        out.append(int(v))
    if len(set(out)) != len(out):
        raise ConfigError(f"{where} has duplicates: {out}")
    return out


def check_lr(value: Any, where: str = "lr") -> Any:
    """A learning rate > 0 (or a list/mapping of them); strings are checked as schedules."""
    if isinstance(value, str):
        return check_schedule(value, where)
    if isinstance(value, (list, tuple)):
        return [check_lr(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {k: check_lr(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where} must be a learning rate > 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# Declared field types: a setting's check is part of its type, not of its name
# --------------------------------------------------------------------------------------------

#: A check of one setting: ``(value, where, siblings)``; ``siblings`` is the mapping the setting
#: sits in (a schedule is checked against the ``epochs`` beside it).
FieldCheck = Callable[[Any, str, Mapping[str, Any]], Any]


def _each(check: Callable[[Any, str], Any]) -> FieldCheck:
    """``check`` applied to a value, to each item of a list or to each value of a mapping."""

    def run(value: Any, where: str, siblings: Mapping[str, Any]) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                check(v, f"{where}[{k!r}]")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                check(v, f"{where}[{i}]")
        else:
            check(value, where)

    return run


def _schedule(value: Any, where: str, siblings: Mapping[str, Any]) -> None:
    epochs = siblings.get("epochs")
    check_schedule(value, where, epochs if isinstance(epochs, int) else None)


def _schedules(value: Any, where: str, siblings: Mapping[str, Any]) -> None:
    """A schedule per label; a label may hold a whole recipe mapping instead."""
    for k, v in value.items() if isinstance(value, Mapping) else enumerate(value):
        sub = f"{where}[{k!r}]"
        if isinstance(v, Mapping):
            _recipe(v, sub, siblings)
        else:
            check_schedule(v, sub)


def _recipe(value: Any, where: str, siblings: Mapping[str, Any]) -> None:
    """A training recipe mapping (``schedule``, ``epochs``, ``batch_size``, optimizer fields)."""
    if not value:
        return
    if "epochs" in value:
        check_epochs(value["epochs"], f"{where}.epochs")
    if "schedule" in value:
        _schedule(value["schedule"], f"{where}.schedule", value)
    if "batch_size" in value:
        _batch_size(value["batch_size"], f"{where}.batch_size", value)


def _batch_size(value: Any, where: str, siblings: Mapping[str, Any]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ConfigError(f"{where} must be >= 1, got {value}")


def field_check(check: Callable[[Any, str], Any]) -> FieldCheck:
    """A declared check that calls ``check(value, where)``.

    For example ``Annotated[float | None, field_check(check_lr)]``.
    """
    return lambda value, where, siblings: check(value, where)


Dataset = Annotated[str, field_check(check_dataset)]
"""A dataset name (:data:`tfprune.data.DATASET_NAMES`)."""
Model = Annotated[str, field_check(check_model)]
"""A zoo model name or ``keras:<Application>``."""
Ratio = Annotated[float | dict, field_check(check_ratio)]
"""A pruning ratio in [0, 1) or ``{layer-name regex: ratio}``."""
Ratios = Annotated[list[float | dict], field_check(check_ratio)]
"""A non-empty list of pruning ratios."""
Seeds = Annotated[int | list[int], field_check(check_seeds)]
"""A seed count n (seeds 0..n-1) or a list of distinct seeds."""
Epochs = Annotated[int, _each(check_epochs)]
"""A whole number of epochs >= 0."""
EpochList = Annotated[list[int], _each(check_epochs)]
"""A list of epoch counts."""
EpochMap = Annotated[dict, _each(check_epochs)]
"""An epoch count per label."""
LR = Annotated[float, field_check(check_lr)]
"""A learning rate > 0."""
LRList = Annotated[list[float], field_check(check_lr)]
"""A list of learning rates > 0."""
Schedule = Annotated[str, _schedule]
"""An LR schedule text (checked against the ``epochs`` beside it, if any)."""
ScheduleMap = Annotated[dict, _schedules]
"""An LR schedule (or a recipe mapping) per label."""
Recipe = Annotated[dict, _recipe]
"""A training recipe mapping (``schedule``, ``epochs``, ``batch_size``, ...)."""
BatchSize = Annotated[int, _batch_size]
"""A batch size >= 1."""


def check_fields(schema: type, values: Mapping[str, Any], prefix: str = "") -> None:
    """Run the check each setting of ``values`` declares in its type in ``schema``.

    ``schema`` is a dataclass whose fields are annotated with the types above (such as
    :data:`Ratio` or :data:`Schedule`); settings without a declared check, and null values, are
    not checked here. Errors name the setting as ``prefix + name``.
    """
    hints = typing.get_type_hints(schema, include_extras=True)
    for key, value in values.items():
        hint = hints.get(key)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
            hint = next(
                (a for a in typing.get_args(hint) if typing.get_origin(a) is Annotated), None
            )
        if value is None or typing.get_origin(hint) is not Annotated:
            continue
        for check in hint.__metadata__:
            check(value, f"{prefix}{key}", values)
