"""The regularization-based pruning methods on Keras 3 models, each against its tf_keras twin.

Every method runs with the same settings on the same data (SGD, no shuffling) on the twin CNN
of ``keras3_twins`` in both flavours. Half of every layer's units are *planted*: all their
weights (filters, biases, BatchNorm gamma/beta, the consumers' input slices) are scaled down,
so each method must select exactly those. Checked: the selection, the masks, the reported
loss (which carries the penalty), the trained weights, and masked == stripped on Keras 3.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from keras3_twins import K3, TK, X, twins

import tfprune
from tfprune.graph.keras3 import is_keras3
from tfprune.regularization import SeparationWarning
from tfprune.regularization.state import detach_loss
from tfprune.regularization.terms import SLICE_KINDS, group_slices

STEPS = 4  # batches per epoch
DATA_X = np.random.default_rng(3).standard_normal((8 * STEPS, 8, 8, 3)).astype("float32")
DATA_Y = np.random.default_rng(4).integers(0, 3, 8 * STEPS)


def _planted(group) -> np.ndarray:
    """Every other unit of each segment of ``group``: half of each layer's filters."""
    out = np.zeros(group.n_units, bool)
    for segment in group.segments:
        out[np.asarray(segment)[1::2]] = True
    return out


def _masked(base, plant: bool = True):
    """``base`` with all-ones masks, the planted units' weights scaled down to a tenth."""
    masked = tfprune.prune_filters(base, 0.0)
    if plant:
        for g in tfprune.FilterPruner.for_model(masked).analysis.groups:
            if not g.prunable:
                continue
            planted = _planted(g)
            for s in group_slices(g, SLICE_KINDS):
                shape = [1] * len(s.variable.shape)
                shape[s.axis] = s.channels
                scale = np.where(planted[s.units], 0.1, 1.0).astype("float32").reshape(shape)
                s.variable.assign(s.variable.numpy() * scale)
    return masked


def _compiled(masked, jit_compile: bool | None = False):
    """SGD with momentum, logits cross-entropy; Keras 3 without XLA (same kernels as tf_keras)."""
    k = K3 if is_keras3(masked) else TK
    extra = {"jit_compile": jit_compile} if k is K3 and jit_compile is not None else {}
    masked.compile(
        k.optimizers.SGD(0.02, momentum=0.9),
        k.losses.SparseCategoricalCrossentropy(from_logits=True),
        **extra,
    )
    return masked


def _run(make_callback, epochs: int = 1, plant: bool = True):
    """The same callback and fit on both twins: {flavour: (masked model, callback, history)}."""
    out = {}
    for flavour, base in zip(("tf_keras", "keras3"), twins(), strict=True):
        masked = _compiled(_masked(base, plant))
        callback = make_callback()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # short schedules warn alike on both flavours
            history = masked.fit(
                DATA_X, DATA_Y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                callbacks=[callback],
            )  # fmt: skip
        out[flavour] = (masked, callback, history.history)
    return out


def _pruned(masked) -> dict[str, np.ndarray]:
    pruner = tfprune.FilterPruner.for_model(masked)
    pruned = pruner.current_pruned()
    return {g.name: pruned.get(g.id, np.zeros(g.n_units, bool)) for g in pruner.analysis.groups}


def _planted_by_group(masked) -> dict[str, np.ndarray]:
    groups = tfprune.FilterPruner.for_model(masked).analysis.groups
    return {g.name: _planted(g) for g in groups if g.prunable}


def _weight_pairs(tk, k3, trainable: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{layer/index: (tf_keras value, Keras 3 value)}`` of the twins' (trainable) weights."""
    out = {}
    for layer in (la for la in tk.layers if la.weights):
        twin = k3.get_layer(layer.name).weights
        assert len(twin) == len(layer.weights), layer.name
        for i, (a, b) in enumerate(zip(layer.weights, twin, strict=True)):
            if a.trainable or not trainable:
                out[f"{layer.name}/{i}"] = (a.numpy(), b.numpy())
    return out


def _assert_twins_agree(runs, rtol: float = 1e-5):
    (tk, _, tk_logs), (k3, _, k3_logs) = runs["tf_keras"], runs["keras3"]
    assert set(tk_logs) == set(k3_logs)
    for key, values in tk_logs.items():
        np.testing.assert_allclose(k3_logs[key], values, rtol=rtol, atol=1e-6, err_msg=key)
    # trainable weights only: BatchNormalization's moving variance differs between the
    # flavours (tf_keras' fused kernel averages the unbiased batch variance, Keras 3 the biased)
    for key, (want, got) in _weight_pairs(tk, k3, trainable=True).items():
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=key)
    tk_pruned, k3_pruned = _pruned(tk), _pruned(k3)
    assert tk_pruned.keys() == k3_pruned.keys()
    for name, units in tk_pruned.items():
        np.testing.assert_array_equal(k3_pruned[name], units, err_msg=name)


