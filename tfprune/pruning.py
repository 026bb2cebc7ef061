"""Masked filter pruning during training: :func:`prune_filters` and the :class:`FilterPruner`.

``prune_filters`` is tfprune's counterpart of ``tfmot.sparsity.keras.prune_low_magnitude``
for whole filters: it returns a copy of the model with a :class:`~tfprune.layers.ChannelMask`
in front of every consumer of a prunable channel group. With a float sparsity the masks are
set at once (one-shot); with a TF-MOT ``PruningSchedule`` they are updated during ``fit`` by
:class:`tfprune.UpdateFilterMasks`. Either way, :func:`tfprune.strip_filters` then cuts the
masked channels out for real.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfprune import layers as tfprune_layers
from tfprune.compat import KERAS3, flavour_of, producing_layer, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError, did_you_mean
from tfprune.graph.groups import Analysis, ChannelGroup, analyze
from tfprune.graph.keras3 import check_keras3_graph, is_keras3
from tfprune.graph.rebuild import copy_layer, layer_config, rebuild_model
from tfprune.graph.rules import named_weights, rule_for
from tfprune.graph.trace import check_graph_model
from tfprune.importance import Importance, get_importance
from tfprune.layers.keras3_masks import keras3_mask_classes
from tfprune.layers.masks import (
    ChannelMask,
    channel_mask_class,
    is_mask_layer,
    mask_variables,
    masked_consumer_class,
    masked_twin_class,
)
from tfprune.nested import all_layers
from tfprune.selection import (
    PruningPolicy,
    RatioSpec,
    Sparsity,
    check_options,
    check_sparsity,
    resolve_ratios,
    select_units,
)
from tfprune.surgery import pruned_from_masks, strip_filters
from tfprune.targets import (
    DEFAULT_TOLERANCE,
    LatencyMeter,
    ReducedCounter,
    TargetResult,
    check_target,
    search_target,
)
from tfprune.targets import latency_inputs as random_latency_inputs

__all__ = [
    "prune_filters",
    "find_sparsity_for_target",
    "FilterPruner",
    "custom_objects",
    "pruning_policy",
    "shrink",
]


def custom_objects(flavour: str = "tf_keras") -> dict[str, type]:
    """Custom objects to pass to ``keras.models.load_model`` for masked models.

    Usage: ``with keras.utils.custom_object_scope(tfprune.custom_objects()): load_model(p)``.
    For a masked Keras 3 model: ``keras.saving.load_model(p,
    custom_objects=tfprune.custom_objects("keras3"))``. Stripped models need none.
    """
    if flavour == KERAS3:
        classes = vars(keras3_mask_classes())
        names = [n for n, c in classes.items() if isinstance(c, type) and n[0].isupper()]
        return {k: classes[n] for n in names for k in (n, f"tfprune>{n}")}
    if flavour != "tf_keras":
        raise InvalidArgumentError(
            f"custom_objects: flavour must be 'tf_keras' or 'keras3', got {flavour!r}."
        )
    objects: dict[str, type] = {"ChannelMask": ChannelMask, "tfprune>ChannelMask": ChannelMask}
    for name in tfprune_layers.__all__:
        obj = getattr(tfprune_layers, name)
        if isinstance(obj, type):
            objects.setdefault(name, obj)
            objects.setdefault(f"tfprune>{name}", obj)
    return objects


def _policy_carrier(model: Any) -> Any:
    """The mask layer of ``model`` that carries its pruning policy."""
    masks = [layer for layer in all_layers(model) if is_mask_layer(layer)]
    if not masks:
        raise UnsupportedModelError(
            f"Model {model.name!r} has no tfprune masks; create it with "
            "tfprune.prune_filters(model, sparsity, ...) first."
        )
    carrier = next((m for m in masks if m.policy is not None), None)
    if carrier is None:
        raise UnsupportedModelError(
            f"The masks of model {model.name!r} carry no pruning policy; create it with "
            "tfprune.prune_filters."
        )
    return carrier


def pruning_policy(model: Any) -> PruningPolicy:
    """The :class:`PruningPolicy` of a masked model (from :func:`prune_filters`, or reloaded).

    The policy lives in one place, on one of the model's mask layers, with its schedules as
    live objects; this reads it from there.

    Raises:
      UnsupportedModelError: the model has no tfprune masks, or none carries a policy.
    """
    return _policy_carrier(model).policy


def _group_scores(criterion: Callable, groups: list[ChannelGroup]) -> dict[int, np.ndarray]:
    """One score per unit of every group, checked."""
    scores = {}
    for g in groups:
        s = np.asarray(criterion(g), dtype=float)
        if s.shape != (g.n_units,):
            raise InvalidArgumentError(
                f"importance returned shape {s.shape} for group {g.name!r}; expected "
                f"({g.n_units},), one score per unit."
            )
        scores[g.id] = s
    return scores


def _select(
    analysis: Analysis,
    scores: Callable[[list[ChannelGroup]], Mapping[int, np.ndarray]],
    spec: RatioSpec,
    options: PruningPolicy | _Options,
    pruned: Mapping[int, np.ndarray] | None = None,
) -> dict[int, np.ndarray]:
    """Units of ``analysis``'s groups to remove for ratio ``spec`` (``scores(groups)``)."""
    ratios = {k: r for k, r in resolve_ratios(analysis, spec).items() if r > 0}
    gids = {gid for gid, _ in ratios}
    groups = [g for g in analysis.groups if g.id in gids]
    return select_units(
        groups,
        scores(groups),
        ratios,
        global_ranking=options.global_ranking,
        max_group_sparsity=options.max_group_sparsity,
        round_to=options.round_to,
        pruned=pruned,
    )


