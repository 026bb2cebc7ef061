"""Network slimming and group lasso on channel groups."""

from __future__ import annotations

import numpy as np
from reg_helpers import fixed_batches, masked_cnn

import tfprune
from tfprune.regularization import GroupLasso, NetworkSlimming


def _gamma_l1(cb):
    return sum(
        float(np.abs(s.variable.numpy()).sum())
        for g in cb.groups
        for s in cb.slices[g.id]
        if s.name == "gamma"
    )


def test_slimming_shrinks_gammas_and_masks_smallest_scales():
    model = masked_cnn()
    slim = NetworkSlimming(0.5, strength=0.5)
    slim.set_model(model)
    before = _gamma_l1(slim)
    h = model.fit(fixed_batches(), epochs=3, steps_per_epoch=5, callbacks=[slim], verbose=0)
    assert h.history["slimming/l1_gamma"][-1] < 0.8 * before
    pruner = tfprune.FilterPruner.for_model(model)
    pruned = pruner.current_pruned()
    for g in slim.groups:
        gammas = [s.variable.numpy() for s in slim.slices[g.id] if s.name == "gamma"]
        score = np.mean([np.abs(x) for x in gammas], axis=0)
        k = int(np.ceil(0.5 * g.n_units))
        assert pruned[g.id].sum() == k
        assert score[pruned[g.id]].max() <= score[~pruned[g.id]].min()
    assert not model._callable_losses


def test_group_lasso_covers_whole_units_and_masks_smallest_norms():
    model = masked_cnn()
    gl = GroupLasso(0.5, strength=0.01)
    gl.set_model(model)
    residual = next(g for g in gl.groups if len(g.producers) > 1)
    kinds = {s.kind for s in gl.slices[residual.id]}
    assert kinds == {"filter", "input", "norm"}  # no biases in small_cnn convs
    norms0 = {g.id: gl.unit_norms(g) for g in gl.groups}
    model.fit(fixed_batches(), epochs=2, steps_per_epoch=5, callbacks=[gl], verbose=0)
    pruned = tfprune.FilterPruner.for_model(model).current_pruned()
    for g in gl.groups:
        norms = gl.unit_norms(g)
        assert norms.sum() < norms0[g.id].sum()
        k = int(np.ceil(0.5 * g.n_units))
        assert pruned[g.id].sum() == k
        assert norms[pruned[g.id]].max() <= norms[~pruned[g.id]].min()
