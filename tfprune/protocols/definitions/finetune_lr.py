"""The ``finetune_lr`` protocol (fine-tuning LR effect): methods × retraining LRs × budgets.

Cells compare the methods (default L1 vs L1+OrthP) at each retraining LR and budget, with
mean-JSV curves; the default config is the README main job (digits, MLP-7-Linear, LR 1e-2 vs
1e-3). Also here: :func:`lengthen_first_stage`, the schedule of its cells with a longer first LR
stage (Tables 5 and 8 of Wang et al. 2023, "Why is the State of Neural Network Pruning so
Confusing?"), and the verdicts read from those cells.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from tfprune.configs.checks import (
    LR,
    EpochList,
    LRList,
    ScheduleMap,
    check_lr,
    field_check,
)
from tfprune.errors import ConfigError
from tfprune.protocols.base import (
    ROW_COLUMNS,
    Protocol,
    Summary,
    check_reference,
    columns_for,
    compare_cells,
    configured_methods,
    lr_text,
    make_spec,
    method_label,
    method_options,
    outcome,
    paired_test_text,
    percent_text,
    retrain_recipe,
    scratch_baseline_recipe,
    seed_list,
    summarize_cells,
)
from tfprune.protocols.methods import METHODS
from tfprune.protocols.params import CommonParams, defaults_of
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.training.schedules import format_piecewise, parse_schedule

__all__ = [
    "FinetuneLR",
    "lengthen_first_stage",
]


def lengthen_first_stage(
    schedule: str, epochs: int, extra: int, field: str = "schedule"
) -> tuple[str, int]:
    """``schedule`` over ``epochs`` with its first LR stage ``extra`` epochs longer.

    The later stages keep their lengths, so the run lasts ``epochs + extra`` epochs (the paper's
    Table 5: ``0:0.001,30:0.0001,45:1e-5`` over 60 epochs, +60 -> ``0:0.001,90:0.0001,105:1e-05``
    over 120).

    Returns:
        ``(schedule text as epoch:lr stages, epochs)``.

    Raises:
        ConfigError: ``extra`` is not a whole number >= 1, or the schedule has no LR stages
            (cosine, SLR, CLR); the message names ``field``.
    """
    if isinstance(extra, bool) or not isinstance(extra, int) or extra < 1:
        raise ConfigError(f"{field}: the extra first-stage epochs must be a whole number >= 1")
    sched = parse_schedule(schedule, epochs, field)
    if sched.kind != "piecewise":
        raise ConfigError(
            f"{field}: a longer first LR stage needs a schedule made of LR stages, such as "
            f"'steps:0.001:1e-4' or 'steps:0.001@0,0.0001@10'; {schedule!r} changes the LR "
            "continuously and has no first stage to lengthen. Use schedule_type: steps (or "
            "halving), or give this LR explicit milestones in lr_schedules."
        )
    first_lr = sched.stages[0][1]
    stages = [(0, first_lr), *((e + extra, lr) for e, lr in sched.stages[1:])]
    return format_piecewise(stages), int(epochs) + extra


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson correlation of two equally long samples (``nan`` without spread)."""
    n = len(xs)
    if n < 2:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    if sxx <= 0 or syy <= 0:
        return float("nan")
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def _num_ok(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)