@dataclasses.dataclass(frozen=True)
class _Options:
    """The selection options of a target search (before there is a policy)."""

    global_ranking: bool
    max_group_sparsity: float
    round_to: int | None


# (group id, unit of each channel, mask variable): where one mask takes its values from.
_MaskSlot = tuple[int, np.ndarray, Any]


def _write_masks(slots: list[_MaskSlot], pruned: Mapping[int, np.ndarray]) -> None:
    """Write every mask so that exactly the ``pruned`` units are zeroed."""
    for gid, unit_of_channel, variable in slots:
        keep = np.ones(len(unit_of_channel), np.float32)
        if gid in pruned:
            keep = (~pruned[gid][unit_of_channel]).astype(np.float32)
        variable.assign(keep.astype(tf.as_dtype(variable.dtype).as_numpy_dtype))


class FilterPruner:
    """Computes and sets the masks of a masked model (used by :class:`UpdateFilterMasks`).

    It reads the model's policy from the mask layer that carries it (see
    :func:`pruning_policy`) and analyses the masked model's channel groups when first asked.
    """

    def __init__(self, model: Any, importance: Callable | Importance | None = None) -> None:
        self.model = model
        self._carrier = _policy_carrier(model)
        policy = self.policy
        self.importance = importance or get_importance(policy.importance, seed=policy.seed)
        self._analysis: Analysis | None = None
        #: Whether an :class:`UpdateFilterMasks` callback is driving the schedule in ``fit``.
        self.driven = False

    @property
    def policy(self) -> PruningPolicy:
        """The model's pruning policy (held by one of its mask layers)."""
        return self._carrier.policy

    @classmethod
    def for_model(cls, model: Any) -> FilterPruner:
        """The pruner of a masked model (the one prune_filters made, or a new one)."""
        pruner = getattr(model, "_tfprune_pruner", None)
        if pruner is None or pruner.model is not model:
            pruner = cls(model)
            model._tfprune_pruner = pruner
        return pruner

    def guard_fit(self) -> None:
        """Make ``fit`` refuse to train a gradually pruned model without ``UpdateFilterMasks``.

        Without the callback the masks never follow the schedule and nothing is pruned, which
        TF-MOT also refuses (its ``UpdatePruningStep``). Every ``fit`` is checked; models pruned
        one-shot, ``evaluate``, ``predict`` and custom training loops (which call
        :meth:`update` themselves) are not affected.
        """
        if not self.policy.is_gradual:
            return
        plain_make = self.model.make_train_function

        def make_train_function(force: bool = False) -> Any:
            step_fn = plain_make(force)
            keras3_fit = step_fn is None  # Keras 3 keeps the function in model.train_function
            if keras3_fit:
                step_fn = self.model.train_function
            if getattr(step_fn, "tfprune_guarded", False):
                return step_fn

            def guarded(iterator: Any) -> Any:
                # fit() calls this between its callbacks, so the flag set by the callback's
                # on_train_begin is seen; a plain bool check per step costs nothing.
                if not self.driven:
                    raise InvalidArgumentError(
                        f"model {self.model.name!r} prunes on a schedule, but fit() has no "
                        "tfprune.UpdateFilterMasks callback, so its masks would never change: "
                        "pass callbacks=[tfprune.UpdateFilterMasks(), ...] to fit()"
                    )
                return step_fn(iterator)

            guarded.tfprune_guarded = True
            if keras3_fit:
                self.model.train_function = guarded
            return guarded

        self.model.make_train_function = make_train_function

    @property
    def analysis(self) -> Analysis:
        """Channel groups of the masked model (computed once)."""
        if self._analysis is None:
            self._analysis = analyze(self.model)
        return self._analysis

    def current_pruned(self) -> dict[int, np.ndarray]:
        """Units the masks currently remove."""
        return pruned_from_masks(self.analysis)

    def compute(self, spec: RatioSpec, monotone: bool = True) -> dict[int, np.ndarray]:
        """Units to remove for ratio ``spec`` (keeping already-removed units removed)."""
        return _select(
            self.analysis,
            lambda groups: _group_scores(self.importance, groups),
            spec,
            self.policy,
            pruned=self.current_pruned() if monotone else None,
        )

    def apply(self, pruned: Mapping[int, np.ndarray]) -> None:
        """Write masks so that exactly the ``pruned`` units are zeroed."""
        slots = []
        for g in self.analysis.groups:
            for m in g.layers:
                variable = mask_variables(m.layer).get(m.role) if is_mask_layer(m.layer) else None
                if variable is not None:
                    slots.append((g.id, m.unit_of_channel, variable))
        _write_masks(slots, pruned)

    def update(self, step: int | None = None) -> bool:
        """Apply the policy at optimizer step ``step`` (None: final ratios). True if changed."""
        should, spec = self.policy.ratios_at(step)
        if not should:
            return False
        self.apply(self.compute(spec))
        return True

    def sparsity(self) -> float:
        """Fraction of prunable units currently masked."""
        pruned = self.current_pruned()
        total = sum(int(g.prunable_units.size) for g in self.analysis.groups if g.prunable)
        return float(sum(int(p.sum()) for p in pruned.values())) / total if total else 0.0


