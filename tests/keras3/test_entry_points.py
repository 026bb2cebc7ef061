"""Every public entry point given a Keras 3 model works or says what works on Keras 3."""

from __future__ import annotations

import numpy as np
import pytest

import tfprune
from tfprune import compat
from tfprune.errors import NothingPrunedWarning, UnsupportedModelError

K3 = compat.keras3()


def _model():
    x = K3.Input((6, 6, 3), name="image")
    h = K3.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    h = K3.layers.BatchNormalization(name="bn")(h)
    h = K3.layers.GlobalAveragePooling2D(name="gap")(h)
    return K3.Model(x, K3.layers.Dense(2, name="head")(h), name="k3_model")


X = np.zeros((2, 6, 6, 3), "float32")


def _callback(callback, model):
    callback.set_model(model)
    callback.on_train_begin()
    return callback


def test_the_regularizers_and_recalibration_are_listed_as_supported_on_keras3():
    with pytest.raises(UnsupportedModelError) as err:
        compat.require_tf_keras(_model(), "something else")
    for name in (
        "recalibrate_batch_norm",
        "GrowingRegularization",
        "TrainabilityPreserving",
        "NetworkSlimming",
        "GroupLasso",
        "KernelOrthogonality",
        "ConvOrthogonality",
    ):
        assert name in compat.KERAS3_SUPPORTED and name in str(err.value)


def test_regularizers_and_batch_norm_recalibration_answer_on_keras3():
    assert tfprune.recalibrate_batch_norm(_model(), X) == 1
    for make in (
        tfprune.GrowingRegularization,
        tfprune.TrainabilityPreserving,
        tfprune.NetworkSlimming,
        tfprune.GroupLasso,
        tfprune.KernelOrthogonality,
        tfprune.ConvOrthogonality,
    ):
        masked = tfprune.prune_filters(_model(), 0.0)
        masked.compile(K3.optimizers.SGD(0.01), "mse")
        callback = _callback(make(), masked)
        assert len(masked.losses) == 1, make  # its penalty
        if make in (tfprune.GrowingRegularization, tfprune.TrainabilityPreserving):
            with pytest.warns(NothingPrunedWarning):  # schedule not done: penalty kept
                callback.on_train_end()
            assert len(masked.losses) == 1
        else:
            callback.on_train_end()
            assert masked.losses == []


def test_supported_entry_points_answer():
    model = _model()
    assert tfprune.explain(model).prunable_fraction > 0
    assert len(tfprune.channel_groups(model)) == 3
    assert tfprune.count_flops(model).total == 6 * 6 * 3 * 3 * 3 * 4 + 4 * 2
    assert tfprune.count_params(model).total == 3 * 3 * 3 * 4 + 4 + 4 * 4 + 4 * 2 + 2
    assert tfprune.param_reduction(model, model) == 0.0
    assert isinstance(tfprune.optimize_for_inference(model), K3.Model)
    same = tfprune.apply_plan(model, {"layers": {}})
    np.testing.assert_allclose(same(X), model(X))
    small = tfprune.shrink(model, 0.5)
    assert small.get_layer("conv").filters == 2 and tfprune.strip_filters(small).name == "k3_model"
    found = tfprune.find_sparsity_for_target(model, {"params_reduction": 1.3}, tolerance=0.05)
    assert 0 < found.sparsity < 1


def test_count_flops_options_it_cannot_honour_on_keras3_are_refused():
    for kwargs in ({"include_elementwise": True}, {"input_shapes": [(8, 8, 3)]}):
        with pytest.raises(UnsupportedModelError, match="Keras 3 model 'k3_model'.*defaults"):
            tfprune.count_flops(_model(), **kwargs)


def test_keras3_models_that_are_no_graph_are_refused_clearly():
    class Sub(K3.Model):
        def __init__(self):
            super().__init__()
            self.dense = K3.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    sub = Sub()
    sub(np.zeros((1, 3), "float32"))
    with pytest.raises(UnsupportedModelError, match="Keras 3 subclassed model.*functional"):
        tfprune.explain(sub)
    with pytest.raises(UnsupportedModelError, match="Sequential model that is not built"):
        tfprune.count_flops(K3.Sequential([K3.layers.Dense(2)]))
