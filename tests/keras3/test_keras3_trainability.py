"""Mean JSV, the JSV callback and OrthP on Keras 3: the same numbers as on the tf_keras twin."""

from __future__ import annotations

import math

import numpy as np
import pytest
from keras3_twins import X, twins

import tfprune
from tfprune import compat
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.nested import all_layers
from tfprune.runtime import model_precision
from tfprune.trainability import JSVMeter, jacobian_singular_values

K3 = compat.keras3()
TK = compat.keras

LOG_KEYS = ("mean", "std", "min", "max", "condition_number", "mean_sq_dev_from_one")


def _randomize(model, seed=0):
    """Random, non-orthogonal weights (a positive BN variance) for every top-level layer."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = [rng.standard_normal(w.shape).astype("float32") * 0.5 for w in layer.weights]
        if isinstance(layer, compat.keras_of(model).layers.BatchNormalization):
            values[3] = np.abs(values[3]) + 0.5
        layer.set_weights(values)
    return model


def _copy(source, target):
    """``target`` (the other flavour) with ``source``'s weights, layer by layer name."""
    for layer in source.layers:
        if layer.weights:
            target.get_layer(layer.name).set_weights(layer.get_weights())
    return target


def _pair(build, seed=0):
    """``build`` in both flavours, with the same random weights."""
    tk = _randomize(build(TK), seed)
    return tk, _copy(tk, build(K3))


def _relu(k, x, name):
    """A ReLU layer in tf_keras, the raw ``keras.ops.relu`` op in Keras 3."""
    return K3.ops.relu(x) if k is K3 else k.layers.ReLU(name=name)(x)


def _mlp(k, ending="softmax_activation"):
    """A small classifier whose logits end as ``ending`` says."""
    L = k.layers
    x = k.Input((12,), name="x")
    h = L.Dense(10, activation="tanh", name="fc1")(x)
    h = _relu(k, L.Dense(24, name="fc2")(h), "relu")
    if ending == "softmax_activation":
        y = L.Dense(5, activation="softmax", name="logits")(h)
    elif ending == "softmax_layer":
        y = L.Softmax(name="softmax")(L.Dense(5, name="logits")(h))
    elif ending == "nested":
        z = k.Input((24,), name="z")
        head = k.Model(z, L.Dense(5, activation="softmax", name="logits")(z), name="head")
        y = head(h)
    else:
        y = L.Dense(5, name="logits")(h)
    return k.Model(x, y, name="mlp")


def _jsv_pair(model_pair, x, **kwargs):
    return [jacobian_singular_values(m, x, batch_size=7, **kwargs) for m in model_pair]


XS = np.random.default_rng(2).standard_normal((16, 12)).astype("float32")


