"""Every importance criterion, checked on WHICH filters it keeps, in every pruning path.

Each criterion gets a model whose importance is planted so that only that criterion's rule
gives the expected kept set (and a tie-break by index would not): L1 keeps flat filters over
spiky ones, L2 the spiky ones, BN scale the large gammas, Taylor the channels the next layer
reads, FPGM the filters far from the geometric median, and random what its seed draws. The
paths: one-shot ``prune_filters``, gradual (TF-MOT schedule + ``UpdateFilterMasks``), global
ranking, ``target=`` search, the protocols' one-shot methods and ``tfprune-prune``; then
coupled groups (a residual add, a concat, a depthwise pass-through, attention heads) whose
score must combine their members.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot

import tfprune
from tfprune.bin import prune as prune_tool
from tfprune.choices import IMPORTANCE_NAMES
from tfprune.compat import keras, keras3
from tfprune.data import load_dataset
from tfprune.importance import Random
from tfprune.protocols.methods import METHODS, OneShot, prune_one_shot

L = keras.layers
#: The c1 filters each plant makes important (neither the first nor the last half).
IMPORTANT = [0, 3, 5, 6, 9, 10, 12, 15]
UNIMPORTANT = sorted(set(range(16)) - set(IMPORTANT))
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
# Zero-sum unit directions in a 3x3 kernel: m + 3 d keeps every weight's sign and mean |w|.
_DIRECTIONS = np.zeros((4, 9), np.float32)
_DIRECTIONS[0, :4] = [0.5, -0.5, 0.5, -0.5]
_DIRECTIONS[1, :4] = [0.5, 0.5, -0.5, -0.5]
_DIRECTIONS[2, 4:8] = [0.5, -0.5, 0.5, -0.5]
_DIRECTIONS[3, 4:8] = [0.5, 0.5, -0.5, -0.5]


#: The Keras flavours the one-shot paths are checked on.
FLAVOURS = ("tf_keras", "keras3")


def _net(k=keras) -> keras.Model:
    """Digits-shaped: c1 (16 filters) -> bn1 -> c2 (8) -> bn2 -> dense (10 logits)."""
    layers = k.layers
    i = k.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", name="c1")(i)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(8, 3, padding="same", name="c2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return k.Model(i, layers.Dense(10, name="out")(x), name="planted")


def _keras3_twin(model: keras.Model) -> object:
    """The same network built with Keras 3, with ``model``'s weights."""
    twin = _net(keras3())
    for layer in model.layers:
        if layer.weights:
            twin.get_layer(layer.name).set_weights(layer.get_weights())
    return twin


def _signs(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    return rng.choice([-1.0, 1.0], size=shape).astype(np.float32)


def planted(criterion: str, seed: int = 0, flavour: str = "tf_keras") -> keras.Model:
    """A model whose c1 filters IMPORTANT are the ones ``criterion`` must keep.

    ``flavour="keras3"``: the same model built with Keras 3.
    """
    model = _net()
    rng = np.random.default_rng(seed)
    flat = _signs(rng, (3, 3, 1, 16))  # every weight +-1: mean |w| 1, L2 norm 3
    spiky = np.zeros((3, 3, 1, 16), np.float32)
    spiky[1, 1] = 5.0  # one weight 5: mean |w| 5/9, L2 norm 5
    kernel = flat.copy()
    gamma = np.ones(16, np.float32)
    c2 = _signs(rng, (3, 3, 16, 8)) * 0.3
    if criterion == "l1":
        kernel[..., UNIMPORTANT] = spiky[..., UNIMPORTANT]
    elif criterion == "l2":
        kernel[..., IMPORTANT] = spiky[..., IMPORTANT]
    elif criterion == "bn_scale":
        kernel[..., UNIMPORTANT] *= 2.0  # larger filters, but BatchNorm scales them away
        gamma[UNIMPORTANT] = 0.01
    elif criterion == "taylor":
        kernel[..., UNIMPORTANT] *= 2.0  # larger filters, but nothing reads them
        c2[:, :, UNIMPORTANT, :] = 0.0
    elif criterion == "fpgm":
        # The unimportant filters sit together (at the geometric median of all 16, and with
        # the larger norms); the important ones spread around m = 2 in four directions.
        m = np.full(9, 2.0, np.float32)
        spread = [m + s * 3.0 * d for d in _DIRECTIONS for s in (1.0, -1.0)]
        filters = np.zeros((9, 16), np.float32)
        filters[:, IMPORTANT] = np.stack(spread, axis=1)
        noise = rng.normal(0.0, 1e-3, (9, len(UNIMPORTANT)))
        filters[:, UNIMPORTANT] = 1.2 * m[:, None] + noise
        kernel = filters.reshape(3, 3, 1, 16)
    model.get_layer("c1").set_weights([kernel, np.zeros(16, np.float32)])
    model.get_layer("bn1").set_weights(
        [gamma, np.zeros(16, np.float32), np.zeros(16, np.float32), np.ones(16, np.float32)]
    )
    model.get_layer("c2").set_weights([c2, np.zeros(8, np.float32)])
    return _keras3_twin(model) if flavour == "keras3" else model


def _data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, n)


