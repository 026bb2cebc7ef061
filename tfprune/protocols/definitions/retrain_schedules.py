"""The ``retrain_schedules`` protocol: FT / LRW / SLR / CLR retraining per budget.

L1- and randomly pruned models retrained with each schedule, compared at equal budgets, as in
Le & Hua 2021, "Network Pruning That Matters: A Case Study on Retraining Variants".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfprune.configs.checks import EpochList, ScheduleMap
from tfprune.errors import ConfigError
from tfprune.protocols.base import (
    ROW_COLUMNS,
    Protocol,
    Summary,
    check_reference,
    columns_for,
    configured_methods,
    make_spec,
    method_label,
    method_options,
    paired_test_text,
    retrain_recipe,
    seed_list,
    summarize_cells,
)
from tfprune.protocols.params import CommonParams, defaults_of
from tfprune.protocols.spec import RunRecord, RunSpec
from tfprune.training.schedules import parse_schedule

__all__ = [
    "RetrainSchedules",
]


@dataclasses.dataclass(frozen=True)
class RetrainSchedulesParams(CommonParams):
    """The ``retrain_schedules`` config (besides :class:`CommonParams`).

    Attributes:
        methods: Pruning methods.
        reference: ``{method, retrain}``: the row every row is compared with.
        schedules: ``{label: schedule}`` retraining variants (``{last}``/``{base}`` are filled
            from the base recipe).
        budgets: Retraining epochs.
    """

    methods: list[str] = dataclasses.field(default_factory=lambda: ["l1"])
    reference: dict = dataclasses.field(default_factory=lambda: {"method": "l1", "retrain": "FT"})
    schedules: ScheduleMap = dataclasses.field(
        default_factory=lambda: {
            "FT": "ft:{last}",
            "LRW": "lrw:{base}",
            "SLR": "slr:0.02:0.0002",
            "CLR": "clr:0.02",
        }
    )
    budgets: EpochList = dataclasses.field(default_factory=lambda: [10])


class RetrainSchedules(Protocol):
    """Retraining variants (Le & Hua 2021): FT / LRW / SLR / CLR of L1- and randomly pruned models.

    ``schedules`` maps a label to a spec; ``{base}`` in a spec is replaced by the base recipe
    (``lrw:{base}`` rewinds the base schedule) and ``{last}`` by the base schedule's last LR
    (Le & Hua's FT: ``ft:{last}``). Budgets are retraining epochs. ``reference``
    (``{method, retrain}``) names the cell every row of a budget is compared with.
    """

    name = "retrain_schedules"
    description = (
        "retraining variants: FT vs LR rewinding vs SLR vs CLR, L1 and random pruning, per budget"
    )
    default_config = defaults_of(RetrainSchedulesParams)
    params = RetrainSchedulesParams

    def _reference(self, cfg: Any) -> tuple[str, str]:
        ref = dict(cfg.reference or {})
        unknown = sorted(set(ref) - {"method", "retrain"})
        if unknown or "method" not in ref or "retrain" not in ref:
            raise ConfigError(
                f"{self.name}.reference must be {{method: <method>, retrain: <schedule label>}}, "
                f"got {cfg.reference!r}"
            )
        return str(ref["method"]), str(ref["retrain"])

    def expand(self, config: dict) -> list[RunSpec]:
        """Cells: method × schedule × budget (+ Random baseline)."""
        cfg = self.config(config)
        methods, reg = configured_methods(cfg, self.name)
        if cfg.baselines and "random" not in methods:
            methods.append("random")
        ref_method, ref_label = self._reference(cfg)
        check_reference(self.name, ref_method, methods, "a method")
        check_reference(self.name, ref_label, list(cfg.schedules), "a schedule label")
        base = cfg.base
        base_text = f"{int(base['epochs'])}@{base['schedule']}"
        last = parse_schedule(str(base["schedule"]), int(base["epochs"]), "base.schedule")
        last_text = f"{last.final_lr():g}"
        specs = []
        for budget in cfg.budgets:
            for method in methods:
                for label, sched in cfg.schedules.items():
                    sched = str(sched).replace("{base}", base_text).replace("{last}", last_text)
                    recipe = retrain_recipe(cfg, sched, int(budget))
                    cell = f"{method_label(method)} / {label} / {budget}ep"
                    extra = method_options(method, reg)
                    for seed in seed_list(cfg, self.name):
                        specs.append(make_spec(self.name, cfg, cell, method, recipe, seed, **extra))
        return specs

    def summarize(
        self, records: list[RunRecord], config: Mapping[str, Any] | None = None
    ) -> Summary:
        """Rows per cell (reference: ``reference`` at the same budget) and verdicts.

        Le & Hua's finding: large-LR schedules beat FT; Random with a good schedule can match L1+FT.
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

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg.metric)
        verdicts = []
        for row in rows:
            if row["reference"] and row["diff_vs_ref"] is not None:
                tested = paired_test_text(row["p_vs_ref"], len(row.get("paired_seeds") or []))
                verdicts.append(
                    f"{row['cell']} vs {row['reference']}: {100 * row['diff_vs_ref']:+.2f} "
                    f"points ({tested}; setup {row['setup']})."
                )
        return Summary(rows, verdicts, columns_for(ROW_COLUMNS, rows), curves)
