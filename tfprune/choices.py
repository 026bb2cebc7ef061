"""The names a user picks from on the command line and in configs, in a module free of TensorFlow.

The command-line tools build their flags from these tuples, so that ``--help`` and a mistyped
flag are answered without loading TensorFlow. The modules that implement the choices
(:mod:`tfprune.distribute`, :mod:`tfprune.importance`) use the same tuples.
"""

from __future__ import annotations

__all__ = ["IMPORTANCE_NAMES", "STRATEGIES"]

#: ``tf.distribute`` strategies that :func:`tfprune.distribute.get_strategy` builds.
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu", "one_device")

#: Filter importance criteria that :func:`tfprune.importance.get_importance` resolves.
IMPORTANCE_NAMES = ("l1", "l2", "random", "bn_scale", "taylor", "fpgm")
