"""The ``ratio_sweep`` protocol: accuracy and mean JSV after pruning versus pruning ratio."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfprune.configs.checks import Epochs, Ratios, Schedule
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
    ratio_text,
    retrain_recipe,
    scratch_baseline_recipe,
    seed_list,
    summarize_cells,
)
from tfprune.protocols.params import CommonParams, defaults_of
from tfprune.protocols.spec import RunRecord, RunSpec

__all__ = [
    "RatioSweep",
]


@dataclasses.dataclass(frozen=True)
class RatioSweepParams(CommonParams):
    """The ``ratio_sweep`` config (besides :class:`CommonParams`).

    Attributes:
        methods: Pruning methods.
        reference: The method every row is compared with, at the same ratio.
        ratios: Pruning ratios (numbers or ``{layer-name regex: ratio}``).
        schedule: Retraining schedule.
        epochs: Retraining epochs.
        regularization: A regularized method.
    """

    methods: list[str] = dataclasses.field(default_factory=lambda: ["l1"])
    reference: str = "l1"
    ratios: Ratios = dataclasses.field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    schedule: Schedule = "steps:0.01:1e-4"
    epochs: Epochs = 10
    regularization: dict = dataclasses.field(default_factory=dict)


class RatioSweep(Protocol):
    """Accuracy, mean JSV after pruning and speed-up versus the pruning ratio.

    Baselines per ratio: Random (same recipe) and Scratch-E (the dense model's recipe stretched
    to the pipeline's total epochs). ``reference`` names the method each ratio's rows are
    compared with; ``regularization`` adds a regularized method.
    """

    name = "ratio_sweep"
    description = "accuracy and mean JSV after pruning vs pruning ratio"
    default_config = defaults_of(RatioSweepParams)
    params = RatioSweepParams

    def expand(self, config: dict) -> list[RunSpec]:
        """Cells: method × ratio (+ Random, and Scratch-E of each pruned shape)."""
        cfg = self.config(config)
        methods, reg = configured_methods(cfg, self.name)
        if cfg.baselines:
            methods += [m for m in ("random", "scratch") if m not in methods]
        check_reference(self.name, cfg.reference, methods, "a method")
        recipe = retrain_recipe(cfg, cfg.schedule, int(cfg.epochs))
        specs = []
        for ratio in cfg.ratios:
            for method in methods:
                if method == "scratch":
                    cell = f"Scratch-E / pr={ratio_text(ratio)}"
                    rec = scratch_baseline_recipe(cfg)
                    extra = {"scratch_budget": "E", "pipeline_epochs": int(cfg.epochs)}
                else:
                    cell = f"{method_label(method)} / pr={ratio_text(ratio)}"
                    rec, extra = recipe, method_options(method, reg)
                for seed in seed_list(cfg, self.name):
                    specs.append(
                        make_spec(self.name, cfg, cell, method, rec, seed, ratio=ratio, **extra)
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
            if r.spec["method"] == cfg.reference:
                ref_of.setdefault(ratio_text(r.spec["ratio"]), r.spec["cell"])

        def ref(cell: str, recs: list[RunRecord]) -> str | None:
            return ref_of.get(ratio_text(recs[0].spec["ratio"]))

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg.metric)
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
        return Summary(rows, verdicts, columns_for(ROW_COLUMNS, rows), curves)