def _check_model(model: Any) -> None:
    """A clear error unless ``model`` is a model prune_filters reads (either flavour)."""
    if is_keras3(model):
        check_keras3_graph(model)
    else:
        check_graph_model(model, subclassed=True)


def _check_skip(model: Any, skip: Any) -> tuple[str, ...]:
    if isinstance(skip, str):
        skip = (skip,)
    skip = tuple(skip or ())
    names = set()
    for layer in all_layers(model):
        names.add(layer.name)
    for name in skip:
        if name not in names:
            raise InvalidArgumentError(
                f"skip names layer {name!r}, which is not in model {model.name!r}"
                f"{did_you_mean(name, sorted(names), n=3)}."
            )
    return skip


def _target_scheme(sparsity: Any) -> dict[str, float] | None:
    """The ratio mapping a target scales (None: search a uniform ratio)."""
    if sparsity is None:
        return None
    if isinstance(sparsity, Mapping):
        spec = check_sparsity(sparsity)
        if any(not isinstance(v, float) for v in spec.values()):
            raise InvalidArgumentError(
                "With target=, sparsity must be None (search a uniform ratio) or a mapping "
                "{layer_name_regex: ratio} of floats whose scale is searched; schedules "
                "cannot be combined with a target."
            )
        return spec
    raise InvalidArgumentError(
        f"Give either sparsity={sparsity!r} or target=, not both; with target=, sparsity may "
        "only be a {layer_name_regex: ratio} mapping whose common scale is searched."
    )


