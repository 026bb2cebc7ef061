"""Model registry: :func:`get_model` and :func:`list_models` over every zoo builder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.models.applications import keras_application, list_applications
from tfprune.models.lenet import lenet5, lenet5_linear
from tfprune.models.mlp import mlp7_linear, mlp7_relu
from tfprune.models.resnet_cifar import resnet20, resnet32, resnet56, resnet110
from tfprune.models.resnet_imagenet import resnet34
from tfprune.models.small_cnn import small_cnn
from tfprune.models.vgg import vgg16_bn, vgg19_bn

__all__ = ["get_model", "list_models", "model_builder"]

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
    if name.startswith(_KERAS_PREFIX):
        return keras_application(name[len(_KERAS_PREFIX) :], **kwargs)
    builders = _builders()
    if name not in builders:
        raise InvalidArgumentError(
            f"unknown model {name!r}; known models: {', '.join(sorted(builders))}, "
            "and keras:<Application> (e.g. keras:ResNet50; see list_models())"
        )
    return builders[name](**kwargs)
