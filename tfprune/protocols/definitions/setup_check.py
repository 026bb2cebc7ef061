"""The ``setup_check`` protocol: runs given specs and names the setup each pair shares.

The setup of a pair is the strictest comparison setup (S1..S4.2, SX-A/B) both runs meet, from
:func:`tfprune.protocols.setups.setup_check`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfprune.errors import ConfigError
from tfprune.protocols.base import Protocol, Summary
from tfprune.protocols.params import defaults_of
from tfprune.protocols.setups import setup_check
from tfprune.protocols.spec import RunRecord, RunSpec

__all__ = [
    "SetupCheck",
    "SetupCheckParams",
]


@dataclasses.dataclass(frozen=True)
class SetupCheckParams:
    """The ``setup_check`` config.

    Attributes:
        runs: The runs to compare, as RunSpec dicts (at least two).
    """

    runs: list = dataclasses.field(default_factory=list)


class SetupCheck(Protocol):
    """The strictest comparison setup every pair of given runs shares.

    ``runs`` is a list of RunSpec dicts; they are run, and every pair is labelled with its setup
    and the mismatched items.
    """

    name = "setup_check"
    description = "strictest comparison setup (S1..S4.2, SX-A/B) of every pair of given runs"
    default_config = defaults_of(SetupCheckParams)
    params = SetupCheckParams

    def expand(self, config: dict) -> list[RunSpec]:
        """The given specs, as they are."""
        cfg = self.config(config)
        if len(cfg.runs) < 2:
            raise ConfigError(f"{self.name}.runs needs at least two run specs")
        return [RunSpec.from_dict(d) if isinstance(d, Mapping) else d for d in cfg.runs]

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """One row per pair: labels, setup, mismatches."""
        records = list(records)
        rows, verdicts = [], []
        for i in range(len(records)):
            for j in range(i + 1, len(records)):
                a, b = records[i], records[j]
                v = setup_check(a, b)
                label_a = f"{a.spec.get('cell')} (seed {a.spec.get('seed')})"
                label_b = f"{b.spec.get('cell')} (seed {b.spec.get('seed')})"
                rows.append(
                    {
                        "cell": f"{label_a} vs {label_b}",
                        "setup": v.label,
                        "fair": v.fair(),
                        "mismatches": "; ".join(v.mismatches) or "none",
                        "a_acc": a.metrics.get("final_acc"),
                        "b_acc": b.metrics.get("final_acc"),
                    }
                )
                verdicts.append(
                    f"{label_a} vs {label_b}: {v.label}"
                    + (f" (differs in: {'; '.join(v.mismatches)})" if v.mismatches else "")
                )
        return Summary(rows, verdicts, ["cell", "setup", "fair", "mismatches", "a_acc", "b_acc"])
