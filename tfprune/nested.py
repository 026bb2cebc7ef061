"""Every layer of a model, the layers of nested models included."""

from __future__ import annotations

from typing import Any

from tfprune.compat import keras

__all__ = ["all_layers"]


def all_layers(model: Any) -> list[Any]:
    """The layers of ``model`` in order, each nested model followed by its own layers.

    A nested ``keras.Model`` (a functional or ``Sequential`` block used as a layer) appears
    itself and then, recursively, every layer inside it. Layers of other kinds are not opened.
    """
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(all_layers(layer))
    return out
