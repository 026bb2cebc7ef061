"""Every layer of a model, the layers of nested models included."""

from __future__ import annotations

from typing import Any

from tfprune.compat import keras_of

__all__ = ["all_layers"]


def all_layers(model: Any, *, open_wrappers: bool = False) -> list[Any]:
    """The layers of ``model`` in order, each nested model followed by its own layers.

    A nested ``keras.Model`` (a functional or ``Sequential`` block used as a layer) appears
    itself and then, recursively, every layer inside it. With ``open_wrappers``, a wrapper
    (``TimeDistributed``, TF-MOT's pruning wrapper, ``Bidirectional``) is followed by the layers
    it wraps too. A layer used twice appears once.
    """
    out: list[Any] = []
    seen: set[int] = set()

    def visit(layer: Any) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        out.append(layer)
        for child in _children(layer, open_wrappers):
            visit(child)

    for layer in getattr(model, "layers", []):
        visit(layer)
    return out


def _children(layer: Any, open_wrappers: bool) -> list[Any]:
    k = keras_of(layer)  # Keras 3 wrappers hold their layers under the same names
    children = list(layer.layers) if isinstance(layer, k.Model) else []
    if open_wrappers:
        for attr in ("layer", "forward_layer", "backward_layer"):
            inner = getattr(layer, attr, None)
            if isinstance(inner, k.layers.Layer):
                children.append(inner)
    return children
