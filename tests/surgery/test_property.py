"""Property-based tests: random architectures, sparsities and criteria keep the equivalence.

Each architecture is built by one builder in either Keras flavour (``_build(keras_module, ...)``):
tf_keras models are checked masked ≡ stripped; their Keras 3 twins, with the same weights, are
checked masked ≡ stripped and stripped ≡ the tf_keras twin pruned with the same arguments.
"""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import (
    DATA_FREE_CRITERIA,
    all_layers,
    check_equivalent,
    inputs_for,
    max_rel_error,
    outputs_of,
    randomize,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tfprune
from tfprune import compat
from tfprune.compat import keras

K3 = compat.keras3()

BLOCKS = ("conv", "residual", "concat", "depthwise", "separable", "grouped", "shared", "nested")


def _build(k, draw_blocks, n_inputs, n_outputs, flatten_head, widths_seed):
    """Build a random model from a list of block kinds (deterministic for given arguments).

    ``k`` is the Keras module that builds it (tf_keras or Keras 3): the same arguments give the
    same architecture, with the same layer names, in both.
    """
    L = k.layers
    rng = np.random.default_rng(widths_seed)
    counter = {"i": 0}

    def name(kind):
        counter["i"] += 1
        return f"{kind}{counter['i']}"

    def width():
        return int(rng.choice([4, 6, 8]))

    inputs = [k.Input((6, 6, 3), name=f"in{i}") for i in range(n_inputs)]
    xs = [L.Conv2D(width(), 3, padding="same", name=name("stem"))(i) for i in inputs]
    x = xs[0] if len(xs) == 1 else L.Concatenate(name=name("incat"))(xs)
    shared = {}
    for kind in draw_blocks:
        c = int(x.shape[-1])
        if kind == "conv":
            x = L.Conv2D(width(), 3, padding="same", name=name("conv"))(x)
            x = L.BatchNormalization(name=name("bn"))(x)
            x = L.ReLU()(x)
        elif kind == "residual":
            y = L.Conv2D(width(), 3, padding="same", name=name("rconv"))(x)
            y = L.BatchNormalization(name=name("rbn"))(y)
            y = L.ReLU()(y)
            y = L.Conv2D(c, 3, padding="same", name=name("rconv"))(y)
            x = L.Add(name=name("add"))([x, y])
        elif kind == "concat":
            y = L.Conv2D(width(), 1, name=name("cconv"))(x)
            x = L.Concatenate(name=name("cat"))([x, y])
        elif kind == "depthwise":
            x = L.DepthwiseConv2D(
                3, depth_multiplier=int(rng.integers(1, 3)), padding="same", name=name("dw")
            )(x)
            x = L.BatchNormalization(name=name("bn"))(x)
        elif kind == "separable":
            x = L.SeparableConv2D(width(), 3, padding="same", name=name("sep"))(x)
        elif kind == "grouped":
            if c % 2:
                x = L.Conv2D(8, 1, name=name("pre"))(x)
                c = 8
            x = L.Conv2D(2 * width(), 3, padding="same", groups=2, name=name("gconv"))(x)
        elif kind == "shared":
            key = c
            if key not in shared:
                shared[key] = L.Conv2D(c, 3, padding="same", name=name("shared"))
            a = shared[key](x)
            b = shared[key](L.ReLU()(x))
            x = L.Add(name=name("sadd"))([a, b])
        elif kind == "nested":
            ii = k.Input(tuple(int(d) for d in x.shape[1:]))
            y = L.Conv2D(width(), 3, padding="same", name=name("nconv"))(ii)
            y = L.BatchNormalization(name=name("nbn"))(y)
            y = L.Conv2D(c, 1, name=name("nconv"))(y)
            inner = k.Model(ii, L.Add()([ii, y]), name=name("nested"))
            x = inner(x)
    outputs = []
    for j in range(n_outputs):
        if flatten_head and j == 0:
            h = L.Flatten()(L.MaxPooling2D(3)(x))
            h = L.Dense(width(), activation="relu", name=name("fc"))(h)
        else:
            h = L.GlobalAveragePooling2D()(x)
        outputs.append(L.Dense(2 + j, name=f"out{j}")(h))
    return k.Model(inputs, outputs if n_outputs > 1 else outputs[0])


@st.composite
def _cases(draw, nested=True):
    kinds = BLOCKS if nested else tuple(b for b in BLOCKS if b != "nested")
    blocks = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=4))
    return {
        "blocks": blocks,
        "n_inputs": draw(st.integers(1, 2)),
        "n_outputs": draw(st.integers(1, 2)),
        "flatten_head": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
        "sparsity": draw(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9])),
        "importance": draw(st.sampled_from(DATA_FREE_CRITERIA)),
        "global_ranking": draw(st.booleans()),
    }


def _case_model(k, case):
    return _build(
        k, case["blocks"], case["n_inputs"], case["n_outputs"], case["flatten_head"], case["seed"]
    )


def _prune_args(case):
    return dict(seed=case["seed"], global_ranking=case["global_ranking"])


def _check(case):
    keras.backend.clear_session()
    model = randomize(_case_model(keras, case), seed=case["seed"])
    check_equivalent(model, case["sparsity"], case["importance"], tol=1e-4, **_prune_args(case))


def _check_keras3_twin(case):
    """The Keras 3 twin: masked ≡ stripped, and stripped ≡ the stripped tf_keras twin."""
    keras.backend.clear_session()
    twin = randomize(_case_model(keras, case), seed=case["seed"])
    model = _case_model(K3, case)
    by_name = {layer.name: layer for layer in all_layers(model)}
    for layer in all_layers(twin):
        if layer.weights and not isinstance(layer, keras.Model):
            by_name[layer.name].set_weights(layer.get_weights())
    _, small = check_equivalent(
        model, case["sparsity"], case["importance"], tol=1e-4, **_prune_args(case)
    )
    assert compat.flavour_of(small) == compat.KERAS3
    small_tk = tfprune.strip_filters(
        tfprune.prune_filters(twin, case["sparsity"], case["importance"], **_prune_args(case))
    )
    xs = inputs_for(twin, seed=case["seed"] + 1)
    assert small.count_params() == small_tk.count_params()
    assert max_rel_error(outputs_of(small, xs), outputs_of(small_tk, xs)) < 1e-4


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@settings(max_examples=12, **_SETTINGS)
@given(_cases(nested=False))
def test_random_architectures_strip_equals_masked(case):
    _check(case)


@settings(max_examples=10, **_SETTINGS)
@given(_cases(nested=True))
def test_random_architectures_with_nested_models_strip_equals_masked(case):
    _check(case)


@settings(max_examples=10, **_SETTINGS)
@given(_cases(nested=True))
def test_random_keras3_architectures_strip_equals_masked_and_the_tf_keras_twin(case):
    _check_keras3_twin(case)


# Not derandomized: every run draws 10 new architectures on top of the 22 fixed ones above, so
# coverage grows from run to run while one run stays short.
@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases(nested=False))
def test_random_architectures_strip_equals_masked_many(case):
    _check(case)


# As above for the Keras 3 twins: 5 new architectures per run.
@pytest.mark.slow
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases(nested=True))
def test_random_keras3_architectures_equal_their_tf_keras_twins_many(case):
    _check_keras3_twin(case)