@dataclasses.dataclass(frozen=True)
class FinetuneLRParams(CommonParams):
    """The ``finetune_lr`` config (besides :class:`CommonParams`).

    Attributes:
        methods: Pruning methods (keys of ``tfprune.protocols.METHODS``).
        reference: The method every row is compared with, at the same LR and budget.
        lrs: Initial retraining LRs.
        final_lr: Last LR of every retraining schedule.
        schedule_type: ``steps``, ``cosine`` or ``halving`` from each LR to ``final_lr``.
        lr_schedules: ``{lr: schedule}`` written out per LR (overrides ``schedule_type``).
        budgets: Retraining epochs.
        scratch_budget: Scratch baselines: ``E`` (equal epochs), ``B`` (equal FLOPs).
        scratch_b_variant: How Scratch-B stretches its epochs (``why`` or ``rethink``).
        regularization: A regularized method, ``{method: greg1|greg2|tpp|..., ...}``.
        first_stage_extra: Extra epochs of the first LR stage for the small LRs.
        first_stage_extra_lrs: The LRs that get them (null: every LR but the largest).
    """

    methods: list[str] = dataclasses.field(default_factory=lambda: ["l1", "l1_orthp"])
    reference: str = "l1"
    lrs: LRList = dataclasses.field(default_factory=lambda: [1e-2, 1e-3])
    final_lr: LR = 1e-4
    schedule_type: str = "steps"
    lr_schedules: ScheduleMap = dataclasses.field(default_factory=dict)
    budgets: EpochList = dataclasses.field(default_factory=lambda: [20])
    jsv_every_epoch: bool = True
    scratch_budget: list[str | None] | str | None = dataclasses.field(default_factory=lambda: ["E"])
    scratch_b_variant: str = "why"
    regularization: dict = dataclasses.field(default_factory=dict)
    first_stage_extra: list[int] | int | None = dataclasses.field(default_factory=list)
    first_stage_extra_lrs: Annotated[list[float] | float | None, field_check(check_lr)] = None


@dataclasses.dataclass(frozen=True)
class _Extended:
    """A cell with a longer first LR stage and the cells it is read against."""

    method: str
    lr: float
    budget: int
    extra: int
    plain: str  # the same method, LR and budget without the extra epochs
    large: str  # the same method at the largest LR and the plain budget
    large_lr: float