def _assert_masked_equals_stripped(masked):
    small = tfprune.strip_filters(masked)
    assert is_keras3(small) and small.count_params() < masked.count_params()
    want, got = np.asarray(masked(X)), np.asarray(small(X))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))


def _assert_planted_are_masked(masked, groups=None):
    pruned, planted = _pruned(masked), _planted_by_group(masked)
    for name in groups or planted:
        np.testing.assert_array_equal(pruned[name], planted[name], err_msg=name)


def test_twins_start_from_the_same_planted_weights():
    tk, k3 = (_masked(b) for b in twins())
    for key, (want, got) in _weight_pairs(tk, k3).items():
        np.testing.assert_array_equal(got, want, err_msg=key)
    assert _planted_by_group(k3).keys() == {"conv_a+conv_b+conv_c", "conv_d", "fc"}


@pytest.mark.parametrize("variant", ["greg1", "greg2"])
def test_greg_selects_and_masks_the_planted_filters_as_on_tf_keras(variant):
    # stop_training=False: the method finishes mid-fit and fit goes on to its last epoch, with
    # the penalty held until training ends, as on tf_keras.
    runs = _run(
        lambda: tfprune.GrowingRegularization(
            0.5,
            variant=variant,
            delta=0.05,
            ceiling=0.2,
            update_every=1,
            stabilize_steps=2,
            pick_delta=0.01,
            pick_ceiling=0.02,
            stop_training=False,
        ),
        epochs=3,
    )
    _assert_twins_agree(runs)
    masked, greg, logs = runs["keras3"]
    tk_greg = runs["tf_keras"][1]
    assert greg.phase == "done" and len(logs["loss"]) == 3
    planted = _planted_by_group(masked)
    for name, units in greg.pruned_units().items():
        np.testing.assert_array_equal(units, np.flatnonzero(planted[name]), err_msg=name)
        np.testing.assert_array_equal(greg.penalties()[name], tk_greg.penalties()[name])
    # every group reached the ceiling (GReg-2 grows on from its uniform pick level)
    final = [logs[k][-1] for k in logs if k.endswith("/penalty")]
    assert len(final) == 3 and all(0.2 - 1e-6 <= p < 0.25 for p in final), final
    _assert_planted_are_masked(masked)
    assert masked.losses == []  # the penalty left with the end of training
    _assert_masked_equals_stripped(masked)


def test_tpp_selects_zeroes_and_masks_the_planted_filters_as_on_tf_keras():
    runs = _run(
        lambda: tfprune.TrainabilityPreserving(
            0.5, delta=0.1, ceiling=0.2, update_every=1, stabilize_steps=6, zero_out_interval=1
        ),
        epochs=3,
    )
    _assert_twins_agree(runs)
    masked, tpp, logs = runs["keras3"]
    assert tpp.phase == "done" and tpp.coefficient == pytest.approx(0.2)
    _assert_planted_are_masked(masked)
    # the planted filters (and their BN scale/shift) were zeroed during stabilization
    for g in tfprune.FilterPruner.for_model(masked).analysis.groups:
        planted = _planted(g) if g.prunable else np.zeros(g.n_units, bool)
        for s in group_slices(g, ("filter", "norm")):
            rows = np.moveaxis(s.variable.numpy(), s.axis, 0)
            assert not rows[planted[s.units]].any(), s.path
    assert masked.losses == []
    _assert_masked_equals_stripped(masked)


