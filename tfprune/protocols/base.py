"""What every comparison protocol shares: the :class:`Protocol` base class and its helpers.

A protocol turns a config into run specs (grid cells × seeds) and finished runs into summary
tables and verdicts. Every protocol merges the user config over its
:attr:`Protocol.default_config` (unknown keys raise :class:`~tfprune.errors.ConfigError`),
expands it into :class:`RunSpec` objects — every cell runs every seed (3 by default) — and
summarises finished :class:`RunRecord` objects into one row per cell: mean ± std of the final
accuracy over seeds (``mean``/``std``), best accuracy, accuracy and mean JSV right after pruning,
trainability accuracy, the achieved params/FLOPs/speed-up next to the target ratio, the fairness
setup label of the cell against the row's reference
(:func:`~tfprune.protocols.setups.setup_check`) and a paired t-test against the reference where
the same seeds exist. Random pruning and scratch training of the pruned shape are added as
baselines unless ``baselines: false``.

This module holds :class:`Protocol`, :class:`Summary` (what a protocol concludes), the config
handling every grid uses (the common defaults, seeds, retraining recipes, the
``regularization:`` block, :class:`RunSpec` building), the per-cell summary
(:func:`summarize_cells`) and seed-paired comparison (:func:`compare_cells`) of records, and the
wording of verdicts (:func:`method_label`, :func:`outcome`, percent and p-value text). Each
protocol lives in a module of its own; :mod:`tfprune.protocols.grids` registers them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tfprune.errors import ConfigError
from tfprune.protocols.methods import METHODS, REGULARIZED, get_method
from tfprune.protocols.params import CommonParams, check_params, defaults_of
from tfprune.protocols.setups import setup_check, strictest_shared_named
from tfprune.protocols.spec import RunRecord, RunSpec, base_recipe
from tfprune.protocols.stats import mean_std, paired_test
from tfprune.training.recipe import TrainingRecipe
from tfprune.training.schedules import parse_schedule

__all__ = [
    "MIN_TESTED_SEEDS",
    "ROW_COLUMNS",
    "SIGNIFICANCE",
    "CellComparison",
    "Protocol",
    "Summary",
    "base_dict",
    "check_reference",
    "columns_for",
    "compare_cells",
    "configured_methods",
    "lr_text",
    "make_spec",
    "method_label",
    "method_options",
    "outcome",
    "paired_test_text",
    "percent_text",
    "ratio_text",
    "regularization_block",
    "retrain_recipe",
    "scratch_baseline_recipe",
    "seed_list",
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
# Protocol base class
# --------------------------------------------------------------------------------------------


class Protocol:
    """A named comparison protocol (subclasses implement :meth:`expand` and :meth:`summarize`).

    Attributes:
        name: Registry key.
        description: One line for ``--help`` and reports.
        default_config: Every accepted key with its default.
        params: The protocol's typed config (a dataclass whose defaults are
            ``default_config``); values of the wrong type fail before anything trains.
    """

    name: str = ""
    description: str = ""
    default_config: dict = {}
    params: type | None = None

    def config(self, config: Any = None) -> Any:
        """The protocol's typed settings: ``config`` merged over :attr:`default_config`.

        ``config`` is a mapping (merged over the defaults, then every setting checked against
        :attr:`params`: its type and the check its type declares) or an instance of
        :attr:`params`, which was checked when it was built and is returned as it is. Without
        :attr:`params` the merged mapping is returned.

        Raises:
          ConfigError: an unknown key, or a value of the wrong type (naming both).
        """
        if self.params is not None and isinstance(config, self.params):
            return config
        merged = _merge(self.default_config, config, self.name)
        if self.params is None:
            return merged
        check_params(self.params, merged, self.name)
        return self.params(**merged)

    def expand(self, config: Any) -> list[RunSpec]:
        """Run specs (every cell × seed) of ``config`` (see :meth:`config`)."""
        raise NotImplementedError

    def summarize(self, records: list[RunRecord], config: Any = None) -> Summary:
        """One row per cell with mean ± std and the achieved compression, plus verdicts.

        ``config`` is the protocol config the records were run with (its ``reference`` names
        the cell every row is compared with); ``None`` takes the defaults.
        """
        raise NotImplementedError


def check_reference(name: str, ref: Any, allowed: Sequence[str], what: str) -> str:
    """``ref`` when it is one of ``allowed`` (the grid's cells or methods), else a ConfigError."""
    if ref not in allowed:
        raise ConfigError(
            f"{name}.reference must name {what} of this grid, one of {list(allowed)}; got {ref!r}"
        )
    return str(ref)


# --------------------------------------------------------------------------------------------
# Shared config handling
# --------------------------------------------------------------------------------------------

_COMMON_DEFAULTS: dict[str, Any] = defaults_of(CommonParams)
"""The settings every protocol shares, with their defaults (see :class:`CommonParams`)."""

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


def seed_list(cfg: Any, name: str) -> list[int]:
    """The seeds to run: ``0..n-1`` for a count ``n``, else the list (checked with the config)."""
    seeds = cfg.seeds
    return list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]