def _search(
    model: Any,
    analysis: Analysis,
    criterion: Callable,
    target: Any,
    scheme: dict[str, float] | None,
    skip: tuple[str, ...],
    options: _Options,
    tolerance: float | None,
    measure_inputs: Any = None,
) -> TargetResult:
    metric, value = check_target(target)
    tolerance = DEFAULT_TOLERANCE[metric] if tolerance is None else tolerance
    if isinstance(tolerance, bool) or not 0.0 < float(tolerance) < 1.0:
        raise InvalidArgumentError(
            f"target_tolerance must be in (0, 1) (relative, 0.01 = 1 %), got {tolerance!r}."
        )
    prunable = [g for g in analysis.groups if g.prunable]
    if not prunable:
        raise UnsupportedModelError(
            f"Model {model.name!r} has no prunable channel group. Run "
            "print(tfprune.explain(model)) to see which layers block pruning."
        )
    scores = _group_scores(criterion, prunable)

    def pruned_for(spec: RatioSpec) -> dict[int, np.ndarray]:
        return _select(analysis, lambda _: scores, spec, options)

    meter = None
    if metric == "speedup":
        inputs = random_latency_inputs(model) if measure_inputs is None else measure_inputs
        meter = LatencyMeter(model, analysis, inputs)
    return search_target(
        metric,
        value,
        ReducedCounter(model, analysis),
        pruned_for,
        scheme,
        skip,
        float(tolerance),
        meter,
    )


def _prepared_criterion(
    model: Any, importance: Any, seed: int, importance_data: Any, loss: Any, analysis: Analysis
) -> Callable:
    """The importance criterion, with what it needs from the model and data (Taylor) prepared."""
    criterion = get_importance(importance, seed=seed)
    if isinstance(criterion, Importance):
        kwargs = {"data": importance_data, "loss": loss}
        params = inspect.signature(criterion.prepare).parameters
        if "analysis" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
            kwargs["analysis"] = analysis  # scores refer to these groups (and their paths)
        criterion.prepare(model, **kwargs)
    return criterion


def find_sparsity_for_target(
    model: Any,
    target: Mapping[str, float],
    sparsity: Mapping[str, float] | None = None,
    importance: str | Callable | Importance = "l1",
    *,
    skip: Any = (),
    global_ranking: bool = False,
    max_group_sparsity: float = 0.9,
    round_to: int | None = None,
    seed: int = 0,
    importance_data: Any = None,
    loss: Any = None,
    tolerance: float | None = None,
    latency_inputs: Any = None,
) -> TargetResult:
    """Find the pruning ratio whose pruned model meets a FLOPs or parameter reduction.

    ``target`` is ``{"flops_reduction": f}`` (dense conv/dense MACs divided by the pruned
    model's), ``{"params_reduction": f}`` (dense trainable parameters divided by the pruned
    model's) or ``{"speedup": f}`` (dense median inference latency per batch of
    ``latency_inputs`` divided by the stripped model's, measured on this machine), with
    ``f >= 1``. Without ``sparsity`` the uniform ratio is searched; with a
    mapping ``{layer_name_regex: ratio}`` (a layer-wise scheme) the factor that scales all its
    ratios is searched, keeping their proportions. The search bisects over the exact counts of
    the model :func:`tfprune.strip_filters` would build (computed from the kept channel counts,
    no model is built) and returns the ratio whose reduction is closest to ``f``; it must lie
    within ``tolerance`` (relative; default 1 %, 5 % for the noisier ``speedup``, whose every
    try builds and times the stripped model, to 1/256 of the ratio range).
    ``latency_inputs``: a batch for ``speedup`` (default: 32 random inputs of the model's
    input shape).

    The other arguments are those of :func:`prune_filters` and select the same filters.
    Pass ``result.sparsity`` to ``prune_filters`` or to a regularization callback
    (:class:`tfprune.GrowingRegularization`, :class:`tfprune.TrainabilityPreserving`: they
    remove as many filters per layer as layer-wise ``prune_filters``), and record
    ``result.target`` next to ``result.achieved``.

    Raises:
      InvalidArgumentError: for a bad target, or one that cannot be reached (the message names
        the largest achievable reduction) or met within the tolerance (it names the two
        closest operating points).
    """
    _check_model(model)
    check_target(target)
    check_options(global_ranking, max_group_sparsity, round_to)
    scheme = _target_scheme(sparsity)
    skip = _check_skip(model, skip)
    analysis = analyze(model)
    criterion = _prepared_criterion(model, importance, seed, importance_data, loss, analysis)
    options = _Options(global_ranking, float(max_group_sparsity), round_to)
    return _search(
        model, analysis, criterion, target, scheme, skip, options, tolerance, latency_inputs
    )


