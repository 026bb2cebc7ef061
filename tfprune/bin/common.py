"""What the binaries share: the runtime flags and how a command-line error is shown.

``--mixed_precision`` and ``--jit_compile`` are defined once here (absl flags are global) for
``tfprune-train``, ``tfprune-prune`` and ``tfprune-compare``. :func:`run_main` runs a binary's
``main`` and shows a bad argument as one line naming the problem (absl's own handler prints the
whole flag list before it). :func:`progress` prints a progress line unless absl's
``--verbosity`` is below 0 (``--verbosity=-1`` keeps only warnings, errors and the results).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from absl import app, flags
from absl import logging as absl_logging

__all__ = ["progress", "run_main", "runtime_overrides"]

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


def progress(message: str) -> None:
    """Print one progress line (flushed) when ``--verbosity`` is 0 (the default) or more.

    Results (tables, JSON) are printed whatever the verbosity; library messages go through
    Python logging, which absl already filters by ``--verbosity``.
    """
    # The flag itself (absl.logging defines it), whether or not absl.app set up logging, as
    # when a binary's main runs inside another program. Its default (-1, unset) means INFO.
    verbosity = FLAGS["verbosity"]
    if verbosity.using_default_value or verbosity.value >= absl_logging.INFO:
        print(message, flush=True)


def run_main(main: Callable[[list[str]], Any], prog: str) -> None:
    """``absl.app.run(main)``, with a ``UsageError`` from ``main`` shown as one line, exit 2.

    ``prog`` is the command's name in that line (e.g. ``tfprune-train``).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def checked(argv: list[str]) -> Any:
        try:
            return main(argv)
        except app.UsageError as err:
            sys.stderr.write(f"{prog}: error: {err}\n(run with --help to see the flags)\n")
            sys.exit(2)

    app.run(checked)
