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
import re
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from absl import app, flags
from absl import logging as absl_logging
from absl.testing import flagsaver

from tfprune import defaults
from tfprune.choices import STRATEGIES
from tfprune.errors import TfpruneError

__all__ = [
    "Binary",
    "define_data_flags",
    "define_model_flags",
    "define_runtime_flags",
    "define_strategy_flag",
    "define_training_flags",
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


def define_model_flags(flag_values: flags.FlagValues, model: bool = True) -> None:
    """Defines ``--list_models`` and, with ``model``, ``--model`` (default ``defaults.MODEL``)."""
    if model:
        flags.DEFINE_string(
            "model",
            defaults.MODEL,
            "Zoo model name (--list_models prints them).",
            flag_values=flag_values,
        )
    flags.DEFINE_bool(
        "list_models",
        False,
        "Print the zoo models (the --model values) and exit.",
        flag_values=flag_values,
    )


def define_training_flags(flag_values: flags.FlagValues) -> None:
    """Defines ``--seed``, ``--batch_size`` and ``--weight_decay`` with the shared defaults."""
    flags.DEFINE_integer(
        "seed",
        defaults.SEED,
        "Random seed (>= 0) of the weights, the shuffling and the held-out test split.",
        lower_bound=0,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "batch_size", None, defaults.BATCH_SIZE_HELP, lower_bound=1, flag_values=flag_values
    )
    flags.DEFINE_float(
        "weight_decay",
        defaults.WEIGHT_DECAY,
        "L2 weight decay of every training phase.",
        flag_values=flag_values,
    )


def define_data_flags(flag_values: flags.FlagValues) -> None:
    """Defines ``--dataset`` and ``--data_dir`` (the tools that train on one dataset use them)."""
    flags.DEFINE_string(
        "dataset",
        defaults.DATASET,
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
    # when a tool runs inside another program.
    if _verbosity() >= absl_logging.INFO:
        print(message, flush=True)


def _flag_name(arg: str) -> str | None:
    """``"--help=true"`` -> ``"help"``; None for an argument that is not a flag."""
    if not arg.startswith("-") or arg in ("-", "--"):
        return None
    return arg.lstrip("-").split("=", 1)[0]


def _flag_names(argv: Sequence[str]) -> list[str | None]:
    """The flag names in ``argv[1:]`` before ``--``."""
    names = []
    for arg in argv[1:]:
        if arg == "--":
            break
        names.append(_flag_name(arg))
    return names


@dataclasses.dataclass(frozen=True)
class Binary:
    """One command-line tool: its name, help text, flags and the module that does its work.

    Attributes:
      prog: the command's name, e.g. ``tfprune-prune`` (used in help and error lines).
      doc: the help text shown above the flags (the tool module's docstring).
      flag_values: the tool's own flags.
      job: the module that runs the tool; its ``main(flag_values)`` reads the parsed flags. A
        bad value it finds (``absl.app.UsageError``) or the library reports
        (:class:`tfprune.errors.TfpruneError`) is shown as one line, exit status 2. Ctrl-C and
        SIGTERM end it with one line too (exit status 130 and 143).
      interrupted: what the one line after Ctrl-C or SIGTERM tells the user to do.
    """

    prog: str
    doc: str
    flag_values: flags.FlagValues
    job: str
    interrupted: str = "rerun the same command to resume"

    def __post_init__(self) -> None:
        for flag in self.flag_values._flags().values():  # noqa: SLF001 - absl has no public one
            if _required(flag) and not flag.help.startswith(_REQUIRED):
                flag.help = _REQUIRED + flag.help

    def usage(self, full: bool = False) -> str:
        """The help text: the description, then every flag of this tool (and absl's if full)."""
        blocks = []
        for module in sorted(self.flag_values.flags_by_module_dict(), key=_tools_first):
            text = self.flag_values.module_help(module)
            blocks.append("\n".join(line for line in text.splitlines()[2:]))
        out = f"{plain_text(self.doc.strip())}\n\nflags:\n" + "\n".join(blocks) + "\n"
        if full:
            out += "\nabsl flags (logging, flag files):\n" + flags.FLAGS.get_help(prefix="  ")
        else:
            out += "\n--helpfull also lists absl's flags (--verbosity, --flagfile, ...).\n"
        return out

    def run(self) -> None:
        """Runs the tool as a program on ``sys.argv`` (console-script and ``python -m`` entry)."""
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _interrupt)
        app.run(self._program_main, flags_parser=self._parse_or_exit)

    def _program_main(self, argv: Sequence[str]) -> None:
        # TensorFlow's and tf_keras' own INFO lines (SavedModel assets, sharding...) only with
        # --verbosity=1; the tool's progress lines and tfprune's messages are not affected.
        # A filter, not a level: TensorFlow's SavedModel code resets absl's logger level.
        if _verbosity() < absl_logging.DEBUG:
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
        # Like a fresh command line: a --verbosity set earlier in this process (by absl's
        # logging.set_verbosity, another library or tool) does not carry over into this run.
        if "verbosity" in flags.FLAGS:
            flags.FLAGS["verbosity"].unparse()
        try:
            parsed = self._parse_or_status(argv)
            return parsed if isinstance(parsed, int) else self._run_job(parsed)
        finally:
            self.flag_values.unparse_flags()
            flagsaver.restore_flag_values(saved_own, self.flag_values)
            flagsaver.restore_flag_values(saved_absl, flags.FLAGS)

    def _help(self, argv: Sequence[str]) -> bool:
        """Prints the help and returns True when ``argv`` asks for it (before ``--``)."""
        names = _flag_names(argv)
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
        if "list_models" in self.flag_values and "list_models" in _flag_names(argv):
            # Before parsing: required flags (--output_dir...) are not needed to list models.
            return self._run(_LIST_MODELS_JOB)
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
        return self._run(self.job)

    def _run(self, name: str) -> int:
        """Loads job module ``name`` and runs it; the exit status."""
        try:
            with _quiet_tensorflow_start(verbose=_verbosity() >= absl_logging.DEBUG):
                job = importlib.import_module(name)
            job.main(self.flag_values)
        except app.UsageError as err:
            return self._fail(str(err))
        except TfpruneError as err:  # the message names the fix; the flags are not the problem
            return self._fail(str(err), flags_hint=False)
        except KeyboardInterrupt:
            return self._stopped("interrupted", 128 + signal.SIGINT)
        except _Terminated:
            return self._stopped("terminated", 128 + signal.SIGTERM)
        except Exception:
            # A signal that lands while TensorFlow traces a function can come back as another
            # error (AutoGraph reports what its tracing ran into); the signal is what happened.
            if _RECEIVED:
                signum = _RECEIVED[-1]
                word = "terminated" if signum == signal.SIGTERM else "interrupted"
                return self._stopped(word, 128 + signum)
            raise
        return 0

    def _stopped(self, what: str, status: int) -> int:
        sys.stderr.write(f"{self.prog}: {what}: {self.interrupted}\n")
        return status

    def _fail(self, message: str, flags_hint: bool = True) -> int:
        hint = "\n(run with --help to see the flags)" if flags_hint else ""
        sys.stderr.write(f"{self.prog}: error: {message}{hint}\n")
        return 2


_REQUIRED = "(required) "
_LIST_MODELS_JOB = "tfprune.bin.jobs.list_models"
#: What TensorFlow's C++ runtime prints while it loads, before any setting can quiet it: the
#: CUDA driver probe on a machine without a GPU. Hidden at --verbosity < 1; all else is shown.
_START_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called|cudart_stub\.cc|"
    r"Could not find cuda drivers"
)


