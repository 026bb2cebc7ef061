"""Models built the same way in both Keras flavours (``build(keras)``), with the same weights."""

from __future__ import annotations

import zlib

import numpy as np
from core_helpers import all_layers, randomize

import tfprune
from tfprune import compat
from tfprune.graph.keras3 import is_keras3

K3 = compat.keras3()
TK = compat.keras


def _twin(k):
    """The same CNN in Keras flavour ``k``: residual add, concat, depthwise, BN, Dense."""
    L = k.layers
    if k is K3:

        def add(a, b):
            return a + b  # a raw op in Keras 3

        def cat(ts):
            return K3.ops.concatenate(ts, axis=-1)

    else:

        def add(a, b):
            return L.Add(name="add")([a, b])

        cat = L.Concatenate(name="cat")
    x = k.Input((8, 8, 3), name="image")
    a = L.Conv2D(8, 3, padding="same", name="conv_a")(x)
    a = L.BatchNormalization(name="bn_a")(a)
    a = L.ReLU(name="relu_a")(a)
    b = L.Conv2D(8, 3, padding="same", name="conv_b")(a)
    b = L.BatchNormalization(name="bn_b")(b)
    r = add(a, b)
    d = L.DepthwiseConv2D(3, padding="same", name="dw")(r)
    c = L.Conv2D(6, 1, name="conv_c")(r)
    h = L.Conv2D(10, 1, name="conv_d")(cat([d, c]))
    h = L.GlobalAveragePooling2D(name="gap")(h)
    h = L.Dense(12, activation="relu", name="fc")(h)
    return k.Model(x, L.Dense(3, name="head")(h), name="twin")


def twins(seed: int = 0):
    """A tf_keras model and its Keras 3 twin with the same (random, non-trivial) weights."""
    rng = np.random.default_rng(seed)
    tk, k3 = _twin(TK), _twin(K3)
    for layer in tk.layers:
        values = [rng.standard_normal(w.shape).astype("float32") * 0.5 for w in layer.weights]
        if isinstance(layer, TK.layers.BatchNormalization):
            values[3] = np.abs(values[3]) + 0.5  # a positive moving variance
        layer.set_weights(values)
        if values:
            k3.get_layer(layer.name).set_weights(values)
    return tk, k3


X = np.random.default_rng(1).standard_normal((4, 8, 8, 3)).astype("float32")


def prunes_and_strips(model, x):
    """Prune ``model`` at 50 %, strip it; check the result and return the stripped model.

    The stripped model is Keras 3, smaller, of no tfprune layer, and computes what the masked
    one does within 1e-5 relative.
    """
    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    assert is_keras3(small)
    assert small.count_params() < model.count_params()
    assert not [la for la in small._flatten_layers() if type(la).__module__.startswith("tfprune")]
    want, got = np.asarray(masked(x)), np.asarray(small(x))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
    return small


# ---------------------------------------------------------------------------------------------
# Sequence models: RNNs, Bidirectional, attention (each ``build(k)`` takes the Keras module)


def sequence_model(k, make, name, inputs=()):
    """``Dense -> make(h) -> Dense -> pool -> head`` on a (5, 6) sequence; ``inputs``: extra."""
    L = k.layers
    x = k.Input((5, 6), name="seq")
    extra = [k.Input(shape, name=n, dtype=dtype) for n, shape, dtype in inputs]
    h = L.Dense(8, name="pre")(x)
    h = make(L, h, *extra)
    h = L.Dense(6, name="post")(h)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    out = L.Dense(3, name="head")(h)
    return k.Model([x, *extra] if extra else x, out, name=name)


def recurrent(kind, **kwargs):
    """A builder of a model around ``kind`` (``"SimpleRNN"``, ``"GRU"``, ``"LSTM"``), ``rnn``."""

    def build(k):
        def make(L, h):
            return getattr(L, kind)(8, return_sequences=True, name="rnn", **kwargs)(h)

        return sequence_model(k, make, kind.lower())

    return build


def bidirectional(merge_mode):
    """A builder of a model around ``Bidirectional(LSTM)`` named ``rnn``, merging ``merge_mode``."""

    def build(k):
        def make(L, h):
            inner = L.LSTM(8, return_sequences=True)
            return L.Bidirectional(inner, merge_mode=merge_mode, name="rnn")(h)

        return sequence_model(k, make, f"bi_{merge_mode}")

    return build


def attention(value_dim=None, with_mask=False):
    """A builder of a residual self-attention block (4 heads, key_dim 3) named ``mha``.

    ``with_mask``: a second input, a boolean ``(5, 5)`` attention mask.
    """

    def build(k):
        def make(L, h, *mask):
            kwargs = {"attention_mask": mask[0]} if mask else {}
            a = L.MultiHeadAttention(4, 3, value_dim=value_dim, name="mha")(h, h, **kwargs)
            return L.Add(name="add")([h, a])

        extra = [("mask", (5, 5), "bool")] if with_mask else []
        return sequence_model(k, make, "attention", extra)

    return build


def encoder(k):
    """A transformer block: attention, residual adds, layer norms, a dense feed-forward."""
    L = k.layers
    x = k.Input((7, 16), name="tokens")
    h = L.Dense(16, name="embed")(x)
    a = L.MultiHeadAttention(num_heads=4, key_dim=3, value_dim=5, name="mha")(h, h)
    h = L.LayerNormalization(name="ln1")(L.Add(name="add1")([h, a]))
    f = L.Dense(32, activation="relu", name="ff_in")(h)
    f = L.Dense(16, name="ff_out")(f)
    h = L.LayerNormalization(name="ln2")(L.Add(name="add2")([h, f]))
    e = L.EinsumDense("abc,cd->abd", output_shape=(None, 12), bias_axes="d", name="ed")(h)
    p = L.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3), name="ed_split")(x)
    p = L.Reshape((7, 6), name="merge")(p)
    h = L.GlobalAveragePooling1D(name="pool")(L.Concatenate(name="cat")([e, p]))
    return k.Model(x, L.Dense(3, name="head")(h), name="encoder")


def copy_weights(source, target):
    """``target`` (the other flavour's twin) with ``source``'s weights, matched by layer name."""
    by_name = {la.name: la for la in all_layers(target)}
    for layer in all_layers(source):
        if layer.weights and not isinstance(layer, (TK.Model, K3.Model)):
            by_name[layer.name].set_weights(layer.get_weights())
    return target


def twin_pair(build, seed=0):
    """``build`` in both flavours, with the same random weights: ``(tf_keras, Keras 3)``."""
    tk = randomize(build(TK), seed=seed)
    return tk, copy_weights(tk, build(K3))


def planted_scores(key: str, n: int) -> np.ndarray:
    """A fixed permutation of ``0..n-1`` drawn from ``key``: the planted importance of n units."""
    return np.random.default_rng(zlib.crc32(key.encode())).permutation(n).astype("float32")


def planted(group) -> np.ndarray:
    """An importance criterion: the planted scores of ``group``, keyed by its name."""
    return planted_scores(group.name, group.n_units)


def top_units(scores: np.ndarray, k: int) -> list[int]:
    """The ``k`` best-scoring units, sorted: what pruning by ``scores`` keeps."""
    return sorted(int(i) for i in np.argsort(scores, kind="stable")[len(scores) - k :])