def lr_text(lr: float) -> str:
    """An LR as cell labels write it (``1e-3``, ``0.005``)."""
    exp = math.log10(lr)
    if abs(exp - round(exp)) < 1e-9:
        return f"1e{int(round(exp))}"
    return f"{lr:g}"


def retrain_recipe(cfg: Any, schedule: str, epochs: int) -> TrainingRecipe:
    """The retraining recipe of ``schedule`` over ``epochs`` with the config's hyper-parameters."""
    parse_schedule(schedule, epochs, field="schedule")  # validate early, naming the field
    return TrainingRecipe(
        schedule=schedule,
        epochs=int(epochs),
        batch_size=int(cfg.batch_size),
        momentum=float(cfg.momentum),
        weight_decay=float(cfg.weight_decay),
        optimizer=str(cfg.optimizer),
        weight_decay_mode=str(cfg.weight_decay_mode),
    )


def base_dict(cfg: Any, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The base recipe dict: the config's hyper-parameters unless ``base`` sets its own."""
    out = {
        "batch_size": int(cfg.batch_size),
        "momentum": float(cfg.momentum),
        "weight_decay": float(cfg.weight_decay),
        "optimizer": str(cfg.optimizer),
        "weight_decay_mode": str(cfg.weight_decay_mode),
    }
    out.update(dict(cfg.base if base is None else base))
    return out


def scratch_baseline_recipe(cfg: Any) -> TrainingRecipe:
    """Scratch baselines train with the dense model's recipe (as in Liu et al. 2019).

    The run stretches its piecewise schedule to the scratch budget (Scratch-E/B).
    """
    return base_recipe(base_dict(cfg), cfg.dataset)


def regularization_block(cfg: Any, name: str) -> tuple[str | None, dict[str, Any]]:
    """``(method, run options)`` of the ``regularization:`` config block (method None: none)."""
    block = dict(getattr(cfg, "regularization", None) or {})
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


def method_options(method: str, reg: tuple[str | None, dict[str, Any]]) -> dict[str, Any]:
    """Run options of ``method``: the regularization block's, for the regularized method."""
    name, opts = reg
    if method in REGULARIZED:
        if method == name:
            return dict(opts)
        return {"prune_schedule": f"0:{_REG_DEFAULTS['lr_prune']:g}"}
    return {}


def configured_methods(cfg: Any, name: str) -> tuple[list[str], tuple]:
    """The configured methods (plus the regularized one), each checked against the registry."""
    methods = list(cfg.methods)
    reg = regularization_block(cfg, name)
    if reg[0] is not None and reg[0] not in methods:
        methods.append(reg[0])
    for m in methods:
        get_method(m)
    return methods, reg


def _options(cfg: Any, **extra: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "jsv_samples": int(cfg.jsv_samples),
        "jsv_every_epoch": bool(cfg.jsv_every_epoch),
    }
    if cfg.target:
        opts["target"] = dict(cfg.target)
    if cfg.model_kwargs:
        opts["model_kwargs"] = dict(cfg.model_kwargs)
    if cfg.data_options:
        opts["data_options"] = dict(cfg.data_options)
    if cfg.recalibrate_batch_norm:  # only when on: the default keeps the run ids
        opts["recalibrate_batch_norm"] = True
    opts.update({k: v for k, v in extra.items() if v is not None})
    return opts


def make_spec(
    protocol: str,
    cfg: Any,
    cell: str,
    method: str,
    recipe: TrainingRecipe,
    seed: int,
    *,
    ratio: Any = None,
    base: Mapping[str, Any] | None = None,
    **options: Any,
) -> RunSpec:
    """One run of the grid: the config's dataset, model, ratio, base and options."""
    spec = RunSpec(
        protocol=protocol,
        cell=cell,
        dataset=str(cfg.dataset),
        model=str(cfg.model),
        method=method,
        ratio=cfg.ratio if ratio is None else ratio,
        retrain=recipe,
        seed=seed,
        base=base_dict(cfg, base),
        data_dir=cfg.data_dir,
        options=_options(cfg, **options),
    )
    spec.base_recipe()  # validate the base recipe now
    get_method(method).check(spec)
    return spec


def ratio_text(ratio: Any) -> str:
    """A ratio (or ``{regex: ratio}``) as cell labels write it."""
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


def columns_for(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
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
        recs.sort(key=lambda r: (int(r.spec.get("seed", 0)), r.run_id))
    return cells


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
        p: Two-sided paired t-test p-value over exactly those pairs; ``nan`` when not tested
            (fewer than :data:`MIN_TESTED_SEEDS` pairs) or undefined (no spread).
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
    p = test.p if test.n >= MIN_TESTED_SEEDS else float("nan")
    return CellComparison(seeds, verdict.label if seeds else "none", mismatches, test.mean_diff, p)


def _prunes(record: RunRecord) -> bool:
    """Whether the run pruned a trained model (not a scratch run of the pruned shape)."""
    method = record.spec.get("method")
    return method not in METHODS or METHODS[method].needs_base


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
        # A scratch run prunes nothing: its "after pruning" figure is its untrained accuracy.
        pruned = [x for x, r in zip(m, recs, strict=True) if _prunes(r)]
        after, after_std, _ = mean_std([x.get("acc_after_prune") for x in pruned])
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
            "target_ratio": ratio_text(spec.get("ratio", 0.0)),
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


def percent_text(x: float | None) -> str:
    """A fraction as a percentage with two decimals (``-`` when missing)."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _p(p: float | None) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.3g}"


SIGNIFICANCE = 0.05
"""A difference is called a win or a loss only when its paired p-value is below this."""

MIN_TESTED_SEEDS = 3
"""Paired seeds a difference needs before it is tested (fewer: no p-value, no win or loss)."""


def paired_test_text(p: float | None, n: int) -> str:
    """How a verdict states the test of a difference over ``n`` seed pairs.

    ``"paired p=0.022"``, or ``"n=2<3, not tested"`` when there are too few pairs.
    """
    if n < MIN_TESTED_SEEDS:
        return f"n={n}<{MIN_TESTED_SEEDS}, not tested"
    return f"paired p={_p(p)}"


def outcome(diff: float | None, p: float | None) -> str:
    """How a verdict words a difference: a win or a loss only when the paired test says so.

    ``"beats"``/``"loses to"`` at p < :data:`SIGNIFICANCE`; ``"ties with"`` above it;
    ``"scores above"``/``"scores below"`` (no claim) when there is no test (fewer than
    :data:`MIN_TESTED_SEEDS` paired seeds, or no spread).
    """
    if diff is None or diff != diff:
        return "cannot be compared with"
    if p is None or p != p:
        return "scores above" if diff > 0 else "scores below" if diff < 0 else "ties with"
    if p < SIGNIFICANCE:
        return "beats" if diff > 0 else "loses to"
    return "ties with"
