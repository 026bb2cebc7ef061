"""Importance criteria that score the units of a channel group (low scores are pruned first)."""

from tfprune.importance.criteria import (
    FPGM,
    L1,
    L2,
    BNScale,
    Importance,
    Random,
    Taylor,
    channel_rows,
    get_importance,
)

__all__ = [
    "FPGM",
    "L1",
    "L2",
    "BNScale",
    "Importance",
    "Random",
    "Taylor",
    "channel_rows",
    "get_importance",
]
