"""Telling tf_keras from Keras 3, the supported Keras 3 range, and the Keras 3 internals read.

Each ``keras3_*`` helper of :mod:`tfprune.compat` is pinned here, so a Keras 3 release that
changes what it reads fails in one place.
"""

from __future__ import annotations

import configparser
import copy
import pathlib

import numpy as np
import pytest

from tfprune import compat
from tfprune.compat import keras
from tfprune.errors import UnsupportedModelError

K3 = compat.keras3()
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _k3_model():
    x = K3.Input((6, 6, 3), name="x")
    a = K3.layers.Conv2D(4, 3, padding="same", name="a")(x)
    b = K3.layers.Conv2D(4, 1, name="b")(x)
    y = a + b
    z = K3.ops.add(y, 1.0)
    return K3.Model(x, z, name="m")


def test_flavour_is_read_from_the_object():
    m3 = _k3_model()
    m2 = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert compat.flavour_of(m3) == compat.KERAS3
    assert compat.flavour_of(m3.layers[1]) == compat.KERAS3
    assert compat.flavour_of(m3.outputs[0]) == compat.KERAS3
    assert compat.flavour_of(m2) == compat.TF_KERAS
    assert compat.flavour_of(m2.layers[0]) == compat.TF_KERAS
    assert compat.flavour_of(np.zeros(2)) is None

    class Mine(K3.layers.Dense):
        pass

    assert compat.flavour_of(Mine(2)) == compat.KERAS3


def test_keras3_version_range_matches_setup_cfg():
    compat.check_keras3_version(K3.__version__)  # the installed one is supported
    for bad in ("3.11.2", "4.0.0", "2.15.0"):
        with pytest.raises(UnsupportedModelError, match=rf"found keras {bad}.*pip install"):
            compat.check_keras3_version(bad)
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    low, high = compat.KERAS3_VERSIONS
    pin = f"keras>={low[0]}.{low[1]},<{high[0]}"
    assert pin in cfg["options"]["install_requires"].split()


def test_graph_helpers_read_the_keras3_functional_graph():
    model = _k3_model()
    graph = compat.keras3_functional_graph(model)
    assert graph is model
    calls = compat.keras3_graph_calls(graph)
    names = [c.operation.name for c in calls]
    assert set(names[:2]) == {"a", "b"} and len(names) == 4  # the input node is left out
    add_op = compat.keras3_producer(model.outputs[0])
    assert type(add_op) is compat.keras3_op_class("Add")  # keras.ops.add and x + y alike
    assert calls[-1].operation is add_op and calls[-1].outputs == list(model.outputs)
    assert calls[-1].args[1] == 1.0 and calls[-1].kwargs == {} and len(calls[-1].inputs) == 1
    plus = calls[-2]  # a + b
    assert type(plus.operation) is type(add_op) and len(plus.inputs) == 2
    assert compat.keras3_op_class("Relu") is not None
    assert compat.keras3_op_class("NoSuchOp") is None
    assert {la.name for la in compat.keras3_sublayers(model)} == {"x", "a", "b"}


def test_a_sequential_model_holds_its_graph_once_built():
    built = K3.Sequential([K3.Input((3,)), K3.layers.Dense(2, name="d")])
    graph = compat.keras3_functional_graph(built)
    assert graph is not None and [op.name for op in graph.operations][-1] == "d"
    assert compat.keras3_functional_graph(K3.Sequential([K3.layers.Dense(2)])) is None


def test_stock_class_is_the_first_keras3_class():
    class Mine(K3.layers.Conv2D):
        pass

    assert compat.keras3_stock_class(Mine(2, 1)) is K3.layers.Conv2D
    assert compat.keras3_stock_class(K3.layers.ReLU()) is K3.layers.ReLU
    assert compat.keras3_stock_class(object()) is None


def test_require_tf_keras_names_the_flavour_and_what_works():
    compat.require_tf_keras(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), "x")
    with pytest.raises(UnsupportedModelError, match=r"Keras 3 model.*explain.*tf_keras as keras"):
        compat.require_tf_keras(_k3_model(), "tfprune.prune_filters")