class _Terminated(BaseException):
    """SIGTERM arrived (a BaseException, like KeyboardInterrupt: no except Exception stops it)."""


#: The signals a program received (SIGINT, SIGTERM), newest last.
_RECEIVED: list[int] = []


def _terminate(signum: int, frame: Any) -> None:
    _RECEIVED.append(signum)
    raise _Terminated()


def _interrupt(signum: int, frame: Any) -> None:
    _RECEIVED.append(signum)
    signal.default_int_handler(signum, frame)


def _required(flag: flags.Flag) -> bool:
    """True for a flag marked with ``flags.mark_flag_as_required``."""
    return any("must have a value other than None" in v.message for v in flag.validators)


def plain_text(doc: str) -> str:
    """A docstring as a terminal shows it: no reST markup (double backquotes, roles, ``::``)."""
    doc = re.sub(r":(?:func|class|mod|data|meth|attr):`~?([^`]+)`", r"\1", doc)
    doc = doc.replace("``", "")
    return re.sub(r"::$", ":", doc, flags=re.MULTILINE)


def _verbosity() -> int:
    """Absl's --verbosity (its unset default -1 counts as 0, INFO)."""
    flag = flags.FLAGS["verbosity"]
    return absl_logging.INFO if flag.using_default_value else int(flag.value)


@contextmanager
def _quiet_tensorflow_start(verbose: bool) -> Iterator[None]:
    """Loads the job quietly unless ``verbose`` (GPUs are still found and used).

    TensorFlow's C++ log is off (``TF_CPP_MIN_LOG_LEVEL=3`` unless the environment sets it),
    and its start-up lines (the CUDA probe, printed before any setting applies) are dropped
    from stderr; everything else written while loading is shown.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if verbose or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _START_NOISE.search(line)))


def _warnings_and_errors(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def _tools_first(module: str) -> tuple[bool, str]:
    """Orders help blocks: the tool's own flags before the shared ones defined here."""
    return (module == __name__, module)
