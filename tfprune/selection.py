"""From scores and a ratio specification to the units each group keeps.

Ratios are given per *segment*: the units of a group that the same producer layers create (a
plain conv's filters; all channels of a residual stream; one input's range of a concat). A
uniform ratio therefore prunes every producing layer by that ratio, as in Li et al. (2017):
``ceil(ratio * n)`` lowest-scoring units, never all of them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfprune.compat import keras, tf, tfmot, tfmot_pruning_schedule_class
from tfprune.errors import InvalidArgumentError
from tfprune.graph.groups import Analysis, ChannelGroup

__all__ = [
    "PruningPolicy",
    "RatioSpec",
    "check_options",
    "check_ratio",
    "check_sparsity",
    "pruned_count",
    "resolve_ratios",
    "select_units",
    "segment_layers",
]


def check_ratio(value: Any, what: str = "sparsity") -> float:
    """Validate a pruning ratio in [0, 1)."""
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{what} must be a number in [0, 1), got {value!r}.") from None
    if not 0.0 <= ratio < 1.0 or math.isnan(ratio):
        raise InvalidArgumentError(
            f"{what} must be in [0, 1) (the fraction of filters to remove), got {ratio}. "
            "Use e.g. 0.5 to remove half of the filters; 1.0 would remove every filter."
        )
    return ratio


#: A TF-MOT ``PruningSchedule`` (named only in type hints: TF-MOT is imported on first use).
PruningSchedule = Any
#: A sparsity as :func:`tfprune.prune_filters` takes it: a ratio, a TF-MOT schedule, or
#: ``{layer_name_regex: ratio or schedule}``.
Sparsity = float | PruningSchedule | Mapping[str, "float | PruningSchedule"]


def is_schedule(value: Any) -> bool:
    """Whether ``value`` is a TF-MOT ``PruningSchedule`` (False while TF-MOT is not imported)."""
    cls = tfmot_pruning_schedule_class()
    return cls is not None and isinstance(value, cls)


def check_sparsity(sparsity: Any) -> float | PruningSchedule | dict[str, Any]:
    """Validate a sparsity; a mapping comes back as a dict of ratios and schedules.

    A sparsity is a ratio in [0, 1), a TF-MOT schedule, or a non-empty mapping
    ``{layer_name_regex: ratio or schedule}``.
    """
    if is_schedule(sparsity):
        return sparsity
    if isinstance(sparsity, Mapping):
        if not sparsity:
            raise InvalidArgumentError(
                "sparsity mapping is empty; give {layer_name_regex: ratio, ...}."
            )
        out: dict[str, Any] = {}
        for pattern, value in sparsity.items():
            if not isinstance(pattern, str):
                raise InvalidArgumentError(
                    f"sparsity keys must be layer-name regular expressions, got {pattern!r}."
                )
            try:
                re.compile(pattern)
            except re.error as e:
                raise InvalidArgumentError(
                    f"sparsity pattern {pattern!r} is not a valid regular expression: {e}."
                ) from None
            out[pattern] = (
                value if is_schedule(value) else check_ratio(value, f"sparsity[{pattern!r}]")
            )
        return out
    return check_ratio(sparsity, "sparsity")


def check_options(global_ranking: Any, max_group_sparsity: Any, round_to: Any) -> None:
    """Validate the selection options of :func:`tfprune.prune_filters`."""
    if not isinstance(global_ranking, bool):
        raise InvalidArgumentError(f"global_ranking must be True or False, got {global_ranking!r}.")
    if not 0.0 < float(max_group_sparsity) < 1.0:
        raise InvalidArgumentError(
            f"max_group_sparsity must be in (0, 1), got {max_group_sparsity}."
        )
    if round_to is not None and (not isinstance(round_to, int) or round_to < 1):
        raise InvalidArgumentError(f"round_to must be a positive integer, got {round_to!r}.")


def _schedule_config(schedule: PruningSchedule) -> dict:
    return schedule.get_config()  # {"class_name": ..., "config": ...}


def _schedule_from_config(value: dict) -> PruningSchedule:
    cls = getattr(tfmot().sparsity.keras, value["class_name"], None)
    if cls is None:
        cls = keras.utils.get_registered_object(value["class_name"])
    if cls is None:
        raise InvalidArgumentError(
            f"Unknown pruning schedule {value['class_name']!r} in a saved policy; load it "
            "inside keras.utils.custom_object_scope({...}) with your schedule class."
        )
    return cls.from_config(value["config"])


def _final_sparsity(schedule: PruningSchedule) -> float:
    for key in ("final_sparsity", "target_sparsity"):
        if hasattr(schedule, key):
            return float(getattr(schedule, key))
    cfg = schedule.get_config()["config"]
    for key in ("final_sparsity", "target_sparsity"):
        if key in cfg:
            return float(cfg[key])
    raise InvalidArgumentError(
        f"Cannot read the final sparsity of schedule {type(schedule).__name__}; give it a "
        "'final_sparsity' or 'target_sparsity' config entry."
    )


@dataclasses.dataclass(frozen=True, eq=False)
class PruningPolicy:
    """How a masked model is pruned: its sparsity (ratios or live schedules) and options.

    It is validated when it is made. :func:`tfprune.prune_filters` makes it once; the masked
    model keeps it in one of its mask layers (read it with :func:`tfprune.pruning_policy`),
    whose config holds :meth:`get_config` so a reloaded model keeps pruning on its schedule.

    Attributes:
      sparsity: a ratio in [0, 1), a TF-MOT ``PruningSchedule``, or
        ``{layer_name_regex: ratio or schedule}``.
      importance: the criterion's name (``"custom"`` for a callable).
      skip: layer names whose filters are never removed.
      global_ranking, max_group_sparsity, round_to, seed: as in :func:`tfprune.prune_filters`.
      target: the target search's record (``TargetResult.to_dict()``) when the sparsity came
        from ``target=``; ``TargetResult.from_dict`` reads it back.
    """

    sparsity: Sparsity
    importance: str = "l1"
    skip: tuple[str, ...] = ()
    global_ranking: bool = False
    max_group_sparsity: float = 0.9
    round_to: int | None = None
    seed: int = 0
    target: dict | None = None

    def __post_init__(self) -> None:
        check_options(self.global_ranking, self.max_group_sparsity, self.round_to)
        object.__setattr__(self, "sparsity", check_sparsity(self.sparsity))
        object.__setattr__(self, "skip", tuple(self.skip))
        object.__setattr__(self, "max_group_sparsity", float(self.max_group_sparsity))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PruningPolicy) and self.get_config() == other.get_config()

    __hash__ = None  # type: ignore[assignment]  # mutable schedules inside

    def get_config(self) -> dict:
        """JSON-able form (schedules as their ``{"class_name", "config"}``)."""
        s = self.sparsity
        if isinstance(s, dict):
            sparsity: Any = {k: _schedule_config(v) if is_schedule(v) else v for k, v in s.items()}
        else:
            sparsity = _schedule_config(s) if is_schedule(s) else s
        return {
            "target": self.target,
            "sparsity": sparsity,
            "importance": self.importance,
            "skip": list(self.skip),
            "global_ranking": self.global_ranking,
            "max_group_sparsity": self.max_group_sparsity,
            "round_to": self.round_to,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict) -> PruningPolicy:
        """Inverse of :meth:`get_config`: the schedules become live objects again."""
        config = dict(config)
        s = config.get("sparsity")
        if isinstance(s, dict) and "class_name" in s:
            config["sparsity"] = _schedule_from_config(s)
        elif isinstance(s, dict):
            config["sparsity"] = {
                k: _schedule_from_config(v) if isinstance(v, dict) else v for k, v in s.items()
            }
        config["skip"] = tuple(config.get("skip", ()))
        return cls(**config)

    def _entries(self) -> list[tuple[str, Any]]:
        """("", default) then (pattern, ratio or schedule) of every mapping entry."""
        if isinstance(self.sparsity, dict):
            return [("", 0.0), *self.sparsity.items()]
        return [("", self.sparsity)]

    @property
    def is_gradual(self) -> bool:
        """Whether any ratio follows a schedule."""
        return any(is_schedule(v) for _, v in self._entries())

    def ratios_at(self, step: int | None) -> tuple[bool, RatioSpec]:
        """(should the masks change at ``step``, the ratios then). ``None`` = final ratios."""
        should = step is None
        resolved = []
        for key, value in self._entries():
            if is_schedule(value):
                if step is None:
                    ratio = _final_sparsity(value)
                else:
                    flag, sp = value(tf.constant(step, tf.int64))
                    should = should or bool(flag.numpy())
                    ratio = float(sp.numpy())
            else:
                ratio = float(value)
            resolved.append((key, ratio))
        spec = RatioSpec(
            default=resolved[0][1], patterns=tuple(resolved[1:]), skip=tuple(self.skip)
        )
        return should, spec


@dataclasses.dataclass
class RatioSpec:
    """A uniform ratio, or per-layer ratios by regular expression on layer names/paths."""

    default: float = 0.0
    patterns: tuple[tuple[str, float], ...] = ()
    skip: tuple[str, ...] = ()

    def ratio_for(self, names: list[str]) -> float:
        """Most conservative ratio among the producing layers ``names``."""
        if any(self._skipped(n) for n in names):
            return 0.0
        if not self.patterns:
            return self.default
        ratios = []
        for name in names:
            short = name.split("/")[-1]
            for pattern, ratio in self.patterns:
                if re.fullmatch(pattern, name) or re.fullmatch(pattern, short):
                    ratios.append(ratio)
                    break
            else:
                ratios.append(self.default)
        return min(ratios) if ratios else self.default

    def _skipped(self, name: str) -> bool:
        return name in self.skip or name.split("/")[-1] in self.skip


def segment_layers(group: ChannelGroup, segment: np.ndarray) -> list[str]:
    """Paths of the producer layers that create the units of ``segment``."""
    names = []
    for m in group.producers:
        if np.isin(segment, m.unit_of_channel).any():
            names.append(m.path)
    return names


def resolve_ratios(analysis: Analysis, spec: RatioSpec) -> dict[tuple[int, int], float]:
    """Ratio for every (group id, segment index) of the prunable groups."""
    out = {}
    for g in analysis.groups:
        if not g.prunable:
            continue
        for s, seg in enumerate(g.segments):
            out[(g.id, s)] = spec.ratio_for(segment_layers(g, seg))
    return out


def pruned_count(n: int, ratio: float) -> int:
    """Units removed from ``n`` at ``ratio``: ``ceil(ratio * n)`` in exact arithmetic, < n.

    The tiny tolerance makes float noise irrelevant: ``0.14 * 50 = 7.000000000000001`` and
    ``0.3 * 10`` both prune exactly 7 and 3 (the authors' code would prune 8 and 4).
    """
    return max(0, min(n - 1, math.ceil(ratio * n - 1e-9)))


def _n_prune(n: int, ratio: float, round_to: int | None) -> int:
    k = pruned_count(n, ratio)
    kept = n - k
    if round_to and round_to > 1:
        kept = min(n, -(-kept // round_to) * round_to)
    return max(0, min(n - 1, n - kept))


def select_units(
    groups: list[ChannelGroup],
    scores: Mapping[int, np.ndarray],
    ratios: Mapping[tuple[int, int], float],
    *,
    global_ranking: bool = False,
    max_group_sparsity: float = 0.9,
    round_to: int | None = None,
    pruned: Mapping[int, np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """Boolean "pruned" arrays per group id.

    Layer-wise (default): each segment drops its ``ceil(ratio * n)`` lowest-scoring unblocked
    units (at most ``n - 1``). Global: units of all segments are ranked together on scores
    normalised by their group's mean, and the lowest ``ratio`` fraction (the first segment
    ratio, i.e. the uniform sparsity) of all candidates is dropped, at most
    ``max_group_sparsity`` of any segment. Units already in ``pruned`` stay pruned (gradual
    pruning is monotone). No channel axis of a group is ever emptied.
    """
    pruned = pruned or {}
    result: dict[int, np.ndarray] = {}
    by_id = {g.id: g for g in groups}
    plans: list[tuple[ChannelGroup, np.ndarray, int, np.ndarray]] = []
    for (gid, s), ratio in ratios.items():
        g = by_id[gid]
        seg = g.segments[s]
        before = pruned.get(gid, np.zeros(g.n_units, bool))
        candidates = seg[~g.blocked[seg]]
        n_target = _n_prune(len(seg), ratio, round_to) if ratio > 0 else 0
        n_target = min(n_target, len(candidates))
        score = np.asarray(scores[gid], float)[candidates]
        score = np.where(before[candidates], -np.inf, score)
        plans.append((g, candidates, n_target, score))
        result.setdefault(gid, before.copy())

    if global_ranking:
        total = sum(len(c) for _, c, _, _ in plans)
        ratio = max(ratios.values(), default=0.0)
        budget = math.ceil(ratio * total - 1e-9)
        entries = []
        for i, (_, cand, _, score) in enumerate(plans):
            finite = score[np.isfinite(score)]
            scale = finite.mean() if finite.size and finite.mean() > 0 else 1.0
            for u, sc in zip(cand, score, strict=True):
                entries.append((sc / scale, i, u))
        entries.sort(key=lambda e: (e[0], e[1], e[2]))
        taken = [0] * len(plans)
        caps = [
            min(len(c) - 1, _n_prune(len(c), max_group_sparsity, round_to)) if len(c) else 0
            for _, c, _, _ in plans
        ]
        count = 0
        for _, i, u in entries:
            if count >= budget:
                break
            if taken[i] >= caps[i]:
                continue
            result[plans[i][0].id][u] = True
            taken[i] += 1
            count += 1
    else:
        for g, cand, n_target, score in plans:
            if n_target <= 0:
                continue
            order = np.lexsort((cand, score))
            result[g.id][cand[order[:n_target]]] = True

    for gid, mask in result.items():
        _never_empty(by_id[gid], mask, np.asarray(scores[gid], float))
    return result


def _never_empty(group: ChannelGroup, pruned: np.ndarray, scores: np.ndarray) -> None:
    """Un-prune the best unit of any channel axis that would lose every channel."""
    for m in group.members:
        units = np.unique(m.unit_of_channel)
        if units.size and pruned[units].all():
            best = units[np.argmax(scores[units])]
            pruned[best] = False
