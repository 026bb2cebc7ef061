"""Tests for tfprune.trainability: mean JSV, trainability accuracy and OrthP."""

from __future__ import annotations

import gzip
import math
import pathlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.trainability import (
    JSVStats,
    activation_gain,
    jacobian_singular_values,
    mean_jsv,
    orthp,
    trainability_accuracy,
)

MLP7_WIDTHS = (784, 100, 100, 100, 100, 100, 100, 10)
PRUNED_MLP7_WIDTHS = (784, 20, 20, 20, 20, 20, 20, 10)


def make_mlp(
    widths: tuple[int, ...],
    *,
    activation: str | None = None,
    use_bias: bool = True,
    output_activation: str | None = None,
    seed: int = 0,
) -> keras.Model:
    """A functional MLP with Dense layers of the given widths (first entry = input size)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((widths[0],))
    h = inputs
    for i, width in enumerate(widths[1:]):
        last = i == len(widths) - 2
        h = keras.layers.Dense(
            width,
            activation=output_activation if last else activation,
            use_bias=use_bias,
            bias_initializer="random_normal",
            name=f"dense_{i}",
        )(h)
    return keras.Model(inputs, h)


def dense_kernels(model: keras.Model) -> list[np.ndarray]:
    return [layer.kernel.numpy().astype(np.float64) for layer in model.layers if layer.weights]


def random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def load_mnist(mnist_dir: pathlib.Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` MNIST test images (flattened, standardised) and labels from IDX files."""
    with gzip.open(mnist_dir / "t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read()
    _, count, rows, cols = struct.unpack(">IIII", raw[:16])
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows * cols)[:n]
    with gzip.open(mnist_dir / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    x = (images.astype(np.float32) / 255.0 - 0.1307) / 0.3081
    return x, labels.astype(np.int64)


def assert_stats_close(actual: JSVStats, expected: JSVStats) -> None:
    assert actual.num_samples == expected.num_samples
    for key, value in expected.to_dict().items():
        assert getattr(actual, key) == pytest.approx(value, rel=1e-6), key


@pytest.fixture(scope="module")
def data784() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((64, 784)).astype(np.float32)


# ------------------------------------------------------------------------------------------
# mean_jsv: exact properties on linear networks
# ------------------------------------------------------------------------------------------


def test_mean_jsv_orthogonal_linear_mlp_gives_all_singular_values_one():
    rng = np.random.default_rng(0)
    model = make_mlp((32, 32, 32, 32, 32), use_bias=False)
    for layer in model.layers[1:]:
        layer.kernel.assign(random_orthogonal(32, rng).astype(np.float32))
    x = rng.standard_normal((50, 32)).astype(np.float32)

    stats = mean_jsv(model, x, batch_size=16)

    assert stats.num_samples == 50
    assert stats.mean == pytest.approx(1.0, abs=1e-5)
    assert stats.min == pytest.approx(1.0, abs=1e-5)
    assert stats.max == pytest.approx(1.0, abs=1e-5)
    assert stats.std < 1e-5
    assert stats.condition_number == pytest.approx(1.0, abs=1e-5)
    assert stats.mean_sq_dev_from_one < 1e-10


@settings(max_examples=4, deadline=None)
@given(c=st.floats(min_value=0.05, max_value=20.0), layer_index=st.integers(0, 2))
def test_scaling_one_kernel_by_c_scales_every_singular_value_by_c(c: float, layer_index: int):
    model = make_mlp((12, 9, 7, 5), use_bias=False, seed=3)
    x = np.random.default_rng(2).standard_normal((8, 12)).astype(np.float32)
    before = jacobian_singular_values(model, x)
    layer = model.layers[1 + layer_index]
    layer.kernel.assign(layer.kernel * c)

    after = jacobian_singular_values(model, x)

    np.testing.assert_allclose(after, c * before, rtol=1e-4)


def test_scaling_a_relu_layer_scales_singular_values_and_mean(data784: np.ndarray):
    # ReLU is positively homogeneous, so with zero biases the Jacobian scales by c as well.
    model = make_mlp((784, 50, 50, 10), activation="relu", use_bias=False, seed=5)
    before = mean_jsv(model, data784)
    model.layers[2].kernel.assign(model.layers[2].kernel * 3.0)

    after = mean_jsv(model, data784)

    assert after.mean == pytest.approx(3.0 * before.mean, rel=1e-4)
    assert after.std == pytest.approx(3.0 * before.std, rel=1e-4)
    assert after.condition_number == pytest.approx(before.condition_number, rel=1e-3)


def test_linear_mlp_mean_jsv_equals_svd_of_kernel_product_for_any_data():
    model = make_mlp((784, 100, 100, 100, 100, 100, 100, 10), seed=7)  # random non-zero biases
    product = np.linalg.multi_dot(dense_kernels(model))  # x @ W1 @ ... @ W7, so J = product.T
    expected = np.linalg.svd(product, compute_uv=False)
    rng = np.random.default_rng(0)
    x_a = rng.standard_normal((30, 784)).astype(np.float32)
    x_b = 10.0 * rng.random((17, 784)).astype(np.float32)

    s_a = jacobian_singular_values(model, x_a)
    stats_b = mean_jsv(model, x_b)

    assert s_a.shape == (30, 10)
    np.testing.assert_allclose(s_a, np.tile(expected, (30, 1)), rtol=1e-4)
    assert stats_b.mean == pytest.approx(expected.mean(), rel=1e-4)
    assert stats_b.max == pytest.approx(expected.max(), rel=1e-4)
    assert stats_b.min == pytest.approx(expected.min(), rel=1e-3)
    assert stats_b.condition_number == pytest.approx(expected.max() / expected.min(), rel=1e-3)


def test_jsv_stats_from_singular_values_matches_numpy():
    s = np.array([[3.0, 1.0], [2.0, 0.5]])

    stats = JSVStats.from_singular_values(s)

    assert stats.mean == pytest.approx(1.625)
    assert stats.std == pytest.approx(np.std(s))
    assert (stats.min, stats.max) == (0.5, 3.0)
    assert stats.condition_number == pytest.approx((3.0 + 4.0) / 2)
    assert stats.mean_sq_dev_from_one == pytest.approx(np.mean((s - 1) ** 2))
    assert stats.num_samples == 2
    assert stats.to_dict() == {
        "mean": stats.mean,
        "std": stats.std,
        "min": 0.5,
        "max": 3.0,
        "condition_number": stats.condition_number,
        "mean_sq_dev_from_one": stats.mean_sq_dev_from_one,
        "num_samples": 2,
    }
    with pytest.raises(AttributeError):
        stats.mean = 0.0  # frozen


def test_singular_jacobian_gives_infinite_condition_number():
    stats = JSVStats.from_singular_values(np.array([[1.0, 0.0]]))
    assert math.isinf(stats.condition_number)


# ------------------------------------------------------------------------------------------
# mean_jsv: logits handling, inputs, conv models
# ------------------------------------------------------------------------------------------


def test_softmax_output_activation_is_stripped_to_logits(data784: np.ndarray):
    logits_model = make_mlp((784, 30, 10), activation="relu", seed=11)
    softmax_model = make_mlp((784, 30, 10), activation="relu", output_activation="softmax")
    softmax_model.set_weights(logits_model.get_weights())

    expected = mean_jsv(logits_model, data784)
    stripped = mean_jsv(softmax_model, data784)
    kept = mean_jsv(softmax_model, data784, strip_softmax=False)

    assert_stats_close(stripped, expected)
    assert kept.mean < expected.mean  # the softmax Jacobian shrinks the values
    assert softmax_model.layers[-1].activation.__name__ == "softmax"  # restored after tracing


def test_trailing_softmax_layer_is_cut_and_logits_layer_selects_an_output(data784: np.ndarray):
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(30, activation="relu", name="hidden")(inputs)
    logits = keras.layers.Dense(10, name="logits")(hidden)
    probs = keras.layers.Softmax(name="probs")(logits)
    model = keras.Model(inputs, probs)
    logits_model = keras.Model(inputs, logits)
    hidden_model = keras.Model(inputs, hidden)

    assert_stats_close(mean_jsv(model, data784), mean_jsv(logits_model, data784))
    assert_stats_close(
        mean_jsv(model, data784, logits_layer="hidden"), mean_jsv(hidden_model, data784)
    )


def test_softmax_inside_a_nested_final_model_is_stripped(data784: np.ndarray):
    logits_model = make_mlp((784, 30, 10), activation="relu", seed=12)
    head = keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(10, activation="softmax")], name="head"
    )
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(30, activation="relu")(inputs)
    model = keras.Model(inputs, head(hidden))
    model.set_weights(logits_model.get_weights())

    assert_stats_close(mean_jsv(model, data784), mean_jsv(logits_model, data784))


