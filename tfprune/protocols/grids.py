"""Comparison protocols: config -> run specs (grid cells × seeds) -> summary tables.

Skeleton of the contract; the protocols are filled in below.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfprune.protocols.spec import RunRecord, RunSpec

__all__ = ["PROTOCOLS", "Protocol", "Summary"]


@dataclasses.dataclass
class Summary:
    """What a protocol concludes from its records.

    Attributes:
        rows: One dict per grid cell (``cell``, ``n``, ``mean``, ``std``, achieved params/FLOPs/
            speed-up next to the target, ``setup`` label, paired-test columns, ...).
        verdicts: Sentences stating the findings (one per comparison).
        columns: The row keys to show, in order.
    """

    rows: list[dict]
    verdicts: list[str]
    columns: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return dataclasses.asdict(self)


class Protocol:
    """A named comparison protocol (subclasses implement :meth:`expand` and :meth:`summarize`)."""

    name: str = ""
    description: str = ""
    default_config: dict = {}

    def expand(self, config: dict) -> list[RunSpec]:
        """Run specs (every cell × seed) of ``config`` merged over :attr:`default_config`."""
        raise NotImplementedError

    def summarize(self, records: list[RunRecord]) -> Summary:
        """One row per cell with mean ± std and the achieved compression, plus verdicts."""
        raise NotImplementedError


PROTOCOLS: dict[str, Protocol] = {}