class FinetuneLR(Protocol):
    """Fine-tuning LR effect: pruning methods × retraining LRs × budgets, with mean-JSV curves.

    Config keys (besides the common ones): ``methods`` (default ``["l1", "l1_orthp"]``), ``lrs``
    (initial retraining LRs), ``final_lr`` (end LR of every schedule), ``schedule_type``
    (``"steps"``: ×0.1 decays in equal stages, Lee et al.'s MNIST schedules; ``"cosine"``; or
    ``"halving"``), ``lr_schedules`` (``{lr: schedule}``: the exact schedule of an LR, e.g.
    ``steps:0.01@0,0.001@60,0.0001@90``, overriding ``schedule_type``), ``budgets`` (retraining
    epochs), ``scratch_budget`` (a list of ``"E"``/``"B"``/None, one scratch baseline each,
    trained with the base recipe stretched to that budget; ``scratch_b_variant`` picks the
    Scratch-B formula), ``regularization`` (``{method: greg1|greg2|tpp|
    slimming|group_lasso, max_epochs, lr_prune, <callback arguments>}`` adds that method) and
    ``reference`` (the method every cell is compared with at the same LR and budget).

    Longer first LR stage (the paper's Tables 5 and 8, Figs. 2-3): ``first_stage_extra`` (extra
    epoch counts, e.g. ``[20, 60]``; default ``[]``: off) adds, for every method, budget, LR of
    ``first_stage_extra_lrs`` (default: every LR but the largest) and count N, a cell that
    retrains with the budget's schedule whose first LR stage is N epochs longer (later stages keep
    their lengths; budget + N epochs in all), labelled ``"L1 / lr=1e-3 / 20ep+20 first stage"``.
    Each such cell is compared with the same method at the largest LR and the plain budget.
    This needs schedules with LR stages (``steps``, ``halving``, ``epoch:lr`` or explicit
    milestones), not ``cosine``.
    """

    name = "finetune_lr"
    description = (
        "fine-tuning LR effect: retraining LR × pruning method (L1 vs L1+OrthP) at fixed budgets,"
        " with mean JSV"
    )
    default_config = defaults_of(FinetuneLRParams)
    params = FinetuneLRParams

    def _lr_schedules(self, cfg: Any, lrs: list[float]) -> dict[float, str]:
        out: dict[float, str] = {}
        for key, text in dict(cfg.lr_schedules or {}).items():
            try:
                lr = float(key)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.name}.lr_schedules: key {key!r} is not an LR") from None
            if not any(math.isclose(lr, x, rel_tol=1e-9) for x in lrs):
                raise ConfigError(f"{self.name}.lr_schedules: LR {key!r} is not one of lrs={lrs}")
            out[lr] = str(text)
        return out

    def _schedule(self, cfg: Any, lr: float) -> str:
        lrs = [float(x) for x in cfg.lrs]
        for key, text in self._lr_schedules(cfg, lrs).items():
            if math.isclose(key, lr, rel_tol=1e-9):
                return text
        kind = cfg.schedule_type
        if kind not in ("steps", "cosine", "halving"):
            raise ConfigError(
                f"{self.name}.schedule_type must be 'steps', 'cosine' or 'halving', got {kind!r}"
            )
        return f"{kind}:{lr:g}:{float(cfg.final_lr):g}"

    def _first_stage_extra(self, cfg: Any, lrs: list[float]) -> tuple[list[int], list[float]]:
        """The validated ``(first_stage_extra, first_stage_extra_lrs)``; ``([], [])`` when off.

        Their types (a whole number or a list of them; a number or a list of numbers) are
        checked with the config, before this runs.
        """
        key = f"{self.name}.first_stage_extra"
        extra = cfg.first_stage_extra
        if extra is None:
            extra = []
        if isinstance(extra, int):
            extra = [extra]
        for n in extra:
            if n < 1:
                raise ConfigError(
                    f"{key}: {n!r} is not a whole number of epochs >= 1; write e.g. [20, 60]"
                )
        if len(set(extra)) != len(extra):
            raise ConfigError(f"{key} lists an epoch count twice: {list(extra)}")
        chosen = cfg.first_stage_extra_lrs
        if not extra:
            if chosen is not None:
                raise ConfigError(
                    f"{key}_lrs is set but {key} is empty; add the extra epochs, e.g. "
                    "first_stage_extra: [20, 60]"
                )
            return [], []
        largest = max(lrs)
        if all(math.isclose(lr, largest, rel_tol=1e-9) for lr in lrs):
            raise ConfigError(
                f"{key} needs at least two LRs in lrs: the runs with a longer first stage are "
                f"compared with the largest LR; lrs={lrs}"
            )
        if chosen is None:
            chosen = [lr for lr in lrs if not math.isclose(lr, largest, rel_tol=1e-9)]
        if isinstance(chosen, (int, float)):
            chosen = [chosen]
        if not chosen:
            raise ConfigError(f"{key}_lrs must be a non-empty list of LRs taken from lrs={lrs}")
        out: list[float] = []
        for x in chosen:
            match = [lr for lr in lrs if math.isclose(lr, float(x), rel_tol=1e-9)]
            if not match:
                raise ConfigError(
                    f"{key}_lrs: LR {x!r} is not one of lrs={lrs}; list LRs that the grid runs"
                )
            if math.isclose(match[0], largest, rel_tol=1e-9):
                raise ConfigError(
                    f"{key}_lrs: LR {x!r} is the largest of lrs, the LR the longer runs are "
                    "compared with; list only smaller LRs"
                )
            if any(math.isclose(match[0], y, rel_tol=1e-9) for y in out):
                raise ConfigError(f"{key}_lrs lists LR {x!r} twice")
            out.append(match[0])
        return [int(n) for n in extra], out

    def _extended_cells(self, cfg: Any, methods: list[str]) -> dict[str, _Extended]:
        """Cell label -> what a longer-first-stage cell is (empty when the option is off)."""
        lrs = [float(x) for x in cfg.lrs]
        extra, ext_lrs = self._first_stage_extra(cfg, lrs)
        largest = max(lrs) if lrs else 0.0
        out: dict[str, _Extended] = {}
        for budget in cfg.budgets:
            for method in methods:
                name = method_label(method)
                for lr in ext_lrs:
                    plain = f"{name} / lr={lr_text(lr)} / {budget}ep"
                    large = f"{name} / lr={lr_text(largest)} / {budget}ep"
                    for n in extra:
                        cell = f"{plain}+{n} first stage"
                        out[cell] = _Extended(method, lr, int(budget), n, plain, large, largest)
        return out

    def expand(self, config: dict) -> list[RunSpec]:
        """Cells: method × LR × budget (+ Random at the first LR and Scratch, per budget).

        With ``first_stage_extra``, each method's cells at a budget are followed by its cells
        with a longer first LR stage (per LR of ``first_stage_extra_lrs`` and extra count).
        """
        cfg = self.config(config)
        methods, reg = configured_methods(cfg, self.name)
        if not methods:
            raise ConfigError(f"{self.name}.methods must not be empty")
        lrs = [float(x) for x in cfg.lrs]
        if not lrs or any(not lr > 0 for lr in lrs):
            raise ConfigError(f"{self.name}.lrs must be a non-empty list of LRs > 0")
        extended = self._extended_cells(cfg, methods)
        baseline_methods = ["random"] if cfg.baselines else []
        check_reference(self.name, cfg.reference, methods + baseline_methods, "a method")
        specs = []
        seeds = seed_list(cfg, self.name)
        for budget in cfg.budgets:
            for method in methods:
                for lr in lrs:
                    cell = f"{method_label(method)} / lr={lr_text(lr)} / {budget}ep"
                    recipe = retrain_recipe(cfg, self._schedule(cfg, lr), budget)
                    extra = method_options(method, reg)
                    for seed in seeds:
                        specs.append(make_spec(self.name, cfg, cell, method, recipe, seed, **extra))
                for cell, ext in extended.items():
                    if ext.method != method or ext.budget != int(budget):
                        continue
                    sched, epochs = lengthen_first_stage(
                        self._schedule(cfg, ext.lr),
                        int(budget),
                        ext.extra,
                        f"{self.name}.first_stage_extra (LR {ext.lr:g}, {budget} epochs)",
                    )
                    recipe = retrain_recipe(cfg, sched, epochs)
                    extra = method_options(method, reg)
                    for seed in seeds:
                        specs.append(make_spec(self.name, cfg, cell, method, recipe, seed, **extra))
            if cfg.baselines:
                # Baselines at the first LR only: random selection and the scratch-trained
                # pruned shape answer "does the method matter at all" without a full LR grid.
                lr = lrs[0]
                if "random" not in methods:
                    cell = f"{method_label('random')} / lr={lr_text(lr)} / {budget}ep"
                    recipe = retrain_recipe(cfg, self._schedule(cfg, lr), budget)
                    for seed in seeds:
                        specs.append(make_spec(self.name, cfg, cell, "random", recipe, seed))
                budgets = cfg.scratch_budget
                if not isinstance(budgets, (list, tuple)):
                    budgets = [budgets]
                recipe = scratch_baseline_recipe(cfg)
                for sb in budgets:
                    # Scratch trains the pipeline's whole length (base + retraining epochs; B:
                    # stretched to its FLOPs), so the label names both parts.
                    name = f"Scratch-{sb}" if sb else "Scratch"
                    cell = f"{name} / base+{budget}ep"
                    extra = {"scratch_b_variant": cfg.scratch_b_variant} if sb == "B" else {}
                    for seed in seeds:
                        specs.append(
                            make_spec(
                                self.name,
                                cfg,
                                cell,
                                "scratch",
                                recipe,
                                seed,
                                scratch_budget=sb,
                                pipeline_epochs=int(budget),
                                **extra,
                            )
                        )
        return specs

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """Rows per cell, each compared with the ``reference`` method at its LR and budget.

        Rows follow the grid's order; scratch rows are compared with the reference at the first
        LR. Verdicts: the LR effect per method (paired t-test over seeds), mean JSV after pruning
        and trainability accuracy, and whether OrthP closes the LR gap.

        A cell with a longer first LR stage is compared with the same method at the largest LR
        and the plain budget (its setup label says what differs, e.g. the epochs). Extra
        verdicts then follow: per method and LR, the gap to the largest LR with equal epochs and
        with each longer first stage, whether it shrinks, and how trainability accuracy
        correlates with final accuracy over the method's cells.
        """
        cfg = self.config(config)
        records = list(records)
        ref_method = cfg.reference
        first_lr_schedule = self._schedule(cfg, float(cfg.lrs[0]))
        extended = self._extended_cells(cfg, configured_methods(cfg, self.name)[0])
        try:  # rows in the grid's order (cells the config does not make go last)
            order = {c: i for i, c in enumerate(dict.fromkeys(s.cell for s in self.expand(cfg)))}
        except ConfigError:
            order = {}
        records.sort(key=lambda r: order.get(str(r.spec.get("cell")), len(order)))
        ref_cell: dict[tuple, str] = {}
        for r in records:
            if r.spec["method"] == ref_method and r.spec["cell"] not in extended:
                key = (r.spec["retrain"]["epochs"], r.spec["retrain"]["schedule"])
                ref_cell.setdefault(key, r.spec["cell"])

        def ref(cell: str, recs: list[RunRecord]) -> str | None:
            s = recs[0].spec
            if cell in extended:
                return extended[cell].large
            if s["method"] == "scratch":
                key = (s["options"].get("pipeline_epochs"), first_lr_schedule)
            else:
                key = (s["retrain"]["epochs"], s["retrain"]["schedule"])
            return ref_cell.get(key)

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg.metric)
        verdicts = []
        by_method: dict[tuple[str, int], list[tuple[float, dict]]] = {}
        for row in rows:
            s = cells[row["cell"]][0].spec
            if s["method"] == "scratch":
                continue
            lr = parse_schedule(s["retrain"]["schedule"], s["retrain"]["epochs"]).lr_at(0)
            row["lr"] = lr
            if row["cell"] in extended:
                continue
            by_method.setdefault((s["method"], s["retrain"]["epochs"]), []).append((lr, row))
        gaps: dict[tuple[str, int], float] = {}
        for (method, epochs), items in by_method.items():
            if len(items) < 2:
                continue
            items.sort(key=lambda t: -t[0])
            (hi_lr, hi), (lo_lr, lo) = items[0], items[-1]
            comp = compare_cells(cells[hi["cell"]], cells[lo["cell"]], cfg.metric)
            gap = comp.diff
            gaps[(method, epochs)] = gap
            better = outcome(gap, comp.p)
            verdicts.append(
                f"{method_label(method)} at {epochs} epochs: LR {lr_text(hi_lr)} {better} "
                f"LR {lr_text(lo_lr)} ({percent_text(hi['mean'])} vs {percent_text(lo['mean'])}, "
                f"{100 * gap:+.2f} points, {paired_test_text(comp.p, len(comp.seeds))}; "
                f"setup {comp.setup})."
            )
            verdicts.append(
                f"{method_label(method)}: mean JSV right after pruning "
                f"{hi['jsv_after_prune']:.4g}; trainability accuracy {percent_text(hi['ta_mean'])} "
                f"(LR {lr_text(hi_lr)}) vs {percent_text(lo['ta_mean'])} (LR {lr_text(lo_lr)})."
            )
        for (method, epochs), gap in gaps.items():
            m = METHODS.get(method)
            if not getattr(m, "orthp", False):
                continue
            plain_name = m.criterion
            if (plain_name, epochs) in gaps:
                plain = gaps[(plain_name, epochs)]
                closes = abs(gap) < abs(plain)
                verdicts.append(
                    f"{method_label(method)} {'closes' if closes else 'does not close'} the LR "
                    f"gap at {epochs} epochs: {100 * gap:+.2f} points vs "
                    f"{100 * plain:+.2f} for {method_label(plain_name)}."
                )
        if extended:
            verdicts += _first_stage_verdicts(extended, rows, cells, cfg.metric)
        return Summary(rows, verdicts, columns_for(ROW_COLUMNS, rows), curves)


