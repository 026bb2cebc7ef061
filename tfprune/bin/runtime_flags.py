"""The ``--mixed_precision`` and ``--jit_compile`` flags every training binary shares.

Defined once here (absl flags are global), imported by ``tfprune-train``, ``tfprune-prune`` and
``tfprune-compare``.
"""

from __future__ import annotations

from typing import Any

from absl import flags

__all__ = ["runtime_overrides"]

FLAGS = flags.FLAGS
flags.DEFINE_bool(
    "mixed_precision",
    False,
    "Train in mixed precision: mixed_float16 on a GPU, mixed_bfloat16 on CPU/TPU (a config's "
    "runtime.mixed_precision can name the policy). A run's precision is part of its setup.",
)
flags.DEFINE_bool("jit_compile", False, "Compile training and evaluation steps with XLA.")


def runtime_overrides() -> dict[str, Any]:
    """The runtime settings given on the command line (``{}`` when neither flag was given)."""
    out: dict[str, Any] = {}
    if FLAGS["mixed_precision"].present:
        out["mixed_precision"] = bool(FLAGS.mixed_precision)
    if FLAGS["jit_compile"].present:
        out["jit_compile"] = bool(FLAGS.jit_compile)
    return out
