"""What both Keras flavours' rebuilds share: one new layer per old layer, weights set once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune.graph.rules import weight_names

__all__ = ["LayerCache"]


class LayerCache:
    """The new layer of each old layer, made once by a layer factory; weights set at the end.

    ``factory(old layer, path) -> (new layer or None, weights)`` as
    :data:`tfprune.graph.rebuild.LayerFactory` describes it.
    """

    def __init__(self, factory: Callable[[Any, str], tuple[Any, Any]]) -> None:
        self.factory = factory
        self.layers: dict[int, Any] = {}
        self.pending: list[tuple[Any, dict | list]] = []

    def get(self, layer: Any, path: str) -> Any:
        """The new layer for ``layer`` (None: its calls are dropped)."""
        if id(layer) not in self.layers:
            new, weights = self.factory(layer, path)
            self.layers[id(layer)] = new
            if new is not None and weights is not None:
                self.pending.append((new, weights))
        return self.layers[id(layer)]

    def set_weights(self, assign: Callable[[list[tuple[Any, Any]]], None]) -> None:
        """Set the weights of every new layer (built by now) with ``assign([(var, value)])``.

        Weights by name are checked against the layer's variables; a mask variable tfprune
        manages (named in the layer's ``mask_weight_names``) keeps its initial ones when no
        value is given.
        """
        for layer, weights in self.pending:
            if isinstance(weights, list):
                layer.set_weights(weights)
                continue
            values = []
            fresh = set(getattr(layer, "mask_weight_names", ()))
            for v, name in zip(layer.weights, weight_names(layer), strict=True):
                if name not in weights and name in fresh:
                    values.append(v.numpy())  # a tfprune mask keeps its initial ones
                    continue
                if name not in weights:
                    raise KeyError(f"no value for weight {v.name} of {layer.name}")
                value = np.asarray(weights[name])
                if tuple(value.shape) != tuple(v.shape):
                    raise ValueError(
                        f"weight {v.name} of {layer.name}: shape {value.shape} != {tuple(v.shape)}"
                    )
                values.append(value)
            assign(list(zip(layer.weights, values, strict=True)))
