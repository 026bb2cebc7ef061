"""Comparison protocols: config -> run specs (grid cells × seeds) -> summary tables and verdicts.

Every protocol merges the user config over its :attr:`Protocol.default_config` (unknown keys raise
:class:`~tfprune.errors.ConfigError`), expands it into :class:`RunSpec` objects — every cell
runs every seed (3 by default) — and summarises finished :class:`RunRecord` objects into one row
per cell: mean ± std of the final accuracy over seeds (``mean``/``std``), best accuracy,
accuracy and mean JSV right after pruning, trainability accuracy, the achieved params/FLOPs/
speed-up next to the target ratio, the fairness setup label of the cell against the row's
reference (:func:`~tfprune.protocols.setups.setup_check`) and a paired t-test against the
reference where the same seeds exist. Random pruning and scratch training of the pruned shape are
added as baselines unless ``baselines: false``.

Protocols (spec section 7):

* ``finetune_lr`` — M1 (E8/E5/E6): methods × retraining LRs × budgets, mean-JSV curves; the
  default is the README main job (digits, MLP-7-Linear, L1 vs L1+OrthP, LR 1e-2 vs 1e-3).
* ``scratch_vs_prune`` — M2 (E4/E14): Scratch vs S4.2 / SX-A / SX-B pipelines (PxFy).
* ``retrain_schedules`` — LEHUA (E15): FT / LRW / SLR / CLR at several budgets.
* ``cross_recipe`` — WHY's calibration suggestion 4 (E16): the 2×2 grid and its verdict.
* ``ratio_sweep`` — accuracy and mean JSV versus pruning ratio (E7).
* ``setup_check`` — run given specs and state the strictest setup each pair shares (E17).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tfprune.errors import ConfigError
from tfprune.protocols.methods import METHODS, REGULARIZED, get_method
from tfprune.protocols.schedules import (
    format_piecewise,
    halving_schedule,
    parse_schedule,
    truncate_piecewise,
)
from tfprune.protocols.setups import setup_check, strictest_shared_named
from tfprune.protocols.spec import RetrainRecipe, RunRecord, RunSpec, base_recipe
from tfprune.protocols.stats import mean_std, paired_test

__all__ = [
    "PROTOCOLS",
    "CellComparison",
    "CrossRecipe",
    "FinetuneLR",
    "Protocol",
    "RatioSweep",
    "RetrainSchedules",
    "ScratchVsPrune",
    "SetupCheck",
    "Summary",
    "compare_cells",
    "cross_recipe_verdict",
    "lengthen_first_stage",
    "method_label",
    "summarize_cells",
]


@dataclasses.dataclass
class Summary:
    """What a protocol concludes from its records.

    Attributes:
        rows: One dict per grid cell (``cell``, ``n``, ``mean``, ``std``, achieved params/FLOPs/
            speed-up next to the target, ``setup`` label, paired-test columns, ...).
        verdicts: Sentences stating the findings (one per comparison).
        columns: The row keys to show, in order.
        curves: Optional per-cell mean curves, ``{"val_accuracy": {cell: [...]}, "jsv_mean":
            {...}}`` (epoch 0 of ``jsv_mean`` is right after pruning).
    """

    rows: list[dict]
    verdicts: list[str]
    columns: list[str]
    curves: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Shared config handling
# --------------------------------------------------------------------------------------------

_COMMON_DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "data_dir": None,
    "model": "mlp7_linear",
    "model_kwargs": {},
    "data_options": {},
    "base": {"schedule": "0:0.02,15:0.002", "epochs": 20, "batch_size": 32},
    "seeds": 3,
    "ratio": 0.8,
    "batch_size": 32,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "optimizer": "sgd",
    "baselines": True,
    "weight_decay_mode": "coupled",
    "target": None,
    "jsv_samples": 1000,
    "jsv_every_epoch": False,
    "metric": "final_acc",
}

_REG_DEFAULTS: dict[str, Any] = {"method": None, "max_epochs": 30, "lr_prune": 1e-3}
"""``regularization:`` keys besides the callback's own arguments."""


def method_label(method: str) -> str:
    """Display name of a method (``l1_orthp`` -> ``L1+OrthP``; unknown names as they are)."""
    return METHODS[method].label if method in METHODS else method


def _merge(defaults: Mapping[str, Any], config: Mapping[str, Any] | None, name: str) -> dict:
    config = dict(config or {})
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ConfigError(f"{name}: unknown config key(s) {unknown}; allowed: {sorted(defaults)}")
    out = copy.deepcopy(dict(defaults))
    for k, v in config.items():
        if isinstance(out.get(k), dict) and isinstance(v, Mapping) and k == "base":
            out[k] = {**out[k], **dict(v)}
        else:
            out[k] = copy.deepcopy(v)
    return out


