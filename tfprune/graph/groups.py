"""Channel-group discovery: which channels of which layers must be pruned together.

Every channel axis in the model – the last axis of each tensor, and each channel axis of a
layer's weights (a conv's input and output channels, BN's per-channel parameters) – is a *dim*;
every channel of a dim is a node. Layer rules (:mod:`tfprune.graph.rules`) join nodes that must
be removed together. Connected components of nodes are *units* (the smallest removable piece: a
filter together with its BN entry, the matching input channel of every consumer, its residual
partners...). Dims that share units form a :class:`ChannelGroup`.

A unit touched by something not understood (an unknown layer, a model input or output) is
*blocked*: it is never removed. Fail closed, never guess.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from tfprune.compat import keras, keras3_sublayers, producing_layer
from tfprune.graph.inline import Inlined, Opaque, inline_model, wants_tracing
from tfprune.graph.keras3 import all_layers, is_keras3, trace_keras3
from tfprune.graph.rules import (
    PRODUCER_ROLES,
    ChannelContext,
    LayerRule,
    mixing_activation,
    rule_for,
)
from tfprune.graph.trace import LayerCall, Trace, trace_model

__all__ = [
    "Member",
    "ChannelGroup",
    "Analysis",
    "analyze",
    "channel_groups",
    "explain",
    "ExplainReport",
]


@dataclasses.dataclass(eq=False)
class Member:
    """One channel axis inside a group: of a tensor, or of a layer's weights (``role``)."""

    key: tuple
    path: str  # layer path ("outer/inner/conv"); for tensors, the producing layer's path
    role: str  # "in" | "out" | "ch" for layer dims, "tensor" for tensors
    size: int
    layer: Any = None  # the layer for layer dims
    tensor: Any = None  # the KerasTensor for tensor dims
    unit_of_channel: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, int))

    @property
    def is_layer(self) -> bool:
        """True for a layer's weight axis, False for a tensor axis."""
        return self.layer is not None

    def kept_channels(self, kept_units: np.ndarray) -> np.ndarray:
        """Indices of this member's channels that belong to the kept units (sorted)."""
        keep = np.zeros(int(self.unit_of_channel.max(initial=-1)) + 1, bool)
        keep[kept_units[kept_units < keep.size]] = True
        return np.flatnonzero(keep[self.unit_of_channel])

    def unit_scores(self, per_channel: np.ndarray, n_units: int) -> np.ndarray:
        """Average per-channel values into per-unit values (NaN for units not here)."""
        sums = np.bincount(self.unit_of_channel, weights=per_channel, minlength=n_units)
        counts = np.bincount(self.unit_of_channel, minlength=n_units)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


@dataclasses.dataclass(eq=False)
class ChannelGroup:
    """A set of coupled channel axes and the units (removable pieces) they share."""

    id: int
    n_units: int
    members: list[Member]
    blocked: np.ndarray  # bool per unit
    reasons: list[str]
    segments: list[np.ndarray]  # units grouped by the set of layers that produce them

    @property
    def layers(self) -> list[Member]:
        """Members that are weight axes of layers."""
        return [m for m in self.members if m.is_layer]

    @property
    def producers(self) -> list[Member]:
        """Members whose layer creates these channels (conv/dense filters, attention heads)."""
        return [m for m in self.members if m.role in PRODUCER_ROLES]

    @property
    def prunable_units(self) -> np.ndarray:
        """Indices of units that may be removed."""
        return np.flatnonzero(~self.blocked)

    @property
    def prunable(self) -> bool:
        """Whether at least one unit could be removed without emptying a channel axis."""
        return self.prunable_units.size > 0 and any(
            np.unique(m.unit_of_channel).size > 1 for m in self.members
        )

    @property
    def name(self) -> str:
        """A readable name: the producing layers, else the first layer member."""
        names = [m.path for m in self.producers] or [m.path for m in self.layers][:1]
        names = names or [self.members[0].path]
        return "+".join(names[:3]) + ("+..." if len(names) > 3 else "")

    def __repr__(self) -> str:
        state = "prunable" if self.prunable else "blocked"
        return (
            f"ChannelGroup(id={self.id}, name={self.name!r}, units={self.n_units}, "
            f"prunable_units={self.prunable_units.size}, {state})"
        )