class _Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="tanh")
        self.out = keras.layers.Dense(3)

    def call(self, x, training=None):
        return self.out(self.hidden(x))


def test_mean_jsv_works_on_subclassed_models():
    model = _Subclassed()
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    model(x)

    s = jacobian_singular_values(model, x)

    assert s.shape == (5, 3)
    assert np.all(np.isfinite(s)) and np.all(s > 0)


def test_output_index_selects_one_output_of_a_multi_output_model(data784: np.ndarray):
    inputs = keras.Input((784,))
    a = keras.layers.Dense(10, name="a")(inputs)
    b = keras.layers.Dense(4, name="b")(inputs)
    model = keras.Model(inputs, [a, b])

    s_b = jacobian_singular_values(model, data784, output_index=1)

    expected = np.linalg.svd(model.get_layer("b").kernel.numpy(), compute_uv=False)
    np.testing.assert_allclose(s_b, np.tile(expected, (len(data784), 1)), rtol=1e-4)
    with pytest.raises(InvalidArgumentError, match="output_index"):
        mean_jsv(model, data784, output_index=2)


def test_dataset_inputs_give_the_same_result_as_numpy(data784: np.ndarray):
    model = make_mlp((784, 40, 40, 10), activation="relu", seed=2)
    labels = np.zeros(len(data784), np.int64)
    expected = mean_jsv(model, data784[:50], batch_size=16)

    batched = tf.data.Dataset.from_tensor_slices((data784, labels)).batch(7)
    unbatched = tf.data.Dataset.from_tensor_slices(data784)
    infinite = tf.data.Dataset.from_tensor_slices(data784).batch(10).repeat()

    for dataset in (batched, unbatched, infinite):
        got = mean_jsv(model, dataset, batch_size=16, num_samples=50)
        assert got.num_samples == 50
        assert got.mean == pytest.approx(expected.mean, rel=1e-6)
        assert got.condition_number == pytest.approx(expected.condition_number, rel=1e-6)
    assert mean_jsv(model, tf.constant(data784[:50])).mean == pytest.approx(expected.mean)


