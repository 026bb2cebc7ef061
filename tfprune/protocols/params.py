"""Typed protocol configs: one dataclass per protocol, checked before anything trains.

Each protocol declares its settings as a dataclass (:class:`CommonParams` holds those every
protocol shares); its ``default_config`` is that dataclass's defaults, so a setting and its
default live in one place. :func:`check_params` checks a merged config against the annotated
types and names the setting, the type it needs and the value it got.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from tfprune import defaults
from tfprune.configs.checks import (
    BatchSize,
    Dataset,
    Model,
    Ratio,
    Recipe,
    Seeds,
    check_fields,
)
from tfprune.errors import ConfigError

__all__ = [
    "CommonParams",
    "check_params",
    "defaults_of",
    "describe_type",
    "type_problem",
    "value_matches",
]


@dataclasses.dataclass(frozen=True)
class CommonParams:
    """Settings every protocol takes.

    Attributes:
        dataset: Dataset name (``digits``, ``mnist``, ``cifar10``, ``cifar100``, ``imagenet``).
        data_dir: Folder of the dataset files (null: the dataset's default).
        model: Zoo model name or ``keras:<Application>``.
        model_kwargs: Extra arguments of the model builder.
        data_options: Extra arguments of the dataset reader (``resize``, ``cache``, ...).
        base: The dense model's recipe (``schedule``, ``epochs``, ``batch_size``, ...).
        seeds: A count n (seeds 0..n-1) or a list of seeds.
        ratio: Pruning ratio, or ``{layer-name regex: ratio}``.
        batch_size: Retraining batch size (null: the dataset's default,
            :data:`tfprune.defaults.BATCH_SIZES`).
        momentum: SGD momentum.
        weight_decay: Weight decay coefficient.
        optimizer: ``sgd`` or ``adam``.
        baselines: Add the Random and Scratch baselines.
        weight_decay_mode: ``coupled`` (L2 through momentum, the authors' PyTorch SGD) or
            ``decoupled``.
        target: A matched operating point, e.g. ``{flops_reduction: 2.0}`` (null: none).
        jsv_samples: Inputs per mean-JSV measurement (0: none).
        jsv_every_epoch: Measure the mean JSV after every retraining epoch.
        metric: The record metric compared across cells (``final_acc`` or ``best_acc``).
        recalibrate_batch_norm: Re-estimate the BatchNorm statistics on training batches after
            pruning and after retraining (off: the papers' recipe). A different setup, and
            other run ids, when on.
    """

    dataset: Dataset = "digits"
    data_dir: str | None = None
    model: Model = "mlp7_linear"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    data_options: dict = dataclasses.field(default_factory=dict)
    base: Recipe = dataclasses.field(
        default_factory=lambda: {
            "schedule": "0:0.02,15:0.002",
            "epochs": 20,
            "batch_size": defaults.batch_size("digits"),
        }
    )
    seeds: Seeds = 3
    ratio: Ratio = 0.8
    batch_size: BatchSize | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"
    baselines: bool = True
    weight_decay_mode: str = "coupled"
    target: dict | None = None
    jsv_samples: int = 1000
    jsv_every_epoch: bool = False
    metric: str = "final_acc"
    recalibrate_batch_norm: bool = False

    def __post_init__(self) -> None:
        # null batch size: the dataset's (an unknown dataset is named by its own check)
        if self.batch_size is None and self.dataset in defaults.BATCH_SIZES:
            object.__setattr__(self, "batch_size", defaults.batch_size(self.dataset))


def defaults_of(params: type) -> dict[str, Any]:
    """Every setting of the dataclass ``params`` with its default (a fresh copy each call)."""
    return {
        f.name: f.default_factory() if f.default is dataclasses.MISSING else copy.copy(f.default)
        for f in dataclasses.fields(params)
    }


def check_params(params: type, config: Mapping[str, Any], name: str) -> None:
    """Check every value of ``config`` against the type ``params`` annotates for it.

    Then each setting's declared check (see :func:`tfprune.configs.checks.check_fields`).

    Raises:
      ConfigError: names the setting (``protocol.key``), the type it needs and the value.
    """
    problem = type_problem(params, config, name)
    if problem:
        raise ConfigError(f"{problem}; see {params.__name__} for what each setting takes")
    check_fields(params, config)


def type_problem(schema: type, values: Mapping[str, Any], prefix: str) -> str | None:
    """The first value of ``values`` whose type ``schema`` annotates otherwise, in words.

    ``schema`` is a dataclass or a ``TypedDict``; keys it does not annotate are not checked.
    """
    hints = typing.get_type_hints(schema)
    for key, value in values.items():
        if key in hints and not value_matches(value, hints[key]):
            return f"{prefix}.{key} must be {describe_type(hints[key])}, got {value!r}"
    return None


def value_matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (plain JSON/YAML data) has the type ``hint`` annotates."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arg) for arg in typing.get_args(hint))
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, Mapping)
    if hint is list or origin is list:
        if not isinstance(value, (list, tuple)):
            return False
        (item,) = typing.get_args(hint) or (Any,)
        return all(value_matches(v, item) for v in value)
    return isinstance(value, hint)


_WORDS = {
    bool: ("true or false", "true/false values"),
    int: ("a whole number", "whole numbers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
    dict: ("a mapping", "mappings"),
    type(None): ("null", "nulls"),
}


def describe_type(hint: Any, plural: bool = False) -> str:
    """``hint`` in words (``"a list of numbers"``), as error messages name it."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(arg, plural) for arg in typing.get_args(hint))
    if hint is list or origin is list:
        args = typing.get_args(hint)
        return "a list" if not args else f"a list of {describe_type(args[0], plural=True)}"
    if origin is dict:
        hint = dict
    words = _WORDS.get(hint)
    if words is None:
        return getattr(hint, "__name__", str(hint))
    return words[1] if plural else words[0]
