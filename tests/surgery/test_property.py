"""Property-based tests: random architectures, sparsities and criteria keep the equivalence."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import DATA_FREE_CRITERIA, check_equivalent, randomize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfprune.compat import keras

L = keras.layers

BLOCKS = ("conv", "residual", "concat", "depthwise", "separable", "grouped", "shared", "nested")


def _build(draw_blocks, n_inputs, n_outputs, flatten_head, widths_seed):
    """Build a random model from a list of block kinds (deterministic for given arguments)."""
    rng = np.random.default_rng(widths_seed)
    counter = {"i": 0}

    def name(kind):
        counter["i"] += 1
        return f"{kind}{counter['i']}"

    def width():
        return int(rng.choice([4, 6, 8]))

    inputs = [keras.Input((6, 6, 3), name=f"in{k}") for k in range(n_inputs)]
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
            ii = keras.Input(tuple(int(d) for d in x.shape[1:]))
            y = L.Conv2D(width(), 3, padding="same", name=name("nconv"))(ii)
            y = L.BatchNormalization(name=name("nbn"))(y)
            y = L.Conv2D(c, 1, name=name("nconv"))(y)
            inner = keras.Model(ii, L.Add()([ii, y]), name=name("nested"))
            x = inner(x)
    outputs = []
    for k in range(n_outputs):
        if flatten_head and k == 0:
            h = L.Flatten()(L.MaxPooling2D(3)(x))
            h = L.Dense(width(), activation="relu", name=name("fc"))(h)
        else:
            h = L.GlobalAveragePooling2D()(x)
        outputs.append(L.Dense(2 + k, name=f"out{k}")(h))
    return keras.Model(inputs, outputs if n_outputs > 1 else outputs[0])


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


def _check(case):
    keras.backend.clear_session()
    model = randomize(
        _build(
            case["blocks"], case["n_inputs"], case["n_outputs"], case["flatten_head"], case["seed"]
        ),
        seed=case["seed"],
    )
    check_equivalent(
        model,
        case["sparsity"],
        case["importance"],
        seed=case["seed"],
        global_ranking=case["global_ranking"],
        tol=1e-4,
    )


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


@settings(max_examples=12, **_SETTINGS)
@given(_cases(nested=False))
def test_random_architectures_strip_equals_masked(case):
    _check(case)


@settings(max_examples=10, **_SETTINGS)
@given(_cases(nested=True))
def test_random_architectures_with_nested_models_strip_equals_masked(case):
    _check(case)


# Not derandomized: every run draws 40 new architectures (~0.5 s each) on top of the 22 fixed
# ones above, so coverage grows from run to run while one run stays ~20 s.
@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases(nested=False))
def test_random_architectures_strip_equals_masked_many(case):
    _check(case)