def test_mean_jsv_on_conv_model_flattens_the_input():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    x = np.random.default_rng(0).standard_normal((6, 8, 8, 2)).astype(np.float32)

    s = jacobian_singular_values(model, x, batch_size=4)

    assert s.shape == (6, 5)
    # Compare one sample with an explicit full Jacobian.
    x0 = tf.constant(x[:1])
    with tf.GradientTape() as tape:
        tape.watch(x0)
        y = model(x0, training=False)
    jac = tape.jacobian(y, x0).numpy().reshape(5, -1)
    np.testing.assert_allclose(s[0], np.linalg.svd(jac, compute_uv=False), rtol=1e-4)


def test_mean_jsv_runs_model_in_inference_mode(data784: np.ndarray):
    model = make_mlp((784, 30, 10), seed=4)
    dropout_model = keras.Sequential([keras.Input((784,)), keras.layers.Dropout(0.9), model])

    assert_stats_close(mean_jsv(dropout_model, data784), mean_jsv(model, data784))


def test_mean_jsv_of_mlp7_relu_trained_on_real_mnist_is_finite(mnist_dir: pathlib.Path):
    x, y = load_mnist(mnist_dir, 2000)
    model = make_mlp(MLP7_WIDTHS, activation="relu", seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(x[:1800], y[:1800], batch_size=100, epochs=2, verbose=0)

    stats = mean_jsv(model, x[1000:], batch_size=100, num_samples=500)

    assert history.history["accuracy"][-1] > 0.5
    assert stats.num_samples == 500
    values = np.array(list(stats.to_dict().values()), dtype=np.float64)
    assert np.all(np.isfinite(values))
    assert 0.0 < stats.min <= stats.mean <= stats.max


# ------------------------------------------------------------------------------------------
# mean_jsv: argument validation
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"num_samples": 0}, "num_samples"),
        ({"num_samples": 65}, "only provide 64"),
        ({"logits_layer": "nope"}, "not a layer"),
    ],
)
def test_mean_jsv_rejects_bad_arguments(data784: np.ndarray, kwargs: dict, match: str):
    model = make_mlp((784, 10), seed=0)
    with pytest.raises(InvalidArgumentError, match=match):
        mean_jsv(model, data784, **kwargs)


