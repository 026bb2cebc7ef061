"""Model registry (:func:`get_model`, :func:`list_models`) and layer-ratio scheme helpers.

A *layer-ratio scheme* is the per-layer ratio format the pruning core accepts: a dict
``{regex: ratio}`` where each regex is matched with ``re.fullmatch`` against layer names. Layers
that no pattern matches are not pruned, so schemes here list only the non-zero entries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError

__all__ = [
    "get_model",
    "index_pattern",
    "list_models",
    "matching_layers",
    "parse_index_ratios",
]

_KERAS_PREFIX = "keras:"


def index_pattern(prefix: str, indices: Iterable[int]) -> str:
    """Regex that ``re.fullmatch`` es exactly ``f"{prefix}{i}"`` for the given indices.

    Contiguous single-digit runs use a character class (``fc[0-5]``); anything else is an
    alternation (``conv(?:1|2|...|15)``).
    """
    idx = sorted({int(i) for i in indices})
    if not idx:
        raise InvalidArgumentError("index_pattern needs at least one index")
    if idx[0] < 0:
        raise InvalidArgumentError(f"layer indices must be >= 0, got {idx[0]}")
    p = re.escape(prefix)
    if len(idx) == 1:
        return f"{p}{idx[0]}"
    if idx[-1] <= 9 and idx == list(range(idx[0], idx[-1] + 1)):
        return f"{p}[{idx[0]}-{idx[-1]}]"
    return f"{p}(?:{'|'.join(str(i) for i in idx)})"


_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*:\s*([0-9.eE+-]+)\s*$")


def parse_index_ratios(spec: str, prefix: str) -> dict[str, float]:
    """Parse the papers' index notation ``"[0-5:0.8, 6:0]"`` into a ``{regex: ratio}`` scheme.

    Index ``i`` refers to the layer named ``f"{prefix}{i}"``; zero ratios are dropped. Each ratio
    must be in ``[0, 1)``; an index may appear only once.
    """
    body = spec.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    by_ratio: dict[float, list[int]] = {}
    seen: set[int] = set()
    for item in filter(None, (s.strip() for s in body.split(","))):
        m = _ITEM.match(item)
        if m is None:
            raise InvalidArgumentError(
                f"cannot parse {item!r} in ratio spec {spec!r}; expected 'a-b:ratio' or 'i:ratio'"
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        ratio = float(m.group(3))
        if hi < lo:
            raise InvalidArgumentError(f"empty index range {lo}-{hi} in ratio spec {spec!r}")
        if not 0.0 <= ratio < 1.0:
            raise InvalidArgumentError(f"ratio {ratio} in {spec!r} must be in [0, 1)")
        indices = set(range(lo, hi + 1))
        if indices & seen:
            raise InvalidArgumentError(f"indices {sorted(indices & seen)} repeated in {spec!r}")
        seen |= indices
        if ratio > 0:
            by_ratio.setdefault(ratio, []).extend(indices)
    return {index_pattern(prefix, idx): ratio for ratio, idx in by_ratio.items()}


def matching_layers(model: keras.Model, scheme: Mapping[str, float]) -> dict[str, list[str]]:
    """For each pattern of ``scheme``, the names of ``model``'s layers it fully matches."""
    names = [layer.name for layer in model.layers]
    return {pat: [n for n in names if re.fullmatch(pat, n)] for pat in scheme}


def _resnet(depth: int) -> Callable[..., keras.Model]:
    def build(**kwargs: Any) -> keras.Model:
        from tfprune.models import resnet_cifar  # lazy: written separately

        return getattr(resnet_cifar, f"resnet{depth}")(**kwargs)

    build.__name__ = f"resnet{depth}"
    build.__doc__ = f"CIFAR ResNet-{depth} from :mod:`tfprune.models.resnet_cifar`."
    return build


def _builders() -> dict[str, Callable[..., keras.Model]]:
    from tfprune.models.lenet import lenet5, lenet5_linear
    from tfprune.models.mlp import mlp7_linear, mlp7_relu
    from tfprune.models.vgg import vgg16_bn, vgg19_bn

    builders: dict[str, Callable[..., keras.Model]] = {
        "mlp7_linear": mlp7_linear,
        "mlp7_relu": mlp7_relu,
        "lenet5": lenet5,
        "lenet5_linear": lenet5_linear,
        "vgg16_bn": vgg16_bn,
        "vgg19_bn": vgg19_bn,
    }
    for depth in (20, 32, 56, 110):
        builders[f"resnet{depth}"] = _resnet(depth)
    return builders


def list_models(include_applications: bool = True) -> list[str]:
    """Names accepted by :func:`get_model`, including ``keras:<Application>`` names if asked."""
    names = sorted(_builders())
    if include_applications:
        from tfprune.models.applications import list_applications

        names += [_KERAS_PREFIX + app for app in list_applications()]
    return names


def get_model(name: str, **kwargs: Any) -> keras.Model:
    """Build the zoo model ``name`` (uncompiled, logits output) with builder ``kwargs``.

    ``keras:<Application>`` (e.g. ``keras:ResNet50``) calls
    :func:`tfprune.models.applications.keras_application`; weights are never downloaded.
    """
    if name.startswith(_KERAS_PREFIX):
        from tfprune.models.applications import keras_application

        return keras_application(name[len(_KERAS_PREFIX) :], **kwargs)
    builders = _builders()
    if name not in builders:
        raise InvalidArgumentError(
            f"unknown model {name!r}; known models: {', '.join(sorted(builders))}, "
            "and keras:<Application> (e.g. keras:ResNet50; see list_models())"
        )
    return builders[name](**kwargs)
