"""Compiled models shared by the runs of one process, so that each model shape is traced once.

Keras traces the graph functions of ``fit`` and ``evaluate`` once per model object, and a
mean-JSV measurement traces its Jacobian function once per model. A grid of short runs builds a
new model for every run, so these traces (about a second each on a CPU) are a fixed cost of
every run. A *twin* is a model built from the same config as the run's model (the same layers,
weight shapes and dtypes), kept for the whole process: each run copies its weights into the twin
of its shape and trains, evaluates and measures the twin, whose functions are traced the first
time only. The twin computes the same ops on the same values, so the numbers do not change.

A model has no twin (it is used itself) when it is subclassed (no config), when a layer draws
random numbers (dropout, noise, random augmentation: its random state would carry over from
one run to the next), under ``mixed_float16`` (the loss scale is optimizer state) and while
:func:`sharing` is off.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from tfprune.compat import is_functional, keras, tf
from tfprune.nested import all_layers
from tfprune.trainability.jsv import JSVMeter

__all__ = ["MAX_TWINS", "TwinStats", "jsv_meter", "shape_key", "sharing", "stats", "twin"]

MAX_TWINS = 8
"""Twins kept at once (the least recently used one is dropped first)."""


@dataclasses.dataclass
class TwinStats:
    """How often twins were built and reused in this process (each build traces its functions).

    Attributes:
      built: Twins built (one per model shape and compile setting).
      reused: Times an existing twin took a run's weights instead of a new model being traced.
    """

    built: int = 0
    reused: int = 0


@dataclasses.dataclass
class _Twin:
    model: Any
    strategy: Any  # held so that the strategy's id, part of the key, is not reused
    meter: JSVMeter | None = None


class _Registry:
    def __init__(self) -> None:
        self.enabled = True
        self.stats = TwinStats()
        self.twins: collections.OrderedDict[tuple, _Twin] = collections.OrderedDict()
        self.by_model: dict[int, _Twin] = {}

    def add(self, key: tuple, entry: _Twin) -> None:
        self.twins[key] = entry
        self.by_model[id(entry.model)] = entry
        while len(self.twins) > MAX_TWINS:
            _, old = self.twins.popitem(last=False)
            self.by_model.pop(id(old.model), None)


_REGISTRY = _Registry()


@contextlib.contextmanager
def sharing(enabled: bool) -> Iterator[None]:
    """Inside the block twins are on or off (on by default), starting from none kept.

    The block has its own twins and :func:`stats`; those kept before come back after it.
    """
    global _REGISTRY
    saved = _REGISTRY
    _REGISTRY = _Registry()
    _REGISTRY.enabled = bool(enabled)
    try:
        yield
    finally:
        _REGISTRY = saved


def stats() -> TwinStats:
    """Twins built and reused so far (in this process, or in the :func:`sharing` block)."""
    return dataclasses.replace(_REGISTRY.stats)


def _draws_random_numbers(layer: Any) -> bool:
    # Keras' random layers (Dropout, GaussianNoise, RandomFlip, ...) keep a random generator.
    return hasattr(layer, "_random_generator")


def _canonical(obj: Any, names: dict[str, str]) -> Any:
    """``obj`` with layer names replaced by their position and without initializers.

    A twin gets the weights and never initializes them, so the initializers (and their seeds)
    do not tell shapes apart.
    """
    if isinstance(obj, dict):
        return {k: _canonical(v, names) for k, v in obj.items() if not k.endswith("_initializer")}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, names) for v in obj]
    if isinstance(obj, str):
        return names.get(obj, obj)
    return obj


def shape_key(model: Any) -> str | None:
    """A text equal for models of the same layers and weight shapes, whatever their names.

    ``None`` when ``model`` cannot have a twin (see the module doc).
    """
    if not (isinstance(model, keras.Sequential) or is_functional(model)):
        return None
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        return None
    layers = all_layers(model, open_wrappers=True)
    if any(_draws_random_numbers(layer) for layer in layers):
        return None
    try:
        config = model.get_config()
    except NotImplementedError:
        return None
    names = {model.name: "model"}
    for i, layer in enumerate(layers):
        names.setdefault(layer.name, f"layer{i}")
    weights = [(w.shape.as_list(), w.dtype.name, bool(w.trainable)) for w in model.weights]
    return json.dumps(
        [type(model).__name__, _canonical(config, names), weights], sort_keys=True, default=str
    )


def _zero_initializers(config: Any) -> Any:
    """``config`` with every initializer replaced by zeros.

    Building a twin then draws no random numbers: the random streams of the run (e.g. a scratch
    model's initialization) stay the same.
    """
    if isinstance(config, dict):
        return {
            k: (
                keras.initializers.serialize(keras.initializers.Zeros())
                if k.endswith("_initializer") and isinstance(v, dict)
                else _zero_initializers(v)
            )
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [_zero_initializers(v) for v in config]
    return config


def _build(model: Any) -> Any | None:
    try:
        return type(model).from_config(_zero_initializers(model.get_config()))
    except (NotImplementedError, TypeError, ValueError):
        return None


def _reset_optimizer(optimizer: Any, lr: float) -> None:
    """The state of a new optimizer: step 0, zero slots (momentum, moments), LR ``lr``."""
    for variable in optimizer.variables:
        variable.assign(tf.zeros_like(variable))
    optimizer.learning_rate.assign(lr)


def twin(
    model: Any,
    setting: tuple,
    strategy: Any,
    compile_fn: Any,
    lr: float,
) -> Any | None:
    """The twin of ``model`` for a compile ``setting``, holding ``model``'s weights.

    A twin built here is compiled by ``compile_fn(twin)``; a kept one gets the state of a new
    optimizer at ``lr`` instead. ``None`` when ``model`` cannot have a twin.
    """
    if not _REGISTRY.enabled:
        return None
    key = shape_key(model)
    if key is None:
        return None
    full = (key, setting, id(strategy))
    entry = _REGISTRY.twins.get(full)
    if entry is None:
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            built = _build(model)
            if built is None:
                return None
            compile_fn(built)
        entry = _Twin(built, strategy)
        _REGISTRY.add(full, entry)
        _REGISTRY.stats.built += 1
    else:
        _REGISTRY.twins.move_to_end(full)
        _reset_optimizer(entry.model.optimizer, lr)
        _REGISTRY.stats.reused += 1
    entry.model.set_weights(model.get_weights())
    return entry.model


def jsv_meter(model: Any) -> JSVMeter | None:
    """The kept :class:`~tfprune.trainability.JSVMeter` of a twin (``None`` for other models)."""
    entry = _REGISTRY.by_model.get(id(model))
    if entry is None or entry.model is not model:
        return None
    if entry.meter is None:
        entry.meter = JSVMeter(model)
    return entry.meter