def _first_stage_verdicts(
    extended: Mapping[str, _Extended],
    rows: Sequence[dict],
    cells: Mapping[str, list[RunRecord]],
    metric: str,
) -> list[str]:
    """Smaller LR against the largest with a longer first stage; trainability vs final accuracy."""
    row_of = {r["cell"]: r for r in rows}
    groups: dict[tuple[str, int, float], list[tuple[str, _Extended]]] = {}
    for cell, ext in extended.items():
        if cell in row_of:
            groups.setdefault((ext.method, ext.budget, ext.lr), []).append((cell, ext))
    out: list[str] = []
    for (method, budget, lr), items in groups.items():
        items.sort(key=lambda t: t[1].extra)
        first = items[0][1]
        lo, hi = f"LR {lr_text(lr)}", f"LR {lr_text(first.large_lr)}"
        # (extra epochs, diff small minus large LR, paired p, pairs); extra 0 = equal epochs.
        points: list[tuple[int, float | None, float | None, int]] = []
        if first.plain in cells and first.large in cells:
            comp = compare_cells(cells[first.plain], cells[first.large], metric)
            points.append((0, comp.diff, comp.p, len(comp.seeds)))
        for cell, ext in items:
            row = row_of[cell]
            points.append(
                (ext.extra, row["diff_vs_ref"], row["p_vs_ref"], len(row.get("paired_seeds") or []))
            )
        text = f"{method_label(method)} at {budget} epochs, {lo} against {hi}: " + ", ".join(
            f"{_points(d)} {'with equal epochs' if n == 0 else f'at +{n} first-stage epochs'} "
            f"({paired_test_text(p, k)})"
            for n, d, p, k in points
        )
        known = [(n, d, p) for n, d, p, _ in points if _num_ok(d)]
        if not known or known[0][0] != 0:
            out.append(f"{text}; no seed-paired run with equal epochs to measure the gap against.")
            continue
        if len(known) < 2:
            out.append(f"{text}; no run with a longer first stage has a paired result yet.")
            continue
        gap0 = known[0][1]
        n_last, last, p_last = known[-1]
        sizes = [abs(d) for _, d, _ in known]
        steady = all(sizes[i + 1] <= sizes[i] for i in range(len(sizes) - 1))
        if gap0 < 0 <= last:
            trend = f"the gap closes completely by +{n_last}"
        elif abs(last) < abs(gap0):
            closed = 100 * (1 - abs(last) / abs(gap0))
            trend = (
                f"the gap shrinks{' steadily' if steady else ', though not at every step'} "
                f"({closed:.0f}% of it closed at +{n_last})"
            )
        else:
            trend = "the gap does not shrink"
        out.append(
            f"{text}: {trend}; at +{n_last}, {lo} {outcome(last, p_last)} {hi} at {budget} epochs."
        )
    for method in dict.fromkeys(e.method for e in extended.values()):
        pts = [
            (r["ta_mean"], r["mean"])
            for r in rows
            if r.get("method") == method and _num_ok(r.get("ta_mean")) and _num_ok(r.get("mean"))
        ]
        head = (
            f"{method_label(method)}: trainability accuracy (mean accuracy over the first LR "
            f"stage) against final accuracy over its {len(pts)} cells"
        )
        if len(pts) < 3:
            out.append(f"{head}: too few cells with both values to correlate (n={len(pts)}).")
            continue
        r = _pearson([a for a, _ in pts], [b for _, b in pts])
        if r != r:
            out.append(f"{head}: no correlation to state, one of them does not vary.")
            continue
        strength = "strong" if abs(r) >= 0.7 else "moderate" if abs(r) >= 0.4 else "weak"
        if strength == "weak":
            meaning = "trainability accuracy says little about final accuracy here"
        elif r > 0:
            meaning = "cells that learn more in the first LR stage end more accurate"
        else:
            meaning = "cells that learn more in the first LR stage end less accurate"
        out.append(
            f"{head}: Pearson r={r:.2f} (n={len(pts)}), a {strength} "
            f"{'positive' if r > 0 else 'negative'} correlation: {meaning}."
        )
    return out


def _points(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:+.2f} points"
