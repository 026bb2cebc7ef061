"""KernOrth and OrthConv: the penalty maths against numpy, training effect, config, strategy."""

from __future__ import annotations

import numpy as np
import pytest
from reg_helpers import LOSS, fixed_batches

import tfprune
from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.models.small_cnn import small_cnn
from tfprune.regularization import ConvOrthogonality, KernelOrthogonality


def _model(seed: int = 0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c3x3")(x)
    h = keras.layers.Conv2D(12, 1, activation="relu", name="c1x1")(h)
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(x, keras.layers.Dense(10, name="fc")(h))


def _torch_matrix(kernel: np.ndarray, kind: str) -> np.ndarray:
    if kind == "dense":
        return kernel.T
    if kind == "depthwise":  # (kh, kw, C, m) -> (C*m, kh*kw)
        return np.transpose(kernel, (2, 3, 0, 1)).reshape(-1, kernel.shape[0] * kernel.shape[1])
    return np.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)


def _kernorth_np(w: np.ndarray) -> float:
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return float(np.mean((gram - np.eye(gram.shape[0])) ** 2))


def _orthconv_np(kernel: np.ndarray, stride: int = 2, pad: int = 1) -> float:
    """The TPP code's deconv_orth_dist, written out with loops on the PyTorch layout."""
    w = np.transpose(kernel, (3, 2, 0, 1)).astype(np.float64)  # (out, in, kh, kw)
    o, _, kh, kw = w.shape
    x = np.pad(w, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (kh + 2 * pad - kh) // stride + 1
    ow = (kw + 2 * pad - kw) // stride + 1
    out = np.zeros((o, o, oh, ow))
    for a in range(o):
        for b in range(o):
            for y in range(oh):
                for z in range(ow):
                    patch = x[a, :, y * stride : y * stride + kh, z * stride : z * stride + kw]
                    out[a, b, y, z] = np.sum(patch * w[b])
    target = np.zeros_like(out)
    target[:, :, oh // 2, ow // 2] = np.eye(o)
    return float(np.sqrt(np.sum((out - target) ** 2)))


def test_kernorth_penalty_matches_numpy_on_every_kernel_kind():
    model = _model()
    reg = KernelOrthogonality(0.5)
    reg.set_model(model)
    kinds = {"c3x3": "conv", "c1x1": "conv", "dw": "depthwise", "fc": "dense"}
    assert [p for p, _, _ in reg.kernels] == list(kinds)
    expected = 0.0
    for name, kind in kinds.items():
        layer = model.get_layer(name)
        kernel = (layer.depthwise_kernel if kind == "depthwise" else layer.kernel).numpy()
        expected += _kernorth_np(_torch_matrix(kernel.astype(np.float64), kind))
    assert float(reg.penalty()) == pytest.approx(expected, rel=1e-5)
    assert float(model.losses[0]) == pytest.approx(0.5 * expected, rel=1e-5)


def test_orthconv_penalty_matches_the_reference_formula_and_falls_back_to_kernorth():
    model = _model()
    reg = ConvOrthogonality(1.0)
    reg.set_model(model)
    c3 = model.get_layer("c3x3").kernel.numpy()
    dw = model.get_layer("dw").depthwise_kernel.numpy()  # (3, 3, 12, 2): 24 one-channel filters
    dw_as_conv = dw.reshape(3, 3, 1, 24)
    rest = _kernorth_np(
        _torch_matrix(model.get_layer("c1x1").kernel.numpy(), "conv")
    ) + _kernorth_np(model.get_layer("fc").kernel.numpy().T)
    # default: each layer's own stride (1 here); stride=2: the TPP authors' call for all
    expected = _orthconv_np(c3, stride=1) + _orthconv_np(dw_as_conv, stride=1) + rest
    assert float(reg.penalty()) == pytest.approx(expected, rel=1e-5)
    tpp_style = ConvOrthogonality(1.0, stride=2)
    tpp_style.set_model(model)
    expected = _orthconv_np(c3, stride=2) + _orthconv_np(dw_as_conv, stride=2) + rest
    assert float(tpp_style.penalty()) == pytest.approx(expected, rel=1e-5)


def test_orthconv_is_zero_for_an_orthogonal_delta_kernel():
    kernel = np.zeros((3, 3, 4, 4), np.float32)
    kernel[1, 1] = np.eye(4)  # identity at the centre: an orthogonal convolution
    value = tfprune.regularization.orthogonality.conv_orthogonality_penalty(kernel, stride=1)
    assert float(value) == pytest.approx(0.0, abs=1e-5)
    kernel[1, 1, 0, 0] = 2.0
    value = tfprune.regularization.orthogonality.conv_orthogonality_penalty(kernel, stride=1)
    assert float(value) == pytest.approx(3.0, abs=1e-5)  # (2*2 - 1) at the centre


@pytest.mark.parametrize("cls", [KernelOrthogonality, ConvOrthogonality])
def test_training_with_the_penalty_makes_kernels_orthogonal_and_it_is_removed_after(cls):
    model = small_cnn(width=8, seed=0)
    model.compile(keras.optimizers.SGD(1e-2, momentum=0.9), LOSS)
    reg = cls(1.0, layers=["block_conv.*", "conv3"])
    reg.set_model(model)
    before = float(reg.penalty())
    h = model.fit(fixed_batches(), epochs=3, steps_per_epoch=20, callbacks=[reg], verbose=0)
    assert [p for p, _, _ in reg.kernels] == ["block_conv1", "block_conv2", "conv3"]
    assert h.history[f"{reg.log_prefix}/penalty"][-1] < 0.5 * before
    assert not model.losses  # removed when training ends
    with tf.GradientTape() as tape:
        loss = reg._loss()
    grads = tape.gradient(loss, [v for _, v, _ in reg.kernels])
    assert all(g is not None for g in grads)


def test_get_config_round_trips_and_runs_under_mirrored_strategy(mirrored_strategy):
    reg = ConvOrthogonality(0.3, stride=1, padding=2, layers=["conv.*"], skip=["conv0"])
    config = reg.get_config()
    assert ConvOrthogonality.from_config(config).get_config() == config
    again = keras.utils.deserialize_keras_object(keras.utils.serialize_keras_object(reg))
    assert type(again) is ConvOrthogonality and again.get_config() == config
    k = KernelOrthogonality(0.2)
    assert KernelOrthogonality.from_config(k.get_config()).get_config() == k.get_config()
    with mirrored_strategy.scope():
        model = small_cnn(width=8, seed=0)
        model.compile(keras.optimizers.SGD(1e-2), LOSS)
    h = model.fit(fixed_batches(), epochs=1, steps_per_epoch=4, callbacks=[k], verbose=0)
    assert np.isfinite(h.history["kernorth/penalty"][-1])


def test_bad_arguments_and_models_without_kernels():
    with pytest.raises(InvalidArgumentError, match="weight"):
        KernelOrthogonality(0.0)
    with pytest.raises(InvalidArgumentError, match="stride"):
        ConvOrthogonality(stride=0)
    with pytest.raises(InvalidArgumentError, match="regular expression"):
        KernelOrthogonality(layers=["("])
    with pytest.raises(UnsupportedModelError, match="no layer matching"):
        KernelOrthogonality(layers=["nope"]).set_model(small_cnn(width=4, seed=0))
