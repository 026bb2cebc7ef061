"""Model registry: :func:`get_model` and :func:`list_models` over every zoo builder."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.models.applications import keras_application, list_applications
from tfprune.models.lenet import lenet5, lenet5_linear
from tfprune.models.mlp import mlp7_linear, mlp7_relu
from tfprune.models.resnet_cifar import resnet20, resnet32, resnet56, resnet110, resnet_cifar
from tfprune.models.resnet_imagenet import resnet34
from tfprune.models.small_cnn import small_cnn
from tfprune.models.vgg import vgg16_bn, vgg19_bn

__all__ = ["get_model", "list_models", "load_model", "model_builder"]

_KERAS_PREFIX = "keras:"


def _builders() -> dict[str, Callable[..., keras.Model]]:
    builders: dict[str, Callable[..., keras.Model]] = {
        "mlp7_linear": mlp7_linear,
        "mlp7_relu": mlp7_relu,
        "lenet5": lenet5,
        "lenet5_linear": lenet5_linear,
        "vgg16_bn": vgg16_bn,
        "vgg19_bn": vgg19_bn,
        "small_cnn": small_cnn,
        "resnet34": resnet34,
        "resnet20": resnet20,
        "resnet32": resnet32,
        "resnet56": resnet56,
        "resnet110": resnet110,
    }
    return builders


def _cifar_resnet_signatures() -> None:
    """Gives resnet20/32/56/110 (``**kwargs`` wrappers) the signature of :func:`resnet_cifar`.

    Callers that pass only what a builder takes (the input shape, the classes) read it.
    """
    for depth, fn in ((20, resnet20), (32, resnet32), (56, resnet56), (110, resnet110)):
        fn.__signature__ = inspect.signature(functools.partial(resnet_cifar, depth))


_cifar_resnet_signatures()


def model_builder(name: str) -> Callable[..., keras.Model] | None:
    """The builder function of zoo model ``name`` (not ``keras:`` names), or None if unknown.

    Its signature says which arguments the model takes (``input_shape``, ``num_classes``, ...).
    """
    return _builders().get(name)


def list_models(include_applications: bool = True) -> list[str]:
    """Names accepted by :func:`get_model`, including ``keras:<Application>`` names if asked."""
    names = sorted(_builders())
    if include_applications:
        names += [_KERAS_PREFIX + app for app in list_applications()]
    return names


def get_model(name: str, **kwargs: Any) -> keras.Model:
    """Build the zoo model ``name`` (uncompiled, logits output) with builder ``kwargs``.

    ``keras:<Application>`` (e.g. ``keras:ResNet50``) calls
    :func:`tfprune.models.applications.keras_application`; weights are never downloaded.
    """
    builders = _builders()
    if name.startswith(_KERAS_PREFIX):
        builder: Callable[..., keras.Model] = keras_application
        kwargs = {"name": name[len(_KERAS_PREFIX) :], **kwargs}
    elif name in builders:
        builder = builders[name]
    else:
        raise InvalidArgumentError(
            f"unknown model {name!r}; known models: {', '.join(sorted(builders))}, "
            "and keras:<Application> (e.g. keras:ResNet50; see list_models())"
        )
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as err:
        takes = ", ".join(inspect.signature(builder).parameters)
        raise InvalidArgumentError(f"model {name!r}: {err}; it takes {takes}") from None
    try:
        return builder(**kwargs)
    except InvalidArgumentError:
        raise
    except ValueError as err:  # Keras' own refusal of a size or option (e.g. too-small images)
        shape = kwargs.get("input_shape", kwargs.get("input_dim"))
        raise InvalidArgumentError(
            f"model {name!r} cannot be built for inputs of shape {shape}: "
            f"{_first_line(err)}; use a model made for such inputs (small_cnn or mlp7_linear "
            "fit the 8x8 digits) or larger inputs (--dataset, --input_shape)"
        ) from None


def load_model(
    path: str | os.PathLike[str],
    flag: str = "model_path",
    custom_objects: Mapping[str, Any] | None = None,
) -> keras.Model:
    """Load a saved tf_keras model (``.keras``, ``.h5`` or SavedModel folder), uncompiled.

    Raises:
      InvalidArgumentError: ``path`` is missing or is not a saved model (names ``--<flag>``).
    """
    where = f"--{flag}={os.fspath(path)!r}"
    if not os.path.exists(path):
        raise InvalidArgumentError(f"{where} does not exist; give a saved Keras model")
    try:
        with keras.utils.custom_object_scope(dict(custom_objects or {})):
            return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise InvalidArgumentError(
            f"{where} is not a saved Keras model ({_first_line(err)}); give a .keras or .h5 "
            "file or a SavedModel folder"
        ) from None


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(err).__name__
