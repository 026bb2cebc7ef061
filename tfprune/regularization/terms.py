"""A group's weights as slices, and the penalty terms and magnitudes computed on them.

:class:`WeightSlice` / :func:`group_slices` give the trainable weights of a channel group, each
with the axis that carries the group's channels and the unit of every channel. The penalty
terms are written as losses (the gradient of ``0.5 * sum(R * w**2)`` is ``R * w``, the update
rule of the GReg/TPP code): :func:`weighted_l2`, :func:`unit_sq_norms`, :func:`gram_penalty`;
:func:`unit_magnitudes` and :func:`magnitude_ratio` measure how far pruned units have been
driven down.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfprune.compat import tf
from tfprune.graph.groups import ChannelGroup
from tfprune.graph.rules import PRODUCER_ROLES, named_weights, rule_for

__all__ = [
    "KERNEL_NAMES",
    "MAGNITUDE_RATIO_CAP",
    "NORM_NAMES",
    "SLICE_KINDS",
    "WeightSlice",
    "gram_penalty",
    "group_slices",
    "magnitude_ratio",
    "unit_magnitudes",
    "unit_sq_norms",
    "weighted_l2",
]

KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")
#: Magnitude ratios are stored capped at this value (a ratio of inf: pruned weights are 0).
MAGNITUDE_RATIO_CAP = 1e12

NORM_NAMES = ("gamma", "beta")
SLICE_KINDS = ("filter", "bias", "input", "norm")


# ---------------------------------------------------------------------------------------------
# Weights of a group


@dataclasses.dataclass(eq=False)
class WeightSlice:
    """One trainable weight of a group's layer and the axis that carries the group's channels.

    ``kind`` is ``"filter"`` (a producer's kernel: the filters), ``"bias"`` (a producer's
    bias), ``"input"`` (a consumer's kernel: the input slices) or ``"norm"`` (gamma/beta of a
    normalization layer). ``units[c]`` is the group unit of channel ``c`` along ``axis``.
    """

    variable: Any
    axis: int
    units: np.ndarray
    kind: str
    path: str
    name: str

    @property
    def channels(self) -> int:
        """Number of channels along :attr:`axis`."""
        return int(self.units.size)

    def other_axes(self) -> list[int]:
        """All axes but the channel axis."""
        return [a for a in range(len(self.variable.shape)) if a != self.axis]

    def channel_sq(self, cache: dict | None = None) -> Any:
        """Sum of squares per channel, shape ``(channels,)`` (float32).

        ``cache`` (a dict kept for one loss evaluation) shares ``w**2`` between the slices of
        one variable (a kernel is a producer in one group and a consumer in another).
        """
        if cache is None:
            sq = tf.square(tf.cast(self.variable, tf.float32))
        else:
            key = id(self.variable)
            if key not in cache:
                cache[key] = tf.square(tf.cast(self.variable, tf.float32))
            sq = cache[key]
        return tf.reduce_sum(sq, axis=self.other_axes())

    @property
    def identity_units(self) -> bool:
        """Whether channel ``c`` is unit ``c`` for every channel (no gather needed)."""
        return bool(np.array_equal(self.units, np.arange(self.units.size)))

    def rows(self) -> Any:
        """The weight as a ``(channels, -1)`` float32 matrix (row c = channel c's weights)."""
        w = tf.cast(self.variable, tf.float32)
        rank = len(self.variable.shape)
        perm = [self.axis] + self.other_axes()
        if perm != list(range(rank)):
            w = tf.transpose(w, perm)
        return tf.reshape(w, (self.channels, -1))


def _slice_kind(role: str, name: str) -> str | None:
    name = name.split("/")[-1]  # a rule may name a sublayer's weight "query/kernel"
    if role in PRODUCER_ROLES:
        if name in KERNEL_NAMES:
            return "filter"
        return "bias" if name == "bias" else None
    if role == "in":
        return "input" if name in KERNEL_NAMES else None
    if role == "ch":
        return "norm" if name in NORM_NAMES else None
    return None


def group_slices(group: ChannelGroup, kinds: tuple[str, ...] = SLICE_KINDS) -> list[WeightSlice]:
    """The trainable weights of ``group`` of the given kinds (see :class:`WeightSlice`).

    Mask variables and other non-trainable weights (BatchNorm moving statistics) are never
    included.
    """
    out = []
    for m in group.layers:
        axes = rule_for(m.layer).weight_axes(m.layer)
        for name, v in named_weights(m.layer).items():
            if not v.trainable:
                continue
            axis = axes.get(name, {}).get(m.role)
            kind = _slice_kind(m.role, name)
            if axis is None or kind is None or kind not in kinds:
                continue
            axis = axis % len(v.shape)
            if int(v.shape[axis]) != m.unit_of_channel.size:
                continue
            out.append(WeightSlice(v, axis, np.asarray(m.unit_of_channel), kind, m.path, name))
    return out


def weighted_l2(slices: list[WeightSlice], coef: Any, units_t: list[Any]) -> Any:
    """``0.5 * sum_s sum_c coef[unit(c)] * ||w_s[c]||^2`` (its gradient is ``coef * w``).

    ``coef`` is a per-unit tensor; ``units_t[i]`` the int32 unit indices of ``slices[i]``.
    """
    total = tf.constant(0.0, tf.float32)
    coef = tf.convert_to_tensor(coef)
    for s, u in zip(slices, units_t, strict=True):
        c = coef if s.identity_units and s.channels == coef.shape[0] else tf.gather(coef, u)
        total += tf.reduce_sum(c * s.channel_sq())
    return 0.5 * total


def unit_sq_norms(
    slices: list[WeightSlice], units_t: list[Any], n_units: int, cache: dict | None = None
) -> Any:
    """Per-unit sum of squares over all ``slices``, shape ``(n_units,)``."""
    terms = []
    for s, u in zip(slices, units_t, strict=True):
        if s.identity_units and s.channels == n_units:
            terms.append(s.channel_sq(cache))
        else:
            terms.append(tf.math.unsorted_segment_sum(s.channel_sq(cache), u, n_units))
    return tf.add_n(terms) if terms else tf.zeros((n_units,), tf.float32)


def gram_penalty(s: WeightSlice, keep: Any) -> Any:
    """TPP's decorrelation term of one layer: ``mean((W W^T * (1 - k k^T))**2)``.

    ``W`` is the layer's filters as rows and ``k`` its 0/1 keep vector (one per channel): every
    Gram entry whose row *or* column is a pruned filter is driven to 0; kept-kept entries are
    free. The mean is over all ``N x N`` entries (the authors' code divides by ``N^2``).
    """
    w = s.rows()
    gram = tf.matmul(w, w, transpose_b=True)
    k = tf.cast(keep, tf.float32)
    sel = 1.0 - k[:, None] * k[None, :]
    return tf.reduce_mean(tf.square(gram * sel))


def unit_magnitudes(group: ChannelGroup, slices: list[WeightSlice]) -> np.ndarray:
    """Mean |w| of each unit's filters, averaged over the group's producers (L1 criterion)."""
    scores = []
    for s in slices:
        if s.kind != "filter":
            continue
        w = tf.abs(tf.cast(s.variable, tf.float32))
        per_channel = tf.reduce_mean(w, axis=s.other_axes()).numpy()
        sums = np.bincount(s.units, weights=per_channel, minlength=group.n_units)
        counts = np.bincount(s.units, minlength=group.n_units)
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.append(np.where(counts > 0, sums / np.maximum(counts, 1), np.nan))
    if not scores:
        return np.zeros(group.n_units)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(np.nanmean(np.vstack(scores), axis=0))


def magnitude_ratio(mags: np.ndarray, pruned: np.ndarray, candidates: np.ndarray) -> float:
    """``mean|w_kept| / mean|w_pruned|`` over the candidate units (inf when pruned are 0)."""
    kept = candidates & ~pruned
    gone = candidates & pruned
    if not gone.any() or not kept.any():
        return float("inf")
    num = float(mags[kept].mean())
    den = float(mags[gone].mean())
    return num / den if den > 0 else float("inf")
