"""Numeric runtime of a run: mixed precision and XLA compilation.

A :class:`Runtime` says how a run computes, not what it computes: ``precision`` is a Keras
dtype policy (``float32``, ``mixed_float16`` or ``mixed_bfloat16``) and ``jit_compile`` asks
Keras to compile training and evaluation steps with XLA. :func:`use_runtime` applies one for the
duration of a block (models built inside compute in that precision; the variables stay
``float32``), and :func:`current_runtime` is what :func:`tfprune.training.compile_model` reads.

Mixed precision changes the numbers a run produces, so a run's precision is part of its
comparison setup; XLA only changes rounding and is recorded beside it.

Everything tfprune must get exactly right stays in ``float32`` under a mixed policy: the loss
is computed from ``float32`` logits, penalties read the ``float32`` variables, and the mean
Jacobian singular values are taken on :func:`float32_twin`, a ``float32`` copy of the model
with the same weights.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.nested import all_layers

__all__ = [
    "PRECISIONS",
    "Runtime",
    "current_runtime",
    "float32_twin",
    "model_precision",
    "resolve_precision",
    "use_runtime",
]

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
"""The Keras dtype policies a run can use."""

_OFF = ("", "none", "off", "false", "no", "float32", "fp32")
_AUTO = ("auto", "true", "yes", "on", "mixed")


def resolve_precision(value: Any) -> str:
    """The dtype policy name for a ``--mixed_precision`` flag or a config value.

    ``False``/``None``/``"float32"``/``"off"`` give ``float32``; ``True``/``"auto"`` give
    ``mixed_float16`` when a GPU is visible and ``mixed_bfloat16`` otherwise (CPU, TPU);
    ``"mixed_float16"`` and ``"mixed_bfloat16"`` are taken as they are.

    Raises:
      InvalidArgumentError: any other value, naming the accepted ones.
    """
    if value is None or value is False:
        return "float32"
    if value is True:
        value = "auto"
    text = str(value).strip().lower()
    if text in _OFF:
        return "float32"
    if text in _AUTO:
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
    if text in PRECISIONS:
        return text
    raise InvalidArgumentError(
        f"unknown precision {value!r}; use true/auto (mixed_float16 on a GPU, mixed_bfloat16 "
        f"on CPU/TPU), false, or one of {', '.join(PRECISIONS)}"
    )


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How a run computes.

    Attributes:
      precision: Keras dtype policy of the models built under it (see :data:`PRECISIONS`).
      jit_compile: Compile training and evaluation steps with XLA.
    """

    precision: str = "float32"
    jit_compile: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", resolve_precision(self.precision))
        if not isinstance(self.jit_compile, bool):
            raise InvalidArgumentError(
                f"jit_compile must be true or false, got {self.jit_compile!r}"
            )

    @property
    def mixed(self) -> bool:
        """True under a mixed-precision policy."""
        return self.precision != "float32"

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (``precision``, ``jit_compile``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Runtime:
        """From ``{precision, jit_compile}`` (``mixed_precision`` is accepted for precision)."""
        data = dict(data or {})
        if "mixed_precision" in data:
            data["precision"] = data.pop("mixed_precision")
        unknown = sorted(set(data) - {"precision", "jit_compile"})
        if unknown:
            raise InvalidArgumentError(
                f"runtime: unknown field(s) {unknown}; allowed: mixed_precision, jit_compile"
            )
        return cls(**data)


_CURRENT: contextvars.ContextVar[Runtime | None] = contextvars.ContextVar(
    "tfprune_runtime", default=None
)


def current_runtime() -> Runtime:
    """The :class:`Runtime` of the innermost :func:`use_runtime` block (default: float32)."""
    return _CURRENT.get() or Runtime()


@contextlib.contextmanager
def use_runtime(runtime: Runtime | None) -> Iterator[Runtime]:
    """Apply ``runtime`` inside the block: Keras' global dtype policy and XLA for compiles.

    The previous global policy is restored on exit, also after an error. ``None`` keeps what is
    in force.
    """
    if runtime is None:
        yield current_runtime()
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(runtime.precision)
    token = _CURRENT.set(runtime)
    try:
        yield runtime
    finally:
        _CURRENT.reset(token)
        keras.mixed_precision.set_global_policy(previous)


def model_precision(model: Any) -> str:
    """The compute policy of ``model``'s layers: a policy name, or ``"mixed"`` when they differ.

    Input layers are left out (they always hold ``float32`` placeholders).
    """
    names = {
        layer.dtype_policy.name
        for layer in all_layers(model)
        if not isinstance(layer, keras.layers.InputLayer)
    }
    if not names:
        return "float32"
    return names.pop() if len(names) == 1 else "mixed"


def _float32_config(config: Any) -> Any:
    """``config`` with every serialized dtype policy replaced by ``float32``."""
    if isinstance(config, Mapping):
        if config.get("class_name") in ("Policy", "DTypePolicy") and "config" in config:
            return "float32"
        return {k: _float32_config(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def float32_twin(model: Any) -> Any:
    """A ``float32`` copy of ``model`` with the same weights; ``model`` itself if it is one.

    The copy is rebuilt from the model's config with every dtype policy set to ``float32``, so
    it computes what the mixed-precision model approximates: tfprune measures trainability and
    checks stripped against masked models on it.

    Raises:
      InvalidArgumentError: a mixed-precision model that cannot be rebuilt from its config
        (a subclassed model); build it under ``float32`` instead.
    """
    if all(
        layer.dtype_policy.name == "float32" or isinstance(layer, keras.layers.InputLayer)
        for layer in all_layers(model)
    ):
        return model
    try:
        # tfprune's own layers are registered Keras serializables, found by their config name.
        twin = model.__class__.from_config(_float32_config(model.get_config()))
    except (NotImplementedError, TypeError, ValueError) as err:
        raise InvalidArgumentError(
            f"cannot make a float32 copy of mixed-precision model {model.name!r} from its config "
            f"({type(err).__name__}: {err}); build a functional or Sequential model, or build it "
            "under float32"
        ) from None
    twin.set_weights(model.get_weights())
    return twin
