"""Keras layers that tfprune inserts into models (per-channel masks)."""

from tfprune.layers.masks import ChannelMask, MaskedLayerNormalization

__all__ = ["ChannelMask", "MaskedLayerNormalization"]
