"""Teach tfprune a layer it does not know: a learned per-channel scale.

    python examples/custom_layer_rule.py

A custom layer that computes with its own weights blocks the channels it touches (tfprune
never guesses what it does). A :class:`tfprune.LayerRule` says how its channels are coupled
and how its weights are cut; registered, the layer prunes like a built-in one.
"""

import numpy as np

import tfprune
from tfprune.compat import keras, tf
from tfprune.graph import ChannelContext


class ChannelScale(keras.layers.Layer):
    """Multiplies every channel by a learned factor."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            name="scale", shape=(int(input_shape[-1]),), initializer="ones"
        )

    def call(self, x):
        return x * self.scale


class ChannelScaleRule(tfprune.LayerRule):
    """Channel i of the input, of ``scale`` and of the output are one channel."""

    layer_types = (ChannelScale,)

    def connect(self, ctx: ChannelContext, call) -> None:
        ctx.per_channel(call.layer, call.inputs[0], call.outputs[0])

    def weight_axes(self, layer):
        return {"scale": {"ch": 0}}  # the weight's axis 0 is the channel axis

    def macs(self, layer, ins, outs):
        return 0  # an elementwise product: no multiply-accumulates counted


def build_model() -> keras.Model:
    """A small CNN with a ChannelScale after its first convolution."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv1")(inputs)
    x = ChannelScale(name="scale1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(32, 3, padding="same", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(x))


def main() -> None:
    """Explain without and with the rule, then prune, strip and compare the outputs.

    tfprune analyses a model once, so the rule is registered before the model is built.
    """
    model = build_model()
    print(tfprune.explain(model))  # conv1's filters are blocked by scale1

    tfprune.register_rule(ChannelScaleRule())  # before the model is analysed
    model = build_model()
    print(tfprune.explain(model))  # now conv1 and scale1 prune together

    masked = tfprune.prune_filters(model, 0.5)
    small = tfprune.strip_filters(masked)
    x = tf.random.uniform((4, 16, 16, 3), seed=0)
    diff = np.max(np.abs(masked(x).numpy() - small(x).numpy()))
    print(f"scale1 keeps {small.get_layer('scale1').scale.shape[0]} of 16 channels")
    print(f"params: {model.count_params():,} -> {small.count_params():,}")
    print(f"largest difference between masked and stripped outputs: {diff:.2e}")


if __name__ == "__main__":
    main()
