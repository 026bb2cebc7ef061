"""Comparison-setup bookkeeping: which setup do two runs share?

The setups S1..S4.2 and SX-A/SX-B are those of Table 2 of Wang et al. 2023, "Why is the State of
Neural Network Pruning so Confusing?".

:func:`setup_check` takes two runs (records, record dicts or bare ``setup`` dicts as written by
:func:`tfprune.protocols.execute.execute`) and returns the *strictest* setup both satisfy plus the
items that differ:

* pruning vs pruning: ``S1`` (same dataset, network and compression: params or FLOPs)
  < ``S2`` (+ same base model) < ``S3.1`` (+ same number of retraining epochs) < ``S3.2``
  (+ identical retraining LR schedule and hyper-parameters, numeric precision included)
  < ``S4.1`` (+ same pruning-stage epochs) < ``S4.2`` (+ same pruning-stage LR schedule);
* pruning vs scratch (at least one run has ``scratch: True``): ``S4.2`` when the overall LR
  schedules (pretraining + pruning + retraining vs scratch) and the hyper-parameters are
  identical, else ``SX-B`` (same total training FLOPs), else ``SX-A`` (same total epochs), else
  ``S1``. Two scratch runs (e.g. Scratch-B vs Scratch-E) are compared the same way: they share no
  base model, so S2 and above never apply;
* ``"none"`` when not even S1 holds (different dataset, network or compression).

Setup dict keys: ``dataset``, ``model``, ``params``, ``flops``, ``base_id``,
``finetune_schedule``, ``finetune_epochs``, ``hyper`` (dict), ``prune_epochs``,
``prune_schedule``, ``overall_schedule``, ``total_epochs``, ``total_flops``, ``scratch``.
Missing keys count as unknown: a rung that needs them is not granted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SCRATCH_ORDER",
    "SETUP_ORDER",
    "SetupVerdict",
    "setup_check",
    "setup_of",
    "strictest_shared",
    "strictest_shared_named",
]

SETUP_ORDER: tuple[str, ...] = ("none", "S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2")
"""Pruning-vs-pruning setups from least to most strict."""

SCRATCH_ORDER: tuple[str, ...] = ("none", "S1", "SX-A", "SX-B", "S4.2")
"""Comparisons that involve scratch training, from least to most strict."""


@dataclasses.dataclass(frozen=True)
class SetupVerdict:
    """The strictest comparison setup two runs share.

    Attributes:
        label: ``"none"``, ``"S1"`` ... ``"S4.2"``, ``"SX-A"`` or ``"SX-B"``.
        mismatches: ``"item: a vs b"`` for every compared item that differs (or is unknown).
        satisfied: Every setup label that holds (for scratch comparisons SX-A and SX-B may both).
        scratch: True when at least one run is scratch training (labels from
            :data:`SCRATCH_ORDER`, else from :data:`SETUP_ORDER`).
    """

    label: str
    mismatches: list[str]
    satisfied: list[str] = dataclasses.field(default_factory=list)
    scratch: bool = False

    def fair(self) -> bool:
        """True at S3.2 or stricter (the paper's recommendation), or any scratch setup (SX/S4.2)."""
        return self.label in ("S3.2", "S4.1", "S4.2", "SX-A", "SX-B")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return dataclasses.asdict(self)


def setup_of(run: Any) -> dict[str, Any]:
    """The setup dict of a :class:`RunRecord`, a record dict or a setup dict."""
    if hasattr(run, "setup") and isinstance(run.setup, Mapping):
        return dict(run.setup)
    if isinstance(run, Mapping):
        if "setup" in run and isinstance(run["setup"], Mapping):
            return dict(run["setup"])
        return dict(run)
    raise TypeError(f"setup_check needs RunRecords or setup dicts, got {type(run).__name__}")


_MISSING = object()


def _close(a: Any, b: Any, rel_tol: float) -> bool:
    if a is None or b is None:
        return False
    a, b = float(a), float(b)
    return abs(a - b) <= rel_tol * max(abs(a), abs(b), 1e-12)


def setup_check(run_a: Any, run_b: Any, *, rel_tol: float = 0.02) -> SetupVerdict:
    """The strictest comparison setup (the paper's Table 2) two runs share, and what differs.

    Args:
        run_a: A :class:`RunRecord`, a record dict or a setup dict.
        run_b: The run to compare it with (same kinds).
        rel_tol: Relative tolerance for "same" params / FLOPs / total FLOPs (Scratch-B budgets
            are whole epochs, so total FLOPs only match approximately).
    """
    a, b = setup_of(run_a), setup_of(run_b)
    mismatches: list[str] = []

    def same(key: str, numeric: bool = False) -> bool:
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if va is _MISSING or vb is _MISSING:
            mismatches.append(f"{key}: unknown")
            return False
        ok = _close(va, vb, rel_tol) if numeric else va == vb
        if not ok:
            mismatches.append(f"{key}: {va!r} vs {vb!r}")
        return ok

    same_data = same("dataset")
    same_net = same("model")
    n_before = len(mismatches)
    same_params = same("params", numeric=True)
    same_flops = same("flops", numeric=True)
    if same_params or same_flops:
        del mismatches[n_before:]  # either rate is enough for S1
    s1 = same_data and same_net and (same_params or same_flops)

    scratch_a, scratch_b = bool(a.get("scratch", False)), bool(b.get("scratch", False))
    if scratch_a or scratch_b:
        satisfied = ["S1"] if s1 else []
        if s1:
            same_overall = same("overall_schedule")
            if same("hyper") and same_overall:
                satisfied.append("S4.2")
            if same("total_flops", numeric=True):
                satisfied.append("SX-B")
            if same("total_epochs"):
                satisfied.append("SX-A")
        label = "none"
        for candidate in ("S4.2", "SX-B", "SX-A", "S1"):
            if candidate in satisfied:
                label = candidate
                break
        return SetupVerdict(label, mismatches, satisfied, scratch=True)

    satisfied: list[str] = []
    if s1:
        satisfied.append("S1")
    s2 = s1 and same("base_id")
    if s2 and a.get("base_id") is None:  # an unknown base model is not "the same" one
        mismatches.append("base_id: unknown")
        s2 = False
    if s2:
        satisfied.append("S2")
    same_epochs = same("finetune_epochs")
    s31 = s2 and same_epochs
    if s31:
        satisfied.append("S3.1")
    same_sched = same("finetune_schedule")
    same_hyper = same("hyper")
    s32 = s31 and same_sched and same_hyper
    if s32:
        satisfied.append("S3.2")
    same_prune_epochs = same("prune_epochs")
    s41 = s32 and same_prune_epochs
    if s41:
        satisfied.append("S4.1")
    same_prune_sched = same("prune_schedule")
    if s41 and same_prune_sched:
        satisfied.append("S4.2")
    label = satisfied[-1] if satisfied else "none"
    return SetupVerdict(label, mismatches, satisfied)


def strictest_shared(verdicts: list[SetupVerdict]) -> SetupVerdict:
    """The strictest setup that *every* verdict satisfies, with all their mismatches.

    Used for a pair of grid cells: each seed-paired pair of runs has its own verdict, and the
    cells are only as comparable as their least comparable pair. Mismatches shared by every pair
    are listed once; the others are prefixed by the pair they come from (when the verdicts are
    given as ``(name, verdict)`` via :func:`strictest_shared_named`).
    """
    return strictest_shared_named([("", v) for v in verdicts])


def strictest_shared_named(named: list[tuple[str, SetupVerdict]]) -> SetupVerdict:
    """:func:`strictest_shared` where every verdict has a name (e.g. ``"seed 1"``)."""
    if not named:
        return SetupVerdict("none", ["no pair of runs to compare"], [])
    scratch = any(v.scratch for _, v in named)
    order = SCRATCH_ORDER if scratch else SETUP_ORDER
    shared = set(named[0][1].satisfied)
    for _, v in named[1:]:
        shared &= set(v.satisfied)
    label = "none"
    for candidate in order:
        if candidate in shared:
            label = candidate
    common = [m for m in named[0][1].mismatches if all(m in v.mismatches for _, v in named)]
    mismatches = list(common)
    for name, v in named:
        for m in v.mismatches:
            if m not in common:
                mismatches.append(f"{name}: {m}" if name else m)
    satisfied = [c for c in order if c in shared]
    return SetupVerdict(label, mismatches, satisfied, scratch=scratch)