def test_rebuild_helpers_read_structures_and_copy_raw_ops():
    x = K3.Input((3,), name="x")
    y = K3.Input((3,), name="y")
    out = K3.ops.reshape(x + y, (-1, 3, 1))
    model = K3.Model({"x": x, "y": y}, [out], name="structs")
    assert compat.keras3_nested_inputs(model) == {"x": x, "y": y}
    assert compat.keras3_nested_outputs(model) == [out]
    reshape = compat.keras3_producer(out)
    assert not compat.keras3_is_layer(reshape) and compat.keras3_is_layer(K3.layers.ReLU())
    copy = compat.keras3_copy_op(reshape)
    assert type(copy) is type(reshape) and copy is not reshape
    assert tuple(copy.newshape) == (-1, 3, 1)


def test_keras3_attention_head_hook_sees_each_heads_output_before_the_projection():
    seen = []

    class Zeroing(compat.keras3_attention_with_head_hook()):
        def transform_projections(self, query, key, value):
            seen.append(tuple(tuple(t.shape) for t in (query, key, value)))
            return query, key, value

        def transform_heads(self, attention_output):
            seen.append(tuple(attention_output.shape))
            return attention_output * K3.ops.convert_to_tensor([0.0, 1.0])[:, None]

    x = np.random.default_rng(0).standard_normal((2, 5, 6)).astype("float32")
    stock = K3.layers.MultiHeadAttention(2, 3, value_dim=4)
    hooked = Zeroing(2, 3, value_dim=4)
    stock(x, x), hooked(x, x)
    hooked.set_weights(stock.get_weights())
    # (batch, positions, heads, key_dim / value_dim) in and out of attention.
    assert seen[-2] == ((2, 5, 2, 3), (2, 5, 2, 3), (2, 5, 2, 4))
    assert seen[-1] == (2, 5, 2, 4)
    # Head 0 zeroed: what the stock layer gives with head 0's output-projection rows zeroed.
    weights = stock.get_weights()
    out_kernel = stock._output_dense.kernel  # noqa: SLF001 - find it by identity, not position
    index = next(i for i, v in enumerate(stock.weights) if v is out_kernel)
    weights[index] = weights[index] * np.array([0.0, 1.0])[:, None, None]
    stock.set_weights(weights)
    np.testing.assert_allclose(np.asarray(hooked(x, x)), np.asarray(stock(x, x)), atol=1e-6)


def _dense_pair():
    x = K3.Input((3,), name="x")
    h = K3.layers.Dense(4, kernel_regularizer=K3.regularizers.L2(0.1), name="first")(x)
    return K3.Model(x, K3.layers.Dense(2, name="second")(h), name="dense_pair")


def test_keras3_penalty_joins_the_loss_through_a_regularizer_and_leaves_it_as_it_was():
    model = _dense_pair()
    first = model.get_layer("first").kernel
    own = first.regularizer
    coef = compat.tf.Variable(3.0)

    def penalty():
        return coef * compat.tf.reduce_sum(compat.tf.square(model.get_layer("second").kernel))

    l2 = 0.1 * float(np.sum(np.square(first.numpy())))
    sq = float(np.sum(np.square(model.get_layer("second").kernel.numpy())))
    compat.keras3_attach_penalty(model, penalty)
    assert isinstance(first.regularizer, compat.Keras3Penalties)
    assert first.regularizer.original is own
    np.testing.assert_allclose(float(sum(model.losses)), l2 + 3.0 * sq, rtol=1e-5)
    coef.assign(5.0)  # read at every evaluation
    np.testing.assert_allclose(float(sum(model.losses)), l2 + 5.0 * sq, rtol=1e-5)
    assert compat.keras3_detach_penalty(model, penalty)
    assert first.regularizer is own
    np.testing.assert_allclose(float(sum(model.losses)), l2, rtol=1e-5)
    assert not compat.keras3_detach_penalty(model, penalty)


def test_keras3_penalty_is_trained_and_reported_by_fit_and_evaluate():
    from tfprune.regularization.state import attach_loss, detach_loss

    model = _dense_pair()
    model.compile(K3.optimizers.SGD(0.1), "mse", jit_compile=False)
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    plain = model.evaluate(x, y, verbose=0)  # traces test_function without the penalty
    second = model.get_layer("second").kernel

    def penalty():
        return 2.5 * compat.tf.reduce_sum(compat.tf.square(second))

    attach_loss(model, penalty)
    with_penalty = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(with_penalty - plain, float(penalty()), rtol=1e-5)
    before = second.numpy()
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], with_penalty, rtol=1e-5)
    # the penalty's gradient 5 w took part in the step (lr 0.1): the weights about halved
    assert np.abs(second.numpy()).sum() < 0.6 * np.abs(before).sum()
    assert detach_loss(model, penalty)
    np.testing.assert_allclose(
        model.evaluate(x, y, verbose=0),
        K3.losses.mean_squared_error(y, model(x)).numpy().mean() + float(sum(model.losses)),
        rtol=1e-5,
    )
    assert len(model.losses) == 1  # the first layer's own L2 only


