"""A JSON-serialisable record of which channels a pruned model keeps, replayable.

A :class:`PruningPlan` lists, for every layer that loses channels, the kept indices of each of
its channel roles (``in``/``out``/``ch``) together with the original size. It can be saved,
loaded and applied to another instance of the same architecture with
:func:`tfprune.apply_plan` (for instance to the base model after a search, or to a model
re-created from code).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from tfprune.errors import IncompatiblePlanError
from tfprune.files import atomic_write_text
from tfprune.graph.groups import Analysis
from tfprune.graph.rules import PRODUCER_ROLES

__all__ = ["PruningPlan", "plan_from_pruned", "pruned_from_plan"]

FORMAT_VERSION = 1


@dataclasses.dataclass
class PruningPlan:
    """Kept channel indices per layer and role, plus a per-group summary."""

    model_name: str
    layers: dict[str, dict[str, dict[str, Any]]]
    groups: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict) -> PruningPlan:
        """Inverse of :meth:`to_dict`, with a clear error for foreign or newer files."""
        if not isinstance(data, dict) or "layers" not in data:
            raise IncompatiblePlanError(
                "Not a tfprune pruning plan (no 'layers' entry). Save plans with "
                "PruningPlan.save() or tfprune.strip_filters(..., return_plan=True)."
            )
        version = data.get("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise IncompatiblePlanError(
                f"Pruning plan format {version} is newer than this tfprune understands "
                f"({FORMAT_VERSION}); upgrade tfprune."
            )
        return cls(
            model_name=data.get("model_name", ""),
            layers=data["layers"],
            groups=data.get("groups", []),
            format_version=version,
        )

    @classmethod
    def from_json(cls, text: str) -> PruningPlan:
        """Parse JSON text."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan as JSON (atomically)."""
        atomic_write_text(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> PruningPlan:
        """Read a plan written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    @property
    def removed_channels(self) -> int:
        """Number of output channels (filters) and attention heads removed over all layers."""
        return sum(
            r["size"] - len(r["kept"])
            for roles in self.layers.values()
            for role, r in roles.items()
            if role in PRODUCER_ROLES
        )


def plan_from_pruned(analysis: Analysis, pruned: dict[int, np.ndarray]) -> PruningPlan:
    """Build the plan for ``pruned`` (bool per unit, per group id) on ``analysis``."""
    layers: dict[str, dict[str, dict[str, Any]]] = {}
    groups = []
    by_id = {g.id: g for g in analysis.groups}
    for gid, mask in pruned.items():
        if not mask.any():
            continue
        g = by_id[gid]
        kept_units = np.flatnonzero(~mask)
        groups.append(
            {"id": gid, "name": g.name, "units": g.n_units, "kept_units": int(kept_units.size)}
        )
        for m in g.layers:
            if type(m.layer).__name__ == "ChannelMask":
                continue
            kept = m.kept_channels(kept_units)
            if kept.size < m.size:
                layers.setdefault(m.path, {})[m.role] = {
                    "size": int(m.size),
                    "kept": [int(i) for i in kept],
                }
    return PruningPlan(model_name=analysis.model.name, layers=layers, groups=groups)


def pruned_from_plan(analysis: Analysis, plan: PruningPlan) -> dict[int, np.ndarray]:
    """Translate a plan back into pruned units of ``analysis``; checks that it fits."""
    members = {(m.path, m.role): m for g in analysis.groups for m in g.layers}
    pruned: dict[int, np.ndarray] = {}
    decided: dict[int, list[tuple[str, str, np.ndarray, np.ndarray]]] = {}
    for path, roles in plan.layers.items():
        for role, entry in roles.items():
            m = members.get((path, role))
            if m is None:
                raise IncompatiblePlanError(
                    f"The plan prunes {role!r} channels of layer {path!r}, which this model "
                    f"({analysis.model.name!r}) does not have. Apply a plan only to the "
                    "architecture it was made for."
                )
            if m.size != entry["size"]:
                raise IncompatiblePlanError(
                    f"Layer {path!r} has {m.size} {role!r} channels but the plan was made for "
                    f"{entry['size']}. Apply a plan only to the architecture it was made for."
                )
            gid = analysis.group_of_key[m.key]
            g = analysis.groups[gid]
            kept = np.zeros(m.size, bool)
            kept[np.asarray(entry["kept"], int)] = True
            units_kept = np.unique(m.unit_of_channel[kept])
            units_here = np.unique(m.unit_of_channel)
            mask = pruned.setdefault(gid, np.zeros(g.n_units, bool))
            drop = np.setdiff1d(units_here, units_kept)
            if np.intersect1d(units_kept, np.unique(m.unit_of_channel[~kept])).size:
                raise IncompatiblePlanError(
                    f"The plan keeps only part of a coupled channel set in layer {path!r}; "
                    "it does not fit this model's channel groups."
                )
            if g.blocked[drop].any():
                raise IncompatiblePlanError(
                    f"The plan removes channels of layer {path!r} that cannot be pruned in "
                    "this model (see tfprune.explain(model))."
                )
            mask[drop] = True
            decided.setdefault(gid, []).append((path, role, units_here, units_kept))
    for gid, entries in decided.items():
        _check_coupling(analysis.groups[gid], entries, pruned[gid])
    return pruned


def _check_coupling(
    group: Any, entries: list[tuple[str, str, np.ndarray, np.ndarray]], pruned: np.ndarray
) -> None:
    """Raise unless every coupled layer of ``group`` keeps exactly what the plan says it keeps.

    Channels of one group are removed together (e.g. the inputs of an Add): a plan that keeps a
    channel in one layer and removes it from a coupled one cannot be applied exactly.
    """
    for path, role, _, units_kept in entries:
        dropped_elsewhere = np.intersect1d(units_kept, np.flatnonzero(pruned))
        if dropped_elsewhere.size == 0:
            continue
        unit = int(dropped_elsewhere[0])
        other = next((p, r) for p, r, here, kept in entries if unit in here and unit not in kept)
        raise IncompatiblePlanError(
            f"The plan contradicts a channel coupling: layer {path!r} ({role}) keeps a channel "
            f"that layer {other[0]!r} ({other[1]}) removes, but both belong to channel group "
            f"{group.name!r} and must be pruned together (e.g. the inputs of an Add). Make "
            "the plan with tfprune.strip_filters(..., return_plan=True) on this architecture."
        )
    named = {(p, r) for p, r, _, _ in entries}
    for m in group.layers:
        if type(m.layer).__name__ == "ChannelMask" or (m.path, m.role) in named:
            continue
        lost = np.intersect1d(np.unique(m.unit_of_channel), np.flatnonzero(pruned))
        if lost.size:
            first = entries[0]
            raise IncompatiblePlanError(
                f"The plan contradicts a channel coupling: it removes channels of layer "
                f"{first[0]!r} ({first[1]}) but says nothing of layer {m.path!r} ({m.role}), "
                f"which shares them (channel group {group.name!r}). Make the plan with "
                "tfprune.strip_filters(..., return_plan=True) on this architecture."
            )
