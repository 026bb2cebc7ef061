"""Physical surgery: cut pruned channels out and return a smaller model of stock layers.

The result has the same inputs and outputs as the masked model and computes the same function
(the masks zeroed exactly the channels that are cut), but every pruned conv/dense has fewer
filters, its BatchNormalization fewer entries and every consumer fewer input channels. No
tfprune layer remains, so the model (and its SavedModel) loads without tfprune installed.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from tfprune.errors import NothingPrunedWarning, UnsupportedModelError
from tfprune.graph.groups import Analysis, analyze
from tfprune.graph.rebuild import copy_layer, layer_config, rebuild_model
from tfprune.graph.rules import named_weights, rule_for
from tfprune.layers.masks import is_channel_mask, is_mask_layer, mask_variables, stock_class
from tfprune.plan import PruningPlan, plan_from_pruned, pruned_from_plan

__all__ = ["strip_filters", "apply_plan", "pruned_from_masks", "cut_channels"]


def pruned_from_masks(analysis: Analysis) -> dict[int, np.ndarray]:
    """Pruned units per group id, read from the ChannelMask layers of a masked model."""
    pruned: dict[int, np.ndarray] = {}
    covered: dict[int, np.ndarray] = {}
    for g in analysis.groups:
        for m in g.layers:
            variable = mask_variables(m.layer).get(m.role) if is_mask_layer(m.layer) else None
            if variable is None:
                continue
            values = np.asarray(variable.numpy()) > 0.5
            on = np.zeros(g.n_units, bool)
            seen = np.zeros(g.n_units, bool)
            np.logical_or.at(on, m.unit_of_channel, values)
            seen[m.unit_of_channel] = True
            pruned.setdefault(g.id, np.zeros(g.n_units, bool))
            covered.setdefault(g.id, np.zeros(g.n_units, bool))
            pruned[g.id] |= seen & ~on
            covered[g.id] |= on
    # A unit some mask keeps is kept everywhere.
    return {gid: p & ~covered[gid] & ~analysis.groups[gid].blocked for gid, p in pruned.items()}


def cut_channels(analysis: Analysis, pruned: dict[int, np.ndarray]) -> Any:
    """Rebuild ``analysis.model`` without the pruned units and without any ChannelMask."""
    kept_units = {gid: np.flatnonzero(~mask) for gid, mask in pruned.items() if mask.any()}

    def factory(layer: Any, path: str) -> tuple[Any, Any]:
        if is_channel_mask(layer):
            return None, None
        kept = {}
        for role, m in analysis.layer_members(layer).items():
            gid = analysis.group_of_key[m.key]
            if gid in kept_units:
                idx = m.kept_channels(kept_units[gid])
                if idx.size < m.size:
                    kept[role] = idx
        stock = stock_class(layer)
        rule = rule_for(layer)
        if not kept and stock is None:
            return copy_layer(layer, rule.new_config(layer, layer_config(layer), {})), (
                layer.get_weights()
            )
        config = rule.new_config(layer, layer_config(layer), kept)
        weights = {name: v.numpy() for name, v in named_weights(layer).items()}
        weights = rule.slice_weights(layer, weights, kept)
        if stock is not None:  # a tfprune masked layer goes back to its stock class
            for name in getattr(type(layer), "mask_weight_names", ("mask",)):
                weights.pop(name, None)
            config.pop("policy", None)
            return stock.from_config(config), weights
        return copy_layer(layer, config), weights

    calls: dict[str, list] = {}
    for call in analysis.trace.calls:
        calls.setdefault(call.path, []).append(call)

    def kept_of_output(path: str) -> np.ndarray | None:
        found = calls.get(path, [])
        if len(found) != 1 or not found[0].outputs:
            return None
        m = analysis.tensor_member(found[0].outputs[0])
        gid = analysis.group_of_key.get(m.key) if m is not None else None
        return m.kept_channels(kept_units[gid]) if gid in kept_units else None

    def rewrite(layer: Any, path: str, args: tuple, kwargs: dict) -> Any:
        if not kept_units:
            return None
        return rule_for(layer).rewrite_call(layer, args, kwargs, kept_of_output(path))

    return rebuild_model(analysis.model, factory, call_override=rewrite)


def strip_filters(masked_model: Any, *, return_plan: bool = False) -> Any | tuple[Any, PruningPlan]:
    """Physically remove the masked channels of a model from :func:`tfprune.prune_filters`.

    Returns a new model of stock layers only, of the Keras flavour of ``masked_model``, with
    all surviving weights copied, the same input and output signature, and the same outputs as
    ``masked_model``. With ``return_plan=True`` also returns the :class:`~tfprune.PruningPlan`
    of what was kept. A model without masks is returned as an unchanged copy. When the model
    has masks but every one is all ones, the copy is full size too and a
    :class:`~tfprune.errors.NothingPrunedWarning` says so.
    """
    analysis = analyze(masked_model)
    pruned = pruned_from_masks(analysis)
    if not any(p.any() for p in pruned.values()) and _has_masks(analysis):
        warnings.warn(
            f"strip_filters: every mask of model {masked_model.name!r} is all ones, so no "
            "filter was removed and the result is a full-size copy. Set the masks first: "
            "prune_filters with a sparsity above 0, fit with tfprune.UpdateFilterMasks for a "
            "schedule, or train until a regularization callback sets them.",
            NothingPrunedWarning,
            stacklevel=2,
        )
    small = cut_channels(analysis, pruned)
    if return_plan:
        return small, plan_from_pruned(analysis, pruned)
    return small


def _has_masks(analysis: Analysis) -> bool:
    return any(is_mask_layer(m.layer) for g in analysis.groups for m in g.layers)


def apply_plan(model: Any, plan: PruningPlan | dict | str) -> Any:
    """Replay a saved :class:`~tfprune.PruningPlan` on ``model`` (same architecture).

    ``plan`` may be a plan, its dict form, or a path to its JSON file. Raises
    :class:`~tfprune.errors.IncompatiblePlanError` if the plan does not fit the model.
    """
    if isinstance(plan, str):
        plan = PruningPlan.load(plan)
    elif isinstance(plan, dict):
        plan = PruningPlan.from_dict(plan)
    analysis = analyze(model)
    if _has_masks(analysis):
        raise UnsupportedModelError(
            "apply_plan expects a model without tfprune masks; use strip_filters on a masked model."
        )
    return cut_channels(analysis, pruned_from_plan(analysis, _traced_paths(analysis, plan)))


def _traced_paths(analysis: Analysis, plan: PruningPlan) -> PruningPlan:
    """``plan`` with its layer names matched to this model's paths where they differ.

    A pruned Keras 3 model names the sublayers of a custom layer the analysis looked inside
    ``block_conv``; here they are ``block/conv``. A name is changed only where exactly one
    path matches.
    """
    paths = {m.path for g in analysis.groups for m in g.layers}
    flat: dict[str, list[str]] = {}
    for path in paths:
        flat.setdefault(path.replace("/", "_"), []).append(path)
    layers = {}
    for path, roles in plan.layers.items():
        found = flat.get(path.replace("/", "_"), [])
        layers[path if path in paths or len(found) != 1 else found[0]] = roles
    return dataclasses.replace(plan, layers=layers)
