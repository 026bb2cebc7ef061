"""Model -> channel groups: tracing, per-layer channel rules, group discovery."""

from tfprune.graph.groups import (
    ChannelGroup,
    ExplainReport,
    Member,
    analyze,
    channel_groups,
    explain,
)
from tfprune.graph.rules import LayerRule, register_rule

__all__ = [
    "ChannelGroup",
    "ExplainReport",
    "LayerRule",
    "Member",
    "analyze",
    "channel_groups",
    "explain",
    "register_rule",
]
