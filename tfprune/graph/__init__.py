"""Model -> channel groups: tracing, per-layer channel rules, group discovery."""

from tfprune.graph.groups import (
    ChannelGroup,
    ExplainReport,
    Member,
    analyze,
    channel_groups,
    explain,
)
from tfprune.graph.rules import ChannelContext, LayerRule, register_rule, unregister_rule

__all__ = [
    "ChannelContext",
    "ChannelGroup",
    "ExplainReport",
    "LayerRule",
    "Member",
    "analyze",
    "channel_groups",
    "explain",
    "register_rule",
    "unregister_rule",
]