@dataclasses.dataclass
class Analysis:
    """Everything the masking and surgery steps need to know about a model."""

    model: Any
    trace: Trace
    groups: list[ChannelGroup]
    members_by_key: dict[tuple, Member]
    group_of_key: dict[tuple, int]
    mask_points: list[tuple[LayerCall, Any]]  # (consumer call, input tensor) to mask
    #: (call path, layer class, reason) of every call tfprune could not look inside
    opaque_calls: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    _by_layer: dict[int, dict[str, Member]] | None = dataclasses.field(default=None, repr=False)

    def layer_members(self, layer: Any) -> dict[str, Member]:
        """The channel axes of ``layer``'s weights, by role."""
        if self._by_layer is None:
            self._by_layer = {}
            for key, m in self.members_by_key.items():
                if key[0] == "l":
                    self._by_layer.setdefault(key[1], {})[key[2]] = m
        return dict(self._by_layer.get(id(layer), {}))

    def tensor_member(self, tensor: Any) -> Member | None:
        """The member for a tensor's channel axis."""
        return self.members_by_key.get(("t", id(tensor)))


class _Context(ChannelContext):
    """The :class:`~tfprune.graph.rules.ChannelContext` channel-group discovery hands to rules."""

    def __init__(self, trace: Trace | None = None) -> None:
        self.used: set[int] | None = None
        if trace is not None:
            self.used = {id(t) for c in trace.calls for t in c.inputs}
            self.used |= {id(t) for t in trace.outputs}
            self.used |= {id(t) for pair in trace.aliases for t in pair}
        self.dims: dict[tuple, tuple[int, int]] = {}  # key -> (offset, size)
        self.info: dict[tuple, dict] = {}
        self.n = 0
        self.edges: list[tuple[np.ndarray, np.ndarray]] = []
        self.blocked: dict[tuple, list[str]] = {}
        self.mixing: list[LayerCall] = []
        self.current_path = ""

    # -- dims --------------------------------------------------------------------------
    def _alloc(self, key: tuple, size: int | None, info: dict) -> tuple:
        if key in self.dims:
            return key
        size = int(size) if size else 0
        self.dims[key] = (self.n, size)
        self.info[key] = info
        self.n += size
        if size == 0:
            self.blocked.setdefault(key, []).append("unknown channel size")
        return key

    def tensor_dim(self, t: Any) -> tuple:
        """The dim of a tensor's last axis."""
        shape = t.shape
        size = shape[-1] if shape.rank else None
        path = getattr(producing_layer(t), "name", "?")
        return self._alloc(("t", id(t)), size, {"tensor": t, "path": path})

    def layer_dim(self, layer: Any, role: str, size: int | None) -> tuple:
        """The dim of one channel role of a layer's weights."""
        key = ("l", id(layer), role)
        if key in self.dims and self.dims[key][1] != (size or 0):
            self.block(key, f"layer {self.current_path!r} is called with different widths")
        return self._alloc(key, size, {"layer": layer, "role": role, "path": self.current_path})

    def size(self, key: tuple) -> int:
        """Number of channels of a dim."""
        return self.dims[key][1]

    def _nodes(self, key: tuple) -> np.ndarray:
        off, size = self.dims[key]
        return np.arange(off, off + size)

    # -- couplings ---------------------------------------------------------------------
    def identity(self, a: tuple, b: tuple) -> None:
        """Channel c of ``a`` is channel c of ``b``."""
        if self.size(a) != self.size(b):
            reason = f"channel sizes {self.size(a)} and {self.size(b)} disagree"
            self.block(a, reason)
            self.block(b, reason)
            return
        self.edges.append((self._nodes(a), self._nodes(b)))

    def concat(self, inputs: list[tuple], out: tuple) -> None:
        """Inputs fill consecutive channel ranges of ``out``."""
        if sum(self.size(k) for k in inputs) != self.size(out):
            for k in inputs + [out]:
                self.block(k, "concatenated channel sizes do not add up")
            return
        nodes_out = self._nodes(out)
        off = 0
        for k in inputs:
            s = self.size(k)
            self.edges.append((self._nodes(k), nodes_out[off : off + s]))
            off += s

    def expand(self, a: tuple, b: tuple, factor: int) -> None:
        """Channel c of ``a`` is channels c*factor .. c*factor+factor-1 of ``b``."""
        if self.size(a) * factor != self.size(b):
            self.block(a, "depth multiplier does not match")
            self.block(b, "depth multiplier does not match")
            return
        na, nb = self._nodes(a), self._nodes(b)
        self.edges.append((np.repeat(na, factor), nb))

    def flatten(self, a: tuple, b: tuple) -> None:
        """Channel c of ``a`` is features p*C + c of ``b`` for every position p."""
        ca, cb = self.size(a), self.size(b)
        if ca == 0 or cb % ca:
            self.block(a, "flatten sizes do not match")
            self.block(b, "flatten sizes do not match")
            return
        na, nb = self._nodes(a), self._nodes(b)
        self.edges.append((np.tile(na, cb // ca), nb))

    def tie_blocks(self, key: tuple, groups: int) -> None:
        """Position i of every one of ``groups`` equal blocks is removed together."""
        size = self.size(key)
        if size % groups:
            self.block(key, "channels do not split into equal groups")
            return
        nodes = self._nodes(key).reshape(groups, size // groups)
        for b in range(1, groups):
            self.edges.append((nodes[0], nodes[b]))

    def per_channel(self, layer: Any, x: Any, y: Any) -> tuple:
        """Channel c of ``x`` is channel c of ``y`` and of ``layer``'s per-channel parameter.

        For BN's gamma, a mask, a layer scale...: input, parameter and output axes are one.
        """
        d = self.layer_dim(layer, "ch", x.shape[-1] if x.shape.rank else None)
        self.identity(self.tensor_dim(x), d)
        self.identity(d, self.tensor_dim(y))
        return d

    def block(self, key: tuple, reason: str) -> None:
        """Never remove any channel of ``key``."""
        self.blocked.setdefault(key, []).append(reason)

    def block_call(self, call: LayerCall, reason: str) -> None:
        """Block every tensor the call reads or writes."""
        for t in list(call.inputs) + list(call.outputs):
            self.block(self.tensor_dim(t), reason)

    def is_used(self, t: Any) -> bool:
        """Whether ``t`` is read by a call, is a model output or crosses a nested model."""
        return self.used is None or id(t) in self.used

    def mark_mixing(self, call: LayerCall) -> None:
        """The call mixes channels (e.g. normalises over them): mask its inputs."""
        self.mixing.append(call)


def analyze(model: Any) -> Analysis:
    """Trace ``model`` and discover its channel groups (the internal, complete result).

    Custom layers and subclassed models are looked inside first (:mod:`tfprune.graph.inline`):
    ``Analysis.model`` is then the equivalent functional model the groups refer to. A Keras 3
    model is read as it is (:mod:`tfprune.graph.keras3`).
    """
    if is_keras3(model):
        notes: dict[int, tuple[str, str]] = {}
        trace = trace_keras3(model, look_inside=wants_tracing, notes=notes)
        inlined = Inlined(model, {k: Opaque(*note) for k, note in notes.items()})
    else:
        inlined = inline_model(model, passes_channels_through)
        model = inlined.model
        trace = trace_model(model)
    ctx = _Context(trace)
    for t in trace.inputs:
        ctx.block(ctx.tensor_dim(t), "model input")
    mask_points: list[tuple[LayerCall, Any]] = []
    opaque_calls: list[tuple[str, str, str]] = []
    for call in trace.calls:
        ctx.current_path = call.path
        note = inlined.opaque.get(id(call.layer))
        if note is not None:
            _connect_opaque(ctx, call, note, opaque_calls)
            continue
        rule = rule_for(call.layer)
        if type(rule) is LayerRule:
            opaque_calls.append(
                (call.path, type(call.layer).__name__, "no rule for this layer type")
            )
        rule.connect(ctx, call)
        _block_mixing_activation(ctx, call)
        if call.inputs:
            mask_points.extend((call, t) for t in rule.mask_inputs(call))
    for call in ctx.mixing:
        mask_points.extend((call, t) for t in call.inputs)
    for inner, outer in trace.aliases:
        ctx.identity(ctx.tensor_dim(inner), ctx.tensor_dim(outer))
    for t in trace.outputs:
        ctx.block(ctx.tensor_dim(t), "model output")
    groups, members_by_key, group_of_key = _solve(ctx, trace)
    return Analysis(model, trace, groups, members_by_key, group_of_key, mask_points, opaque_calls)


def _block_mixing_activation(ctx: _Context, call: LayerCall) -> None:
    """A layer whose own activation normalises over the channels keeps all its outputs."""
    name = mixing_activation(call.layer)
    if name is not None:
        for t in call.outputs:
            ctx.block(ctx.tensor_dim(t), f"activation {name!r} of {call.path!r} mixes the channels")


def _connect_opaque(ctx: _Context, call: LayerCall, note: Opaque, opaque_calls: list) -> None:
    """A layer kept as one call: couple its channels if they pass through, else block."""
    if note.transparent and len(call.inputs) == 1 and len(call.outputs) == 1:
        ctx.identity(ctx.tensor_dim(call.inputs[0]), ctx.tensor_dim(call.outputs[0]))
        return
    opaque_calls.append((call.path, note.layer_class, note.reason))
    ctx.block_call(call, note.message(call.path))


def passes_channels_through(fragment: Any) -> bool:
    """Whether a one-in one-out graph model maps input channel c to output channel c only.

    True when channel c of the output is channel c of the input (and of nothing else: no
    weights, no blocked op) for every c, e.g. a drop-path that scales whole examples.
    """
    if len(fragment.inputs) != 1 or len(fragment.outputs) != 1:
        return False
    x, y = fragment.inputs[0], fragment.outputs[0]
    if not x.shape.rank or not y.shape.rank or x.shape[-1] is None or x.shape[-1] != y.shape[-1]:
        return False
    trace = trace_model(fragment)
    ctx = _Context()
    for call in trace.calls:
        rule = rule_for(call.layer)
        if type(rule) is LayerRule or mixing_activation(call.layer) is not None:
            return False
        rule.connect(ctx, call)
    for inner, outer in trace.aliases:
        ctx.identity(ctx.tensor_dim(inner), ctx.tensor_dim(outer))
    mx_key, my_key = ctx.tensor_dim(x), ctx.tensor_dim(y)
    groups, members, group_of = _solve(ctx, trace)
    if mx_key not in members or my_key not in members or group_of[mx_key] != group_of[my_key]:
        return False
    g = groups[group_of[mx_key]]
    mx, my = members[mx_key], members[my_key]
    return (
        not g.blocked.any()
        and not g.layers
        and np.array_equal(mx.unit_of_channel, my.unit_of_channel)
        and np.unique(mx.unit_of_channel).size == mx.size
    )


def _solve(ctx: _Context, trace: Trace):
    n = ctx.n
    if ctx.edges:
        a = np.concatenate([e[0] for e in ctx.edges])
        b = np.concatenate([e[1] for e in ctx.edges])
    else:
        a = b = np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)

    keys = [k for k, (_, s) in ctx.dims.items() if s > 0]
    # Group dims that share any unit: components of the bipartite dim <-> unit graph.
    dim_idx = np.concatenate([np.full(ctx.dims[k][1], i) for i, k in enumerate(keys)])
    node_lab = (
        np.concatenate([labels[ctx.dims[k][0] : ctx.dims[k][0] + ctx.dims[k][1]] for k in keys])
        if keys
        else np.zeros(0, int)
    )
    nd = len(keys)
    n_lab = int(labels.max()) + 1 if n else 0
    bip = coo_matrix(
        (np.ones(dim_idx.size, np.int8), (dim_idx, nd + node_lab)), shape=(nd + n_lab,) * 2
    )
    _, dim_comp = connected_components(bip, directed=False)

    blocked_labels: dict[int, list[str]] = {}
    for k, reasons in ctx.blocked.items():
        off, size = ctx.dims[k]
        for lab in np.unique(labels[off : off + size]):
            blocked_labels.setdefault(int(lab), []).extend(reasons)

    by_comp: dict[int, list[tuple]] = {}
    for i, k in enumerate(keys):
        by_comp.setdefault(int(dim_comp[i]), []).append(k)

    groups: list[ChannelGroup] = []
    members_by_key: dict[tuple, Member] = {}
    group_of_key: dict[tuple, int] = {}
    order = sorted(by_comp, key=lambda c: min(ctx.dims[k][0] for k in by_comp[c]))
    for gid, comp in enumerate(order):
        dims = by_comp[comp]
        labs = np.unique(
            np.concatenate([labels[ctx.dims[k][0] : ctx.dims[k][0] + ctx.dims[k][1]] for k in dims])
        )
        members = []
        for k in dims:
            off, size = ctx.dims[k]
            info = ctx.info[k]
            m = Member(
                key=k,
                path=info["path"],
                role=info.get("role", "tensor"),
                size=size,
                layer=info.get("layer"),
                tensor=info.get("tensor"),
                unit_of_channel=np.searchsorted(labs, labels[off : off + size]),
            )
            if m.is_layer:
                m.path = trace.layer_paths.get(id(m.layer), m.path)
            members.append(m)
            members_by_key[k] = m
            group_of_key[k] = gid
        blocked = np.array([int(lab) in blocked_labels for lab in labs], bool)
        reasons: list[str] = []
        for lab in labs:
            for r in blocked_labels.get(int(lab), []):
                if r not in reasons:
                    reasons.append(r)
        segments = _segments(members, len(labs))
        groups.append(ChannelGroup(gid, len(labs), members, blocked, reasons, segments))
    return groups, members_by_key, group_of_key


def _segments(members: list[Member], n_units: int) -> list[np.ndarray]:
    """Split units by the set of producer layers that create them."""
    producers = [m for m in members if m.role in PRODUCER_ROLES]
    if len(producers) <= 1:
        return [np.arange(n_units)]
    signature = np.zeros((n_units, len(producers)), bool)
    for j, m in enumerate(producers):
        signature[np.unique(m.unit_of_channel), j] = True
    _, inverse = np.unique(signature, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    return [np.flatnonzero(inverse == s) for s in range(int(inverse.max()) + 1)]


def channel_groups(model: Any) -> list[ChannelGroup]:
    """Find every set of coupled channels in a Sequential or functional tf_keras model.

    Returns one :class:`ChannelGroup` per set of channel axes that share removable units,
    including groups that cannot be pruned (their ``reasons`` say why). Nested models and
    shared layers are followed.
    """
    return [g for g in analyze(model).groups if g.layers]


@dataclasses.dataclass
class ExplainReport:
    """What can be pruned in a model and why not: ``print(tfprune.explain(model))``."""

    rows: list[dict]
    #: Filters of layers that no channel group covers (inside layers tfprune cannot look into,
    #: or of types without a rule), by layer path: never prunable, but counted as filters.
    unseen_filters: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Calls tfprune could not look inside: {"layer": path, "class": name, "reason": why}.
    opaque: list[dict] = dataclasses.field(default_factory=list)

    @property
    def total_filters(self) -> int:
        """Every filter (conv/dense filter, RNN unit, attention head) in the model."""
        return sum(r["channels"] for r in self.rows) + sum(self.unseen_filters.values())

    @property
    def prunable_fraction(self) -> float:
        """Fraction of all the model's filters (blocked and unseen ones included) removable."""
        total = self.total_filters
        free = sum(r["prunable_channels"] for r in self.rows)
        return free / total if total else 0.0

    @property
    def blocking_layers(self) -> list[str]:
        """Reasons that keep produced channels (conv/dense filters) from being pruned.

        Model inputs/outputs are left out (never pruned by design), and so are groups without
        a producing layer (e.g. preprocessing on the input image).
        """
        out: list[str] = []
        for r in self.rows:
            if not r["producers"] or r["prunable_channels"] == r["channels"]:
                continue
            for reason in r["reasons"]:
                if reason not in out and reason not in ("model output", "model input"):
                    out.append(reason)
        return out

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "groups": self.rows,
            "unseen_filters": dict(self.unseen_filters),
            "total_filters": self.total_filters,
            "prunable_fraction": self.prunable_fraction,
            "opaque": list(self.opaque),
        }

    def __str__(self) -> str:
        lines = [f"{'group':>5}  {'units':>6}  {'prunable':>8}  status / producers"]
        for r in self.rows:
            status = "prunable" if r["prunable"] else "BLOCKED"
            # A group no layer produces (e.g. the input image) is named by who uses it.
            who = (
                ", ".join(r["producers"][:4])
                or r.get("inside")
                or (
                    "no producing layer; used by "
                    + ", ".join(r.get("layers", [])[:4] or [r["name"]])
                )
            )
            lines.append(
                f"{r['id']:>5}  {r['units']:>6}  {r['prunable_units']:>8}  {status}: {who}"
            )
            for reason in r["reasons"][:3]:
                lines.append(f"{'':>25}- {reason}")
        if self.unseen_filters:
            names = list(self.unseen_filters)
            lines.append(
                f"{sum(self.unseen_filters.values())} filters in layers no group covers "
                f"(never pruned): {', '.join(names[:4])}{', ...' if len(names) > 4 else ''}"
            )
        if self.opaque:
            lines.append("not looked inside (their channels are blocked):")
            for o in self.opaque[:8]:
                lines.append(f"  - {o['layer']} ({o['class']}): {o['reason']}")
            if len(self.opaque) > 8:
                lines.append(f"  - ... and {len(self.opaque) - 8} more")
        lines.append(f"prunable fraction of all filters: {self.prunable_fraction:.1%}")
        return "\n".join(lines)


def _inside(group: ChannelGroup) -> str:
    """How to name a group of one layer's internal axis ("key dimensions inside mha"), or ""."""
    layers = {id(m.layer) for m in group.layers}
    roles = {m.role for m in group.layers}
    if group.producers or len(layers) != 1 or len(roles) != 1 or roles & {"in", "ch"}:
        return ""
    return f"{roles.pop()} dimensions inside {group.layers[0].path}"


def _submodules(layer: Any) -> Any:
    return layer.submodules


def _unseen_filters(analysis: Analysis) -> dict[str, int]:
    """Filters of layers that produce channels but are no producer of any group."""
    seen: set[int] = set()
    for g in analysis.groups:
        for m in g.producers:
            seen.add(id(m.layer))
            for inner in ("layer", "forward_layer", "backward_layer"):
                seen.add(id(getattr(m.layer, inner, None)))
    out: dict[str, int] = {}
    if is_keras3(analysis.model):
        layers, sublayers = all_layers(analysis.model), keras3_sublayers
    else:
        sublayers = _submodules
        layers = [
            la
            for la in analysis.model.submodules
            if isinstance(la, keras.layers.Layer)
            and not isinstance(la, (keras.Model, keras.layers.Wrapper))
        ]
    counts = {id(la): rule_for(la).filters(la) for la in layers}
    # A layer that counts its own filters (MultiHeadAttention: its heads) accounts for the
    # layers inside it (its projections); they are not counted again.
    inside = {id(sub) for la in layers if counts[id(la)] for sub in sublayers(la)}
    for layer in layers:
        if id(layer) in seen or id(layer) in inside:
            continue
        n = counts[id(layer)]
        if n:
            path = analysis.trace.layer_paths.get(id(layer), layer.name)
            out[path] = out.get(path, 0) + n
    return out


def explain(model: Any) -> ExplainReport:
    """Say which channel groups of ``model`` are prunable, and why the others are not.

    Its prunable fraction is over every filter of the model, those of layers tfprune cannot
    look into included.
    """
    analysis = analyze(model)
    rows = []
    for g in (g for g in analysis.groups if g.layers):
        channels = sum(m.size for m in g.producers)
        free = 0
        if g.prunable:
            free = sum(int((~g.blocked[m.unit_of_channel]).sum()) for m in g.producers)
        rows.append(
            {
                "id": g.id,
                "name": g.name,
                "units": g.n_units,
                "prunable_units": int(g.prunable_units.size) if g.prunable else 0,
                "channels": channels,
                "prunable_channels": free,
                "prunable": g.prunable,
                "producers": [m.path for m in g.producers],
                "layers": sorted({m.path for m in g.layers}),
                "inside": _inside(g),
                "reasons": list(g.reasons),
            }
        )
    opaque = [{"layer": p, "class": c, "reason": r} for p, c, r in analysis.opaque_calls]
    return ExplainReport(rows, _unseen_filters(analysis), opaque)
