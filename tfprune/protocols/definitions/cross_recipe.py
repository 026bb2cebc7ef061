"""The ``cross_recipe`` protocol: two methods each retrained with both recipes (a 2×2 grid).

A check suggested in Sec. 5.2 of Wang et al. 2023, "Why is the State of Neural Network Pruning so
Confusing?": retrain each method with the other method's recipe too, so that a recipe advantage
is not mistaken for a method advantage.

Two methods × their two retraining recipes, and :func:`cross_recipe_verdict`, the verdict read
from the four cells.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from tfprune.configs.checks import EpochMap, ScheduleMap
from tfprune.errors import ConfigError
from tfprune.protocols.base import (
    ROW_COLUMNS,
    Protocol,
    Summary,
    check_reference,
    columns_for,
    make_spec,
    method_label,
    method_options,
    percent_text,
    regularization_block,
    retrain_recipe,
    seed_list,
    summarize_cells,
)
from tfprune.protocols.methods import get_method
from tfprune.protocols.params import CommonParams, defaults_of
from tfprune.protocols.spec import RunRecord, RunSpec

__all__ = [
    "CrossRecipe",
    "cross_recipe_verdict",
]


def cross_recipe_verdict(acc: Mapping[tuple[str, str], float]) -> tuple[str, str]:
    """Verdict of the 2×2 method × retraining-recipe grid (Sec. 5.2 of Wang et al. 2023).

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
        f"{best[0]} + {best[1]} ({percent_text(acc[best])}) favours {best[0]}.",
    )


@dataclasses.dataclass(frozen=True)
class CrossRecipeParams(CommonParams):
    """The ``cross_recipe`` config (besides :class:`CommonParams`).

    Attributes:
        methods: ``{A: method, B: method}``.
        reference: ``{method, recipe}``: the cell every cell is compared with.
        recipes: ``{label: schedule}`` of each method's retraining recipe.
        recipe_epochs: ``{label: epochs}``.
        regularization: A regularized method.
    """

    methods: dict = dataclasses.field(default_factory=lambda: {"A": "l1", "B": "random"})
    reference: dict = dataclasses.field(default_factory=lambda: {"method": "A", "recipe": "FT_A"})
    recipes: ScheduleMap = dataclasses.field(
        default_factory=lambda: {"FT_A": "ft:0.001", "FT_B": "0:0.01,7:0.001,14:0.0001"}
    )
    recipe_epochs: EpochMap = dataclasses.field(default_factory=lambda: {"FT_A": 20, "FT_B": 20})
    regularization: dict = dataclasses.field(default_factory=dict)


class CrossRecipe(Protocol):
    """Each method retrained with both recipes: A+FT_A, A+FT_B, B+FT_A, B+FT_B and the verdict.

    ``methods`` = ``{"A": method, "B": method}`` (a regularized method takes its options from
    ``regularization``); ``recipes`` = ``{"FT_A": spec, "FT_B": spec}`` (each spec a schedule;
    ``epochs`` per recipe in ``recipe_epochs``); ``reference`` = ``{method: A, recipe: FT_A}``.
    """

    name = "cross_recipe"
    description = "2×2 cross-validation of two methods and their retraining recipes"
    default_config = defaults_of(CrossRecipeParams)
    params = CrossRecipeParams

    def _reference(self, cfg: Any) -> str:
        ref = dict(cfg.reference or {})
        if set(ref) != {"method", "recipe"}:
            raise ConfigError(
                f"{self.name}.reference must be {{method: <A or B>, recipe: <recipe label>}}, "
                f"got {cfg.reference!r}"
            )
        check_reference(self.name, ref["method"], list(cfg.methods), "a method key")
        check_reference(self.name, ref["recipe"], list(cfg.recipes), "a recipe key")
        method = cfg.methods[ref["method"]]
        return f"{ref['method']}={method_label(method)} + {ref['recipe']}"

    def expand(self, config: dict) -> list[RunSpec]:
        """Four cells × seeds (no extra baselines: both methods are the comparison)."""
        cfg = self.config(config)
        methods, recipes = dict(cfg.methods), dict(cfg.recipes)
        if len(methods) != 2 or len(recipes) != 2:
            raise ConfigError(f"{self.name}: needs exactly 2 methods and 2 recipes")
        reg = regularization_block(cfg, self.name)
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
                epochs = int(cfg.recipe_epochs.get(rkey, 0))
                if epochs < 1:
                    raise ConfigError(f"{self.name}.recipe_epochs[{rkey!r}] must be >= 1")
                cell = f"{mkey}={method_label(method)} + {rkey}"
                extra = method_options(method, reg)
                for seed in seed_list(cfg, self.name):
                    specs.append(
                        make_spec(
                            self.name,
                            cfg,
                            cell,
                            method,
                            retrain_recipe(cfg, sched, epochs),
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

        rows, cells, curves = summarize_cells(records, reference=ref, metric=cfg.metric)
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
        return Summary(rows, verdicts, columns_for(ROW_COLUMNS, rows), curves)
