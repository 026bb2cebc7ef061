"""Every example of the README runs as written.

The README's fenced ``python`` blocks run in this process, in a temporary working folder, on
small data: a block uses names the README leaves to the reader (``model``, ``train_ds``,
``base``...), and :data:`GIVENS` supplies them, one entry per block (a block without one fails
here, so a new example cannot go untested). Its ``sh`` blocks and inline code spans that run a
tool (``python -m tfprune.bin.<tool> ...``) run as written in a subprocess whose working folder
looks like a fresh clone (``configs/``, and MNIST's files in ``data/mnist`` when the shared test
data has them); ``.venv/bin/python`` is this interpreter and a ``/tmp/...`` path goes into the
temporary folder instead. Not run: ``pip install`` and ``python3 -m venv`` (the environment the
tests run in), the test command itself, ``benchmarks/`` scripts (long measurements, run by
hand), and the cluster examples (Slurm, multi-worker ``TF_CONFIG``), which need a cluster.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shlex
import subprocess
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tfprune.compat import keras, tf
from tfprune.errors import NothingPrunedWarning
from tfprune.regularization import SeparationWarning

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"  # as tests/conftest.py's mnist_dir
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[ \t]*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block of the README: its language, first code line (1-based) and code."""

    lang: str
    line: int
    code: str


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text``, de-indented (blocks inside list items included)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = FENCE.match(lines[i])
        if not start:
            i += 1
            continue
        indent, body, j = len(start["indent"]), [], i + 1
        while j < len(lines) and not FENCE.match(lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        blocks.append(Block(start["lang"], i + 2, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _is_tool(words: list[str]) -> bool:
    """``python -m tfprune.bin.<tool> ...`` (any python: ``.venv/bin/python``, ``python3``)."""
    return (
        len(words) >= 3
        and os.path.basename(words[0]) in ("python", "python3")
        and words[1] == "-m"
        and words[2].startswith("tfprune.bin.")
    )


def _commands_of(code: str) -> list[str]:
    """Tool commands of shell code: continuation lines joined, ``&&`` chains split."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        for part in line.split("&&"):
            if "-m tfprune.bin." not in part:
                continue
            words = shlex.split(part, comments=True)
            if _is_tool(words):
                commands.append(" ".join(shlex.quote(w) for w in words))
    return commands


def tool_commands(text: str) -> list[tuple[int, str]]:
    """``(line, command)`` of every tool command in sh blocks and inline code, first seen.

    An inline command in parentheses right after a tool's name ("`tfprune-export`
    (`python -m tfprune.bin.export`)") names the tool; it is not a command to run.
    """
    found: dict[str, int] = {}
    for block in readme_blocks(text):
        if block.lang == "sh":
            for command in _commands_of(block.code):
                found.setdefault(command, block.line)
    # Inline code outside the fenced blocks (blanked out, so that line numbers stay).
    prose = re.sub(
        r"^[ \t]*```.*?^[ \t]*```[ \t]*$",
        lambda m: "\n" * m[0].count("\n"),
        text,
        flags=re.M | re.S,
    )
    for match in re.finditer(r"(\(?)`([^`]+)`(\)?)", prose):
        if match[1] and match[3]:
            continue
        line = prose.count("\n", 0, match.start()) + 1
        for command in _commands_of(" ".join(match[2].split())):
            found.setdefault(command, line)
    return sorted(((line, command) for command, line in found.items()), key=lambda lc: lc[0])


# ---------------------------------------------------------------------------------------------
# Python blocks


def _digits(batch_size: int) -> Any:
    from tfprune.data import load_dataset

    return load_dataset("digits", batch_size=batch_size, seed=0, deterministic=True)


def _softmax_cnn() -> keras.Model:
    """A small digits CNN with a softmax head (the README's generic ``model``)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))


def _resnet50_givens() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.random((2, 224, 224, 3), np.float32)
    y = np.asarray([3, 7])
    return {"train_ds": tf.data.Dataset.from_tensor_slices((x, y)).batch(2)}


def _serving_givens() -> dict[str, Any]:
    from tfprune import shrink
    from tfprune.models import get_model

    return {"small": shrink(get_model("small_cnn", seed=0), 0.5)}


def _target_givens() -> dict[str, Any]:
    from tfprune.models import get_model

    return {"model": get_model("resnet56")}


def _gradual_givens() -> dict[str, Any]:
    return {"model": _softmax_cnn(), "ds": _digits(32).train}


def _gradual_check(ns: dict[str, Any]) -> None:
    import tfprune

    small = tfprune.strip_filters(ns["masked"])
    assert small.count_params() < ns["model"].count_params()


def _greg_givens() -> dict[str, Any]:
    from tfprune.models import get_model

    keras.utils.set_random_seed(0)
    data = _digits(32)
    x_sample = next(iter(data.test))[0]
    return {"base": get_model("small_cnn", seed=0), "train_ds": data.train, "x_sample": x_sample}


def _greg_check(ns: dict[str, Any]) -> None:
    assert ns["greg"].phase == "done"
    assert (ns["base"].count_params(), ns["small"].count_params()) == (38_442, 10_010)


def _keras3_check(ns: dict[str, Any]) -> None:
    from tfprune import compat

    assert compat.flavour_of(ns["model"]) == compat.KERAS3


def _keras3_prune_givens() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.uniform(size=(64, 28, 28, 1)), "y_train": rng.integers(0, 10, 64)}


def _keras3_prune_check(ns: dict[str, Any]) -> None:
    from tfprune import compat

    small, masked, x = ns["small"], ns["masked"], ns["x_train"][:4]
    assert compat.flavour_of(small) == compat.KERAS3
    assert [la.filters for la in small.layers if hasattr(la, "filters")] == [8, 16]
    np.testing.assert_allclose(small(x), masked(x), rtol=1e-5, atol=1e-5)


@dataclasses.dataclass(frozen=True)
class Givens:
    """What one README python block needs: the reader's names, the check after it, its cost."""

    marker: str  # a line of the block that identifies it
    givens: Callable[[], dict[str, Any]] = dict
    check: Callable[[dict[str, Any]], None] | None = None
    slow: bool = False
    needs: tuple[str, ...] = ()  # optional modules (the deploy extra)


GIVENS = [
    Givens(
        "model = keras.applications.ResNet50(weights=None)",
        _resnet50_givens,
        slow=True,
        needs=("tensorflow_serving",),  # export_for_serving writes warm-up requests
    ),
    Givens(
        'result = tfprune.export_for_serving(small, "serving/resnet")',
        _serving_givens,
        needs=("tensorflow_serving",),
    ),
    Givens("found = tfprune.find_sparsity_for_target(", _target_givens, slow=True),
    Givens("schedule = tfmot.sparsity.keras.PolynomialDecay(", _gradual_givens, _gradual_check),
    Givens("greg = tfprune.GrowingRegularization(", _greg_givens, _greg_check, slow=True),
    Givens("specs = expand_config(resolve_config(", slow=True),
    Givens("model = keras.applications.MobileNetV2(weights=None)", check=_keras3_check),
    Givens("masked = tfprune.prune_filters(net, 0.5)", _keras3_prune_givens, _keras3_prune_check),
]

# The names the README's first block imports, which the later blocks use.
IMPORTED = "import tfprune\nfrom tfprune.compat import keras\n"


def _python_cases() -> list[Any]:
    cases = []
    for block in readme_blocks(README.read_text()):
        if block.lang != "python":
            continue
        found = [g for g in GIVENS if g.marker in block.code]
        given = found[0] if len(found) == 1 else None
        marks = [pytest.mark.slow] if given is not None and given.slow else []
        cases.append(pytest.param(block, given, id=f"README.md:{block.line}", marks=marks))
    return cases


def _fresh_clone(folder: Any) -> None:
    """What a clone has that the examples read: configs/, and MNIST in data/mnist if we have it."""
    (folder / "configs").symlink_to(REPO_ROOT / "configs")
    if MNIST.is_dir():
        (folder / "data").mkdir()
        (folder / "data" / "mnist").symlink_to(MNIST)


@pytest.mark.parametrize(("block", "given"), _python_cases())
def test_readme_python_block_runs_as_written(block, given, tmp_path, monkeypatch):
    assert given is not None, (
        f"the python block at README.md:{block.line} has no (or several) entries in GIVENS of "
        f"tests/test_readme.py; add the names it leaves to the reader:\n{block.code}"
    )
    for module in given.needs:
        pytest.importorskip(module, reason=f"the deploy extra ({module}) is not installed")
    _fresh_clone(tmp_path)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(IMPORTED, "README.md", "exec"), namespace)  # noqa: S102 - the README's code
    namespace.update(given.givens())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)  # noqa: S102
    bad = [w for w in caught if issubclass(w.category, (NothingPrunedWarning, SeparationWarning))]
    assert not bad, [str(w.message) for w in bad]
    if given.check is not None:
        given.check(namespace)


# ---------------------------------------------------------------------------------------------
# Tool commands

# Commands a test elsewhere runs as written, with closer checks of what they print and write.
RUN_ELSEWHERE = {
    "--config=configs/scratch_vs_prune.yaml": (
        "tests/bin/test_compare_resume.py::test_the_readme_scratch_vs_prune_command_runs_end_to_end"
    ),
}

# Commands that finish in seconds (no training); every other command trains and is slow.
QUICK = ("--dry_run", "--help")


def _tool_cases() -> list[Any]:
    cases = []
    commands = tool_commands(README.read_text())
    for line, command in commands:
        if any(key in command for key in RUN_ELSEWHERE) or _follows_a_run(command):
            continue
        marks = (
            []
            if any(q in command for q in QUICK) and "--calibrate" not in command
            else [pytest.mark.slow]
        )
        cases.append(pytest.param(line, command, id=f"README.md:{line}: {command}", marks=marks))
    return cases


def _followers(command: str) -> list[str]:
    """README report commands that read what the compare ``command`` writes (run after it).

    One test runs both, so the protocol trains once and no test reads another's output.
    """
    folder = re.search(r"--output_dir=(\S+)", command)
    if "-m tfprune.bin.compare" not in command or "--dry_run" in command or folder is None:
        return []
    return [
        c
        for _, c in tool_commands(README.read_text())
        if "-m tfprune.bin.report" in c and f"--output_dir={folder[1]}" in c
    ]


def _follows_a_run(command: str) -> bool:
    """Whether ``command`` is a report run by the test of the compare command it reads."""
    return any(command in _followers(c) for _, c in tool_commands(README.read_text()))


def _as_run_here(command: str, folder: Any) -> list[str]:
    words = shlex.split(command)
    words[0] = sys.executable  # .venv/bin/python, python or python3
    return [w.replace("=/tmp/", f"={folder}/") for w in words]


@pytest.mark.parametrize(("line", "command"), _tool_cases())
def test_readme_tool_command_runs_as_written(line, command, tmp_path):
    if "--onnx" in command or "--tflite" in command:
        for module in ("tf2onnx", "onnxruntime", "tensorflow_serving"):
            pytest.importorskip(module, reason=f"the deploy extra ({module}) is not installed")
    if "--data_dir=data/mnist" in command and not MNIST.is_dir():
        pytest.skip(f"no MNIST files in {MNIST}")
    _fresh_clone(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    for step in [command, *_followers(command)]:
        done = subprocess.run(
            _as_run_here(step, tmp_path),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
            check=False,
        )
        assert done.returncode == 0, (
            f"README.md:{line}: `{step}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        )


def test_the_harness_finds_every_kind_of_example():
    """The extraction itself: blocks in list items, continuation lines, chains, inline code."""
    text = README.read_text()
    langs = [b.lang for b in readme_blocks(text)]
    assert langs.count("python") == len(GIVENS)
    commands = [c for _, c in tool_commands(text)]
    assert any(c.endswith("-m tfprune.bin.compare --output_dir=results") for c in commands)
    assert any("--raw_dtype=uint8" in c and "--base_dir=/tmp/serving" in c for c in commands)
    assert not any("pip install" in c or "pytest" in c for c in commands)
    assert all(not c.startswith(("tfprune-", "TF_CONFIG")) for c in commands)
