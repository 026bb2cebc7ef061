"""What tfprune.compat's helpers read from tf_keras internals, pinned.

A tf_keras upgrade that changes them fails here, in one place, instead of deep inside graph
analysis or surgery.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from tfprune import compat
from tfprune.compat import keras, tf

L = keras.layers


def _model():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = L.Dense(3, name="shared")
    h = L.Add(name="add")([shared(a), shared(b)])
    out = L.Dense(2, name="head")(h)
    return keras.Model({"a": a, "b": b}, [out, h], name="m"), shared


def test_graph_helpers_see_the_functional_graph():
    model, shared = _model()
    nodes = compat.nodes_by_depth(model)
    names = [n.layer.name for n in nodes]
    assert names.index("shared") < names.index("add") < names.index("head")
    assert {"a", "b"} <= set(names[:2] + names[2:4])  # input nodes come first
    assert compat.producing_layer(model.outputs[0]).name == "head"
    assert compat.producing_layer(tf.constant(1.0)) is None
    assert isinstance(compat.nested_inputs(model), dict)
    assert set(compat.nested_inputs(model)) == {"a", "b"}
    assert isinstance(compat.nested_outputs(model), list) and len(compat.nested_outputs(model)) == 2
    assert len(compat.inbound_nodes(shared)) == 2  # called twice
    assert [n.outbound_layer.name for n in compat.outbound_nodes(shared)] == ["add", "add"]


def test_rename_layer_before_building_a_model():
    x = keras.Input((2,))
    y = x + 1.0  # a TF-op layer with an automatic name
    compat.rename_layer(compat.producing_layer(y), "plus_one")
    assert keras.Model(x, y).layers[-1].name == "plus_one"


def test_conv_base_class_is_the_base_of_every_convolution():
    for cls in (L.Conv1D, L.Conv2D, L.Conv3D, L.Conv2DTranspose, L.DepthwiseConv2D):
        assert issubclass(cls, compat.conv_base_class)
    assert not issubclass(L.Dense, compat.conv_base_class)


def test_remove_callable_losses_drops_only_the_matching_loss():
    model, _ = _model()
    keep, drop = (lambda: tf.constant(1.0)), (lambda: tf.constant(2.0))
    model.add_loss(keep)
    model.add_loss(drop)
    assert len(model.losses) == 2
    assert compat.remove_callable_losses(model, drop)
    assert [float(v) for v in model.losses] == [1.0]
    assert not compat.remove_callable_losses(model, drop)


def test_compiled_loss_and_metrics_are_built_before_the_first_step():
    model = keras.Sequential([keras.Input((4,)), L.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"])
    assert model.metrics == []  # tf_keras builds the trackers in the first step
    y_true = tf.zeros([1], tf.int64)
    compat.build_compiled_loss_and_metrics(model, model.outputs[0], y_true)
    assert [m.name for m in model.metrics] == ["loss", "accuracy"]
    # the sparse labels were seen: accuracy resolved to the sparse-categorical kind
    x, y = np.ones((4, 4), np.float32), np.array([0, 1, 2, 0])
    model.fit(x, y, verbose=0)
    assert [m.name for m in model.metrics] == ["loss", "accuracy"]
    acc = model.evaluate(x, y, verbose=0)[1]
    assert acc == np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y)


def test_auto_trackable_attributes_travel_with_checkpoints(tmp_path):
    state = compat.AutoTrackable()
    state.v = tf.Variable(3.0)
    path = tf.train.Checkpoint(state=state).save(str(tmp_path / "c"))
    other = compat.AutoTrackable()
    other.v = tf.Variable(0.0)
    tf.train.Checkpoint(state=other).restore(path).assert_consumed()
    assert float(other.v.numpy()) == 3.0


def test_layer_private_helpers_and_version_guard():
    layer = L.Dense(2)
    layer.build((None, 3))
    assert {v.name.split("/")[-1] for v in compat.own_weights(layer)} == {"kernel:0", "bias:0"}
    assert compat.expects_training_arg(L.Dropout(0.5)) and not compat.expects_training_arg(layer)
    assert keras.__version__.startswith("2.")
    assert np.isfinite(float(tf.reduce_sum(layer.kernel)))


def _environment_changes(code: str) -> str:
    """Run ``code`` (which fills ``before``) in a fresh Python; the variables it changed after."""
    code += (
        "keys = set(os.environ) | set(before)\n"
        "print(sorted(k for k in keys if os.environ.get(k) != before.get(k)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()[-1]


def test_tfprune_sets_no_environment_variable_and_gets_keras_2_without_one():
    # TensorFlow and TF-MOT set variables when imported (TF-MOT: TF_USE_LEGACY_KERAS);
    # importing tfprune after them must change nothing more.
    code = (
        "import os\n"
        "import tensorflow, tf_keras, tensorflow_model_optimization\n"
        "before = dict(os.environ)\n"
        "import tfprune\n"
        "assert tfprune.compat.keras.__name__.startswith('tf_keras'), tfprune.compat.keras\n"
    )
    assert _environment_changes(code) == "[]"


def test_importing_tfprune_leaves_tf_keras_as_keras_3_and_tfmot_unimported():
    # Without TF-MOT imported, tf.keras stays Keras 3; using TF-MOT through tfprune later
    # (a schedule saved in a policy) changes neither tf.keras nor the environment.
    code = (
        "import os, sys\n"
        "import tensorflow as tf\n"
        "before = dict(os.environ)\n"
        "import tfprune\n"
        "assert 'tensorflow_model_optimization' not in sys.modules\n"
        "assert tf.keras.layers.Dense.__module__.startswith('keras.src'), tf.keras.layers.Dense\n"
        "config = {'class_name': 'ConstantSparsity', 'config': {'target_sparsity': 0.5, "
        "'begin_step': 0}}\n"
        "policy = tfprune.PruningPolicy.from_config({'sparsity': config})\n"
        "assert type(policy.sparsity).__name__ == 'ConstantSparsity', policy.sparsity\n"
        "assert tfprune.compat.tfmot_pruning_schedule_class() is not None\n"
        "assert tf.keras.layers.Dense.__module__.startswith('keras.src')\n"
    )
    assert _environment_changes(code) == "[]"


def test_attention_head_hook_sees_each_heads_output_before_the_projection():
    seen = []

    class Zeroing(compat.AttentionWithHeadHook):
        def transform_projections(self, query, key, value):
            seen.append(tuple(t.shape for t in (query, key, value)))
            return query, key, value

        def transform_heads(self, attention_output):
            seen.append(tuple(attention_output.shape))
            return attention_output * tf.constant([0.0, 1.0])[:, None]

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).standard_normal((2, 5, 6)).astype("float32")
    stock = L.MultiHeadAttention(2, 3, value_dim=4)
    hooked = Zeroing(2, 3, value_dim=4)
    stock(x, x), hooked(x, x)
    hooked.set_weights(stock.get_weights())
    # (batch, positions, heads, key_dim / value_dim) in and out of attention.
    assert seen[-2] == ((2, 5, 2, 3), (2, 5, 2, 3), (2, 5, 2, 4))
    assert seen[-1] == (2, 5, 2, 4)
    # Head 0 zeroed: what the stock layer gives with head 0's output-projection rows zeroed.
    weights = stock.get_weights()
    weights[6] = weights[6] * np.array([0.0, 1.0])[:, None, None]
    stock.set_weights(weights)
    np.testing.assert_allclose(hooked(x, x).numpy(), stock(x, x).numpy(), atol=1e-6)


def test_is_tf_op_layer_knows_only_tf_keras_own_op_layers():
    x = keras.Input((4, 3))
    plus, sliced = x + 1.0, x[..., :2]
    assert compat.is_tf_op_layer(compat.producing_layer(plus))
    assert compat.is_tf_op_layer(compat.producing_layer(sliced))
    assert not compat.is_tf_op_layer(L.ReLU())

    class TFOpLambda(L.Layer):
        symbol = "math.add"

    assert not compat.is_tf_op_layer(TFOpLambda())
