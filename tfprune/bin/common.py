"""What the command-line tools share: how a tool parses, shows help, runs and reports errors.

Each tool (``tfprune/bin/<name>.py``) defines its flags on its own ``absl.flags.FlagValues``
and describes itself with a :class:`Binary`; the work is done by ``tfprune/bin/jobs/<name>.py``,
which the tool loads by name once the flags have parsed. The tool module itself loads only absl
and :mod:`tfprune.choices`, so ``--help`` and a mistyped flag are answered at once, without
TensorFlow. Because every tool keeps its own flags, tools whose flags share a name (``--model``,
``--seed``) can run one after another in one Python process (``BINARY(["--seed=1"])``), as the
tests do.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from absl import app, flags
from absl import logging as absl_logging
from absl.testing import flagsaver

from tfprune.choices import STRATEGIES
from tfprune.errors import TfpruneError

__all__ = [
    "Binary",
    "define_data_flags",
    "define_runtime_flags",
    "define_strategy_flag",
    "progress",
    "runtime_overrides",
]

_HELP = {"h", "help", "?", "helpshort"}
_HELP_FULL = {"helpfull"}


def define_runtime_flags(flag_values: flags.FlagValues) -> None:
    """Defines ``--mixed_precision`` and ``--jit_compile`` (the tools that train use them)."""
    flags.DEFINE_bool(
        "mixed_precision",
        False,
        "Train in mixed precision: mixed_float16 on a GPU, mixed_bfloat16 on CPU/TPU (a config's "
        "runtime.mixed_precision can name the policy). A run's precision is part of its setup.",
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "jit_compile",
        False,
        "Compile training and evaluation steps with XLA.",
        flag_values=flag_values,
    )


def define_data_flags(flag_values: flags.FlagValues) -> None:
    """Defines ``--dataset`` and ``--data_dir`` (the tools that train on one dataset use them)."""
    flags.DEFINE_string(
        "dataset",
        "digits",
        "digits (embedded), mnist, cifar10, cifar100 or imagenet.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "Folder with the dataset files (not needed for digits).",
        flag_values=flag_values,
    )


def define_strategy_flag(flag_values: flags.FlagValues) -> None:
    """Defines ``--strategy``, the ``tf.distribute`` strategy the tool trains under."""
    flags.DEFINE_enum(
        "strategy", "default", list(STRATEGIES), "tf.distribute strategy.", flag_values=flag_values
    )


def runtime_overrides(flag_values: flags.FlagValues) -> dict[str, Any]:
    """The runtime settings given on the command line (``{}`` when neither flag was given)."""
    out: dict[str, Any] = {}
    if flag_values["mixed_precision"].present:
        out["mixed_precision"] = bool(flag_values.mixed_precision)
    if flag_values["jit_compile"].present:
        out["jit_compile"] = bool(flag_values.jit_compile)
    return out


def progress(message: str) -> None:
    """Print one progress line (flushed) when ``--verbosity`` is 0 (the default) or more.

    Results (tables, JSON) are printed whatever the verbosity; library messages go through
    Python logging, which absl already filters by ``--verbosity``.
    """
    # The flag itself (absl.logging defines it), whether or not absl.app set up logging, as
    # when a tool runs inside another program. Its default (-1, unset) means INFO.
    verbosity = flags.FLAGS["verbosity"]
    if verbosity.using_default_value or verbosity.value >= absl_logging.INFO:
        print(message, flush=True)


def _flag_name(arg: str) -> str | None:
    """``"--help=true"`` -> ``"help"``; None for an argument that is not a flag."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    return arg.lstrip("-").split("=", 1)[0]