@pytest.mark.parametrize(
    "method",
    [
        lambda: tfprune.NetworkSlimming(0.5, strength=1e-2),
        lambda: tfprune.GroupLasso(0.5, strength=1e-2),
    ],
    ids=["slimming", "group_lasso"],
)
def test_train_end_methods_mask_the_planted_units_as_on_tf_keras(method):
    runs = _run(method, epochs=2)
    _assert_twins_agree(runs)
    masked, callback, logs = runs["keras3"]
    if isinstance(callback, tfprune.NetworkSlimming):
        # ranked by |gamma| where units have a BatchNormalization: conv_c's 6 have none
        _assert_planted_are_masked(masked, ["conv_d", "fc"])
        residual = "conv_a+conv_b+conv_c"
        pruned, planted = _pruned(masked)[residual], _planted_by_group(masked)[residual]
        np.testing.assert_array_equal(pruned[:8], planted[:8])
        assert logs["slimming/l1_gamma"][-1] < logs["slimming/l1_gamma"][0]
    else:
        _assert_planted_are_masked(masked)
        assert logs["group_lasso/l21"][-1] < logs["group_lasso/l21"][0]
    assert masked.losses == []
    _assert_masked_equals_stripped(masked)


@pytest.mark.parametrize(
    "method",
    [
        lambda: tfprune.KernelOrthogonality(0.1),
        lambda: tfprune.ConvOrthogonality(0.1, stride=2),
    ],
    ids=["kernorth", "orthconv"],
)
def test_orthogonality_regularizers_train_as_on_tf_keras(method):
    runs = _run(method, epochs=2, plant=False)
    _assert_twins_agree(runs)
    masked, callback, logs = runs["keras3"]
    penalty_key = f"{callback.log_prefix}/penalty"
    assert logs[penalty_key][-1] < logs[penalty_key][0]  # it pulled towards orthogonality
    # every conv/dense kernel is regularized, the Keras 3 depthwise kernel ("kernel") too
    paths = sorted(p for p, _, _ in callback.kernels)
    assert paths == sorted(p for p, _, _ in runs["tf_keras"][1].kernels)
    assert {"dw", "conv_a", "fc", "head"} <= {p.split("/")[-1] for p in paths}
    assert masked.losses == []


def test_orthogonality_refuses_quantized_keras3_kernels_by_name():
    _, k3 = twins()
    k3.get_layer("fc").quantize("int8")
    with pytest.raises(tfprune.errors.UnsupportedModelError, match=r"'fc'.*quantized.*skip"):
        tfprune.KernelOrthogonality(0.1).set_model(k3)
    callback = tfprune.KernelOrthogonality(0.1, skip=["fc"])
    callback.set_model(k3)
    assert "fc" not in {p for p, _, _ in callback.kernels}


def test_greg_trains_a_keras3_model_under_fit_and_strip_filters_shrinks_it():
    """Default compile (Keras 3 picks XLA or not), a tf.data pipeline, fit stops when done."""
    _, k3 = twins()
    masked = _compiled(tfprune.prune_filters(k3, 0.0), jit_compile=None)
    data = tfprune.compat.tf.data.Dataset.from_tensor_slices((DATA_X, DATA_Y)).batch(8)
    greg = tfprune.GrowingRegularization(
        0.5, delta=0.1, ceiling=0.3, update_every=1, stabilize_steps=3
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SeparationWarning)
        history = masked.fit(data, epochs=10, callbacks=[greg], verbose=0)
    assert greg.phase == "done"
    assert len(history.history["loss"]) == 2  # 6 steps: stopped in the second epoch
    assert masked.losses == [] and masked.train_function is None  # retraced without it
    small = tfprune.strip_filters(masked)
    assert small.count_params() < 0.6 * k3.count_params()
    want = np.asarray(masked(X))
    np.testing.assert_allclose(np.asarray(small(X)), want, atol=1e-5 * np.abs(want).max())
    pruned = _pruned(masked)
    for name, units in greg.pruned_units().items():
        assert units.size == pruned[name].size // 2  # half of each layer's filters
        np.testing.assert_array_equal(np.flatnonzero(pruned[name]), units, err_msg=name)


def test_greg_state_travels_with_a_keras3_checkpoint(tmp_path):
    """tf.train.Checkpoint(model=...) saves and restores the state of a Keras 3 model."""
    _, k3 = twins()
    masked = _compiled(_masked(k3))
    greg = tfprune.GrowingRegularization(0.5, delta=0.1, update_every=1, stabilize_steps=100)
    masked.fit(DATA_X, DATA_Y, batch_size=8, shuffle=False, verbose=0, callbacks=[greg])
    path = tfprune.compat.tf.train.Checkpoint(model=masked).save(str(tmp_path / "ckpt"))
    restored = _compiled(_masked(twins()[1], plant=False))
    tfprune.compat.tf.train.Checkpoint(model=restored).restore(path).expect_partial()
    again = tfprune.GrowingRegularization(0.5, delta=0.1, update_every=1, stabilize_steps=100)
    again.set_model(restored)
    assert again.phase == "grow"
    for name, coef in greg.penalties().items():
        np.testing.assert_array_equal(again.penalties()[name], coef)
        np.testing.assert_array_equal(again.pruned_units()[name], greg.pruned_units()[name])