def prune_filters(
    model: Any,
    sparsity: Sparsity | None = None,
    importance: str | Callable | Importance = "l1",
    *,
    target: Mapping[str, float] | None = None,
    target_tolerance: float | None = None,
    latency_inputs: Any = None,
    skip: Any = (),
    global_ranking: bool = False,
    max_group_sparsity: float = 0.9,
    round_to: int | None = None,
    seed: int = 0,
    importance_data: Any = None,
    loss: Any = None,
) -> Any:
    """Return a trainable copy of ``model`` with per-channel masks on its prunable groups.

    The copy is not compiled (as with ``keras.models.clone_model``): compile it before ``fit``.

    Args:
      model: a built functional or Sequential tf_keras model (nested models and shared layers
        are fine). It is not modified.
      sparsity: fraction of filters to remove: a float in [0, 1) (one-shot: masks are set
        now), a ``tfmot.sparsity.keras.PruningSchedule`` (gradual: fit with
        :class:`tfprune.UpdateFilterMasks`), or a mapping ``{layer_name_regex: ratio or
        schedule}`` for per-layer ratios (regexes are matched with ``re.fullmatch`` against
        the producing layer's name or ``outer/inner`` path; unmatched layers are not pruned;
        add ``".*": r`` for a default). With ``target``: omit it (a uniform ratio is
        searched) or give a ``{layer_name_regex: ratio}`` scheme whose scale is searched.
      importance: ``"l1"`` (default, mean |w| per filter as Li et al.), ``"l2"``,
        ``"random"``, ``"bn_scale"``, ``"taylor"``, ``"fpgm"``, or any callable
        ``group -> scores`` (one score per unit of the :class:`~tfprune.ChannelGroup`).
      target: prune to a matched operating point instead of a ratio: ``{"flops_reduction":
        2.0}`` (dense / pruned conv+dense FLOPs), ``{"params_reduction": 2.0}`` (dense /
        pruned trainable parameters) or ``{"speedup": 1.5}`` (dense / pruned measured
        latency). The ratio is found by
        :func:`tfprune.find_sparsity_for_target`; its result (target, achieved, ratio) is
        recorded in the model's policy: ``tfprune.pruning_policy(masked).target``.
      target_tolerance: the relative distance the achieved reduction may have from
        ``target`` (default 0.01 = 1 %; 0.05 for ``speedup``).
      latency_inputs: a batch of inputs to time for ``target={"speedup": ...}`` (default:
        32 random inputs of the model's input shape).
      skip: layer names whose filters are never removed.
      global_ranking: rank units of all groups together (scores normalised per group) instead
        of pruning each layer by its ratio.
      max_group_sparsity: with ``global_ranking``, the largest fraction of any one layer.
      round_to: keep channel counts multiples of this number (rounded up).
      seed: seed of the ``"random"`` criterion.
      importance_data: ``(x, y)`` arrays or a dataset of batches, for ``"taylor"``.
      loss: loss for ``"taylor"`` (default: the model's compiled loss).

    The sparsity and options are validated once into a :class:`PruningPolicy`, which the
    masked model carries (:func:`tfprune.pruning_policy`). The model's output layer, model
    inputs and anything :func:`tfprune.explain` reports as blocked are never pruned. Masks
    zero a channel after its bias and BatchNormalization, so :func:`tfprune.strip_filters`
    can later remove it without changing the outputs.
    """
    _check_model(model)
    if target is None and sparsity is None:
        raise InvalidArgumentError(
            "prune_filters needs sparsity= (a ratio, schedule or mapping) or target= (e.g. "
            "{'flops_reduction': 2.0})."
        )
    skip = _check_skip(model, skip)
    options = dict(
        importance=importance if isinstance(importance, str) else "custom",
        skip=skip,
        global_ranking=global_ranking,
        max_group_sparsity=max_group_sparsity,
        round_to=round_to,
        seed=seed,
    )
    scheme = None
    if target is None:
        policy = PruningPolicy(sparsity=sparsity, **options)  # validated here, once
    else:
        scheme = _target_scheme(sparsity)
        check_target(target)
        check_options(global_ranking, max_group_sparsity, round_to)
    analysis = analyze(model)
    criterion = _prepared_criterion(model, importance, seed, importance_data, loss, analysis)
    if target is not None:
        found = _search(
            model,
            analysis,
            criterion,
            target,
            scheme,
            skip,
            _Options(global_ranking, float(max_group_sparsity), round_to),
            target_tolerance,
            latency_inputs,
        )
        policy = PruningPolicy(sparsity=found.sparsity, target=found.to_dict(), **options)

    _, final_spec = policy.ratios_at(None)
    targets = resolve_ratios(analysis, final_spec)
    if not any(targets.values()) and (
        policy.is_gradual
        or any(r > 0 for r in [final_spec.default] + [r for _, r in final_spec.patterns])
    ):
        if not targets:
            raise UnsupportedModelError(
                f"Model {model.name!r} has no prunable channel group: every group touches a "
                "model input/output or a layer tfprune does not understand. Run "
                "print(tfprune.explain(model)) to see why."
            )
        raise InvalidArgumentError(
            "No prunable layer matches the sparsity patterns "
            f"{[p for p, _ in final_spec.patterns]}; prunable producers are e.g. "
            f"{_example_producers(analysis)}. Patterns use re.fullmatch on layer names."
        )
    if not targets:
        raise UnsupportedModelError(
            f"Model {model.name!r} has no prunable channel group. Run "
            "print(tfprune.explain(model)) to see which layers block pruning."
        )

    masked, slots = _masked_copy(analysis, {gid for gid, _ in targets}, policy)
    pruner = FilterPruner(masked, criterion)
    masked._tfprune_pruner = pruner
    if policy.is_gradual:
        pruner.guard_fit()
    else:
        # The copy has the original's weights, so the original's groups choose its masks: the
        # masked model is analysed only when a schedule or a later call needs it.
        pruned = _select(
            analysis, lambda groups: _group_scores(criterion, groups), final_spec, policy
        )
        _write_masks(slots, pruned)
    return masked