def _seeds(cfg: Mapping[str, Any], name: str) -> list[int]:
    seeds = cfg["seeds"]
    if isinstance(seeds, bool):
        raise ConfigError(f"{name}.seeds must be a count or a list of ints, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"{name}.seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    if isinstance(seeds, Sequence) and seeds and all(isinstance(s, int) for s in seeds):
        return [int(s) for s in seeds]
    raise ConfigError(f"{name}.seeds must be a count or a non-empty list of ints, got {seeds!r}")


def _lr_text(lr: float) -> str:
    exp = math.log10(lr)
    if abs(exp - round(exp)) < 1e-9:
        return f"1e{int(round(exp))}"
    return f"{lr:g}"


def _recipe(cfg: Mapping[str, Any], schedule: str, epochs: int) -> RetrainRecipe:
    parse_schedule(schedule, epochs, field="schedule")  # validate early, naming the field
    return RetrainRecipe(
        schedule=schedule,
        epochs=int(epochs),
        batch_size=int(cfg["batch_size"]),
        momentum=float(cfg["momentum"]),
        weight_decay=float(cfg["weight_decay"]),
        optimizer=str(cfg["optimizer"]),
        weight_decay_mode=str(cfg["weight_decay_mode"]),
    )


def _base(cfg: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The base recipe dict: the config's hyper-parameters unless ``base`` sets its own."""
    out = {
        "batch_size": int(cfg["batch_size"]),
        "momentum": float(cfg["momentum"]),
        "weight_decay": float(cfg["weight_decay"]),
        "optimizer": str(cfg["optimizer"]),
        "weight_decay_mode": str(cfg["weight_decay_mode"]),
    }
    out.update(dict(cfg["base"] if base is None else base))
    return out


def _scratch_recipe(cfg: Mapping[str, Any]) -> RetrainRecipe:
    """Scratch baselines train with the dense model's recipe (spec 1.1, 5.2).

    The run stretches its piecewise schedule to the scratch budget (Scratch-E/B).
    """
    return base_recipe(_base(cfg))


def _regularization(cfg: Mapping[str, Any], name: str) -> tuple[str | None, dict[str, Any]]:
    """``(method, run options)`` of the ``regularization:`` config block (method None: none)."""
    block = dict(cfg.get("regularization") or {})
    if not block:
        return None, {}
    if "method" not in block or block["method"] not in REGULARIZED:
        raise ConfigError(
            f"{name}.regularization.method must be one of {', '.join(REGULARIZED)}, got "
            f"{block.get('method')!r}"
        )
    method = str(block.pop("method"))
    max_epochs = block.pop("max_epochs", _REG_DEFAULTS["max_epochs"])
    lr_prune = float(block.pop("lr_prune", _REG_DEFAULTS["lr_prune"]))
    if not lr_prune > 0:
        raise ConfigError(f"{name}.regularization.lr_prune must be > 0, got {lr_prune}")
    opts = {"regularization": block, "prune_max_epochs": max_epochs}
    opts["prune_schedule"] = f"0:{lr_prune:g}"
    return method, opts


def _method_options(method: str, reg: tuple[str | None, dict[str, Any]]) -> dict[str, Any]:
    """Run options of ``method``: the regularization block's, for the regularized method."""
    name, opts = reg
    if method in REGULARIZED:
        if method == name:
            return dict(opts)
        return {"prune_schedule": f"0:{_REG_DEFAULTS['lr_prune']:g}"}
    return {}


def _methods(cfg: Mapping[str, Any], name: str) -> tuple[list[str], tuple]:
    """The configured methods (plus the regularized one), each checked against the registry."""
    methods = list(cfg["methods"])
    reg = _regularization(cfg, name)
    if reg[0] is not None and reg[0] not in methods:
        methods.append(reg[0])
    for m in methods:
        get_method(m)
    return methods, reg


def _options(cfg: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "jsv_samples": int(cfg["jsv_samples"]),
        "jsv_every_epoch": bool(cfg["jsv_every_epoch"]),
    }
    if cfg.get("target"):
        opts["target"] = dict(cfg["target"])
    if cfg.get("model_kwargs"):
        opts["model_kwargs"] = dict(cfg["model_kwargs"])
    if cfg.get("data_options"):
        opts["data_options"] = dict(cfg["data_options"])
    opts.update({k: v for k, v in extra.items() if v is not None})
    return opts


def _spec(
    protocol: str,
    cfg: Mapping[str, Any],
    cell: str,
    method: str,
    recipe: RetrainRecipe,
    seed: int,
    *,
    ratio: Any = None,
    base: Mapping[str, Any] | None = None,
    **options: Any,
) -> RunSpec:
    spec = RunSpec(
        protocol=protocol,
        cell=cell,
        dataset=str(cfg["dataset"]),
        model=str(cfg["model"]),
        method=method,
        ratio=cfg["ratio"] if ratio is None else ratio,
        retrain=recipe,
        seed=seed,
        base=_base(cfg, base),
        data_dir=cfg.get("data_dir"),
        options=_options(cfg, **options),
    )
    spec.base_recipe()  # validate the base recipe now
    get_method(method).check(spec)
    return spec


def _ratio_text(ratio: Any) -> str:
    if isinstance(ratio, Mapping):
        return ", ".join(f"{k}:{v:g}" for k, v in ratio.items())
    return f"{float(ratio):g}"


# --------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------

ROW_COLUMNS = [
    "cell",
    "n",
    "mean",
    "std",
    "best_mean",
    "best_std",
    "after_prune_mean",
    "jsv_after_prune",
    "jsv_final",
    "ta_mean",
    "target_ratio",
    "param_reduction",
    "speedup",
    "params",
    "flops",
    "epochs",
    "prune_epochs",
    "reference",
    "setup",
    "diff_vs_ref",
    "p_vs_ref",
]


def _columns(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``columns`` plus the optional ones some row has (target vs achieved, SX-B FLOPs ratio)."""
    out = [c for c in columns if c != "flops_vs_scratch_e"]
    if any(r.get("target") is not None for r in rows) and "target" not in out:
        i = out.index("target_ratio") + 1 if "target_ratio" in out else len(out)
        out[i:i] = ["target", "achieved"]
    if any(r.get("flops_vs_scratch_e") is not None for r in rows):
        out.append("flops_vs_scratch_e")
    return out


def _group(records: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """Records per cell (first-seen cell order), each cell's runs sorted by seed."""
    cells: dict[str, list[RunRecord]] = {}
    for r in records:
        cells.setdefault(str(r.spec.get("cell")), []).append(r)
    for recs in cells.values():
        recs.sort(key=lambda r: (int(r.spec.get("seed", 0)), r.run_spec().run_id()))
    return cells


def _by_seed(recs: Sequence[RunRecord], metric: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for r in recs:
        out.setdefault(int(r.spec["seed"]), r.metrics.get(metric))
    return out


def _seed_map(recs: Sequence[RunRecord]) -> dict[int, RunRecord]:
    out: dict[int, RunRecord] = {}
    for r in recs:
        out.setdefault(int(r.spec["seed"]), r)
    return out


@dataclasses.dataclass(frozen=True)
class CellComparison:
    """Two grid cells compared through their seed-paired runs (same seed, same base model).

    Attributes:
        seeds: The seeds both cells ran (the pairs).
        setup: The strictest setup label every pair shares.
        mismatches: What differs, per pair where not shared by all (``"seed 1: base_id: ..."``),
            plus the seeds that have no partner.
        diff: Mean paired difference of the metric (cell minus reference).
        p: Two-sided paired t-test p-value over exactly those pairs (``nan`` when undefined).
    """

    seeds: list[int]
    setup: str
    mismatches: list[str]
    diff: float
    p: float


def compare_cells(
    cell: Sequence[RunRecord], reference: Sequence[RunRecord], metric: str = "final_acc"
) -> CellComparison:
    """Compare two cells only through runs paired by seed (see :class:`CellComparison`)."""
    a, b = _seed_map(cell), _seed_map(reference)
    seeds = sorted(set(a) & set(b))
    verdict = strictest_shared_named([(f"seed {s}", setup_check(a[s], b[s])) for s in seeds])
    mismatches = list(verdict.mismatches) if seeds else ["no seed in common"]
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a:
        mismatches.append(f"seeds without a reference run: {only_a}")
    if only_b:
        mismatches.append(f"reference seeds without a run here: {only_b}")
    test = paired_test(
        {s: a[s].metrics.get(metric) for s in seeds}, {s: b[s].metrics.get(metric) for s in seeds}
    )
    return CellComparison(
        seeds, verdict.label if seeds else "none", mismatches, test.mean_diff, test.p
    )


def _mean_curve(recs: Sequence[RunRecord], key: str) -> list[float]:
    curves = [r.history.get(key) for r in recs if r.history.get(key)]
    if not curves:
        return []
    n = min(len(c) for c in curves)
    return [sum(float(c[i]) for c in curves) / len(curves) for i in range(n)]


def summarize_cells(
    records: Sequence[RunRecord],
    *,
    metric: str = "final_acc",
    reference: Callable[[str, list[RunRecord]], str | None] | None = None,
) -> tuple[list[dict], dict[str, list[RunRecord]], dict]:
    """One row per cell (in first-seen order), plus the grouped records and mean curves.

    ``reference(cell, recs)`` names the cell each row is compared with; the setup label,
    ``diff_vs_ref`` and ``p_vs_ref`` come from :func:`compare_cells` (seed-paired runs only).
    ``None`` or the cell itself leaves those columns empty. Achieved counts are those of the
    lowest seed's run.
    """
    cells = _group(records)
    rows: list[dict] = []
    for cell, recs in cells.items():
        m = [r.metrics for r in recs]
        mean, std, n = mean_std([x.get(metric) for x in m])
        best, best_std, _ = mean_std([x.get("best_acc") for x in m])
        after, after_std, _ = mean_std([x.get("acc_after_prune") for x in m])
        jsv, _, _ = mean_std([x.get("jsv_after_prune") for x in m])
        jsv_f, _, _ = mean_std([x.get("jsv_final") for x in m])
        ta, ta_std, _ = mean_std([x.get("trainability_acc") for x in m])
        spec = recs[0].spec
        row = {
            "cell": cell,
            "method": spec.get("method"),
            "n": n,
            "mean": mean,
            "std": std,
            "best_mean": best,
            "best_std": best_std,
            "after_prune_mean": after,
            "after_prune_std": after_std,
            "jsv_after_prune": jsv,
            "jsv_final": jsv_f,
            "ta_mean": ta,
            "ta_std": ta_std,
            "target_ratio": _ratio_text(spec.get("ratio", 0.0)),
            "param_reduction": m[0].get("param_reduction"),
            "speedup": m[0].get("speedup"),
            "params": m[0].get("params"),
            "flops": m[0].get("flops"),
            "epochs": m[0].get("retrain_epochs"),
            "prune_epochs": recs[0].setup.get("prune_epochs"),
            "weight_decay_mode": (recs[0].setup.get("hyper") or {}).get("weight_decay_mode"),
            "schedule": recs[0].setup.get("finetune_schedule"),
            "seeds": [int(r.spec["seed"]) for r in recs],
            "reference": None,
            "setup": None,
            "diff_vs_ref": None,
            "p_vs_ref": None,
        }
        if "flops_vs_scratch_e" in m[0]:
            row["flops_vs_scratch_e"] = m[0].get("flops_vs_scratch_e")
        if m[0].get("target") is not None:
            name = "FLOPs" if m[0].get("target_metric") == "flops_reduction" else "params"
            row["target"] = f"{name} ×{m[0]['target']:g}"
            row["target_ratio"] = f"{m[0].get('target_ratio', float('nan')):.4g}"
            row["achieved"] = m[0].get("target_achieved")
        rows.append(row)
    if reference is not None:
        for row in rows:
            ref = reference(row["cell"], cells[row["cell"]])
            if ref is None or ref == row["cell"] or ref not in cells:
                continue
            comp = compare_cells(cells[row["cell"]], cells[ref], metric)
            row.update(
                reference=ref,
                setup=comp.setup,
                setup_mismatches=comp.mismatches,
                paired_seeds=comp.seeds,
                diff_vs_ref=comp.diff,
                p_vs_ref=comp.p,
            )
    curves = {
        "val_accuracy": {c: _mean_curve(r, "val_accuracy") for c, r in cells.items()},
        "jsv_mean": {c: _mean_curve(r, "jsv_mean") for c, r in cells.items()},
    }
    curves = {k: {c: v for c, v in d.items() if v} for k, d in curves.items()}
    return rows, cells, curves


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _p(p: float | None) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.3g}"


SIGNIFICANCE = 0.05
"""A difference is called a win or a loss only when its paired p-value is below this."""


def outcome(diff: float | None, p: float | None) -> str:
    """How a verdict words a difference: a win or a loss only when the paired test says so.

    ``"beats"``/``"loses to"`` at p < :data:`SIGNIFICANCE`; ``"ties with"`` above it;
    ``"scores above"``/``"scores below"`` (no claim) when there is no test (fewer than 2 paired
    seeds, or no spread).
    """
    if diff is None or diff != diff:
        return "cannot be compared with"
    if p is None or p != p:
        return "scores above" if diff > 0 else "scores below" if diff < 0 else "ties with"
    if p < SIGNIFICANCE:
        return "beats" if diff > 0 else "loses to"
    return "ties with"


# --------------------------------------------------------------------------------------------
# Protocol base class
# --------------------------------------------------------------------------------------------


class Protocol:
    """A named comparison protocol (subclasses implement :meth:`expand` and :meth:`summarize`).

    Attributes:
        name: Registry key.
        description: One line for ``--help`` and reports.
        default_config: Every accepted key with its default.
    """

    name: str = ""
    description: str = ""
    default_config: dict = {}

    def config(self, config: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``config`` merged over :attr:`default_config` (unknown keys raise ConfigError)."""
        return _merge(self.default_config, config, self.name)

    def expand(self, config: dict) -> list[RunSpec]:
        """Run specs (every cell × seed) of ``config`` merged over :attr:`default_config`."""
        raise NotImplementedError

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """One row per cell with mean ± std and the achieved compression, plus verdicts.

        ``config`` is the protocol config the records were run with (its ``reference`` names
        the cell every row is compared with); ``None`` takes the defaults.
        """
        raise NotImplementedError


def _check_reference(name: str, ref: Any, allowed: Sequence[str], what: str) -> str:
    if ref not in allowed:
        raise ConfigError(
            f"{name}.reference must name {what} of this grid, one of {list(allowed)}; got {ref!r}"
        )
    return str(ref)


def lengthen_first_stage(
    schedule: str, epochs: int, extra: int, field: str = "schedule"
) -> tuple[str, int]:
    """``schedule`` over ``epochs`` with its first LR stage ``extra`` epochs longer.

    The later stages keep their lengths, so the run lasts ``epochs + extra`` epochs (WHY Tab. 5:
    ``0:0.001,30:0.0001,45:1e-5`` over 60 epochs, +60 -> ``0:0.001,90:0.0001,105:1e-05`` over
    120).

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
class _Extended:
    """A cell with a longer first LR stage and the cells it is read against."""

    method: str
    lr: float
    budget: int
    extra: int
    plain: str  # the same method, LR and budget without the extra epochs
    large: str  # the same method at the largest LR and the plain budget
    large_lr: float


# --------------------------------------------------------------------------------------------
# finetune_lr (M1)
# --------------------------------------------------------------------------------------------


class FinetuneLR(Protocol):
    """M1: pruning methods × retraining LRs × budgets (E5/E6/E8), with mean-JSV curves.

    Config keys (besides the common ones): ``methods`` (default ``["l1", "l1_orthp"]``), ``lrs``
    (initial retraining LRs), ``final_lr`` (end LR of every schedule), ``schedule_type``
    (``"steps"``: ×0.1 decays in equal stages, the DI MNIST schedules; ``"cosine"``; or
    ``"halving"``), ``lr_schedules`` (``{lr: schedule}``: the exact schedule of an LR, e.g.
    ``steps:0.01@0,0.001@60,0.0001@90``, overriding ``schedule_type``), ``budgets`` (retraining
    epochs), ``scratch_budget`` (a list of ``"E"``/``"B"``/None, one scratch baseline each,
    trained with the base recipe stretched to that budget; ``scratch_b_variant`` picks the
    Scratch-B formula), ``regularization`` (``{method: greg1|greg2|tpp|
    slimming|group_lasso, max_epochs, lr_prune, <callback arguments>}`` adds that method) and
    ``reference`` (the method every cell is compared with at the same LR and budget).

    Longer first LR stage (WHY Tab. 5/8, Figs. 2-3): ``first_stage_extra`` (extra epoch counts,
    e.g. ``[20, 60]``; default ``[]``: off) adds, for every method, budget, LR of
    ``first_stage_extra_lrs`` (default: every LR but the largest) and count N, a cell that
    retrains with the budget's schedule whose first LR stage is N epochs longer (later stages keep
    their lengths; budget + N epochs in all), labelled ``"L1 / lr=1e-3 / 20ep+20 first stage"``.
    Each such cell is compared with the same method at the largest LR and the plain budget.
    This needs schedules with LR stages (``steps``, ``halving``, ``epoch:lr`` or explicit
    milestones), not ``cosine``.
    """

    name = "finetune_lr"
    description = (
        "M1: retraining LR × pruning method (L1 vs L1+OrthP) at fixed budgets, with mean JSV"
    )
    default_config = {
        **_COMMON_DEFAULTS,
        "methods": ["l1", "l1_orthp"],
        "reference": "l1",
        "lrs": [1e-2, 1e-3],
        "final_lr": 1e-4,
        "schedule_type": "steps",
        "lr_schedules": {},
        "budgets": [20],
        "jsv_every_epoch": True,
        "scratch_budget": ["E"],
        "scratch_b_variant": "why",
        "regularization": {},
        "first_stage_extra": [],
        "first_stage_extra_lrs": None,
    }

    def _lr_schedules(self, cfg: Mapping[str, Any], lrs: list[float]) -> dict[float, str]:
        out: dict[float, str] = {}
        for key, text in dict(cfg["lr_schedules"] or {}).items():
            try:
                lr = float(key)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.name}.lr_schedules: key {key!r} is not an LR") from None
            if not any(math.isclose(lr, x, rel_tol=1e-9) for x in lrs):
                raise ConfigError(f"{self.name}.lr_schedules: LR {key!r} is not one of lrs={lrs}")
            out[lr] = str(text)
        return out

    def _schedule(self, cfg: Mapping[str, Any], lr: float) -> str:
        lrs = [float(x) for x in cfg["lrs"]]
        for key, text in self._lr_schedules(cfg, lrs).items():
            if math.isclose(key, lr, rel_tol=1e-9):
                return text
        kind = cfg["schedule_type"]
        if kind not in ("steps", "cosine", "halving"):
            raise ConfigError(
                f"{self.name}.schedule_type must be 'steps', 'cosine' or 'halving', got {kind!r}"
            )
        return f"{kind}:{lr:g}:{float(cfg['final_lr']):g}"

    def _first_stage_extra(
        self, cfg: Mapping[str, Any], lrs: list[float]
    ) -> tuple[list[int], list[float]]:
        """The validated ``(first_stage_extra, first_stage_extra_lrs)``; ``([], [])`` when off."""
        key = f"{self.name}.first_stage_extra"
        extra = cfg["first_stage_extra"]
        if extra is None:
            extra = []
        if isinstance(extra, int) and not isinstance(extra, bool):
            extra = [extra]
        if not isinstance(extra, Sequence) or isinstance(extra, str):
            raise ConfigError(f"{key} must be a list of extra epoch counts, e.g. [20, 60]")
        for n in extra:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ConfigError(
                    f"{key}: {n!r} is not a whole number of epochs >= 1; write e.g. [20, 60]"
                )
        if len(set(extra)) != len(extra):
            raise ConfigError(f"{key} lists an epoch count twice: {list(extra)}")
        chosen = cfg["first_stage_extra_lrs"]
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
        if isinstance(chosen, (int, float)) and not isinstance(chosen, bool):
            chosen = [chosen]
        if not isinstance(chosen, Sequence) or isinstance(chosen, str) or not chosen:
            raise ConfigError(f"{key}_lrs must be a non-empty list of LRs taken from lrs={lrs}")
        out: list[float] = []
        for x in chosen:
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise ConfigError(f"{key}_lrs: {x!r} is not an LR; use LRs from lrs={lrs}")
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

    def _extended_cells(self, cfg: Mapping[str, Any], methods: list[str]) -> dict[str, _Extended]:
        """Cell label -> what a longer-first-stage cell is (empty when the option is off)."""
        lrs = [float(x) for x in cfg["lrs"]]
        extra, ext_lrs = self._first_stage_extra(cfg, lrs)
        largest = max(lrs) if lrs else 0.0
        out: dict[str, _Extended] = {}
        for budget in cfg["budgets"]:
            for method in methods:
                name = method_label(method)
                for lr in ext_lrs:
                    plain = f"{name} / lr={_lr_text(lr)} / {budget}ep"
                    large = f"{name} / lr={_lr_text(largest)} / {budget}ep"
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
        methods, reg = _methods(cfg, self.name)
        if not methods:
            raise ConfigError(f"{self.name}.methods must not be empty")
        lrs = [float(x) for x in cfg["lrs"]]
        if not lrs or any(not lr > 0 for lr in lrs):
            raise ConfigError(f"{self.name}.lrs must be a non-empty list of LRs > 0")
        extended = self._extended_cells(cfg, methods)
        baseline_methods = ["random"] if cfg["baselines"] else []
        _check_reference(self.name, cfg["reference"], methods + baseline_methods, "a method")
        specs = []
        seeds = _seeds(cfg, self.name)
        for budget in cfg["budgets"]:
            for method in methods:
                for lr in lrs:
                    cell = f"{method_label(method)} / lr={_lr_text(lr)} / {budget}ep"
                    recipe = _recipe(cfg, self._schedule(cfg, lr), budget)
                    extra = _method_options(method, reg)
                    for seed in seeds:
                        specs.append(_spec(self.name, cfg, cell, method, recipe, seed, **extra))
                for cell, ext in extended.items():
                    if ext.method != method or ext.budget != int(budget):
                        continue
                    sched, epochs = lengthen_first_stage(
                        self._schedule(cfg, ext.lr),
                        int(budget),
                        ext.extra,
                        f"{self.name}.first_stage_extra (LR {ext.lr:g}, {budget} epochs)",
                    )
                    recipe = _recipe(cfg, sched, epochs)
                    extra = _method_options(method, reg)
                    for seed in seeds:
                        specs.append(_spec(self.name, cfg, cell, method, recipe, seed, **extra))
            if cfg["baselines"]:
                # Baselines at the first LR only: random selection and the scratch-trained
                # pruned shape answer "does the method matter at all" without a full LR grid.
                lr = lrs[0]
                if "random" not in methods:
                    cell = f"{method_label('random')} / lr={_lr_text(lr)} / {budget}ep"
                    recipe = _recipe(cfg, self._schedule(cfg, lr), budget)
                    for seed in seeds:
                        specs.append(_spec(self.name, cfg, cell, "random", recipe, seed))
                budgets = cfg["scratch_budget"]
                if not isinstance(budgets, (list, tuple)):
                    budgets = [budgets]
                recipe = _scratch_recipe(cfg)
                for sb in budgets:
                    cell = f"Scratch-{sb} / {budget}ep" if sb else f"Scratch / {budget}ep"
                    extra = {"scratch_b_variant": cfg["scratch_b_variant"]} if sb == "B" else {}
                    for seed in seeds:
                        specs.append(
                            _spec(
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
        ref_method = cfg["reference"]
        first_lr_schedule = self._schedule(cfg, float(cfg["lrs"][0]))
        extended = self._extended_cells(cfg, _methods(cfg, self.name)[0])
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

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg["metric"])
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
            comp = compare_cells(cells[hi["cell"]], cells[lo["cell"]], cfg["metric"])
            gap = comp.diff
            gaps[(method, epochs)] = gap
            better = outcome(gap, comp.p)
            verdicts.append(
                f"{method_label(method)} at {epochs} epochs: LR {_lr_text(hi_lr)} {better} "
                f"LR {_lr_text(lo_lr)} ({_pct(hi['mean'])} vs {_pct(lo['mean'])}, "
                f"{100 * gap:+.2f} points, paired p={_p(comp.p)}, n={len(comp.seeds)}; "
                f"setup {comp.setup})."
            )
            verdicts.append(
                f"{method_label(method)}: mean JSV right after pruning "
                f"{hi['jsv_after_prune']:.4g}; trainability accuracy {_pct(hi['ta_mean'])} "
                f"(LR {_lr_text(hi_lr)}) vs {_pct(lo['ta_mean'])} (LR {_lr_text(lo_lr)})."
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
            verdicts += _first_stage_verdicts(extended, rows, cells, cfg["metric"])
        return Summary(rows, verdicts, _columns(ROW_COLUMNS, rows), curves)


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
        lo, hi = f"LR {_lr_text(lr)}", f"LR {_lr_text(first.large_lr)}"
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
            f"(paired p={_p(p)}, n={k})"
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


# --------------------------------------------------------------------------------------------
# scratch_vs_prune (M2)
# --------------------------------------------------------------------------------------------


class ScratchVsPrune(Protocol):
    """M2 (WHY Tab. 4, E4/E14): scratch training of the pruned shape vs PxFy pipelines.

    ``scratch_schedule`` over ``total_epochs`` is both the scratch and the dense recipe. For each
    pruning epoch P in ``prune_epochs``, each ratio and each method of ``methods`` (default
    ``["l1"]``; ``regularization`` adds a regularized one): S4.2 (retraining continues the
    scratch schedule), SX-A (same total epochs, retraining from ``sxa_lr`` with the WHY halving
    rule down to the scratch's final LR), SX-B (pretraining squeezed to ``P/k`` epochs' worth of
    steps, k = measured speed-up, so the pipeline's FLOPs equal Scratch-E's; retraining from
    ``sxb_lr``). Scratch rows: Scratch-E (``total_epochs``) and, with ``scratch_b``, Scratch-B
    (``K1*F1/F2 + K2`` of the first P). Every row is compared with the ``reference`` scratch row
    (``Scratch-E`` or ``Scratch-B``) of its ratio.
    """

    name = "scratch_vs_prune"
    description = "M2: scratch vs pruning under S4.2 / SX-A / SX-B (PxFy rows), Scratch-E/B"
    default_config = {
        **_COMMON_DEFAULTS,
        "base": {},
        "methods": ["l1"],
        "reference": "Scratch-E",
        "ratios": [0.5, 0.8],
        "scratch_schedule": "0:0.02,10:0.002,15:0.0002",
        "total_epochs": 20,
        "prune_epochs": [5, 10],
        "sxa_lr": 0.02,
        "sxb_lr": 0.02,
        "setups": ["S4.2", "SX-A", "SX-B"],
        "scratch_b": True,
        "halving_stage_cap": 30,
        "regularization": {},
    }

    def expand(self, config: dict) -> list[RunSpec]:
        """Cells per ratio: Scratch-E, Scratch-B, and each method × setup × pruning epoch."""
        cfg = self.config(config)
        total = int(cfg["total_epochs"])
        sched = parse_schedule(cfg["scratch_schedule"], total, f"{self.name}.scratch_schedule")
        if sched.kind != "piecewise":
            raise ConfigError(
                f"{self.name}.scratch_schedule must be piecewise constant ('0:0.1,80:0.01' or "
                f"'steps:0.1@0,0.01@80'), got {cfg['scratch_schedule']!r}"
            )
        stages = sched.stages
        final_lr = stages[-1][1]
        unknown = sorted(set(cfg["setups"]) - {"S4.2", "SX-A", "SX-B"})
        if unknown:
            raise ConfigError(f"{self.name}.setups: unknown {unknown}; use S4.2, SX-A, SX-B")
        refs = ["Scratch-E"] + (["Scratch-B"] if cfg["scratch_b"] else [])
        _check_reference(self.name, cfg["reference"], refs, "a scratch row")
        methods, reg = _methods(cfg, self.name)
        base_extra = {k: v for k, v in cfg["base"].items() if k not in ("schedule", "epochs")}
        specs: list[RunSpec] = []
        seeds = _seeds(cfg, self.name)
        for ratio in cfg["ratios"]:
            r = _ratio_text(ratio)
            # The dense model's recipe: the scratch schedule with the base hyper-parameters.
            base_full = {**base_extra, "schedule": cfg["scratch_schedule"], "epochs": total}
            scratch_recipe = base_recipe(_base(cfg, base_full))
            for seed in seeds:
                specs.append(
                    _spec(
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
            for p in cfg["prune_epochs"]:
                p = int(p)
                if not 0 < p < total:
                    raise ConfigError(
                        f"{self.name}.prune_epochs: {p} must be in (0, total_epochs={total})"
                    )
                f = total - p
                base_p = {**base_full, "epochs": p, "schedule_epochs": total}
                rows = []
                if "S4.2" in cfg["setups"]:
                    sched = format_piecewise(truncate_piecewise(stages, p))
                    rows.append((f"S4.2 P{p}F{f}", sched, {}))
                if "SX-A" in cfg["setups"]:
                    lr = float(cfg["sxa_lr"])
                    sched = format_piecewise(
                        halving_schedule(lr, f, final_lr, int(cfg["halving_stage_cap"]))
                    )
                    rows.append((f"SX-A P{p}F{f},{_lr_text(lr)}", sched, {}))
                if "SX-B" in cfg["setups"]:
                    lr = float(cfg["sxb_lr"])
                    sched = format_piecewise(
                        halving_schedule(lr, f, final_lr, int(cfg["halving_stage_cap"]))
                    )
                    squeeze = {"squeeze_base_by_speedup": True}
                    rows.append((f"SX-B P{p}/kF{f},{_lr_text(lr)}", sched, squeeze))
                for method in methods:
                    prefix = "" if method == "l1" else f"{method_label(method)} "
                    extra = _method_options(method, reg)
                    for label, sched, opts in rows:
                        for seed in seeds:
                            specs.append(
                                _spec(
                                    self.name,
                                    cfg,
                                    f"{prefix}{label} / pr={r}",
                                    method,
                                    _recipe(cfg, sched, f),
                                    seed,
                                    ratio=ratio,
                                    base=base_p,
                                    **opts,
                                    **extra,
                                )
                            )
            if cfg["scratch_b"] and cfg["prune_epochs"]:
                p = int(cfg["prune_epochs"][0])
                base_p = {**base_full, "epochs": p, "schedule_epochs": total}
                for seed in seeds:
                    specs.append(
                        _spec(
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
        prefix = cfg["reference"]
        scratch_of: dict[str, str] = {}
        for r in records:
            if r.spec["method"] == "scratch" and r.spec["cell"].startswith(prefix):
                scratch_of.setdefault(_ratio_text(r.spec["ratio"]), r.spec["cell"])

        def ref(cell: str, recs: list[RunRecord]) -> str | None:
            return scratch_of.get(_ratio_text(recs[0].spec["ratio"]))

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg["metric"])
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
            verdicts.append(
                f"{row['cell']} {word} {row['reference']}: {_pct(row['mean'])} vs "
                f"{_pct(ref_row['mean'])} ({100 * (diff or 0):+.2f} points, paired "
                f"p={_p(row['p_vs_ref'])}); setup {row['setup']}{flops}."
            )
        return Summary(rows, verdicts, _columns(ROW_COLUMNS, rows), curves)


# --------------------------------------------------------------------------------------------
# retrain_schedules (LEHUA)
# --------------------------------------------------------------------------------------------


class RetrainSchedules(Protocol):
    """LEHUA (E15): FT / LRW / SLR / CLR retraining of L1- and randomly pruned models.

    ``schedules`` maps a label to a spec; ``{base}`` in a spec is replaced by the base recipe
    (``lrw:{base}`` rewinds the base schedule) and ``{last}`` by the base schedule's last LR
    (LEHUA's FT: ``ft:{last}``). Budgets are retraining epochs. ``reference``
    (``{method, retrain}``) names the cell every row of a budget is compared with.
    """

    name = "retrain_schedules"
    description = "LEHUA: FT vs LR rewinding vs SLR vs CLR, L1 and random pruning, per budget"
    default_config = {
        **_COMMON_DEFAULTS,
        "methods": ["l1"],
        "reference": {"method": "l1", "retrain": "FT"},
        "schedules": {
            "FT": "ft:{last}",
            "LRW": "lrw:{base}",
            "SLR": "slr:0.02:0.0002",
            "CLR": "clr:0.02",
        },
        "budgets": [10],
    }

    def _reference(self, cfg: Mapping[str, Any]) -> tuple[str, str]:
        ref = dict(cfg["reference"] or {})
        unknown = sorted(set(ref) - {"method", "retrain"})
        if unknown or "method" not in ref or "retrain" not in ref:
            raise ConfigError(
                f"{self.name}.reference must be {{method: <method>, retrain: <schedule label>}}, "
                f"got {cfg['reference']!r}"
            )
        return str(ref["method"]), str(ref["retrain"])

    def expand(self, config: dict) -> list[RunSpec]:
        """Cells: method × schedule × budget (+ Random baseline)."""
        cfg = self.config(config)
        methods, reg = _methods(cfg, self.name)
        if cfg["baselines"] and "random" not in methods:
            methods.append("random")
        ref_method, ref_label = self._reference(cfg)
        _check_reference(self.name, ref_method, methods, "a method")
        _check_reference(self.name, ref_label, list(cfg["schedules"]), "a schedule label")
        base = cfg["base"]
        base_text = f"{int(base['epochs'])}@{base['schedule']}"
        last = parse_schedule(str(base["schedule"]), int(base["epochs"]), "base.schedule")
        last_text = f"{last.final_lr():g}"
        specs = []
        for budget in cfg["budgets"]:
            for method in methods:
                for label, sched in cfg["schedules"].items():
                    sched = str(sched).replace("{base}", base_text).replace("{last}", last_text)
                    recipe = _recipe(cfg, sched, int(budget))
                    cell = f"{method_label(method)} / {label} / {budget}ep"
                    extra = _method_options(method, reg)
                    for seed in _seeds(cfg, self.name):
                        specs.append(_spec(self.name, cfg, cell, method, recipe, seed, **extra))
        return specs

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """Rows per cell (reference: ``reference`` at the same budget) and verdicts.

        LEHUA: large-LR schedules beat FT; Random with a good schedule can match L1 + FT.
        """
        cfg = self.config(config)
        ref_method, ref_label = self._reference(cfg)
        records = list(records)
        ref_of: dict[int, str] = {}
        for r in records:
            label = r.spec["cell"].split(" / ")[1] if " / " in r.spec["cell"] else None
            if r.spec["method"] == ref_method and label == ref_label:
                ref_of.setdefault(r.spec["retrain"]["epochs"], r.spec["cell"])

        def ref(cell: str, recs: list[RunRecord]) -> str | None:
            return ref_of.get(recs[0].spec["retrain"]["epochs"])

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg["metric"])
        verdicts = []
        for row in rows:
            if row["reference"] and row["diff_vs_ref"] is not None:
                verdicts.append(
                    f"{row['cell']} vs {row['reference']}: {100 * row['diff_vs_ref']:+.2f} "
                    f"points (paired p={_p(row['p_vs_ref'])}; setup {row['setup']})."
                )
        return Summary(rows, verdicts, _columns(ROW_COLUMNS, rows), curves)


# --------------------------------------------------------------------------------------------
# cross_recipe (WHY calibration suggestion 4)
# --------------------------------------------------------------------------------------------


def cross_recipe_verdict(acc: Mapping[tuple[str, str], float]) -> tuple[str, str]:
    """Verdict of the 2×2 method × retraining-recipe grid (WHY section 5.2, spec 6 item 4).

    Args:
        acc: ``{(method, recipe): accuracy}`` for two methods × two recipes.

    Returns:
        ``(kind, sentence)``: kind ``"consistent winner"`` when one method wins under both
        recipes (ties count for nobody), else ``"interaction"`` — the winner flips, and the
        combination with the higher absolute accuracy weighs more.
    """
    methods = sorted({m for m, _ in acc}, key=lambda m: [k[0] for k in acc].index(m))
    recipes = sorted({r for _, r in acc}, key=lambda r: [k[1] for k in acc].index(r))
    if len(methods) != 2 or len(recipes) != 2 or len(acc) != 4:
        raise ConfigError("cross_recipe needs exactly 2 methods × 2 recipes with results")
    a, b = methods
    winners = []
    for rec in recipes:
        da = acc[(a, rec)] - acc[(b, rec)]
        winners.append(a if da > 0 else b if da < 0 else None)
    if winners[0] is not None and winners[0] == winners[1]:
        w = winners[0]
        return (
            "consistent winner",
            f"consistent winner: {w} beats {b if w == a else a} under both recipes "
            f"({', '.join(recipes)}); trust it.",
        )
    best = max(acc, key=lambda k: acc[k])
    return (
        "interaction",
        f"interaction: the winner depends on the recipe ({recipes[0]}: {winners[0] or 'tie'}, "
        f"{recipes[1]}: {winners[1] or 'tie'}); the higher-accuracy cell weighs more: "
        f"{best[0]} + {best[1]} ({_pct(acc[best])}) favours {best[0]}.",
    )


class CrossRecipe(Protocol):
    """WHY suggestion 4 (E16): A+FT_A, A+FT_B, B+FT_A, B+FT_B and the verdict.

    ``methods`` = ``{"A": method, "B": method}`` (a regularized method takes its options from
    ``regularization``); ``recipes`` = ``{"FT_A": spec, "FT_B": spec}`` (each spec a schedule;
    ``epochs`` per recipe in ``recipe_epochs``); ``reference`` = ``{method: A, recipe: FT_A}``.
    """

    name = "cross_recipe"
    description = "2×2 cross-validation of two methods and their retraining recipes"
    default_config = {
        **_COMMON_DEFAULTS,
        "methods": {"A": "l1", "B": "random"},
        "reference": {"method": "A", "recipe": "FT_A"},
        "recipes": {"FT_A": "ft:0.001", "FT_B": "0:0.01,7:0.001,14:0.0001"},
        "recipe_epochs": {"FT_A": 20, "FT_B": 20},
        "regularization": {},
    }

    def _reference(self, cfg: Mapping[str, Any]) -> str:
        ref = dict(cfg["reference"] or {})
        if set(ref) != {"method", "recipe"}:
            raise ConfigError(
                f"{self.name}.reference must be {{method: <A or B>, recipe: <recipe label>}}, "
                f"got {cfg['reference']!r}"
            )
        _check_reference(self.name, ref["method"], list(cfg["methods"]), "a method key")
        _check_reference(self.name, ref["recipe"], list(cfg["recipes"]), "a recipe key")
        method = cfg["methods"][ref["method"]]
        return f"{ref['method']}={method_label(method)} + {ref['recipe']}"

    def expand(self, config: dict) -> list[RunSpec]:
        """Four cells × seeds (no extra baselines: both methods are the comparison)."""
        cfg = self.config(config)
        methods, recipes = dict(cfg["methods"]), dict(cfg["recipes"])
        if len(methods) != 2 or len(recipes) != 2:
            raise ConfigError(f"{self.name}: needs exactly 2 methods and 2 recipes")
        reg = _regularization(cfg, self.name)
        if reg[0] is not None and reg[0] not in methods.values():
            raise ConfigError(
                f"{self.name}.regularization.method {reg[0]!r} is neither methods.A nor methods.B"
            )
        for m in methods.values():
            get_method(m)
        self._reference(cfg)
        specs = []
        for mkey, method in methods.items():
            for rkey, sched in recipes.items():
                epochs = int(cfg["recipe_epochs"].get(rkey, 0))
                if epochs < 1:
                    raise ConfigError(f"{self.name}.recipe_epochs[{rkey!r}] must be >= 1")
                cell = f"{mkey}={method_label(method)} + {rkey}"
                extra = _method_options(method, reg)
                for seed in _seeds(cfg, self.name):
                    specs.append(
                        _spec(
                            self.name,
                            cfg,
                            cell,
                            method,
                            _recipe(cfg, sched, epochs),
                            seed,
                            **extra,
                        )
                    )
        return specs

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """The four rows (compared with ``reference``) and the cross-validation verdict."""
        cfg = self.config(config)
        reference = self._reference(cfg)
        records = list(records)

        def ref(cell: str, recs: list[RunRecord]) -> str | None:
            return reference

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg["metric"])
        verdicts = []
        acc = {}
        for row in rows:
            left, _, rkey = row["cell"].partition(" + ")
            acc[(left, rkey)] = row["mean"]
        if len(acc) == 4:
            kind, sentence = cross_recipe_verdict(acc)
            verdicts.append(sentence)
        else:
            verdicts.append(f"incomplete 2×2 grid ({len(acc)} of 4 cells): no verdict yet")
        return Summary(rows, verdicts, _columns(ROW_COLUMNS, rows), curves)


# --------------------------------------------------------------------------------------------
# ratio_sweep
# --------------------------------------------------------------------------------------------


class RatioSweep(Protocol):
    """Accuracy, mean JSV after pruning and speed-up versus the pruning ratio (E7).

    Baselines per ratio: Random (same recipe) and Scratch-E (the dense model's recipe stretched
    to the pipeline's total epochs). ``reference`` names the method each ratio's rows are
    compared with; ``regularization`` adds a regularized method.
    """

    name = "ratio_sweep"
    description = "accuracy and mean JSV after pruning vs pruning ratio"
    default_config = {
        **_COMMON_DEFAULTS,
        "methods": ["l1"],
        "reference": "l1",
        "ratios": [0.1, 0.3, 0.5, 0.7, 0.9],
        "schedule": "steps:0.01:1e-4",
        "epochs": 10,
        "regularization": {},
    }

    def expand(self, config: dict) -> list[RunSpec]:
        """Cells: method × ratio (+ Random, and Scratch-E of each pruned shape)."""
        cfg = self.config(config)
        methods, reg = _methods(cfg, self.name)
        if cfg["baselines"]:
            methods += [m for m in ("random", "scratch") if m not in methods]
        _check_reference(self.name, cfg["reference"], methods, "a method")
        recipe = _recipe(cfg, cfg["schedule"], int(cfg["epochs"]))
        specs = []
        for ratio in cfg["ratios"]:
            for method in methods:
                if method == "scratch":
                    cell = f"Scratch-E / pr={_ratio_text(ratio)}"
                    rec = _scratch_recipe(cfg)
                    extra = {"scratch_budget": "E", "pipeline_epochs": int(cfg["epochs"])}
                else:
                    cell = f"{method_label(method)} / pr={_ratio_text(ratio)}"
                    rec, extra = recipe, _method_options(method, reg)
                for seed in _seeds(cfg, self.name):
                    specs.append(
                        _spec(self.name, cfg, cell, method, rec, seed, ratio=ratio, **extra)
                    )
        return specs

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """Rows per cell (reference: ``reference`` at the same ratio); JSV-collapse verdict."""
        cfg = self.config(config)
        records = list(records)
        ref_of: dict[str, str] = {}
        for r in records:
            if r.spec["method"] == cfg["reference"]:
                ref_of.setdefault(_ratio_text(r.spec["ratio"]), r.spec["cell"])

        def ref(cell: str, recs: list[RunRecord]) -> str | None:
            return ref_of.get(_ratio_text(recs[0].spec["ratio"]))

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg["metric"])
        verdicts = []
        by_method: dict[str, list[tuple[float, float]]] = {}
        for row in rows:
            s = cells[row["cell"]][0].spec
            if s["method"] != "scratch" and not isinstance(s["ratio"], dict):
                by_method.setdefault(s["method"], []).append((s["ratio"], row["jsv_after_prune"]))
        for method, pts in by_method.items():
            pts.sort()
            text = ", ".join(f"{r:g}: {j:.4g}" for r, j in pts)
            mono = all(pts[i][1] >= pts[i + 1][1] for i in range(len(pts) - 1))
            verdicts.append(
                f"{method_label(method)} mean JSV after pruning by ratio ({text}): "
                f"{'monotone collapse' if mono else 'not monotone'}."
            )
        return Summary(rows, verdicts, _columns(ROW_COLUMNS, rows), curves)


# --------------------------------------------------------------------------------------------
# setup_check
# --------------------------------------------------------------------------------------------


class SetupCheck(Protocol):
    """E17: the strictest comparison setup every pair of given runs shares.

    ``runs`` is a list of RunSpec dicts; they are run, and every pair is labelled with its setup
    and the mismatched items.
    """

    name = "setup_check"
    description = "strictest comparison setup (S1..S4.2, SX-A/B) of every pair of given runs"
    default_config = {"runs": []}

    def expand(self, config: dict) -> list[RunSpec]:
        """The given specs, as they are."""
        cfg = self.config(config)
        if len(cfg["runs"]) < 2:
            raise ConfigError(f"{self.name}.runs needs at least two run specs")
        return [RunSpec.from_dict(d) if isinstance(d, Mapping) else d for d in cfg["runs"]]

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


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        FinetuneLR(),
        ScratchVsPrune(),
        RetrainSchedules(),
        CrossRecipe(),
        RatioSweep(),
        SetupCheck(),
    )
}
"""Protocol name -> protocol."""
