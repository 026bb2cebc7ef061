"""Trainability metrics and methods: mean JSV, trainability accuracy and OrthP.

Three tools from the pruning-trainability literature (Lee et al. 2020; Wang et al. 2023):

* :func:`mean_jsv` — *dynamical isometry* statistics. For every sample ``x`` the Jacobian
  ``J(x) = d logits / d x`` of the network's logits with respect to the flattened input is formed
  (shape ``C x D``); its ``min(C, D)`` singular values are computed per sample and the statistics of
  all singular values of all samples are returned as a :class:`JSVStats`. An ideally trainable
  network has every singular value close to 1; pruning typically collapses them towards 0.
  :func:`jacobian_singular_values` returns the raw per-sample singular values.
* :func:`trainability_accuracy` — mean accuracy over the first LR stage of retraining (Eq. 1 of
  Wang et al. 2023, "Why is the State of Neural Network Pruning so Confusing?"), read from a
  Keras ``History``.
* :func:`orthp` — OrthP re-initialisation: every conv / dense kernel is replaced by the
  sign-corrected ``Q`` factor of the QR decomposition of its (tall-oriented) weight matrix, scaled
  by one gain for the whole network (that of its activation, as in the authors' code). On a
  pruned *linear* MLP this restores exact isometry (mean JSV = 1).

The Jacobians are computed with ``tf.GradientTape.batch_jacobian`` (vectorised with ``pfor``)
inside one ``tf.function``, followed by a batched ``tf.linalg.svd(compute_uv=False)``; the model is
always run with ``training=False``.
"""

from tfprune.trainability.accuracy import trainability_accuracy
from tfprune.trainability.jsv import (
    JSVMeter,
    JSVStats,
    jacobian_singular_values,
    mean_jsv,
)
from tfprune.trainability.orthogonal import activation_gain, orthp

__all__ = [
    "JSVMeter",
    "JSVStats",
    "jacobian_singular_values",
    "mean_jsv",
    "trainability_accuracy",
    "orthp",
    "activation_gain",
]
