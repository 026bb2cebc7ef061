"""Keras Applications wrapper (never downloads weights) and ResNet-50 stage schemes.

:func:`keras_application` builds ``keras.applications.<Name>`` with ``weights=None`` and optionally
loads a *local* weights file; ``weights="imagenet"`` is refused because it would download.
The classifier outputs logits by default (``classifier_activation=None``), like every zoo model.
Unlike tfprune's own builders (PyTorch's BatchNormalization momentum 0.9 and epsilon 1e-5 in
Keras terms), an application keeps the BatchNormalization settings Keras builds it with, those of
its reference implementation and published weights files, so that such a file still loads into
the model it was trained as. Short training runs of them may need
:func:`tfprune.recalibrate_batch_norm` before evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError

__all__ = [
    "RESNET50_SCHEMES",
    "RESNET50_STAGES",
    "keras_application",
    "list_applications",
    "resnet50_stage_scheme",
]

#: ``keras.applications.ResNet50`` stage prefixes and blocks: stage 0 is the stem ``conv1_conv``;
#: stages 1-4 are ``conv2_x .. conv5_x`` with 3, 4, 6, 3 bottlenecks.
RESNET50_STAGES: tuple[tuple[str, int], ...] = (
    ("conv2", 3),
    ("conv3", 4),
    ("conv4", 6),
    ("conv5", 3),
)

#: GReg/Wang et al. ResNet-50 ImageNet ratio lists ``[s0, s1, s2, s3, s4, s_fc]`` by speedup.
RESNET50_SCHEMES: dict[str, tuple[float, ...]] = {
    "1.49x": (0.0, 0.3, 0.3, 0.3, 0.14, 0.0),
    "2.31x": (0.0, 0.6, 0.6, 0.6, 0.21, 0.0),
    "2.56x": (0.0, 0.74, 0.74, 0.6, 0.21, 0.0),
    "3.06x": (0.0, 0.68, 0.68, 0.68, 0.5, 0.0),
}


def list_applications() -> list[str]:
    """Names of the model builders in ``keras.applications`` (e.g. ``ResNet50``)."""
    return sorted(
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    )


def keras_application(
    name: str,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    num_classes: int = 1000,
    weights: str | os.PathLike[str] | None = None,
    classifier_activation: str | None = None,
    **kwargs: Any,
) -> keras.Model:
    """Build ``keras.applications.<name>`` (uncompiled, with its top, no download).

    Args:
      name: application name, e.g. ``"ResNet50"`` (see :func:`list_applications`).
      input_shape: ``(H, W, C)`` input.
      num_classes: classifier units.
      weights: ``None`` (random init) or the path of a local weights file matching this
        architecture and ``num_classes`` (loaded with ``model.load_weights``).
      classifier_activation: activation of the classifier (``None`` = logits).
      **kwargs: passed to the application builder (e.g. ``pooling``).
    """
    apps = list_applications()
    if name not in apps:
        raise InvalidArgumentError(f"unknown Keras application {name!r}; known: {', '.join(apps)}")
    if isinstance(weights, str) and weights == "imagenet":
        raise InvalidArgumentError(
            "weights='imagenet' would download a file; tfprune never downloads. Pass the path "
            "of a local weights file (e.g. resnet50_weights_tf_dim_ordering_tf_kernels.h5) instead"
        )
    path = None
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists():
            raise InvalidArgumentError(f"weights file {str(path)!r} does not exist")
    model = getattr(keras.applications, name)(
        include_top=True,
        weights=None,
        input_shape=tuple(input_shape),
        classes=int(num_classes),
        classifier_activation=classifier_activation,
        **kwargs,
    )
    if path is not None:
        model.load_weights(str(path))
    return model


def resnet50_stage_scheme(ratios: Sequence[float]) -> dict[str, float]:
    """Layer-ratio scheme for ``keras.applications.ResNet50`` from ``[s0, s1, s2, s3, s4, s_fc]``.

    Stage ``k`` (1-4) ratio applies to the first two convs of each of its bottlenecks
    (``conv{k+1}_block{j}_1_conv`` and ``..._2_conv``); ``s0`` applies to the stem ``conv1_conv``.
    The third conv (``_3_conv``) and the downsample (``_0_conv``) are never pruned, and the
    classifier ratio ``s_fc`` must be 0 (filter pruning cannot remove output classes).
    Zero-ratio stages are left out. E.g. ``[0, .6, .6, .6, .21, 0]`` (2.31×) matches 32 convs.
    """
    ratios = [float(r) for r in ratios]
    if len(ratios) != 6:
        raise InvalidArgumentError(
            f"ratios={ratios} must have 6 entries [s0, s1, s2, s3, s4, s_fc]"
        )
    for r in ratios:
        if not 0.0 <= r < 1.0:
            raise InvalidArgumentError(f"ratio {r} in {ratios} must be in [0, 1)")
    if ratios[5] != 0.0:
        raise InvalidArgumentError(
            f"s_fc={ratios[5]}: the classifier is never filter-pruned; use 0"
        )
    scheme: dict[str, float] = {}
    if ratios[0] > 0:
        scheme["conv1_conv"] = ratios[0]
    for (prefix, _), ratio in zip(RESNET50_STAGES, ratios[1:5]):
        if ratio > 0:
            scheme[rf"{prefix}_block\d+_[12]_conv"] = ratio
    return scheme