def test_mean_jsv_rejects_inputs_of_the_wrong_shape_or_kind():
    model = make_mlp((784, 10), seed=0)
    with pytest.raises(InvalidArgumentError, match=r"per-sample shape \(28, 28\).*\(784,\)"):
        mean_jsv(model, np.zeros((4, 28, 28), np.float32))
    with pytest.raises(InvalidArgumentError, match=r"per-sample shape \(100,\)"):
        mean_jsv(model, np.zeros((4, 100), np.float32))
    with pytest.raises(InvalidArgumentError, match="no samples"):
        mean_jsv(model, np.zeros((0, 784), np.float32))
    with pytest.raises(InvalidArgumentError, match="numpy array"):
        mean_jsv(model, [[0.0] * 784])
    with pytest.raises(InvalidArgumentError, match="infinite"):
        mean_jsv(model, tf.data.Dataset.from_tensors(np.zeros((2, 784), np.float32)).repeat())


def test_mean_jsv_rejects_multi_input_models():
    a, b = keras.Input((3,)), keras.Input((3,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(UnsupportedModelError, match="single-input"):
        mean_jsv(model, np.zeros((2, 3), np.float32))


# ------------------------------------------------------------------------------------------
# trainability_accuracy
# ------------------------------------------------------------------------------------------


def test_trainability_accuracy_is_the_mean_over_the_first_stage():
    logs = {"val_accuracy": [0.2, 0.4, 0.6, 0.9, 0.95], "loss": [3, 2, 1, 0.5, 0.4]}

    assert trainability_accuracy(logs, 3) == pytest.approx(0.4)
    assert trainability_accuracy(logs, 5) == pytest.approx(0.61)
    assert trainability_accuracy(logs, 1) == pytest.approx(0.2)


def test_trainability_accuracy_reads_a_keras_history_object():
    history = keras.callbacks.History()
    history.history = {"accuracy": [0.5, 0.7], "val_accuracy": [0.1, 0.3]}

    assert trainability_accuracy(history, 2, metric="accuracy") == pytest.approx(0.6)
    assert trainability_accuracy(history, 2) == pytest.approx(0.2)


def test_trainability_accuracy_errors_name_the_problem():
    logs = {"accuracy": [0.5, 0.7]}
    with pytest.raises(InvalidArgumentError, match=r"'val_accuracy'.*\['accuracy'\]"):
        trainability_accuracy(logs, 1)
    with pytest.raises(InvalidArgumentError, match="exceeds the 2 epoch"):
        trainability_accuracy(logs, 3, metric="accuracy")
    with pytest.raises(InvalidArgumentError, match="first_stage_epochs"):
        trainability_accuracy(logs, 0, metric="accuracy")
    with pytest.raises(InvalidArgumentError, match="History or a mapping"):
        trainability_accuracy([0.5, 0.7], 1)


# ------------------------------------------------------------------------------------------
# OrthP
# ------------------------------------------------------------------------------------------


def test_orthp_on_pruned_mlp7_linear_restores_exact_isometry(data784: np.ndarray):
    model = make_mlp(PRUNED_MLP7_WIDTHS, seed=8)
    assert abs(mean_jsv(model, data784).mean - 1.0) > 0.05

    assert orthp(model) is model
    stats = mean_jsv(model, data784)

    # Every kernel has orthonormal rows in (out, in) layout, so J J^T = I_10.
    assert stats.mean == pytest.approx(1.0, abs=1e-4)
    assert stats.min == pytest.approx(1.0, abs=1e-4)
    assert stats.max == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    "gain, gains",
    [
        # the authors' code: one gain (the network's activation) for every layer, logits too
        (None, (math.sqrt(2.0), math.sqrt(2.0))),
        ("per_layer", (math.sqrt(2.0), 1.0)),
    ],
)
def test_orthp_matches_the_qr_recipe_and_keeps_biases(gain, gains):
    model = make_mlp((30, 50, 8), activation="relu", seed=9)
    old = [layer.get_weights() for layer in model.layers[1:]]

    orthp(model, gain=gain)

    for layer, (kernel, bias), gain in zip(model.layers[1:], old, gains):
        np.testing.assert_array_equal(layer.bias.numpy(), bias)
        w = kernel.T.astype(np.float64)  # (out, in)
        a = w.T if w.shape[0] < w.shape[1] else w
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))
        expected = (q.T if w.shape[0] < w.shape[1] else q) * gain
        np.testing.assert_allclose(layer.kernel.numpy().T, expected, atol=1e-6)


