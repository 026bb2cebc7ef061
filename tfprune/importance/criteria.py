"""Importance criteria: one score per unit of a channel group (low = pruned first).

A criterion is any callable ``criterion(group) -> np.ndarray`` of shape ``(group.n_units,)``.
The built-in ones score each *producer* of the group (the conv/dense layers whose filters are
the group's channels) and average over producers, so a residual group is judged by all the
layers that write into it. Criteria that need data (Taylor) have a ``prepare`` step.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from tfprune.choices import IMPORTANCE_NAMES
from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError
from tfprune.graph.groups import Analysis, ChannelGroup, Member, analyze
from tfprune.graph.rules import PRODUCER_ROLES, named_weights, rule_for

__all__ = [
    "Importance",
    "L1",
    "L2",
    "Random",
    "BNScale",
    "Taylor",
    "FPGM",
    "channel_rows",
    "get_importance",
]


def channel_rows(member: Member, names: Iterable[str] | None = None) -> list[np.ndarray]:
    """The member layer's weights as ``(channels, -1)`` matrices, one per named weight.

    Row ``c`` holds every weight that belongs to channel ``c`` of the member's role (for a
    producer: the whole filter). Only weights whose short name is in ``names`` are returned
    (default: the layer's kernels, as its rule names them). The layer's rule knows the layout.
    """
    if not member.is_layer:
        return []
    rule = rule_for(member.layer)
    names = rule.kernel_names(member.layer) if names is None else tuple(names)
    arrays = {n: v.numpy() for n, v in named_weights(member.layer).items() if n in names}
    return rule.channel_rows(member.layer, member.role, arrays, names)


def _producer_average(
    group: ChannelGroup, per_member: Callable[[Member], np.ndarray | None]
) -> np.ndarray:
    """Average per-member per-channel scores over the group's producers (fallback: any layer)."""
    candidates = group.producers or group.layers
    scores = []
    for m in candidates:
        per_channel = per_member(m)
        if per_channel is not None:
            scores.append(m.unit_scores(per_channel, group.n_units))
    if not scores:
        return np.zeros(group.n_units)
    return _mean_over_members(scores)


def _mean_over_members(scores: list[np.ndarray]) -> np.ndarray:
    """Per-unit mean over members, ignoring NaN (units a member does not see); 0 where none do."""
    stacked = np.vstack(scores)
    seen = ~np.isnan(stacked)
    count = seen.sum(axis=0)
    total = np.where(seen, stacked, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.zeros(stacked.shape[1]), where=count > 0)


class Importance:
    """Base class: subclasses implement :meth:`__call__`; ``prepare`` is optional."""

    name = "custom"

    def prepare(self, model: Any, **kwargs: Any) -> None:
        """Collect what the criterion needs from the model or data before scoring."""

    def __call__(self, group: ChannelGroup) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        """Arguments that recreate this criterion."""
        return {}


class L1(Importance):
    """Mean absolute weight of each filter (Li et al. 2017; same ranking as the L1 norm)."""

    name = "l1"

    def __call__(self, group: ChannelGroup) -> np.ndarray:
        def per_member(m: Member) -> np.ndarray | None:
            rows = channel_rows(m)
            if not rows:
                return None
            return np.hstack([np.abs(r) for r in rows]).mean(axis=1)

        return _producer_average(group, per_member)


class L2(Importance):
    """L2 norm of each filter."""

    name = "l2"

    def __call__(self, group: ChannelGroup) -> np.ndarray:
        def per_member(m: Member) -> np.ndarray | None:
            rows = channel_rows(m)
            if not rows:
                return None
            return np.sqrt((np.hstack(rows) ** 2).sum(axis=1))

        return _producer_average(group, per_member)


@dataclasses.dataclass
class Random(Importance):
    """Uniform random scores, reproducible from ``seed`` (a baseline).

    A group's scores depend on the seed and the group's layers (not on the order in which an
    analysis numbers the groups), so a model and its masked copy get the same ones.
    """

    seed: int = 0
    name = "random"

    def __call__(self, group: ChannelGroup) -> np.ndarray:
        key = zlib.crc32(group.name.encode("utf-8"))
        return np.random.default_rng([self.seed, key]).random(group.n_units)

    def get_config(self) -> dict:
        return {"seed": self.seed}


class BNScale(Importance):
    """|gamma| of the BatchNormalization layers in the group (network slimming's criterion).

    Groups without a BatchNormalization fall back to :class:`L1`.
    """

    name = "bn_scale"

    def __call__(self, group: ChannelGroup) -> np.ndarray:
        bns = [m for m in group.layers if m.role == "ch" and channel_rows(m, ("gamma",))]
        if not bns:
            return L1()(group)
        scores = [
            m.unit_scores(np.abs(channel_rows(m, ("gamma",))[0][:, 0]), group.n_units) for m in bns
        ]
        return _mean_over_members(scores)


class FPGM(Importance):
    """Filter pruning via geometric median (He et al. 2019).

    A filter's score is its summed Euclidean distance to the other filters of the layer: the
    filters closest to the geometric median are the most replaceable and go first.
    """

    name = "fpgm"

    def __call__(self, group: ChannelGroup) -> np.ndarray:
        def per_member(m: Member) -> np.ndarray | None:
            rows = channel_rows(m)
            if not rows:
                return None
            x = np.hstack(rows).astype(np.float64)
            sq = (x**2).sum(axis=1)
            d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
            return np.sqrt(d2).sum(axis=1)

        return _producer_average(group, per_member)


class Taylor(Importance):
    """First-order Taylor importance (Molchanov et al. 2019) of each filter.

    Per batch, a channel's score is ``(sum over its weights of w * dL/dw)^2`` (kernel, bias and
    the BatchNormalization gamma/beta of the channel), averaged over ``num_batches`` batches;
    a group's score is the sum over its members. Needs data: pass ``importance_data`` (a
    dataset or ``(x, y)`` arrays) to :func:`tfprune.prune_filters`; the loss is the model's
    compiled loss unless ``loss`` is given.

    The products are kept by layer path and weight name, so they score the groups of the
    model they were prepared on and of any copy with the same layers (the masked model that
    :func:`tfprune.prune_filters` returns).
    """

    name = "taylor"

    def __init__(self, num_batches: int = 4) -> None:
        if num_batches < 1:
            raise InvalidArgumentError(
                f"Taylor importance: num_batches must be >= 1, got {num_batches}."
            )
        self.num_batches = num_batches
        self._products: dict[tuple[str, str], list[np.ndarray]] | None = None
        self._paths: set[str] = set()

    def get_config(self) -> dict:
        return {"num_batches": self.num_batches}

    def prepare(
        self,
        model: Any,
        data: Any = None,
        loss: Any = None,
        analysis: Analysis | None = None,
        **_: Any,
    ) -> None:
        """Accumulate ``(w * grad)`` products over a few batches of ``data``.

        ``analysis`` is the model's channel analysis when the caller already has it.
        """
        if data is None:
            raise InvalidArgumentError(
                "importance='taylor' needs data: pass importance_data=(x, y) or a tf.data "
                "dataset of (x, y) batches to prune_filters."
            )
        loss_fn = loss or getattr(model, "loss", None)
        if loss_fn is None:
            raise InvalidArgumentError(
                "importance='taylor' needs a loss: compile the model first or pass loss=... "
                "to prune_filters (e.g. 'sparse_categorical_crossentropy')."
            )
        loss_fn = keras.losses.get(loss_fn) if isinstance(loss_fn, str) else loss_fn
        if isinstance(data, tuple):
            data = tf.data.Dataset.from_tensor_slices(data).batch(64)
        analysis = analyze(model) if analysis is None else analysis
        # (layer path, weight name) of every weight of a group member: the key under which a
        # copy of the model (other variables, same layers) finds the products.
        keys: dict[int, tuple[str, str]] = {}
        for g in analysis.groups:
            for m in g.layers:
                for name, v in named_weights(m.layer).items():
                    keys.setdefault(id(v), (m.path, name))
        variables = [v for v in analysis.model.trainable_variables if id(v) in keys]
        acc: dict[tuple[str, str], list[np.ndarray]] = {}
        for batch in data.take(self.num_batches):
            x, y = batch[0], batch[1]
            with tf.GradientTape() as tape:
                try:
                    loss_value = tf.reduce_mean(loss_fn(y, analysis.model(x, training=False)))
                except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise InvalidArgumentError(
                        "importance='taylor' could not compute the loss on importance_data "
                        f"({first}); give (x, y) batches that the model and the loss accept."
                    ) from None
            grads = tape.gradient(loss_value, variables)
            for v, g in zip(variables, grads, strict=True):
                if g is not None:
                    acc.setdefault(keys[id(v)], []).append(v.numpy() * np.asarray(g))
        self._products = acc
        self._paths = {path for path, _ in keys.values()}

    def _member_scores(self, m: Member, products: dict) -> np.ndarray | None:
        rule = rule_for(m.layer)
        present = [n for n in named_weights(m.layer) if (m.path, n) in products]
        total = None
        n_batches = min((len(products[(m.path, n)]) for n in present), default=0)
        for b in range(n_batches):
            arrays = {n: products[(m.path, n)][b] for n in present}
            rows = rule.channel_rows(m.layer, m.role, arrays)
            if not rows:
                break
            per_channel = np.sum([r.sum(axis=1) for r in rows], axis=0)
            total = per_channel[None] if total is None else np.vstack([total, per_channel[None]])
        if total is None:
            return None
        return (total**2).mean(axis=0)

    def __call__(self, group: ChannelGroup) -> np.ndarray:
        products = self._products
        if products is None:
            raise InvalidArgumentError("Taylor importance used before prepare(model, data).")
        members = [m for m in group.layers if m.role in (*PRODUCER_ROLES, "ch")]
        if members and not any(m.path in self._paths for m in members):
            raise InvalidArgumentError(
                f"Taylor importance was prepared on another model: none of the layers of "
                f"group {group.name!r} was in it. Prepare it on the model you prune (or pass "
                "importance='taylor' and importance_data= to prune_filters)."
            )
        scores = []
        for m in members:
            s = self._member_scores(m, products)
            if s is not None:
                scores.append(m.unit_scores(s, group.n_units))
        if not scores:
            return np.zeros(group.n_units)
        return np.nan_to_num(np.nansum(np.vstack(scores), axis=0))


_REGISTRY: dict[str, Callable[..., Importance]] = {
    "l1": L1,
    "l2": L2,
    "random": Random,
    "bn_scale": BNScale,
    "taylor": Taylor,
    "fpgm": FPGM,
}


def get_importance(importance: str | Callable | Importance, seed: int = 0) -> Callable:
    """Resolve an importance name or pass a callable through.

    Names: ``"l1"``, ``"l2"``, ``"random"``, ``"bn_scale"``, ``"taylor"``, ``"fpgm"``.
    """
    if isinstance(importance, str):
        key = importance.lower()
        if key not in _REGISTRY:
            raise InvalidArgumentError(
                f"Unknown importance {importance!r}. Use one of {', '.join(IMPORTANCE_NAMES)}, "
                "or pass a callable group -> scores."
            )
        return _REGISTRY[key](seed=seed) if key == "random" else _REGISTRY[key]()
    if callable(importance):
        return importance
    raise InvalidArgumentError(
        f"importance must be a name or a callable, got {type(importance).__name__}."
    )