def _kwargs(criterion: str, seed: int = 0) -> dict:
    if criterion == "taylor":
        return {"importance_data": _data(), "loss": LOSS, "seed": seed}
    return {"seed": seed}


def expected_kept(model: keras.Model, criterion: str, seed: int = 0, n_pruned: int = 8) -> list:
    """The planted kept set of c1; for random, the units its seed ranks highest."""
    if criterion != "random":
        return IMPORTANT
    group = next(
        g for g in tfprune.channel_groups(model) if any(m.path == "c1" for m in g.producers)
    )
    scores = Random(seed=seed)(group)
    return sorted(int(u) for u in np.argsort(scores, kind="stable")[n_pruned:])


def kept(masked: keras.Model, layer: str = "c1") -> list:
    """The filters of ``layer`` the masks keep (as strip_filters' plan names them)."""
    _, plan = tfprune.strip_filters(masked, return_plan=True)
    entry = plan.layers.get(layer, {}).get("out")
    return entry["kept"] if entry else list(range(masked.get_layer(layer).filters))


def test_every_registered_criterion_has_a_plant():
    assert set(IMPORTANCE_NAMES) == {"l1", "l2", "bn_scale", "taylor", "fpgm", "random"}


def test_the_plants_tell_the_criteria_apart():
    """Each plant's kept set is reached by its own criterion only (or not by L1, at least)."""
    for criterion in ("l2", "bn_scale", "taylor", "fpgm"):
        masked = tfprune.prune_filters(planted(criterion), {"c1": 0.5}, "l1")
        assert kept(masked) != IMPORTANT, criterion
    masked = tfprune.prune_filters(planted("l1"), {"c1": 0.5}, "l2")
    assert kept(masked) == UNIMPORTANT


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("criterion", IMPORTANCE_NAMES)
def test_one_shot_keeps_the_planted_filters(criterion, flavour):
    model = planted(criterion, flavour=flavour)
    masked = tfprune.prune_filters(model, {"c1": 0.5}, criterion, **_kwargs(criterion))
    assert kept(masked) == expected_kept(model, criterion)


def test_random_depends_on_its_seed_only():
    model = planted("random")
    runs = {
        seed: kept(tfprune.prune_filters(model, {"c1": 0.5}, "random", seed=seed))
        for seed in (0, 1, 2)
    }
    assert runs[0] == kept(tfprune.prune_filters(model, {"c1": 0.5}, "random", seed=0))
    assert len({tuple(v) for v in runs.values()}) == 3
    for seed, k in runs.items():
        assert k == expected_kept(model, "random", seed)


