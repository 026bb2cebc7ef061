"""Custom layers, subclassed and nested models are traced into layer graphs, or block."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune.compat import KerasTensor, keras, tf
from tfprune.errors import UnsupportedModelError
from tfprune.graph import analyze

L = keras.layers


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def _x(shape=(2, 8, 8, 3), seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _prune_strip(model, x, sparsity=0.5):
    """Prune + strip; assert stripped == masked and the original model is untouched."""
    before = [w.copy() for w in model.get_weights()]
    ref = np.asarray(model(x, training=False))
    masked = tfprune.prune_filters(model, sparsity)
    small = tfprune.strip_filters(masked)
    err = _rel(masked(x, training=False), small(x, training=False))
    assert err <= 1e-5, err
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), ref)
    return masked, small


def _classes(model) -> set[str]:
    out = set()
    for layer in model.layers:
        out.add(type(layer).__module__.split(".")[0])
        if isinstance(layer, keras.Model):
            out |= _classes(layer)
    return out


class SqueezeExcite(L.Layer):
    """An SE gate written with TF ops inside a custom layer."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.reduce = L.Conv2D(max(channels // 2, 1), 1)
        self.expand = L.Conv2D(channels, 1)

    def call(self, x):
        s = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        return x * tf.sigmoid(self.expand(tf.nn.relu(self.reduce(s))))


class ResBlock(L.Layer):
    """conv-BN-relu-conv-SE + identity shortcut, with a training argument passed down."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv1 = L.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn1 = L.BatchNormalization()
        self.conv2 = L.Conv2D(filters, 3, padding="same")
        self.se = SqueezeExcite(filters)

    def call(self, x, training=None):
        y = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        return tf.nn.relu(self.se(self.conv2(y)) + x)


def _custom_block_model():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="stem")(inp)
    x = ResBlock(8, name="block1")(x)
    x = ResBlock(8, name="block2")(x)
    return keras.Model(inp, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x)))


def test_custom_blocks_are_traced_pruned_and_stripped_to_stock_layers():
    model = _custom_block_model()
    report = tfprune.explain(model)
    producers = {p for r in report.rows if r["prunable"] for p in r["producers"]}
    assert any(p.startswith("block1/conv2d") for p in producers)  # inner convs join groups
    assert any(p.startswith("block2/squeeze_excite") for p in producers)  # and the SE gate
    assert report.prunable_fraction > 0.9 and not report.opaque
    _, small = _prune_strip(model, _x())
    assert small.count_params() < model.count_params()
    assert _classes(small) == {"tf_keras"}  # a functional model of stock layers only
    # The stripped model round-trips through Keras' own serialisation without tfprune.
    again = keras.Model.from_config(small.get_config())
    again.set_weights(small.get_weights())
    assert _rel(small(_x()), again(_x())) <= 1e-6


def test_subclassed_model_and_its_functional_wrapper_are_traced():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.c = L.Conv2D(6, 3)
            self.b = ResBlock(6)
            self.d = L.Dense(2)

        def call(self, x, training=None):
            return self.d(L.Flatten()(self.b(self.c(x), training=training)))

    net = Net()
    x = _x((2, 6, 6, 3))
    net(x)
    _, small = _prune_strip(net, x)
    assert small.count_params() < net.count_params()
    inp = keras.Input((6, 6, 3))
    wrapper = keras.Model(inp, net(inp))  # the advice in the "subclassed" error message
    _, small = _prune_strip(wrapper, x)
    assert small.count_params() < net.count_params()


def test_uncalled_subclassed_model_asks_to_be_called():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    with pytest.raises(tfprune.errors.UnsupportedModelError, match="call it once"):
        tfprune.prune_filters(Net(), 0.5)


class WSConv2D(L.Conv2D):
    """Weight-standardised conv: overrides call() and computes with a transformed kernel."""

    def call(self, x):
        k = self.kernel
        mean, var = tf.nn.moments(k, axes=[0, 1, 2], keepdims=True)
        return tf.nn.conv2d(x, (k - mean) * tf.math.rsqrt(var + 1e-5), 1, "SAME") + self.bias


class NormDense(L.Dense):
    """Kernel-normalised dense: unit-norm columns."""

    def call(self, x):
        return tf.matmul(x, tf.math.l2_normalize(self.kernel, axis=0)) + self.bias


class WSConvOp(L.Conv2D):
    """Overrides only convolution_op (the method ConvRule relies on)."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, kernel - tf.reduce_mean(kernel))


