"""The per-unit masks of both directions of a bidirectional RNN, as one mask (either flavour)."""

from __future__ import annotations

from typing import Any

__all__ = ["TiedMasks"]


class TiedMasks:
    """The per-unit masks of both directions of a bidirectional RNN, read and written as one."""

    def __init__(self, variables: list) -> None:
        self.variables = variables

    @property
    def dtype(self) -> Any:
        """The masks' dtype."""
        return self.variables[0].dtype

    def numpy(self) -> Any:
        """The mask (both directions hold the same values)."""
        return self.variables[0].numpy()

    def assign(self, value: Any) -> None:
        """Write ``value`` into both directions' masks."""
        for v in self.variables:
            v.assign(value)