def test_taylor_scores_the_dense_units_the_output_reads():
    """The issue's second reproduction: a dense layer whose units 16-31 are never read."""
    i = keras.Input((12,))
    h = L.Dense(32, activation="relu", name="h")(i)
    model = keras.Model(i, L.Dense(3, name="out")(h))
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 32)).astype(np.float32)
    w[:, 16:] *= 5.0  # the unread units are the larger ones
    model.get_layer("h").set_weights([w, np.full(32, 0.1, np.float32)])
    out = rng.normal(size=(32, 3)).astype(np.float32)
    out[16:] = 0.0
    model.get_layer("out").set_weights([out, np.zeros(3, np.float32)])
    data = (rng.normal(size=(32, 12)).astype(np.float32), rng.integers(0, 3, 32))
    masked = tfprune.prune_filters(model, {"h": 0.5}, "taylor", importance_data=data, loss=LOSS)
    assert kept(masked, "h") == list(range(16))


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("criterion", IMPORTANCE_NAMES)
def test_gradual_schedule_keeps_the_planted_filters(criterion, flavour):
    model = planted(criterion, flavour=flavour)
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, frequency=1)
    masked = tfprune.prune_filters(model, {"c1": schedule}, criterion, **_kwargs(criterion))
    assert kept(masked) == list(range(16))  # nothing pruned before fit
    k = keras3() if flavour == "keras3" else keras
    masked.compile(optimizer=k.optimizers.SGD(0.0), loss=LOSS)  # weights stay planted
    x, y = _data(16)
    masked.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[tfprune.UpdateFilterMasks()])
    assert kept(masked) == expected_kept(model, criterion)


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("criterion", IMPORTANCE_NAMES)
def test_global_ranking_keeps_the_planted_filters(criterion, flavour):
    model = planted(criterion, flavour=flavour)
    # 1/3 of the 24 units of c1 and c2: the 8 planted ones, all in c1 (c2's filters are alike).
    masked = tfprune.prune_filters(
        model, 1 / 3, criterion, global_ranking=True, **_kwargs(criterion)
    )
    if criterion == "random":
        again = tfprune.prune_filters(model, 1 / 3, "random", global_ranking=True, seed=0)
        other = tfprune.prune_filters(model, 1 / 3, "random", global_ranking=True, seed=1)
        assert kept(masked) == kept(again)
        assert (kept(masked), kept(masked, "c2")) != (kept(other), kept(other, "c2"))
        return
    assert kept(masked) == IMPORTANT
    assert kept(masked, "c2") == list(range(8))


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("criterion", IMPORTANCE_NAMES)
def test_target_search_keeps_the_planted_filters(criterion, flavour):
    model = planted(criterion, flavour=flavour)

    def trainable(m: keras.Model) -> int:
        return tfprune.count_params(m, trainable_only=True).total

    # The reduction of removing 8 of c1's 16 filters (the same for any choice of 8).
    factor = trainable(model) / trainable(tfprune.shrink(model, {"c1": 0.5}))
    target = {"params_reduction": factor}
    found = tfprune.find_sparsity_for_target(
        model, target, {"c1": 0.9}, criterion, **_kwargs(criterion)
    )
    masked = tfprune.prune_filters(model, found.sparsity, criterion, **_kwargs(criterion))
    assert kept(masked) == expected_kept(model, criterion)
    searched = tfprune.prune_filters(
        model, {"c1": 0.9}, criterion, target=target, **_kwargs(criterion)
    )
    assert kept(searched) == expected_kept(model, criterion)


def _digits():
    return load_dataset("digits", batch_size=32, seed=0)


def test_protocols_one_shot_methods_keep_the_planted_filters():
    data = _digits()
    methods = [m for m in METHODS.values() if isinstance(m, OneShot) and not m.orthp]
    assert sorted(m.criterion for m in methods) == sorted(IMPORTANCE_NAMES)
    for method in methods:
        model = planted(method.criterion)
        masked, small = prune_one_shot(model, {"c1": 0.5}, method.criterion, data, seed=0)
        assert kept(masked) == expected_kept(model, method.criterion), method.name
        assert small.get_layer("c1").filters == 8