def _masked_copy(
    analysis: Analysis, target_groups: set[int], policy: PruningPolicy
) -> tuple[Any, list[_MaskSlot]]:
    """A copy of the analysed model with masks on the channels of ``target_groups``.

    Also returns where each mask takes its values from (in terms of ``analysis``). The first
    mask layer made carries the policy.
    """
    # Consumers of pruned channels get a mask: on their kernel when a masked twin class
    # exists (cheap: the kernel is small), otherwise a ChannelMask on their input tensor.
    kernel_masked: dict[int, int] = {}
    masked_inputs: set[tuple[str, int]] = set()
    # The rebuild hands the hook the model's own tensors; a Keras 3 trace holds views of them.
    views = {id(getattr(t, "keras_tensor", t)): t for _, t in analysis.mask_points}
    for call, tensor in analysis.mask_points:
        if analysis.group_of_key.get(("t", id(tensor))) not in target_groups:
            continue
        member = analysis.layer_members(call.layer).get("in")
        if masked_consumer_class(call.layer) is not None and member is not None:
            kernel_masked[id(call.layer)] = member.size
        else:
            masked_inputs.add((call.path, id(getattr(tensor, "keras_tensor", tensor))))

    # Layers whose own computation mixes pruned channels (a layer norm's statistics, an RNN's
    # state feeding back) mask those channels themselves: their rule names the role.
    masked_norms = {
        id(m.layer): m.size
        for g in analysis.groups
        if g.id in target_groups
        for m in g.layers
        if masked_twin_class(m.layer) is not None
        and m.role in rule_for(m.layer).self_mask_roles(m.layer)
    }
    _check_self_masks(analysis, target_groups)
    twins: list[tuple[Any, Any]] = []  # (original layer, its masked twin)
    channel_masks: list[tuple[Any, Any]] = []  # (original tensor, the ChannelMask on it)

    def carried() -> PruningPolicy | None:
        return None if twins or channel_masks else policy

    def factory(layer: Any, path: str) -> tuple[Any, Any]:
        if id(layer) in masked_norms or id(layer) in kernel_masked:
            cls = (
                masked_twin_class(layer)
                if id(layer) in masked_norms
                else masked_consumer_class(layer)
            )
            weights = {name: v.numpy() for name, v in named_weights(layer).items()}
            # Its masks (named in mask_weight_names) start as ones: nothing pruned yet.
            _, config = rule_for(layer).stock_equivalent(layer)
            twin = cls.from_config({**config, "policy": carried()})
            twins.append((layer, twin))
            return twin, weights
        config = rule_for(layer).new_config(layer, layer_config(layer), {})
        return copy_layer(layer, config), layer.get_weights()

    def hook(path: str, old: Any, new: Any, state: dict) -> Any:
        if (path, id(old)) not in masked_inputs:
            return new
        cache = state["masked"]
        old = views.get(id(old), old)
        if id(old) not in cache:
            base = producing_layer(old)
            stem = base.name if base is not None else "tensor"
            name = f"{stem}_chmask"
            i = 1
            while name in state["names"]:
                i += 1
                name = f"{stem}_chmask_{i}"
            state["names"].add(name)
            mask_class = channel_mask_class(analysis.model)
            mask_layer = mask_class(policy=carried(), name=name, dtype=_dtype_of(new))
            channel_masks.append((old, mask_layer))
            cache[id(old)] = mask_layer(new)
            state.setdefault("inserted", []).append(mask_layer)
        return cache[id(old)]

    masked = rebuild_model(analysis.model, factory, hook)
    slots: list[_MaskSlot] = []
    for old, twin in twins:
        members = analysis.layer_members(old)
        for role, variable in mask_variables(twin).items():
            if role in members:
                m = members[role]
                slots.append((analysis.group_of_key[m.key], m.unit_of_channel, variable))
    for old, mask_layer in channel_masks:
        m = analysis.tensor_member(old)
        slots.append((analysis.group_of_key[m.key], m.unit_of_channel, mask_layer.mask))
    return masked, slots


