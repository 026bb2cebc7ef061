"""Keras layers that tfprune inserts into models (per-channel masks)."""

from tfprune.layers.masks import ChannelMask

__all__ = ["ChannelMask"]