@dataclasses.dataclass(frozen=True)
class Binary:
    """One command-line tool: its name, help text, flags and the module that does its work.

    Attributes:
      prog: the command's name, e.g. ``tfprune-prune`` (used in help and error lines).
      doc: the help text shown above the flags (the tool module's docstring).
      flag_values: the tool's own flags.
      job: the module that runs the tool; its ``main(flag_values)`` reads the parsed flags. A
        bad value it finds (``absl.app.UsageError``) or the library reports
        (:class:`tfprune.errors.TfpruneError`) is shown as one line, exit status 2.
    """

    prog: str
    doc: str
    flag_values: flags.FlagValues
    job: str

    def usage(self, full: bool = False) -> str:
        """The help text: the description, then every flag of this tool (and absl's if full)."""
        blocks = []
        for module in sorted(self.flag_values.flags_by_module_dict(), key=_tools_first):
            text = self.flag_values.module_help(module)
            blocks.append("\n".join(line for line in text.splitlines()[2:]))
        out = f"{self.doc.strip()}\n\nflags:\n" + "\n".join(blocks) + "\n"
        if full:
            out += "\nabsl flags (logging, flag files):\n" + flags.FLAGS.get_help(prefix="  ")
        else:
            out += "\n--helpfull also lists absl's flags (--verbosity, --flagfile, ...).\n"
        return out

    def run(self) -> None:
        """Runs the tool as a program on ``sys.argv`` (console-script and ``python -m`` entry)."""
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything loads TensorFlow
        app.run(self._program_main, flags_parser=self._parse_or_exit)

    def _program_main(self, argv: Sequence[str]) -> None:
        # TensorFlow's and tf_keras' own INFO lines (SavedModel assets, sharding...) only with
        # --verbosity=1; the tool's progress lines and tfprune's messages are not affected.
        # A filter, not a level: TensorFlow's SavedModel code resets absl's logger level.
        if flags.FLAGS["verbosity"].value < absl_logging.DEBUG:
            for name in ("absl", "tensorflow"):
                logging.getLogger(name).addFilter(_warnings_and_errors)
        sys.exit(self._run_job(argv))

    def __call__(self, args: Sequence[str]) -> int:
        """Runs the tool in this process with the command-line arguments ``args``.

        Prints what the program would print and returns its exit status (0, or 2 after a usage
        error line). Flag values, this tool's and absl's, are restored afterwards, so tools can
        run one after another in one process.
        """
        argv = [self.prog, *args]
        saved_own = flagsaver.save_flag_values(self.flag_values)
        saved_absl = flagsaver.save_flag_values(flags.FLAGS)
        try:
            parsed = self._parse_or_status(argv)
            return parsed if isinstance(parsed, int) else self._run_job(parsed)
        finally:
            self.flag_values.unparse_flags()
            flagsaver.restore_flag_values(saved_own, self.flag_values)
            flagsaver.restore_flag_values(saved_absl, flags.FLAGS)

    def _help(self, argv: Sequence[str]) -> bool:
        """Prints the help and returns True when ``argv`` asks for it (before ``--``)."""
        names = []
        for arg in argv[1:]:
            if arg == "--":
                break
            names.append(_flag_name(arg))
        if any(n in _HELP_FULL for n in names):
            sys.stdout.write(self.usage(full=True))
            return True
        if any(n in _HELP for n in names):
            sys.stdout.write(self.usage())
            return True
        return False

    def _parse(self, argv: Sequence[str]) -> list[str]:
        """Absl's own flags (``--verbosity``, ``--flagfile``...), then this tool's."""
        rest = flags.FLAGS(list(argv), known_only=True)
        return self.flag_values(rest)

    def _parse_or_status(self, argv: Sequence[str]) -> list[str] | int:
        """The arguments left after the flags, or the exit status after help or a flag error."""
        if self._help(argv):
            return 0
        try:
            return self._parse(argv)
        except flags.Error as err:
            return self._fail(str(err))

    def _parse_or_exit(self, argv: Sequence[str]) -> list[str]:
        parsed = self._parse_or_status(argv)
        if isinstance(parsed, int):
            sys.exit(parsed)
        return parsed

    def _run_job(self, argv: Sequence[str]) -> int:
        if len(argv) > 1:
            return self._fail(f"Unexpected arguments: {' '.join(argv[1:])}")
        job = importlib.import_module(self.job)
        try:
            job.main(self.flag_values)
        except (app.UsageError, TfpruneError) as err:
            return self._fail(str(err))
        return 0

    def _fail(self, message: str) -> int:
        sys.stderr.write(f"{self.prog}: error: {message}\n(run with --help to see the flags)\n")
        return 2


def _warnings_and_errors(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def _tools_first(module: str) -> tuple[bool, str]:
    """Orders help blocks: the tool's own flags before the shared ones defined here."""
    return (module == __name__, module)