@pytest.mark.parametrize("conv_cls", [WSConv2D, WSConvOp])
def test_layers_overriding_stock_computation_block_and_strip_exactly(conv_cls):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = L.ReLU()(x)
    x = conv_cls(8, 3, padding="same", name="ws")(x)
    x = L.ReLU()(x)
    x = L.Conv2D(8, 3, padding="same", name="c3")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = NormDense(6, name="nd")(x)
    model = keras.Model(inp, L.Dense(2, name="out")(L.ReLU()(x)))
    report = tfprune.explain(model)
    opaque = {o["layer"]: o["reason"] for o in report.opaque}
    assert set(opaque) == {"ws", "nd"}
    assert "own weights" in opaque["ws"] and "of Conv2D" in opaque["ws"]
    assert "of Dense" in opaque["nd"]
    assert "custom layer 'ws' (" in str(report) or "ws (" in str(report)
    by_producer = {p: r for r in report.rows for p in r["producers"]}
    assert not by_producer["c1"]["prunable"] and not by_producer["c3"]["prunable"]
    with pytest.raises(tfprune.errors.UnsupportedModelError, match="explain"):
        tfprune.prune_filters(model, 0.5)  # nothing left to prune: refused, never mis-stripped


def test_override_sandwich_prunes_the_free_part_exactly():
    inp = keras.Input((8, 8, 3))
    x = WSConv2D(8, 3, padding="same", name="ws")(inp)
    y = L.Conv2D(12, 3, padding="same", name="free")(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU()(y)
    y = L.Conv2D(8, 1, name="back")(y)
    model = keras.Model(inp, WSConv2D(4, 1, name="ws2")(y))
    report = tfprune.explain(model)
    assert [r["producers"] for r in report.rows if r["prunable"]] == [["free"]]
    _, small = _prune_strip(model, _x())
    assert small.get_layer("free").filters == 6
    assert type(small.get_layer("ws")) is WSConv2D  # kept whole, as it was


class TrainingBranch(L.Layer):
    """Takes a different Python branch in training: cannot be one traced graph."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1)

    def call(self, x, training=None):
        return self.conv(x) * 2.0 if training else self.conv(x)


class DropPath(L.Layer):
    """Stochastic depth: drops whole examples in training (channels pass through)."""

    def call(self, x, training=None):
        if not training:
            return x
        keep = tf.floor(0.8 + tf.random.uniform([tf.shape(x)[0], 1, 1, 1]))
        return x / 0.8 * keep


class DataDependent(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1)

    def call(self, x):
        return self.conv(x) if tf.reduce_sum(x) > 0 else x


class Noisy(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1)

    def call(self, x):
        return self.conv(x + tf.random.normal(tf.shape(x)))


@pytest.mark.parametrize(
    "layer_cls, reason",
    [
        (TrainingBranch, "different Python branches"),
        (DataDependent, "data-dependent"),
        (Noisy, "differs"),
    ],
)
def test_untraceable_layers_block_with_their_reason(layer_cls, reason):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = layer_cls(name="odd")(x)
    x = L.Conv2D(8, 3, padding="same", name="c2")(x)
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    report = tfprune.explain(model)
    assert [o["layer"] for o in report.opaque] == ["odd"]
    assert reason in report.opaque[0]["reason"]
    assert "odd" in str(report) and reason in str(report)
    assert any("odd" in b for b in report.blocking_layers)
    rows = {p: r for r in report.rows for p in r["producers"]}
    assert not rows["c1"]["prunable"] and rows["c2"]["prunable"]


class RejectsSymbolic(L.Layer):
    """Checks its input's type like Hugging Face TF layers do."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1)

    def call(self, x):
        if isinstance(x, KerasTensor):
            raise ValueError(f"Data of type {type(x)} is not allowed only (tf.Tensor,)")
        return self.conv(x)


class RejectingModel(keras.Model):
    def __init__(self):
        super().__init__(name="rejecting")
        self.block = RejectsSymbolic()

    def call(self, x):
        if isinstance(x, KerasTensor):
            raise ValueError(f"Data of type {type(x)} is not allowed only (tf.Tensor,)")
        return self.block(x)


class CalledOnce(L.Layer):
    """Python state: works on its first call only (the one that built the model)."""

    calls = 0

    def call(self, x):
        CalledOnce.calls += 1
        if CalledOnce.calls > 1:
            raise RuntimeError("this layer ran out of calls")
        return x


class WithFragileSublayer(L.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1)
        self.once = CalledOnce(name="once")

    def call(self, x):
        return self.once(self.conv(x))


def test_a_layer_failing_on_symbolic_inputs_is_reported_with_its_own_error():
    report = _report_of(RejectsSymbolic)
    (note,) = report.opaque
    assert note["layer"] == "odd" and note["class"] == "RejectsSymbolic"
    assert "fails on the symbolic inputs" in note["reason"]
    assert "ValueError: Data of type" in note["reason"] and "KerasTensor" in note["reason"]
    assert "control flow" not in note["reason"]
    # The same as a whole subclassed model (a Hugging Face TF model): a clear refusal.
    model = RejectingModel()
    model(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(UnsupportedModelError, match="cannot be traced") as info:
        tfprune.explain(model)
    assert "'rejecting' (RejectingModel)" in str(info.value)
    assert "ValueError: Data of type" in str(info.value)
    CalledOnce.calls = 0
    (note,) = _report_of(WithFragileSublayer).opaque
    # An error inside a sublayer names that sublayer (tf_keras' context), then the message.
    assert (
        'RuntimeError in layer "once" (type CalledOnce): this layer ran out of calls'
        in (note["reason"])
    )


def _report_of(layer_cls):
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = layer_cls(name="odd")(x)
    return tfprune.explain(keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x))))