def test_orthp_is_idempotent_and_keeps_the_column_space_orientation():
    model = make_mlp((10, 40, 40), seed=10)
    tall_before = model.layers[1].kernel.numpy().T.astype(np.float64)  # (40, 10): tall
    orthp(model)
    once = [w.copy() for w in model.get_weights()]
    q = model.layers[1].kernel.numpy().T.astype(np.float64)

    orthp(model)

    for a, b in zip(once, model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # A = Q R with R upper triangular and a positive diagonal.
    r = q.T @ tall_before
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-4)
    assert np.all(np.diag(r) > 0)


def _conv_matrix(kernel: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, in, out) -> PyTorch-layout (out, in*kh*kw) matrix."""
    return np.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[3], -1).astype(np.float64)


def test_orthp_on_conv2d_model_makes_kernels_semi_orthogonal_with_gain():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, activation="relu", bias_initializer="ones", name="wide")(inputs)
    h = keras.layers.Conv2D(40, 1, bias_initializer="ones", name="tall")(h)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.Conv2D(6, 3, name="linear_conv")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(4, name="head")(h)
    model = keras.Model(inputs, outputs)
    biases = {name: model.get_layer(name).bias.numpy().copy() for name in ("wide", "tall")}
    bn_before = [w.copy() for w in model.get_layer("bn").get_weights()]
    global_model = keras.models.clone_model(model)

    orthp(model, gain="per_layer")

    wide = _conv_matrix(model.get_layer("wide").kernel.numpy())  # (8, 27): rows orthonormal
    np.testing.assert_allclose(wide @ wide.T, 2.0 * np.eye(8), atol=1e-5)
    tall = _conv_matrix(model.get_layer("tall").kernel.numpy())  # (40, 8): columns orthonormal
    np.testing.assert_allclose(tall.T @ tall, 2.0 * np.eye(8), atol=1e-5)  # BN -> ReLU follows
    lin = _conv_matrix(model.get_layer("linear_conv").kernel.numpy())  # (6, 360)
    np.testing.assert_allclose(lin @ lin.T, np.eye(6), atol=1e-5)
    head = model.get_layer("head").kernel.numpy().T.astype(np.float64)  # (4, 6)
    np.testing.assert_allclose(head @ head.T, np.eye(4), atol=1e-5)
    for name, bias in biases.items():
        np.testing.assert_array_equal(model.get_layer(name).bias.numpy(), bias)
    for a, b in zip(bn_before, model.get_layer("bn").get_weights()):
        np.testing.assert_array_equal(a, b)

    orthp(global_model)  # default: the authors' one gain, sqrt(2) of the ReLUs, everywhere
    lin = _conv_matrix(global_model.get_layer("linear_conv").kernel.numpy())
    np.testing.assert_allclose(lin @ lin.T, 2.0 * np.eye(6), atol=1e-5)
    head = global_model.get_layer("head").kernel.numpy().T.astype(np.float64)
    np.testing.assert_allclose(head @ head.T, 2.0 * np.eye(4), atol=1e-5)


def test_orthp_one_gain_needs_one_activation_gain():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(5, activation="relu", name="r")(inputs)
    h = keras.layers.Dense(5, activation="tanh", name="t")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
    with pytest.raises(InvalidArgumentError, match=r"different gains \(1\.414: r; 1\.667: t\)"):
        orthp(model)
    orthp(model, gain="per_layer")
    t = model.get_layer("t").kernel.numpy()
    np.testing.assert_allclose(t.T @ t, (5.0 / 3.0) ** 2 * np.eye(5), atol=1e-4)
    with pytest.raises(InvalidArgumentError, match="per_layer"):
        orthp(model, gain="global")


def test_orthp_uses_pytorch_kernel_layout_for_tall_conv_kernels():
    # For a tall matrix the Q of QR depends on the column order; it must be (in, kh, kw).
    keras.utils.set_random_seed(1)
    layer = keras.layers.Conv2D(30, 2)
    model = keras.Sequential([keras.Input((5, 5, 3)), layer])
    w = _conv_matrix(layer.kernel.numpy())  # (30, 12)
    q, r = np.linalg.qr(w)
    expected = q * np.sign(np.diag(r))

    orthp(model)

    np.testing.assert_allclose(_conv_matrix(layer.kernel.numpy()), expected, atol=1e-6)


def test_orthp_handles_depthwise_separable_and_nested_models():
    keras.utils.set_random_seed(2)
    inner = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(6, name="inner_dense")], name="inner"
    )
    img = keras.Input((9, 9, 4))
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(img)
    h = keras.layers.SeparableConv2D(6, 3, name="sep")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(img, inner(h))

    orthp(model)

    dw = model.get_layer("dw").depthwise_kernel.numpy()  # (3, 3, 4, 2) -> (8, 9)
    dw_matrix = np.transpose(dw, (2, 3, 0, 1)).reshape(8, 9).astype(np.float64)
    np.testing.assert_allclose(dw_matrix @ dw_matrix.T, np.eye(8), atol=1e-5)
    sep = model.get_layer("sep")
    sep_dw = np.transpose(sep.depthwise_kernel.numpy(), (2, 3, 0, 1)).reshape(8, 9)
    np.testing.assert_allclose(sep_dw @ sep_dw.T, np.eye(8), atol=1e-5)
    pw = _conv_matrix(sep.pointwise_kernel.numpy())  # (6, 8)
    np.testing.assert_allclose(pw @ pw.T, np.eye(6), atol=1e-5)
    w = inner.get_layer("inner_dense").kernel.numpy()
    np.testing.assert_allclose(w @ w.T, np.eye(6), atol=1e-5)


def test_orthp_gain_overrides():
    model = make_mlp((10, 20, 5), activation="relu", seed=3)

    orthp(model, gain={"dense_1": 3.0})
    w0 = model.get_layer("dense_0").kernel.numpy()  # (10, 20): in < out
    w1 = model.get_layer("dense_1").kernel.numpy()
    np.testing.assert_allclose(w0 @ w0.T, 2.0 * np.eye(10), atol=1e-5)
    np.testing.assert_allclose(w1.T @ w1, 9.0 * np.eye(5), atol=1e-4)

    orthp(model, gain=0.5)
    w0 = model.get_layer("dense_0").kernel.numpy()
    np.testing.assert_allclose(w0 @ w0.T, 0.25 * np.eye(10), atol=1e-6)


def test_orthp_rejects_bad_gains_and_models_without_kernels():
    model = make_mlp((10, 20, 5), seed=3)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(InvalidArgumentError, match="does not re-initialise.*'nope'"):
        orthp(model, gain={"nope": 1.0})
    for a, b in zip(before, model.get_weights()):  # nothing was changed
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InvalidArgumentError, match="gain"):
        orthp(model, gain=-1.0)
    with pytest.raises(UnsupportedModelError, match="no Dense/Conv kernel"):
        orthp(keras.Sequential([keras.Input((3,)), keras.layers.ReLU()]))
    odd = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, activation="exponential")])
    with pytest.raises(InvalidArgumentError, match="exponential"):
        orthp(odd)


def test_activation_gain_table():
    assert activation_gain(None) == 1.0
    assert activation_gain("linear") == 1.0
    assert activation_gain("relu") == pytest.approx(math.sqrt(2.0))
    assert activation_gain(keras.activations.relu) == pytest.approx(math.sqrt(2.0))
    assert activation_gain("tanh") == pytest.approx(5.0 / 3.0)
    assert activation_gain(keras.layers.LeakyReLU(alpha=0.1)) == pytest.approx(
        math.sqrt(2.0 / 1.01)
    )
    assert activation_gain(keras.layers.Activation("relu")) == pytest.approx(math.sqrt(2.0))