@pytest.mark.slow  # seconds per criterion: the tool evaluates and times its models
@pytest.mark.parametrize("criterion", IMPORTANCE_NAMES)
def test_prune_tool_keeps_the_planted_filters(criterion, tmp_path, capsys):
    model = planted(criterion)
    path = tmp_path / "planted.keras"
    model.save(path)
    plan_path = tmp_path / "plan.json"
    args = [
        f"--load_model={path}",
        f"--importance={criterion}",
        "--sparsity=0.5",
        "--train_epochs=0",
        "--retrain_epochs=0",
        # The plan is made before any BatchNorm recalibration (which only re-estimates the
        # statistics after masking): leaving it out leaves the kept set as it is.
        "--norecalibrate_batch_norm",
        f"--plan_path={plan_path}",
    ]
    assert prune_tool.BINARY(args) == 0, capsys.readouterr().err
    plan = tfprune.PruningPlan.load(plan_path)
    assert plan.layers["c1"]["out"]["kept"] == expected_kept(model, criterion)


# -- coupled groups: the score of a unit combines every member that holds it -------------

#: Units dead in both producers (pruned), in only the first, in only the second.
BOTH, FIRST, SECOND = [1, 4, 6, 7, 9, 11, 12, 14], [0, 2], [3, 15]


def _zero_units(model: keras.Model, layer: str, units: list, bn: str | None = None) -> None:
    """Make ``units`` of ``layer`` (and its BatchNorm) exactly zero: every criterion's minimum."""
    conv = model.get_layer(layer)
    kernel, bias = conv.get_weights()
    kernel[..., units] = 0.0
    bias[units] = 0.0
    conv.set_weights([kernel, bias])
    if bn is not None:
        gamma, beta, mean, var = model.get_layer(bn).get_weights()
        gamma[units] = 0.0
        beta[units] = 0.0
        model.get_layer(bn).set_weights([gamma, beta, mean, var])


def _randomized(model: keras.Model, seed: int = 0) -> keras.Model:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), np.zeros(n), np.ones(n)]
            )
        elif layer.weights:
            layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])
    return model


def residual_net() -> keras.Model:
    i = keras.Input((8, 8, 3))
    a = L.BatchNormalization(name="bn_a")(L.Conv2D(16, 3, padding="same", name="a")(i))
    b = L.BatchNormalization(name="bn_b")(L.Conv2D(16, 3, padding="same", name="b")(i))
    x = L.ReLU()(L.Add()([a, b]))
    x = L.Conv2D(8, 3, padding="same", name="next")(x)
    x = L.GlobalAveragePooling2D()(x)
    return _randomized(keras.Model(i, L.Dense(3, name="out")(x)))