def test_keras3_penalty_moves_off_a_variable_whose_layer_was_frozen():
    import tfprune

    model = _dense_pair()
    first, second = model.get_layer("first"), model.get_layer("second")
    own = first.kernel.regularizer
    kernorth = tfprune.KernelOrthogonality(1.0)
    kernorth.set_model(model)  # as fit does: the penalty rides on first/kernel
    assert isinstance(first.kernel.regularizer, compat.Keras3Penalties)
    want = float(kernorth.penalty())
    first.trainable = False  # no longer in model.trainable_weights: its regularizer not read
    assert model.losses == []
    kernorth.set_model(model)  # the next fit: the penalty moves to a trainable variable
    assert first.kernel.regularizer is own
    assert isinstance(second.kernel.regularizer, compat.Keras3Penalties)
    np.testing.assert_allclose(float(sum(model.losses)), want, rtol=1e-6)
    assert not compat.keras3_attach_penalty(model, kernorth._loss_fn)  # already counted
    kernorth.on_train_end()
    assert model.losses == [] and second.kernel.regularizer is None


class _Held(compat.AutoTrackable):
    """Two variables by name, as tfprune's regularization state keeps them."""

    def __init__(self, fill: float) -> None:
        self.variables = {
            "coef": compat.tf.Variable(np.full(3, fill, "float32")),
            "step": compat.tf.Variable(np.int64(fill)),
        }


def test_keras3_saveable_writes_and_reads_its_variables_by_name():
    held = compat.keras3_saveable(_Held)
    assert compat.keras3_saveable(_Held) is held  # made once
    saved = held(2.0)
    assert isinstance(saved, _Held) and isinstance(saved, compat.AutoTrackable)
    store: dict = {}  # a Keras 3 weights store reads and writes like a dict
    saved.save_own_variables(store)
    assert sorted(store) == ["coef", "step"]
    loaded = held(0.0)
    loaded.load_own_variables(store)
    np.testing.assert_array_equal(loaded.variables["coef"].numpy(), [2.0, 2.0, 2.0])
    assert int(loaded.variables["step"].numpy()) == 2
    loaded.load_own_variables({})  # a file saved before the state existed: unchanged
    assert int(loaded.variables["step"].numpy()) == 2
    copied = copy.deepcopy(loaded)  # copies as ``cls`` does (not as a Keras model pickles)
    assert type(copied) is held and int(copied.variables["step"].numpy()) == 2


def test_keras3_saveable_refuses_state_of_other_names_or_shapes():
    loaded = compat.keras3_saveable(_Held)(0.0)
    with pytest.raises(UnsupportedModelError, match="'coef'.*same callback settings"):
        loaded.load_own_variables({"coef": np.zeros(4, "float32"), "step": np.int64(1)})
    with pytest.raises(UnsupportedModelError, match=r"\['coef', 'other'\]"):
        loaded.load_own_variables({"coef": np.zeros(3, "float32"), "other": np.int64(1)})
    assert int(loaded.variables["step"].numpy()) == 0  # nothing assigned


def test_keras3_weights_files_carry_a_saveable_attribute_of_the_model(tmp_path):
    held = compat.keras3_saveable(_Held)
    saved = _dense_pair()
    saved._tfprune_held = held(2.0)
    saved.save_weights(str(tmp_path / "w.weights.h5"))
    loaded = _dense_pair()
    loaded._tfprune_held = held(0.0)
    loaded.load_weights(str(tmp_path / "w.weights.h5"))
    np.testing.assert_array_equal(loaded._tfprune_held.variables["coef"].numpy(), [2.0] * 3)
    np.testing.assert_array_equal(loaded.get_layer("first").kernel, saved.get_layer("first").kernel)
    _dense_pair().load_weights(str(tmp_path / "w.weights.h5"))  # a model without it: ignored

    class Wider(_Held):
        def __init__(self, fill: float) -> None:
            super().__init__(fill)
            self.variables["coef"] = compat.tf.Variable(np.zeros(5, "float32"))

    other = _dense_pair()
    other._tfprune_held = compat.keras3_saveable(Wider)(0.0)
    with pytest.raises(ValueError, match="'coef' in the weights file has shape"):
        other.load_weights(str(tmp_path / "w.weights.h5"))