def test_drop_path_passes_channels_and_keeps_training_behaviour():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inp)
    y = L.Conv2D(8, 3, padding="same", name="c2")(L.ReLU()(x))
    x = L.Add()([x, DropPath(name="drop")(y)])
    model = keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling2D()(x)))
    report = tfprune.explain(model)
    assert not report.opaque and report.rows[1]["prunable"]
    masked, small = _prune_strip(model, _x())
    assert isinstance(small.get_layer("drop"), DropPath)  # still drops paths when training
    assert small.get_layer("c1").filters == 4


def test_model_made_only_of_opaque_blocks_explains_why():
    class Opaque(L.Layer):
        def build(self, shape):
            self.w = self.add_weight(name="w", shape=(shape[-1], 4))

        def call(self, x):
            return tf.nn.relu(tf.tensordot(x, self.w, 1))

    inp = keras.Input((5, 3))
    model = keras.Model(inp, Opaque(name="b2")(Opaque(name="b1")(inp)))
    text = str(tfprune.explain(model))
    assert "b1 (Opaque)" in text and "own weights (w)" in text


def test_nested_functional_model_with_custom_blocks_and_sequential():
    inner_in = keras.Input((8, 8, 8))
    inner = keras.Model(inner_in, ResBlock(8, name="rb")(inner_in), name="inner")
    inp = keras.Input((8, 8, 3))
    x = inner(L.Conv2D(8, 3, padding="same")(inp))
    model = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    _prune_strip(model, _x())
    seq = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(8, 3, padding="same"), ResBlock(8)])
    seq.add(L.GlobalAveragePooling2D())
    seq.add(L.Dense(2))
    _, small = _prune_strip(seq, _x())
    assert small.count_params() < seq.count_params()


def test_analysis_of_a_stock_model_does_not_rebuild_it():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2)(L.Dense(4)(inp)))
    assert analyze(model).model is model


def test_a_layer_named_like_tf_keras_op_layers_is_not_read_as_a_tf_op():
    """Only tf_keras' own op layers are read as TF ops; a namesake is what its class computes."""

    class TFOpLambda(L.Permute):  # tf_keras' name and a relu symbol; moves the channel axis
        symbol = "nn.relu"

    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = L.Conv2D(4, 1, name="mix")(TFOpLambda((1, 3, 2), name="op")(x))
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    (row,) = [r for r in tfprune.explain(model).rows if r["producers"] == ["conv"]]
    assert row["prunable_units"] == 0
    assert any("'op/" in why for why in row["reasons"]), row["reasons"]  # traced inside 'op'