def _check_self_masks(analysis: Analysis, target_groups: set[int]) -> None:
    """Refuse a group whose member must mask its own channels but has no masked twin.

    Its rule says the layer mixes those channels inside (a norm's statistics, a recurrent
    state): a mask in front of or behind it would not make the masked model compute what the
    stripped one does.
    """
    for g in analysis.groups:
        if g.id not in target_groups:
            continue
        for m in g.layers:
            roles = rule_for(m.layer).self_mask_roles(m.layer)
            if m.role in roles and masked_twin_class(m.layer) is None:
                producers = sorted({p.path for p in g.producers}) or [m.path]
                raise UnsupportedModelError(
                    f"Layer {m.path!r} ({type(m.layer).__name__}, {flavour_of(m.layer)}) of "
                    f"model {analysis.model.name!r} mixes its {m.role!r} channels in its own "
                    "computation and tfprune has no masked twin of it for this Keras flavour, "
                    "so a masked model would not compute what the stripped one does. Leave "
                    f"these channels unpruned: skip={producers!r}."
                )


def _dtype_of(tensor: Any) -> Any:
    dtype = tf.as_dtype(tensor.dtype)
    return dtype.name if dtype.is_floating else "float32"


def _example_producers(analysis: Analysis) -> list[str]:
    names = []
    for g in analysis.groups:
        if g.prunable:
            names.extend(m.path for m in g.producers)
    return names[:5]


def shrink(model: Any, sparsity: Any, importance: Any = "l1", **kwargs: Any) -> Any:
    """One-shot prune + strip: ``strip_filters(prune_filters(model, sparsity, importance))``.

    Accepts the keyword arguments of :func:`prune_filters` and ``return_plan`` of
    :func:`strip_filters`.
    """
    return_plan = kwargs.pop("return_plan", False)
    return strip_filters(
        prune_filters(model, sparsity, importance, **kwargs), return_plan=return_plan
    )