def test_recalibrate_batch_norm_on_keras3_gives_the_running_average_of_the_batches():
    tk, k3 = twins()
    batches = [DATA_X[i : i + 8] for i in range(0, 24, 8)]
    assert tfprune.recalibrate_batch_norm(k3, iter(batches)) == 2
    assert tfprune.recalibrate_batch_norm(tk, iter(batches)) == 2
    bn = k3.get_layer("bn_a")
    assert bn.momentum == pytest.approx(0.99)  # put back
    inputs = K3.Model(k3.inputs, k3.get_layer("conv_a").output)
    acts = [np.asarray(inputs(b)) for b in batches]
    mean = np.mean([a.mean(axis=(0, 1, 2)) for a in acts], axis=0)
    var = np.mean([a.var(axis=(0, 1, 2)) for a in acts], axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-4)
    # tf_keras: the same mean; its fused kernel keeps the unbiased variance (n / (n - 1))
    tk_bn = tk.get_layer("bn_a")
    np.testing.assert_allclose(tk_bn.moving_mean.numpy(), bn.moving_mean.numpy(), atol=1e-5)
    n = 8 * 8 * 8
    np.testing.assert_allclose(tk_bn.moving_variance.numpy(), var * n / (n - 1), rtol=1e-4)


def _assert_reported_loss_adds_the_penalty_once(masked, greg, x, y) -> None:
    """The loss ``evaluate`` reports on ``x, y`` is the data loss plus GReg's penalty, once.

    The penalty, 0.5 * sum(coef * |filter|^2) over the producers' filters, is recomputed from
    the weights now. The schedule is not done, so the penalty is removed here to read the data
    loss alone.
    """
    coef = greg.penalties()
    penalty = 0.0
    for g in greg.groups:
        for s in greg.slices[g.id]:
            rows = np.moveaxis(s.variable.numpy(), s.axis, 0).reshape(s.channels, -1)
            penalty += 0.5 * float((coef[g.name][s.units] * (rows**2).sum(axis=1)).sum())
    reported = masked.evaluate(x, y, batch_size=16, verbose=0)
    assert detach_loss(masked, greg._loss_fn)
    data_loss = masked.evaluate(x, y, batch_size=16, verbose=0)
    assert penalty > 1.0
    np.testing.assert_allclose(reported - data_loss, penalty, rtol=1e-5)


def test_penalty_counts_once_under_a_mirrored_strategy(mirrored_strategy):
    """Keras 3 scales added losses per replica: the reported penalty is the penalty, once."""
    with mirrored_strategy.scope():
        masked = _compiled(_masked(twins()[1]))
    greg = tfprune.GrowingRegularization(0.5, delta=2.0, ceiling=100.0, update_every=1)
    x, y = DATA_X[:16], DATA_Y[:16]
    masked.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[greg])
    coef = greg.penalties()
    assert all(c.max() == pytest.approx(4.0) for c in coef.values())  # 2 steps, +2 each
    # once, not once per replica (x2) nor averaged away (x1/2)
    _assert_reported_loss_adds_the_penalty_once(masked, greg, x, y)


def test_penalty_joins_the_loss_of_a_float64_keras3_model():
    """A float64 model's loss is float64: the penalty joins it (it raised a TypeError)."""
    previous = K3.config.floatx(), K3.config.dtype_policy()
    K3.config.set_floatx("float64")
    K3.config.set_dtype_policy("float64")  # an earlier test may have set a float32 policy
    try:
        masked = _compiled(_masked(twins()[1]))
        assert masked.get_layer("conv_a").kernel.dtype == "float64"
        greg = tfprune.GrowingRegularization(0.5, delta=2.0, ceiling=100.0, update_every=1)
        x, y = DATA_X[:16], DATA_Y[:16]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # two steps set no mask
            masked.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[greg])
        assert [loss.dtype.name for loss in masked.losses] == ["float64"]
        _assert_reported_loss_adds_the_penalty_once(masked, greg, x, y)
    finally:
        K3.config.set_floatx(previous[0])
        K3.config.set_dtype_policy(previous[1])


