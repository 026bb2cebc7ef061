"""The rule API: one place per layer type, usable for a layer tfprune has never seen.

A user registers rules for two custom layers (a producer with its own kernel, and a per-channel
scale) and tfprune prunes, trains, strips and exports a model made of them, asking only the
rules for couplings, kernels, FLOPs and masks.
"""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune.compat import keras, tf
from tfprune.errors import InvalidArgumentError, UnsupportedModelError
from tfprune.graph import ChannelContext, LayerRule, register_rule, unregister_rule
from tfprune.graph.rules import rule_for
from tfprune.importance import channel_rows

L = keras.layers


class UserDense(L.Layer):
    """A dense layer written from scratch: ``x @ w + b``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(int(input_shape[-1]), self.units))
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="random_normal")

    def call(self, x):
        return tf.matmul(x, self.w) + self.b

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class UserScale(L.Layer):
    """A learned per-channel scale."""

    def build(self, input_shape):
        self.s = self.add_weight(name="s", shape=(int(input_shape[-1]),), initializer="ones")

    def call(self, x):
        return x * self.s


class UserDenseRule(LayerRule):
    """Consumes input channels, produces ``units``; kernel ``w`` is (in, out)."""

    layer_types = (UserDense,)
    kernel_weight_names = ("w",)

    def connect(self, ctx: ChannelContext, call) -> None:
        x, y = call.inputs[0], call.outputs[0]
        ctx.identity(ctx.tensor_dim(x), ctx.layer_dim(call.layer, "in", x.shape[-1]))
        ctx.identity(ctx.tensor_dim(y), ctx.layer_dim(call.layer, "out", y.shape[-1]))

    def weight_axes(self, layer):
        return {"w": {"in": 0, "out": 1}, "b": {"out": 0}}

    def new_config(self, layer, config, kept):
        return dict(config, units=len(kept["out"])) if "out" in kept else config

    def kernel_layouts(self, layer):
        return [("w", "dense")]

    def macs(self, layer, ins, outs):
        return int(layer.w.shape[0]) * int(layer.w.shape[1])

    def filters(self, layer):
        return layer.units

    def input_mask(self, layer):
        return "tensor"


class UserScaleRule(LayerRule):
    """Per channel: input, scale and output channels are one."""

    layer_types = (UserScale,)

    def connect(self, ctx: ChannelContext, call) -> None:
        ctx.per_channel(call.layer, call.inputs[0], call.outputs[0])

    def weight_axes(self, layer):
        return {"s": {"ch": 0}}

    def macs(self, layer, ins, outs):
        return 0


@pytest.fixture
def user_rules():
    rules = [register_rule(UserDenseRule()), register_rule(UserScaleRule())]
    yield rules
    for rule in rules:
        unregister_rule(rule)


def _model():
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    h = UserDense(10, name="user_dense")(x)
    h = UserScale(name="user_scale")(h)
    h = L.ReLU()(h)
    return keras.Model(x, L.Dense(3, name="head")(h))


def test_registered_rules_prune_train_strip_and_export_a_user_layer(user_rules, tmp_path):
    model = _model()
    assert isinstance(rule_for(model.get_layer("user_dense")), UserDenseRule)
    flops = tfprune.count_flops(model)
    assert flops.per_layer["user_dense"] == 6 * 10 and not flops.is_lower_bound
    group = next(
        g for g in tfprune.channel_groups(model) if [m.path for m in g.producers] == ["user_dense"]
    )
    assert group.prunable and group.n_units == 10
    # Importance reads the kernel the rule names, laid out by the rule: one row per filter.
    (rows,) = channel_rows(group.producers[0])
    assert rows.shape == (10, 6)

    masked = tfprune.prune_filters(model, 0.5)
    masked.compile("sgd", "mse")
    x = np.random.default_rng(0).standard_normal((16, 6)).astype("float32")
    masked.fit(x, np.zeros((16, 3), "float32"), epochs=1, verbose=0)
    small = tfprune.strip_filters(masked)
    assert small.get_layer("user_dense").units == 5
    assert tuple(small.get_layer("user_scale").s.shape) == (5,)
    np.testing.assert_allclose(small(x).numpy(), masked(x).numpy(), rtol=1e-5, atol=1e-6)
    assert tfprune.count_flops(small).per_layer["user_dense"] == 6 * 5

    path = tfprune.export_saved_model(small, tmp_path / "export")
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](**{small.inputs[0].name: tf.constant(x)})
    np.testing.assert_allclose(next(iter(out.values())).numpy(), small(x).numpy(), atol=1e-5)


def test_without_its_rule_the_user_layer_is_not_pruned_as_if_it_were_stock():
    model = _model()
    assert type(rule_for(model.get_layer("user_dense"))) is LayerRule
    producers = [m.path for g in tfprune.channel_groups(model) if g.prunable for m in g.producers]
    assert "user_dense" not in producers


def test_builtin_rules_answer_layout_cost_and_mask_questions():
    conv = L.Conv2D(4, 3)
    conv.build((None, 8, 8, 2))
    rule = rule_for(conv)
    assert rule.kernel_names(conv) == ("kernel",)
    assert rule.kernel_layouts(conv) == [("kernel", "conv")]
    assert rule.kernel_variables(conv) == [(conv.kernel, "conv")]
    assert rule.input_mask(conv) == "kernel" and rule.self_mask_role(conv) is None
    assert rule.macs(conv, [(None, 8, 8, 2)], [(None, 6, 6, 4)]) == 36 * 3 * 3 * 2 * 4
    lstm = L.LSTM(3)
    lstm.build((None, 5, 2))
    rule = rule_for(lstm)
    assert rule.self_mask_role(lstm) == "out" and rule.input_mask(lstm) == "tensor"
    assert set(rule.kernel_names(lstm)) == {"kernel", "recurrent_kernel"}
    weights = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in lstm.weights}
    rows = rule.channel_rows(lstm, "out", weights)
    assert [r.shape for r in rows] == [(3, 2 * 4), (3, 3 * 4), (3, 4)]  # 4 gates per unit
    with pytest.raises(InvalidArgumentError, match="LayerRule"):
        register_rule(object())


class UserRMSNorm(L.Layer):
    """Divides by the root mean square over the channels: mixes them all."""

    def call(self, x):
        return x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + 1e-6)


class UserRMSNormRule(LayerRule):
    """Per channel, but its statistics mix the channels: it must mask them itself."""

    layer_types = (UserRMSNorm,)

    def connect(self, ctx: ChannelContext, call) -> None:
        ctx.per_channel(call.layer, call.inputs[0], call.outputs[0])

    def macs(self, layer, ins, outs):
        return 0

    def self_mask_role(self, layer):
        return "ch"


def test_a_layer_that_must_mask_itself_without_a_masked_twin_is_refused():
    rule = register_rule(UserRMSNormRule())
    try:
        x = keras.Input((6,))
        h = L.Dense(8, name="up")(x)
        h = UserRMSNorm(name="rms")(h)
        model = keras.Model(x, L.Dense(3, name="head")(h))
        with pytest.raises(UnsupportedModelError, match=r"'rms'.*no masked twin.*skip=\['up'\]"):
            tfprune.prune_filters(model, 0.5)
    finally:
        unregister_rule(rule)
