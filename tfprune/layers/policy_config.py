"""How a tfprune mask layer holds the model's pruning policy (both Keras flavours)."""

from __future__ import annotations

from tfprune.selection import PruningPolicy

__all__ = ["policy_argument", "config_with_policy"]


def policy_argument(policy: PruningPolicy | dict | None) -> PruningPolicy | None:
    """The live policy from a layer argument (a config dict when the layer is loaded)."""
    if isinstance(policy, dict):
        return PruningPolicy.from_config(policy) if policy else None
    return policy


def config_with_policy(config: dict, policy: PruningPolicy | None) -> dict:
    """A layer's config with the policy it carries (unchanged when it carries none)."""
    return {**config, "policy": policy.get_config()} if policy is not None else config