def _greg() -> tfprune.GrowingRegularization:
    return tfprune.GrowingRegularization(0.5, delta=0.1, update_every=2, stabilize_steps=100)


def _fit_quietly(model, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the short schedule warns that no mask is set
        model.fit(DATA_X, DATA_Y, batch_size=8, shuffle=False, verbose=0, **kwargs)


def _assert_same_state(got, want) -> None:
    got, want = got.numpy(), want.numpy()
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_greg_state_travels_with_a_keras3_weights_file(tmp_path):
    """model.save_weights (.weights.h5) holds the state; load_weights after set_model reads it."""
    masked = _compiled(_masked(twins()[1]))
    greg = _greg()
    _fit_quietly(masked, callbacks=[greg])
    path = str(tmp_path / "m.weights.h5")
    masked.save_weights(path)
    restored = _compiled(_masked(twins()[1], plant=False))
    again = _greg()
    again.set_model(restored)  # creates the state, then the file fills it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the optimizer of `restored` is not built yet
        restored.load_weights(path)
    _assert_same_state(again.state, greg.state)
    assert again.phase == greg.phase == "grow"
    for name, units in greg.pruned_units().items():
        np.testing.assert_array_equal(again.pruned_units()[name], units, err_msg=name)


class _StopAtEpoch(K3.callbacks.Callback):
    """Interrupts fit as epoch ``epoch`` begins, like a preempted job."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def test_keras3_backup_and_restore_resumes_greg_with_the_same_penalties(tmp_path):
    """Interrupted after 1 of 2 epochs and resumed by BackupAndRestore = uninterrupted."""
    full = _compiled(_masked(twins()[1]))
    greg_full = _greg()
    _fit_quietly(full, epochs=2, callbacks=[greg_full])

    first = _compiled(_masked(twins()[1]))
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit_quietly(
            first, epochs=2, callbacks=[_greg(), K3.callbacks.BackupAndRestore(backup),
                                        _StopAtEpoch(1)],
        )  # fmt: skip
    resumed = _compiled(_masked(twins()[1], plant=False))  # everything comes from the backup
    greg = _greg()
    _fit_quietly(resumed, epochs=2, callbacks=[greg, K3.callbacks.BackupAndRestore(backup)])

    assert int(greg.state["updates"].numpy()) == int(greg_full.state["updates"].numpy()) > 2
    full_state, res_state = greg_full.state.numpy(), greg.state.numpy()
    assert set(full_state) == set(res_state)
    for key in full_state:  # penalties, selection, phase, step: exact; smoothed ratios: close
        rtol = 1e-2 if key.endswith("_hist") else 1e-6
        np.testing.assert_allclose(res_state[key], full_state[key], rtol=rtol, atol=1e-7)
    for a, b in zip(resumed.weights, full.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.path)


def test_keras3_files_with_and_without_tfprune_state_save_and_load(tmp_path):
    """No state: weights files as before. With state: .keras saves and loads the model."""
    plain = twins()[1]
    plain.save_weights(str(tmp_path / "plain.weights.h5"))
    other = twins()[1]
    for v in other.weights:
        v.assign(np.zeros(v.shape, v.dtype))
    other.load_weights(str(tmp_path / "plain.weights.h5"))
    np.testing.assert_array_equal(np.asarray(other(X)), np.asarray(plain(X)))

    masked = _compiled(_masked(twins()[1]))
    greg = _greg()
    _fit_quietly(masked, callbacks=[greg])
    before = greg.state.numpy()
    masked.save(str(tmp_path / "m.keras"))
    loaded = K3.models.load_model(str(tmp_path / "m.keras"), compile=False)
    np.testing.assert_allclose(np.asarray(loaded(X)), np.asarray(masked(X)), rtol=1e-6)
    _masked(twins()[1]).save_weights(str(tmp_path / "stateless.weights.h5"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the file has no optimizer variables
        masked.load_weights(str(tmp_path / "stateless.weights.h5"))
    for key, value in before.items():  # a file without tfprune state leaves it as it was
        np.testing.assert_array_equal(greg.state.numpy()[key], value, err_msg=key)
