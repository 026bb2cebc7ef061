"""The ``scratch_vs_prune`` protocol: scratch training vs pruning pipelines.

Scratch-E/B training of the pruned shape against the S4.2 / SX-A / SX-B pipelines (PxFy rows)
of Table 4 of Wang et al. 2023, "Why is the State of Neural Network Pruning so Confusing?".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfprune.configs.checks import LR, EpochList, Epochs, Ratios, Recipe, Schedule
from tfprune.errors import ConfigError, did_you_mean
from tfprune.protocols.base import (
    ROW_COLUMNS,
    Protocol,
    Summary,
    base_dict,
    check_reference,
    columns_for,
    configured_methods,
    lr_text,
    make_spec,
    method_label,
    method_options,
    outcome,
    paired_test_text,
    percent_text,
    ratio_text,
    retrain_recipe,
    seed_list,
    summarize_cells,
)
from tfprune.protocols.params import CommonParams, defaults_of
from tfprune.protocols.spec import RunRecord, RunSpec, base_recipe
from tfprune.training.schedules import (
    format_piecewise,
    halving_schedule,
    parse_schedule,
    truncate_piecewise,
)

__all__ = [
    "ScratchVsPrune",
]


_SETUPS = ("S4.2", "SX-A", "SX-B")
_PIPELINE_KEYS = ("setup", "prune_epoch", "lr")


def _prune_epoch(p: Any, where: str, total: int) -> int:
    if isinstance(p, float) and p == int(p):
        p = int(p)
    if isinstance(p, bool) or not isinstance(p, int) or not 0 < p < total:
        raise ConfigError(f"{where}: prune epoch {p!r} must be in (0, total_epochs={total})")
    return p


def _pipelines(cfg: Any, name: str, total: int) -> dict[int, list]:
    """Pruning epoch -> [(setup, retraining LR or None)], in the order the rows are listed.

    From ``pipelines`` when given, else every setup of ``setups`` at every ``prune_epochs``.
    (The config's types, a list of mappings here, are checked before this runs.)
    """
    out: dict[int, list] = {}
    entries = []
    if cfg.pipelines:
        for k, row in enumerate(cfg.pipelines):
            where = f"{name}.pipelines[{k}]"
            unknown = sorted(set(row) - set(_PIPELINE_KEYS))
            if unknown:
                raise ConfigError(
                    f"{where}: unknown key(s) {unknown}{did_you_mean(unknown[0], _PIPELINE_KEYS)}"
                    f"; a row has {', '.join(_PIPELINE_KEYS)}"
                )
            if "setup" not in row or "prune_epoch" not in row:
                raise ConfigError(f"{where} needs setup and prune_epoch")
            if row["setup"] == "S4.2" and row.get("lr") is not None:
                raise ConfigError(
                    f"{where}: S4.2 continues the scratch schedule, so it takes no lr"
                )
            entries.append((row["setup"], row["prune_epoch"], row.get("lr"), where))
    else:
        unknown = sorted(set(cfg.setups) - set(_SETUPS))
        if unknown:
            raise ConfigError(f"{name}.setups: unknown {unknown}; use S4.2, SX-A, SX-B")
        where = f"{name}.prune_epochs"
        for p in cfg.prune_epochs:
            p = _prune_epoch(p, where, total)
            out.setdefault(p, [])  # Scratch-B needs the first pruning epoch, even with no setup
            entries += [(setup, p, None, where) for setup in _SETUPS if setup in cfg.setups]
    for setup, p, lr, where in entries:
        p = _prune_epoch(p, where, total)
        if setup not in _SETUPS:
            raise ConfigError(
                f"{where}: unknown setup {setup!r}{did_you_mean(str(setup), _SETUPS)}; use "
                + ", ".join(_SETUPS)
            )
        if setup != "S4.2":
            lr = float(cfg.sxa_lr if setup == "SX-A" else cfg.sxb_lr) if lr is None else lr
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
                raise ConfigError(f"{where}: lr must be a positive number, got {lr!r}")
            lr = float(lr)
        if (setup, lr) in out.get(p, []):
            raise ConfigError(f"{where}: {setup} at prune epoch {p} is listed twice")
        out.setdefault(p, []).append((setup, lr))
    return out


@dataclasses.dataclass(frozen=True)
class ScratchVsPruneParams(CommonParams):
    """The ``scratch_vs_prune`` config (besides :class:`CommonParams`).

    Attributes:
        base: Extra base-model settings (its schedule is ``scratch_schedule``).
        methods: Pruning methods.
        reference: The scratch row every row is compared with (``Scratch-E`` or ``Scratch-B``).
        ratios: Pruning ratios (numbers or ``{layer-name regex: ratio}``).
        scratch_schedule: The dense and scratch schedule, piecewise constant.
        total_epochs: Its length.
        prune_epochs: Pruning epochs P of the ``setups`` rows.
        sxa_lr / sxb_lr: Retraining LR of SX-A / SX-B rows.
        setups: ``S4.2``, ``SX-A``, ``SX-B``.
        scratch_b: Add Scratch-B rows.
        halving_stage_cap: Longest stage of the halving schedule, in epochs.
        regularization: A regularized method.
        pipelines: Explicit ``{setup, prune_epoch, lr}`` rows instead of setups x prune_epochs.
    """

    base: Recipe = dataclasses.field(default_factory=dict)
    methods: list[str] = dataclasses.field(default_factory=lambda: ["l1"])
    reference: str = "Scratch-E"
    ratios: Ratios = dataclasses.field(default_factory=lambda: [0.5, 0.8])
    scratch_schedule: Schedule = "0:0.02,10:0.002,15:0.0002"
    total_epochs: Epochs = 20
    prune_epochs: EpochList = dataclasses.field(default_factory=lambda: [5, 10])
    sxa_lr: LR = 0.02
    sxb_lr: LR = 0.02
    setups: list[str] = dataclasses.field(default_factory=lambda: ["S4.2", "SX-A", "SX-B"])
    scratch_b: bool = True
    halving_stage_cap: int = 30
    regularization: dict = dataclasses.field(default_factory=dict)
    pipelines: list[dict] = dataclasses.field(default_factory=list)


class ScratchVsPrune(Protocol):
    """Scratch vs pruning (Wang et al. 2023, Tab. 4): pruned shape from scratch vs PxFy pipelines.

    ``scratch_schedule`` over ``total_epochs`` is both the scratch and the dense recipe. For each
    pruning epoch P in ``prune_epochs``, each ratio and each method of ``methods`` (default
    ``["l1"]``; ``regularization`` adds a regularized one): S4.2 (retraining continues the
    scratch schedule), SX-A (same total epochs, retraining from ``sxa_lr`` with the paper's halving
    rule down to the scratch's final LR), SX-B (pretraining squeezed to ``P/k`` epochs' worth of
    steps, k = measured speed-up, so the pipeline's FLOPs equal Scratch-E's; retraining from
    ``sxb_lr``). Scratch rows: Scratch-E (``total_epochs``) and, with ``scratch_b``, Scratch-B
    (``K1*F1/F2 + K2`` of the first P). Every row is compared with the ``reference`` scratch row
    (``Scratch-E`` or ``Scratch-B``) of its ratio.

    ``pipelines`` lists the pipeline rows explicitly instead of every setup at every pruning
    epoch: ``[{setup: S4.2, prune_epoch: 30}, {setup: SX-A, prune_epoch: 60, lr: 0.01}, ...]``
    (``lr`` only for SX-A/SX-B, defaulting to ``sxa_lr``/``sxb_lr``), so one file can hold a
    paper's table whose rows use different LRs at different pruning epochs. The labels and run
    ids are those the same row gets from ``setups`` × ``prune_epochs``.
    """

    name = "scratch_vs_prune"
    description = "scratch training vs pruning under S4.2 / SX-A / SX-B (PxFy rows), Scratch-E/B"
    default_config = defaults_of(ScratchVsPruneParams)
    params = ScratchVsPruneParams

    def expand(self, config: dict) -> list[RunSpec]:
        """Cells per ratio: Scratch-E, Scratch-B, and each method × setup × pruning epoch."""
        cfg = self.config(config)
        total = int(cfg.total_epochs)
        sched = parse_schedule(cfg.scratch_schedule, total, f"{self.name}.scratch_schedule")
        if sched.kind != "piecewise":
            raise ConfigError(
                f"{self.name}.scratch_schedule must be piecewise constant ('0:0.1,80:0.01' or "
                f"'steps:0.1@0,0.01@80'), got {cfg.scratch_schedule!r}"
            )
        stages = sched.stages
        final_lr = stages[-1][1]
        pipelines = _pipelines(cfg, self.name, total)
        refs = ["Scratch-E"] + (["Scratch-B"] if cfg.scratch_b else [])
        check_reference(self.name, cfg.reference, refs, "a scratch row")
        methods, reg = configured_methods(cfg, self.name)
        base_extra = {k: v for k, v in cfg.base.items() if k not in ("schedule", "epochs")}
        specs: list[RunSpec] = []
        seeds = seed_list(cfg, self.name)
        for ratio in cfg.ratios:
            r = ratio_text(ratio)
            # The dense model's recipe: the scratch schedule with the base hyper-parameters.
            base_full = {**base_extra, "schedule": cfg.scratch_schedule, "epochs": total}
            scratch_recipe = base_recipe(base_dict(cfg, base_full), cfg.dataset)
            for seed in seeds:
                specs.append(
                    make_spec(
                        self.name,
                        cfg,
                        f"Scratch-E / pr={r}",
                        "scratch",
                        scratch_recipe,
                        seed,
                        ratio=ratio,
                        base=base_full,
                    )
                )
            for p, wanted in pipelines.items():
                f = total - p
                base_p = {**base_full, "epochs": p, "schedule_epochs": total}
                rows = []
                for setup, lr in wanted:
                    if setup == "S4.2":
                        sched = format_piecewise(truncate_piecewise(stages, p))
                        rows.append((f"S4.2 P{p}F{f}", sched, {}))
                        continue
                    sched = format_piecewise(
                        halving_schedule(lr, f, final_lr, int(cfg.halving_stage_cap))
                    )
                    if setup == "SX-A":
                        rows.append((f"SX-A P{p}F{f},{lr_text(lr)}", sched, {}))
                    else:
                        squeeze = {"squeeze_base_by_speedup": True}
                        rows.append((f"SX-B P{p}/kF{f},{lr_text(lr)}", sched, squeeze))
                for method in methods:
                    prefix = "" if method == "l1" else f"{method_label(method)} "
                    extra = method_options(method, reg)
                    for label, sched, opts in rows:
                        for seed in seeds:
                            specs.append(
                                make_spec(
                                    self.name,
                                    cfg,
                                    f"{prefix}{label} / pr={r}",
                                    method,
                                    retrain_recipe(cfg, sched, f),
                                    seed,
                                    ratio=ratio,
                                    base=base_p,
                                    **opts,
                                    **extra,
                                )
                            )
            if cfg.scratch_b and pipelines:
                p = next(iter(pipelines))
                base_p = {**base_full, "epochs": p, "schedule_epochs": total}
                for seed in seeds:
                    specs.append(
                        make_spec(
                            self.name,
                            cfg,
                            f"Scratch-B (P{p}F{total - p}) / pr={r}",
                            "scratch",
                            scratch_recipe,
                            seed,
                            ratio=ratio,
                            base=base_p,
                            scratch_budget="B",
                            pipeline_epochs=total - p,
                        )
                    )
        return specs

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """Rows per cell, each compared with the ``reference`` scratch row of its ratio.

        Setup labels and p-values come from the seed-paired runs (:func:`compare_cells`); SX-B
        rows also show ``flops_vs_scratch_e``, their achieved pipeline FLOPs over Scratch-E's.
        """
        cfg = self.config(config)
        records = list(records)
        prefix = cfg.reference
        scratch_of: dict[str, str] = {}
        for r in records:
            if r.spec["method"] == "scratch" and r.spec["cell"].startswith(prefix):
                scratch_of.setdefault(ratio_text(r.spec["ratio"]), r.spec["cell"])

        def ref(cell: str, recs: list[RunRecord]) -> str | None:
            return scratch_of.get(ratio_text(recs[0].spec["ratio"]))

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg.metric)
        verdicts = []
        for row in rows:
            if row["reference"] is None:
                continue
            ref_row = next(x for x in rows if x["cell"] == row["reference"])
            diff = row["diff_vs_ref"]
            word = outcome(diff, row["p_vs_ref"])
            flops = (
                f"; pipeline FLOPs {row['flops_vs_scratch_e']:.3f}× Scratch-E's"
                if row.get("flops_vs_scratch_e") is not None
                else ""
            )
            tested = paired_test_text(row["p_vs_ref"], len(row.get("paired_seeds") or []))
            gap = (
                "no seed in common" if diff is None or diff != diff else f"{100 * diff:+.2f} points"
            )
            verdicts.append(
                f"{row['cell']} {word} {row['reference']}: {percent_text(row['mean'])} vs "
                f"{percent_text(ref_row['mean'])} ({gap}, {tested}); setup {row['setup']}{flops}."
            )
        return Summary(rows, verdicts, columns_for(ROW_COLUMNS, rows), curves)
