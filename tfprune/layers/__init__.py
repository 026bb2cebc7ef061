"""Keras layers that tfprune puts into masked models (per-channel masks)."""

from tfprune.layers.masks import (
    ChannelMask,
    MaskedConv1D,
    MaskedConv2D,
    MaskedConv3D,
    MaskedDense,
    MaskedGRU,
    MaskedLayerNormalization,
    MaskedLSTM,
    MaskedSimpleRNN,
    is_mask_layer,
)

__all__ = [
    "ChannelMask",
    "MaskedConv1D",
    "MaskedConv2D",
    "MaskedConv3D",
    "MaskedDense",
    "MaskedGRU",
    "MaskedLSTM",
    "MaskedLayerNormalization",
    "MaskedSimpleRNN",
    "is_mask_layer",
]