@pytest.mark.parametrize("ending", ["softmax_activation", "softmax_layer", "nested", "logits"])
def test_jacobian_singular_values_equal_the_tf_keras_twin(ending):
    tk, k3 = _pair(lambda k: _mlp(k, ending))
    want, got = _jsv_pair((tk, k3), XS)
    assert got.shape == want.shape == (16, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The softmax is stripped: the values are those of the same network ending in logits.
    plain = _mlp(K3, "logits")
    for layer in all_layers(tk):
        if layer.weights and not isinstance(layer, TK.Model):
            plain.get_layer(layer.name).set_weights(layer.get_weights())
    np.testing.assert_allclose(jacobian_singular_values(plain, XS), got, rtol=1e-5)


def test_mean_jsv_of_the_cnn_twin_is_equal_on_both_flavours():
    tk, k3 = twins()
    want, got = (tfprune.mean_jsv(m, X, batch_size=3) for m in (tk, k3))
    assert got.num_samples == want.num_samples == 4
    for key in LOG_KEYS:
        assert getattr(got, key) == pytest.approx(getattr(want, key), rel=1e-5), key


def test_sequential_subclassed_and_logits_layer_models_equal_their_twins():
    def sequential(k):
        return k.Sequential(
            [
                k.Input((12,)),
                k.layers.Dense(9, activation="relu", name="a"),
                k.layers.Dense(4, activation="softmax", name="b"),
            ],
            name="seq",
        )

    tk, k3 = _pair(sequential)
    want, got = _jsv_pair((tk, k3), XS)
    np.testing.assert_allclose(got, want, rtol=1e-5)

    class Net(K3.Model):
        def __init__(self):
            super().__init__()
            self.a = K3.layers.Dense(9, activation="relu", name="a")
            self.b = K3.layers.Dense(4, name="b")

        def call(self, x):
            return self.b(self.a(x))

    net = Net()
    net(XS[:1])
    net.a.set_weights(tk.get_layer("a").get_weights())
    net.b.set_weights(tk.get_layer("b").get_weights())
    np.testing.assert_allclose(jacobian_singular_values(net, XS, batch_size=7), want, rtol=1e-5)

    # logits_layer: the hidden layer's output, by name, on both flavours.
    want, got = _jsv_pair((tk, k3), XS, logits_layer="a")
    assert got.shape == (16, 9)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_meter_follows_weight_changes_and_mixed_precision_uses_the_float32_values():
    tk, k3 = _pair(_mlp)
    meter = JSVMeter(k3, batch_size=5)
    before = meter(XS).mean
    doubled = [w * 2 for w in tk.get_layer("fc2").get_weights()]
    for model in (tk, k3):
        model.get_layer("fc2").set_weights(doubled)
    after = meter(XS)
    assert after.mean == pytest.approx(tfprune.mean_jsv(tk, XS).mean, rel=1e-5)
    assert after.mean != pytest.approx(before, rel=1e-3)

    def mixed(k):
        x = k.Input((12,))
        h = k.layers.Dense(10, activation="tanh", name="fc1", dtype="mixed_float16")(x)
        return k.Model(x, k.layers.Dense(5, name="logits", dtype="float32")(h))

    def plain(k):
        x = k.Input((12,))
        h = k.layers.Dense(10, activation="tanh", name="fc1")(x)
        return k.Model(x, k.layers.Dense(5, name="logits")(h))

    reference = _randomize(plain(TK))
    half = _copy(reference, mixed(K3))
    assert model_precision(half) == "mixed"
    want = jacobian_singular_values(reference, XS)
    np.testing.assert_allclose(jacobian_singular_values(half, XS), want, rtol=1e-5)


def _compiled(model):
    model.compile(
        optimizer=compat.keras_of(model).optimizers.SGD(0.05),
        loss=compat.keras_of(model).losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def test_jsv_callback_logs_reach_later_callbacks_and_history_in_keras3_fit():
    tk, k3 = _pair(lambda k: _mlp(k, "logits"))
    y = np.random.default_rng(3).integers(0, 5, 16)
    seen = []
    later = K3.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(logs.get("jsv_mean"))
    )
    callback = tfprune.JacobianSingularValues(XS, batch_size=6)
    history = _compiled(k3).fit(
        XS, y, batch_size=8, epochs=2, callbacks=[callback, later], verbose=0
    )
    for key in LOG_KEYS:
        assert len(history.history[f"jsv_{key}"]) == 2
    assert seen == history.history["jsv_mean"]
    assert all(math.isfinite(v) for v in seen)
    assert [record["epoch"] for record in callback.history] == [-1, 0, 1]
    # Before training: the tf_keras twin's values; after: those of the final weights.
    assert callback.initial_stats.mean == pytest.approx(tfprune.mean_jsv(tk, XS).mean, rel=1e-5)
    assert seen[-1] == pytest.approx(tfprune.mean_jsv(k3, XS).mean, rel=1e-6)
    assert seen[-1] != callback.initial_stats.mean


def test_jsv_callback_runs_in_a_keras3_fit_under_mirrored_strategy(mirrored_strategy):
    with mirrored_strategy.scope():
        model = _compiled(_mlp(K3, "logits"))
    y = np.random.default_rng(3).integers(0, 5, 16)
    callback = tfprune.JacobianSingularValues(XS, batch_size=8, log_on_train_begin=False)
    history = model.fit(XS, y, batch_size=8, epochs=2, callbacks=[callback], verbose=0)
    assert len(history.history["jsv_mean"]) == 2
    # The values of the final weights, computed as the callback batches them.
    expected = tfprune.mean_jsv(model, XS, batch_size=8).mean
    assert history.history["jsv_mean"][-1] == pytest.approx(expected, rel=1e-5)


def _assert_same_kernels(tk, k3):
    for layer in k3.layers:
        for a, b in zip(layer.weights, tk.get_layer(layer.name).weights, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)


def _zoo(k):
    """Every kernel layout OrthP reads: conv, separable, transpose, depthwise, nested, wrapped."""
    L = k.layers
    x = k.Input((6, 6, 3), name="image")
    h = L.BatchNormalization(name="bn")(L.Conv2D(4, 3, padding="same", name="conv")(x))
    h = _relu(k, h, "relu")
    h = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(h)
    h = L.Conv2DTranspose(5, 3, strides=2, padding="same", activation="tanh", name="up")(h)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    h = L.Conv1D(4, 3, name="conv1d")(L.Reshape((100, 10), name="rows")(h))
    h = L.TimeDistributed(L.Dense(3, name="td_dense"), name="td")(h)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    block = k.Sequential([k.Input((3,)), L.Dense(7, activation="elu", name="inner")], name="blk")
    return k.Model(x, L.Dense(4, name="head")(block(h)), name="zoo")


def _rows(kernel, layout):
    """The ``(out, fan_in)`` matrix of a kernel (column order is irrelevant to W W^T)."""
    k = np.asarray(kernel, dtype="float64")
    if layout == "depthwise":  # (kh, kw, in, mult): one row per output channel
        return k.reshape(-1, k.shape[-2] * k.shape[-1]).T
    if layout == "transpose":  # (kh, kw, out, in)
        return np.moveaxis(k, -2, 0).reshape(k.shape[-2], -1)
    return k.reshape(-1, k.shape[-1]).T


@pytest.mark.parametrize("gain", ["per_layer", 0.7, {"head": 3.0, "conv": 2.0}])
def test_orthp_gives_the_tf_keras_kernels_for_every_layout(gain):
    tk, k3 = _pair(_zoo)
    before = {v.path: np.asarray(v) for v in k3.weights}
    assert tfprune.orthp(k3, gain=gain) is k3
    tfprune.orthp(tk, gain=gain)
    _assert_same_kernels(tk, k3)
    after = {v.path: np.asarray(v) for v in k3.weights}
    changed = sorted(p for p in before if not np.array_equal(before[p], after[p]))
    assert changed == [
        "blk/inner/kernel",
        "conv/kernel",
        "conv1d/kernel",
        "dw/kernel",
        "head/kernel",
        "sep/depthwise_kernel",
        "sep/pointwise_kernel",
        "td/td_dense/kernel",
        "up/kernel",
    ]
    if gain == "per_layer":  # ReLU (a raw op after BN), tanh, ELU, linear
        expect = {"conv": 2.0, "up": 25 / 9, "inner": 2.0, "head": 1.0, "dw": 1.0}
        layers = {
            "conv": (k3.get_layer("conv").kernel, "conv"),
            "up": (k3.get_layer("up").kernel, "transpose"),
            "inner": (k3.get_layer("blk").get_layer("inner").kernel, "conv"),
            "head": (k3.get_layer("head").kernel, "conv"),
            "dw": (k3.get_layer("dw").kernel, "depthwise"),
        }
        for name, (kernel, layout) in layers.items():
            w = _rows(kernel, layout)
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            np.testing.assert_allclose(gram, expect[name] * np.eye(len(gram)), atol=1e-5)


def test_orthp_default_gain_on_the_cnn_twin_and_its_mixed_gains_error():
    tk, k3 = twins()
    tfprune.orthp(tk)
    tfprune.orthp(k3)
    _assert_same_kernels(tk, k3)
    w = np.asarray(k3.get_layer("fc").kernel, "float64")  # (in 10, out 12): W^T W = 2 I
    np.testing.assert_allclose(w @ w.T, 2.0 * np.eye(10), atol=1e-5)

    messages = []
    for model in _pair(_zoo):
        with pytest.raises(InvalidArgumentError, match="different gains") as err:
            tfprune.orthp(model)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def cube(x):
    return x * x * x


def _custom_pair():
    """A Dense whose output goes to a custom layer, in both flavours."""

    def build(k):
        class Scale(k.layers.Layer):
            def call(self, x):
                return 2.0 * x

        x = k.Input((6,), name="x")
        h = Scale(name="scale")(k.layers.Dense(6, name="fc")(x))
        return k.Model(x, k.layers.Dense(3, activation=cube, name="out")(h))

    return _pair(build)


def test_orthp_refuses_what_it_cannot_see_through_with_the_same_error_on_both_flavours():
    messages = []
    for model in _custom_pair():
        with pytest.raises(InvalidArgumentError) as err:
            tfprune.orthp(model)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "Layer 'fc'" in messages[0] and "custom layer 'scale' (Scale)" in messages[0]
    assert "gain={'fc': <float>}" in messages[0]

    messages = []
    for model in _custom_pair():
        with pytest.raises(InvalidArgumentError) as err:
            tfprune.orthp(model, gain={"fc": 1.0})
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "Layer 'out'" in messages[0] and "No OrthP gain" in messages[0] and "cube" in messages[0]

    tk, k3 = _custom_pair()
    for model in (tk, k3):
        tfprune.orthp(model, gain={"fc": 1.0, "out": 1.5})
    _assert_same_kernels(tk, k3)


def test_orthp_refuses_quantized_and_lora_kernels_of_keras3():
    changes = (
        (lambda dense: dense.quantize("int8"), "quantized"),
        (lambda dense: dense.enable_lora(2), "LoRA"),
    )
    for change, state in changes:
        model = _mlp(K3, "logits")
        change(model.get_layer("fc2"))
        with pytest.raises(UnsupportedModelError, match=f"'fc2': its kernel is {state}"):
            tfprune.orthp(model, gain=1.0)


def test_mean_jsv_errors_are_the_same_on_both_flavours():
    messages = []
    for model in _pair(lambda k: _mlp(k, "softmax_layer")):
        with pytest.raises(UnsupportedModelError) as err:
            tfprune.mean_jsv(model, XS, logits_layer="softmax")
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "'softmax' is a Softmax layer" in messages[0]

    def two_inputs(k):
        a, b = k.Input((3,), name="a"), k.Input((3,), name="b")
        return k.Model([a, b], k.layers.Dense(2, name="d")(k.layers.Concatenate()([a, b])))

    messages = []
    for model in _pair(two_inputs):
        with pytest.raises(UnsupportedModelError, match="single-input") as err:
            tfprune.mean_jsv(model, XS)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_keras_of_gives_the_module_of_each_flavour():
    assert compat.keras_of(K3.layers.Dense(1)) is K3
    assert compat.keras_of(TK.layers.Dense(1)) is TK
    assert compat.keras_of(K3.ops.relu) is TK  # a plain function: no Keras flavour


def test_activation_gain_reads_keras3_layers_and_ops_as_their_tf_keras_namesakes():
    x = K3.Input((4,))
    for op, layer in (
        (K3.ops.leaky_relu(x, 0.1), TK.layers.LeakyReLU(alpha=0.1)),
        (K3.ops.tanh(x), TK.layers.Activation("tanh")),
        (K3.ops.relu(x), TK.layers.ReLU()),
        (K3.ops.selu(x), TK.layers.Activation("selu")),
    ):
        want = tfprune.trainability.activation_gain(layer)
        assert tfprune.trainability.activation_gain(compat.keras3_producer(op)) == want
    for k3_layer, tk_layer in (
        (K3.layers.LeakyReLU(negative_slope=0.1), TK.layers.LeakyReLU(alpha=0.1)),
        (K3.layers.ReLU(negative_slope=0.5), TK.layers.ReLU(negative_slope=0.5)),
        (K3.layers.ELU(), TK.layers.ELU()),
        (K3.layers.Activation("gelu"), TK.layers.Activation("gelu")),
    ):
        want = tfprune.trainability.activation_gain(tk_layer)
        assert tfprune.trainability.activation_gain(k3_layer) == want
    assert tfprune.trainability.activation_gain(TK.layers.LeakyReLU(alpha=0.1)) == pytest.approx(
        math.sqrt(2 / 1.01), rel=1e-7
    )


def test_trainability_accuracy_reads_the_history_of_a_keras3_fit():
    from tfprune.trainability import trainability_accuracy

    inputs = K3.Input((4,))
    model = K3.Model(inputs, K3.layers.Dense(2)(inputs))
    model.compile(
        optimizer=K3.optimizers.SGD(0.1),
        loss=K3.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[K3.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = (np.arange(8) % 2).astype("int32")
    history = model.fit(x, y, epochs=2, verbose=0)
    assert isinstance(history, K3.callbacks.History)
    expected = float(np.mean(history.history["accuracy"]))
    assert trainability_accuracy(history, 2, metric="accuracy") == pytest.approx(expected)
