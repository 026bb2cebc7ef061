"""The pruning methods a protocol run can use, as a registry of classes.

Every method turns the trained base model into the model that is retrained:

* :class:`Dense` (``dense``): the base model itself;
* :class:`OneShot` (``l1``, ``l2``, ``random``, ``bn_scale``, ``taylor``, ``fpgm``, and each
  with ``_orthp``): one-shot masks at the run's ratio, physically removed
  (:func:`tfprune.strip_filters`), optionally followed by OrthP (:func:`tfprune.orthp`);
* :class:`Scratch` (``scratch``): the L1-pruned architecture built fresh (small-dense, the
  Scratch-E/B of Liu et al. 2019, "Rethinking the Value of Network Pruning"); needs no base model;
* :class:`Regularized` (``greg1``, ``greg2``, ``tpp``, ``slimming``, ``group_lasso``): a
  regularized pruning stage with a callback of :mod:`tfprune.regularization`, run until the
  callback finishes (bounded by ``options.prune_max_epochs``), then removal.

:func:`get_method` looks a name up (unknown names fail with the list of known ones);
:data:`METHODS` is the registry.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from tfprune import regularization as reg
from tfprune.choices import IMPORTANCE_NAMES
from tfprune.compat import keras
from tfprune.errors import ConfigError, did_you_mean
from tfprune.flops import count_params
from tfprune.protocols.spec import RunSpec
from tfprune.pruning import prune_filters
from tfprune.runtime import float32_twin, model_precision
from tfprune.surgery import strip_filters
from tfprune.trainability import orthp
from tfprune.training import pipeline
from tfprune.training.schedules import parse_schedule

__all__ = [
    "METHODS",
    "Dense",
    "Method",
    "MethodResult",
    "OneShot",
    "Regularized",
    "Scratch",
    "get_method",
    "one_shot_masks",
    "prune_one_shot",
    "strip_check",
]


@dataclasses.dataclass
class MethodResult:
    """What a method hands to retraining.

    Attributes:
      model: The model to retrain (physically pruned for every pruning method).
      prune_epochs: Epochs the pruning stage trained (0 for one-shot; fractional when a
        regularization finishes mid-epoch).
      prune_schedule: LR schedule of that stage (``""`` when none).
      prune_history: Per-epoch history of that stage.
      metrics: Extra scalars for the record (e.g. the kept/pruned magnitude ratio at which a
        growing regularization set its masks, and the groups below its limit).
      shape: When ``model`` carries masks (``options.retrain_masked``): the stripped model whose
        params and FLOPs are recorded.
    """

    model: Any
    prune_epochs: float = 0.0
    prune_schedule: str = ""
    prune_history: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)
    shape: Any = None


class Method:
    """A pruning method of the registry.

    Attributes:
      name: Registry key (``RunSpec.method``).
      label: Display name in reports.
      needs_base: Whether :meth:`apply` takes a trained base model (scratch: an untrained one).
      retrains_masked: Whether it can hand over the masked model (``options.retrain_masked``):
        only the one-shot criteria without OrthP (OrthP rewrites the stripped weights).
    """

    name: str = ""
    label: str = ""
    needs_base: bool = True
    retrains_masked: bool = False

    def apply(
        self, base: Any, spec: RunSpec, data: Any, strategy: Any, log: Callable[[str], None]
    ) -> MethodResult:
        """The model to retrain, from ``base`` (see the class doc)."""
        raise NotImplementedError

    def check(self, spec: RunSpec) -> None:
        """Reject options this method cannot use (before anything trains)."""
        if spec.opts.regularization:
            raise ConfigError(
                f"method {self.name!r} takes no options.regularization; it is for "
                f"{', '.join(REGULARIZED)}"
            )


def one_shot_masks(
    base: Any, ratio: Any, importance: str, data: Any, *, seed: int, skip: tuple = ()
) -> Any:
    """The masked copy of ``base`` (:func:`tfprune.prune_filters`) at ``ratio``.

    ``taylor`` needs data: it gets the first 500 training examples of ``data`` and the
    sparse cross-entropy loss.
    """
    kwargs: dict[str, Any] = {"seed": seed}
    if skip:
        kwargs["skip"] = tuple(skip)
    if importance == "taylor":
        if data is None or data.train_arrays is None:
            raise ConfigError(
                "importance 'taylor' needs training examples (an in-memory dataset such as "
                "digits, mnist or cifar); use another importance for streamed datasets"
            )
        x, y = data.train_arrays
        n = min(len(y), 500)
        kwargs["importance_data"] = (data.preprocess(x[:n]), y[:n])
        kwargs["loss"] = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return prune_filters(base, ratio, importance, **kwargs)


def _check_inputs(data: Any, n: int = 32) -> np.ndarray:
    if data.train_arrays is not None:
        return np.asarray(data.preprocess(data.train_arrays[0][:n]))
    x = next(iter(data.test))[0]
    return np.asarray(x)[:n]


def _max_rel_error(a: Any, b: Any, x: np.ndarray) -> float:
    ya = np.asarray(a(x, training=False), dtype=np.float64)
    yb = np.asarray(b(x, training=False), dtype=np.float64)
    return float(np.max(np.abs(ya - yb)) / max(float(np.max(np.abs(ya))), 1e-12))


def strip_check(masked: Any, stripped: Any, data: Any) -> dict[str, float]:
    """How far the physically pruned model is from the masked one, on 32 training inputs.

    ``strip_max_rel_error``: max |masked − stripped| / max |masked| in the run's precision;
    under mixed precision also ``strip_max_rel_error_float32``, the same on the float32 twins
    (:func:`tfprune.runtime.float32_twin`), which is exact up to float32 rounding.
    """
    x = _check_inputs(data)
    out = {"strip_max_rel_error": _max_rel_error(masked, stripped, x)}
    if model_precision(masked) != "float32":
        out["strip_max_rel_error_float32"] = _max_rel_error(
            float32_twin(masked), float32_twin(stripped), x
        )
    return out


def prune_one_shot(
    base: Any, ratio: Any, importance: str, data: Any, *, seed: int, skip: tuple = ()
) -> tuple[Any, Any]:
    """``(masked, stripped)`` of a one-shot prune (see :func:`one_shot_masks`)."""
    masked = one_shot_masks(base, ratio, importance, data, seed=seed, skip=skip)
    return masked, strip_filters(masked)


class Dense(Method):
    """The base model itself (a copy), retrained with the recipe when it has epochs."""

    name, label = "dense", "Dense"

    def apply(self, base, spec, data, strategy, log):  # noqa: D102
        with pipeline.scope(strategy):
            model = keras.models.clone_model(base)
            model.set_weights(base.get_weights())
        return MethodResult(model)


class OneShot(Method):
    """One-shot pruning by an importance criterion, optionally followed by OrthP."""

    def __init__(self, criterion: str, orthp: bool = False) -> None:
        self.criterion = criterion
        self.orthp = orthp
        self.retrains_masked = not orthp
        self.name = criterion + ("_orthp" if orthp else "")
        base_label = {"l1": "L1", "l2": "L2", "random": "Random"}.get(criterion, criterion)
        self.label = base_label + ("+OrthP" if orthp else "")

    def apply(self, base, spec, data, strategy, log):  # noqa: D102
        with pipeline.scope(strategy):
            masked, model = prune_one_shot(
                base, spec.ratio, self.criterion, data, seed=spec.seed, skip=spec.opts.skip
            )
            check = strip_check(masked, model, data)
            if spec.opts.retrain_masked:
                return MethodResult(masked, metrics=check, shape=model)
            if self.orthp:
                orthp(model)
        return MethodResult(model, metrics=check)


class Scratch(Method):
    """The L1-pruned architecture, freshly initialised (small-dense; Scratch-E/B of Liu et al.)."""

    name, label, needs_base = "scratch", "Scratch", False

    def apply(self, base, spec, data, strategy, log):  # noqa: D102
        # The pruned *shape* does not depend on trained weights (local, per-layer ranking), so
        # an untrained copy of the architecture is pruned.
        with pipeline.scope(strategy):
            _, shaped = prune_one_shot(
                base, spec.ratio, "l1", data, seed=spec.seed, skip=spec.opts.skip
            )
            keras.utils.set_random_seed(spec.seed + 7919)
            model = keras.Model.from_config(shaped.get_config())
        return MethodResult(model)


class Regularized(Method):
    """A regularized pruning stage (a :mod:`tfprune.regularization` callback), then removal.

    GReg-1/2 and TPP finish by themselves (they stop training once their masks are set);
    slimming and group lasso set their masks when training ends, so they run
    ``options.prune_max_epochs`` epochs.
    """

    def __init__(
        self, name: str, label: str, callback: type, fixed: dict | None = None, stops: bool = True
    ) -> None:
        self.name, self.label = name, label
        self.callback = callback
        self.fixed = dict(fixed or {})
        self.stops = stops

    def _kwargs(self, spec: RunSpec) -> dict[str, Any]:
        opts = dict(spec.opts.regularization)
        params = inspect.signature(self.callback).parameters
        allowed = sorted(k for k in params if k not in ("sparsity", "skip", *self.fixed))
        unknown = sorted(set(opts) - set(allowed))
        if unknown:
            hints = [f"{key!r}{did_you_mean(key, allowed)}" for key in unknown]
            raise ConfigError(
                f"regularization options for {self.name}: unknown {', '.join(hints)}; allowed: "
                f"{', '.join(allowed)}"
            )
        return {**opts, **self.fixed, "sparsity": spec.ratio, "skip": tuple(spec.opts.skip)}

    def check(self, spec: RunSpec) -> None:  # noqa: D102
        self.callback(**self._kwargs(spec))  # the callback validates its own arguments
        parse_schedule(spec.opts.prune_schedule, 1, "options.prune_schedule")

    def apply(self, base, spec, data, strategy, log):  # noqa: D102
        callback = self.callback(**self._kwargs(spec))
        max_epochs = spec.opts.prune_max_epochs
        sched_text = spec.opts.prune_schedule
        schedule = parse_schedule(sched_text, max_epochs, field="options.prune_schedule")
        with pipeline.scope(strategy):
            masked = prune_filters(base, 0.0, "l1", seed=spec.seed)
        log(f"{self.name}: regularized pruning stage, up to {max_epochs} epochs at {sched_text}")
        hist = pipeline.fit(
            masked,
            data,
            spec.retrain,
            schedule,
            strategy=strategy,
            epochs=max_epochs,
            eval_every_epoch=False,
            extra_callbacks=[callback],
        )
        steps = int(masked.optimizer.iterations.numpy())
        spe = data.steps_per_epoch or max(steps, 1)
        with pipeline.scope(strategy):
            small = strip_filters(masked)
        if count_params(small).total >= count_params(base).total:
            raise ConfigError(
                f"{self.name}: the regularization did not finish within "
                f"options.prune_max_epochs={max_epochs} epochs (no filter was removed); raise "
                "prune_max_epochs or shorten its schedule in the regularization options "
                "(delta, update_every, stabilize_steps)"
            )
        extra: dict[str, Any] = strip_check(masked, small, data)
        if hasattr(callback, "mask_ratios"):
            ratios = [v for v in callback.mask_ratios().values() if v == v]  # drop nan
            extra["prune_mask_ratio_min"] = min(ratios) if ratios else None
            extra["prune_low_separation"] = dict(callback.low_separation())
        return MethodResult(small, round(steps / spe, 4), sched_text, hist, extra)


REGULARIZED = ("greg1", "greg2", "tpp", "slimming", "group_lasso")
"""Names of the regularized methods."""


def _registry() -> dict[str, Method]:
    out: dict[str, Method] = {"dense": Dense(), "scratch": Scratch()}
    for name in IMPORTANCE_NAMES:
        out[name] = OneShot(name)
        out[f"{name}_orthp"] = OneShot(name, orthp=True)
    grow = reg.GrowingRegularization
    out["greg1"] = Regularized("greg1", "GReg-1", grow, {"variant": "greg1"})
    out["greg2"] = Regularized("greg2", "GReg-2", grow, {"variant": "greg2"})
    out["tpp"] = Regularized("tpp", "TPP", reg.TrainabilityPreserving)
    out["slimming"] = Regularized("slimming", "Slimming", reg.NetworkSlimming, stops=False)
    out["group_lasso"] = Regularized("group_lasso", "Group lasso", reg.GroupLasso, stops=False)
    return out


METHODS: dict[str, Method] = _registry()
"""Method name -> method."""


def get_method(name: str) -> Method:
    """The registered method ``name``.

    Raises:
      ConfigError: unknown name (with a "did you mean" hint and the known names).
    """
    if name in METHODS:
        return METHODS[name]
    hint = did_you_mean(str(name), METHODS)
    raise ConfigError(f"unknown method {name!r}{hint}; known: {', '.join(METHODS)}")