def _data_like(model: keras.Model, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    shape = (n, *model.input_shape[1:])
    return rng.normal(size=shape).astype(np.float32), rng.integers(0, 3, n)


def _coupled_kwargs(model: keras.Model, criterion: str) -> dict:
    if criterion == "taylor":
        return {"importance_data": _data_like(model), "loss": LOSS}
    return {}


@pytest.mark.parametrize("criterion", [c for c in IMPORTANCE_NAMES if c != "random"])
def test_residual_add_combines_both_producers(criterion):
    model = residual_net()
    _zero_units(model, "a", BOTH + FIRST, "bn_a")
    _zero_units(model, "b", BOTH + SECOND, "bn_b")
    masked = tfprune.prune_filters(
        model, {"a|b": 0.5}, criterion, **_coupled_kwargs(model, criterion)
    )
    expected = sorted(set(range(16)) - set(BOTH))
    assert kept(masked, "a") == kept(masked, "b") == expected


def test_concat_scores_each_input_with_its_own_producer():
    i = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(i)
    b = L.Conv2D(8, 3, padding="same", name="b")(i)
    x = L.Concatenate()([L.ReLU()(a), L.ReLU()(b)])
    x = L.GlobalAveragePooling2D()(L.Conv2D(4, 3, padding="same", name="next")(x))
    model = _randomized(keras.Model(i, L.Dense(3, name="out")(x)))
    _zero_units(model, "a", [1, 2, 5, 6])
    _zero_units(model, "b", [0, 3, 4, 7])
    for criterion in ("l1", "l2", "bn_scale", "fpgm", "taylor"):
        masked = tfprune.prune_filters(
            model, {"a|b": 0.5}, criterion, **_coupled_kwargs(model, criterion)
        )
        assert kept(masked, "a") == [0, 3, 4, 7], criterion
        assert kept(masked, "b") == [1, 2, 5, 6], criterion


def test_depthwise_pass_through_is_scored_through_its_members():
    i = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", name="a")(i)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="bn_dw")(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(L.Conv2D(8, 1, name="next")(x))
    model = _randomized(keras.Model(i, L.Dense(3, name="out")(x)))
    dead = BOTH
    _zero_units(model, "a", dead)
    gamma, beta, mean, var = model.get_layer("bn_dw").get_weights()
    gamma[dead] = 0.0
    beta[dead] = 0.0
    model.get_layer("bn_dw").set_weights([gamma, beta, mean, var])
    for criterion in ("l1", "l2", "bn_scale", "fpgm", "taylor"):
        masked = tfprune.prune_filters(
            model, {"a": 0.5}, criterion, **_coupled_kwargs(model, criterion)
        )
        assert kept(masked, "a") == sorted(set(range(16)) - set(dead)), criterion


def test_attention_heads_combine_query_key_value_and_output():
    i = keras.Input((6, 16))
    mha = L.MultiHeadAttention(num_heads=4, key_dim=8, name="mha")
    x = mha(i, i)
    x = L.GlobalAveragePooling1D()(L.Dense(8, name="next")(x))
    model = _randomized(keras.Model(i, L.Dense(3, name="out")(x)))
    names = [w.name for w in mha.weights]
    values = mha.get_weights()
    for k, name in enumerate(names):
        v = values[k]
        if "attention_output/kernel" in name:
            v[3] = 0.0  # (heads, key_dim, out): head 3 writes nothing
        elif "kernel" in name:
            v[:, 3] = 0.0  # (in, heads, key_dim): head 3 reads nothing
            if "query" in name:
                v[:, 1] = 0.0  # head 1 is dead in the query only
        elif "bias" in name and "attention_output" not in name:
            v[3] = 0.0
    mha.set_weights(values)
    for criterion in ("l1", "l2", "bn_scale", "taylor"):
        masked = tfprune.prune_filters(
            model, {"mha": 0.25}, criterion, **_coupled_kwargs(model, criterion)
        )
        _, plan = tfprune.strip_filters(masked, return_plan=True)
        assert plan.layers["mha"]["head"]["kept"] == [0, 1, 2], criterion


def test_fpgm_drops_the_attention_head_at_the_centre_of_the_others():
    i = keras.Input((6, 16))
    mha = L.MultiHeadAttention(num_heads=4, key_dim=8, name="mha")
    x = L.GlobalAveragePooling1D()(L.Dense(8, name="next")(mha(i, i)))
    model = _randomized(keras.Model(i, L.Dense(3, name="out")(x)))
    values = []
    for w, v in zip(mha.weights, mha.get_weights(), strict=True):
        if "attention_output/kernel" in w.name:
            v[1] = v[[0, 2, 3]].mean(axis=0)  # (heads, key_dim, out)
        elif "kernel" in w.name:
            v[:, 1] = v[:, [0, 2, 3]].mean(axis=1)  # (in, heads, key_dim)
        values.append(v)
    mha.set_weights(values)
    masked = tfprune.prune_filters(model, {"mha": 0.25}, "fpgm")
    _, plan = tfprune.strip_filters(masked, return_plan=True)
    assert plan.layers["mha"]["head"]["kept"] == [0, 2, 3]
