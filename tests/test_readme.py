"""Every example of the README and every runnable example of the docs runs as written.

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

The pages of the docs site (``docs/**/*.md``) follow the same rules for the blocks marked
runnable: a fenced block whose fence comes right after the line ``<!-- runnable -->`` (an HTML
comment, invisible on the site). Their ``python`` blocks need a :data:`GIVENS` entry like the
README's; their ``sh`` blocks run their tool commands. Unmarked blocks are not run (output
samples, cluster scripts, ``--8<--`` includes of ``examples/``, which tests/test_examples.py
runs). The API reference (``docs/api.md``) must name every public name of the facade.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import pathlib
import re
import shlex
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from core_helpers import run_checkout_python

from tfprune.compat import keras, tf
from tfprune.errors import NothingPrunedWarning
from tfprune.regularization import SeparationWarning

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
RUNNABLE = "<!-- runnable -->"
MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"  # as tests/conftest.py's mnist_dir
# A fence: ```lang, or ```{.lang} (how the docs include examples/ files, which ruff leaves be).
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?:\{\.)?(?P<lang>[\w-]*)\}?[ \t]*$")


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block: its language, first code line (1-based), code, and run marker."""

    lang: str
    line: int
    code: str
    marked: bool = False  # the line before its fence is RUNNABLE


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
        marked = i > 0 and lines[i - 1].strip() == RUNNABLE
        blocks.append(Block(start["lang"], i + 2, "\n".join(body) + "\n", marked))
        i = j + 1
    return blocks


def documents() -> list[pathlib.Path]:
    """The README and the pages of the docs site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def _name(path: pathlib.Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def runnable_blocks(path: pathlib.Path) -> list[Block]:
    """The blocks of ``path`` that tests run: all of the README's, the marked ones elsewhere."""
    blocks = readme_blocks(path.read_text())
    return blocks if path == README else [b for b in blocks if b.marked]


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


def document_commands(path: pathlib.Path) -> list[tuple[int, str]]:
    """``(line, command)`` of the tool commands ``path`` runs: see :func:`tool_commands`.

    The README's every command; a docs page's commands in its runnable ``sh`` blocks.
    """
    if path == README:
        return tool_commands(path.read_text())
    found: dict[str, int] = {}
    for block in runnable_blocks(path):
        if block.lang == "sh":
            for command in _commands_of(block.code):
                found.setdefault(command, block.line)
    return sorted(((line, command) for command, line in found.items()), key=lambda lc: lc[0])


def all_commands() -> list[tuple[str, int, str]]:
    """``(document, line, command)`` of every command the README and the docs run, first seen."""
    found: dict[str, tuple[str, int]] = {}
    for path in documents():
        for line, command in document_commands(path):
            found.setdefault(command, (_name(path), line))
    return [(document, line, command) for command, (document, line) in found.items()]


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


def _mobilenet_givens() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    x = rng.random((2, 96, 96, 3), np.float32)
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


def _first_prune_check(ns: dict[str, Any]) -> None:
    import tfprune

    assert (tfprune.count_params(ns["model"]), tfprune.count_params(ns["small"])) == (
        38_442,
        10_010,
    )
    assert pathlib.Path("small_cnn.keras").is_file()


def _keras3_check(ns: dict[str, Any]) -> None:
    from tfprune import compat

    assert compat.flavour_of(ns["model"]) == compat.KERAS3


def _keras3_orthp_check(ns: dict[str, Any]) -> None:
    kernel = np.asarray(ns["model"].layers[1].kernel, "float64")
    np.testing.assert_allclose(kernel.T @ kernel, 2.0 * np.eye(16), atol=1e-5)


def _keras3_prune_givens() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.uniform(size=(64, 28, 28, 1)), "y_train": rng.integers(0, 10, 64)}


def _keras3_prune_check(ns: dict[str, Any]) -> None:
    from tfprune import compat

    small, masked, x = ns["small"], ns["masked"], ns["x_train"][:4]
    assert compat.flavour_of(small) == compat.KERAS3
    assert [la.filters for la in small.layers if hasattr(la, "filters")] == [8, 16]
    np.testing.assert_allclose(small(x), masked(x), rtol=1e-5, atol=1e-5)
    assert pathlib.Path("serving/keras3/1/saved_model.pb").is_file()


def _keras3_greg_check(ns: dict[str, Any]) -> None:
    from tfprune import compat

    small, masked, x = ns["small"], ns["masked"], ns["images"][:4]
    assert compat.flavour_of(small) == compat.KERAS3 and ns["greg"].phase == "done"
    assert small.get_layer("conv").filters == 4 and masked.losses == []
    np.testing.assert_allclose(small(x), masked(x), rtol=1e-5, atol=1e-5)


@dataclasses.dataclass(frozen=True)
class Givens:
    """What one python block needs: the reader's names, the check after it, its cost."""

    marker: str  # a line of the block that identifies it
    givens: Callable[[], dict[str, Any]] = dict
    check: Callable[[dict[str, Any]], None] | None = None
    slow: bool = False
    needs: tuple[str, ...] = ()  # optional modules (the deploy extra)


GIVENS = [
    Givens(
        "model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10)",
        _mobilenet_givens,
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
    Givens('model = get_model("small_cnn", seed=0)  # any', check=_first_prune_check),
    Givens("model = keras.applications.MobileNetV2(weights=None)", check=_keras3_check),
    Givens("tfprune.orthp(model)  # every kernel", check=_keras3_orthp_check),
    Givens("0.5, delta=1.0, ceiling=9.0, update_every=1", check=_keras3_greg_check),
    Givens(
        "masked = tfprune.prune_filters(net, 0.5)",
        _keras3_prune_givens,
        _keras3_prune_check,
        needs=("tensorflow_serving",),
    ),
]

# The names the README's first block imports, which the later blocks use.
IMPORTED = "import tfprune\nfrom tfprune.compat import keras\n"


def _python_cases() -> list[Any]:
    cases = []
    for path in documents():
        for block in runnable_blocks(path):
            if block.lang != "python":
                continue
            found = [g for g in GIVENS if g.marker in block.code]
            given = found[0] if len(found) == 1 else None
            marks = [pytest.mark.slow] if given is not None and given.slow else []
            where = f"{_name(path)}:{block.line}"
            cases.append(pytest.param(where, block, given, id=where, marks=marks))
    return cases


def _fresh_clone(folder: Any) -> None:
    """What a clone has that the examples read: configs/, and MNIST in data/mnist if we have it."""
    (folder / "configs").symlink_to(REPO_ROOT / "configs")
    if MNIST.is_dir():
        (folder / "data").mkdir()
        (folder / "data" / "mnist").symlink_to(MNIST)


@pytest.mark.parametrize(("where", "block", "given"), _python_cases())
def test_readme_python_block_runs_as_written(where, block, given, tmp_path, monkeypatch):
    assert given is not None, (
        f"the python block at {where} has no (or several) entries in GIVENS of "
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
        exec(compile(block.code, where, "exec"), namespace)  # noqa: S102
    bad = [w for w in caught if issubclass(w.category, (NothingPrunedWarning, SeparationWarning))]
    assert not bad, [str(w.message) for w in bad]
    if given.check is not None:
        given.check(namespace)


# ---------------------------------------------------------------------------------------------
# Tool commands

# Commands a test elsewhere runs as written, with closer checks of what they print and write
# (in its own process where a fresh one is not the point): a part of the command -> that test.
# The test holds the command's arguments as written (a /tmp path may go into its own folder), or
# reads them from the README (which one:
# test_the_tests_that_run_commands_elsewhere_exist_and_run_them_as_written).
RUN_ELSEWHERE = {
    "--config=configs/scratch_vs_prune.yaml": (
        "tests/bin/test_compare_resume.py::test_the_readme_scratch_vs_prune_command_runs_end_to_end"
    ),
    "--config=configs/finetune_lr.yaml --dry_run": (
        "tests/protocols/test_configs_files.py::"
        "test_the_readme_dry_run_of_finetune_lr_yaml_prints_the_default_grid"
    ),
    "-m tfprune.bin.compare --dry_run --calibrate": (
        "tests/protocols/test_cost.py::test_dry_run_with_calibrate_prints_the_costs"
    ),
    "-m tfprune.bin.export --model=resnet20 --sparsity=0.5 --base_dir=/tmp/serving": (
        "tests/export/test_export_bin.py::"
        "test_the_serving_guides_command_verifies_in_a_process_without_tfprune"
    ),
}

# Commands that finish in seconds (no training); every other command trains and is slow.
QUICK = ("--dry_run", "--help")

# Commands that take minutes as written (the main job, 30 epochs of training): marked
# ``acceptance``, which the suite leaves out; CI runs them in their own step
# (``pytest -m acceptance``). The release step of CI also runs the main job, made small.
FULL_LENGTH = (
    "-m tfprune.bin.compare --output_dir=results",
    "-m tfprune.bin.train --output_dir=base",
)


def _tool_cases() -> list[Any]:
    cases = []
    for document, line, command in all_commands():
        if any(key in command for key in RUN_ELSEWHERE) or _follows_a_run(command):
            continue
        marks = (
            []
            if any(q in command for q in QUICK) and "--calibrate" not in command
            else [pytest.mark.slow]
        )
        if any(key in command for key in FULL_LENGTH):
            marks.append(pytest.mark.acceptance)
        where = f"{document}:{line}"
        cases.append(pytest.param(where, command, id=f"{where}: {command}", marks=marks))
    return cases


def _followers(command: str) -> list[str]:
    """Report commands of the README or docs that read what the compare ``command`` writes.

    One test runs both, so the protocol trains once and no test reads another's output.
    """
    folder = re.search(r"--output_dir=(\S+)", command)
    if "-m tfprune.bin.compare" not in command or "--dry_run" in command or folder is None:
        return []
    return [
        c
        for _, _, c in all_commands()
        if "-m tfprune.bin.report" in c and f"--output_dir={folder[1]}" in c
    ]


def _follows_a_run(command: str) -> bool:
    """Whether ``command`` is a report run by the test of the compare command it reads."""
    return any(command in _followers(c) for _, _, c in all_commands())


def _as_run_here(command: str, folder: Any) -> list[str]:
    words = shlex.split(command)
    words[0] = sys.executable  # .venv/bin/python, python or python3
    return [w.replace("=/tmp/", f"={folder}/") for w in words]


@pytest.mark.parametrize(("where", "command"), _tool_cases())
def test_readme_tool_command_runs_as_written(where, command, tmp_path):
    if "--onnx" in command or "--tflite" in command:
        for module in ("tf2onnx", "onnxruntime", "tensorflow_serving"):
            pytest.importorskip(module, reason=f"the deploy extra ({module}) is not installed")
    if "--data_dir=data/mnist" in command and not MNIST.is_dir():
        pytest.skip(f"no MNIST files in {MNIST}")
    _fresh_clone(tmp_path)
    for step in [command, *_followers(command)]:
        done = run_checkout_python(_as_run_here(step, tmp_path)[1:], tmp_path, timeout=3600)
        assert done.returncode == 0, (
            f"{where}: `{step}` exited {done.returncode}:\n{done.stderr[-3000:]}"
        )


def _function_and_module(test: str) -> tuple[str, ast.Module]:
    """The source of the test function ``path::name``, and its module's tree."""
    path, name = test.split("::")
    text = (REPO_ROOT / path).read_text()
    module = ast.parse(text)
    found = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert len(found) == 1, f"{test} does not exist"
    return ast.get_source_segment(text, found[0]) or "", module


def test_the_tests_that_run_commands_elsewhere_exist_and_run_them_as_written():
    """Each RUN_ELSEWHERE command's test exists and runs it.

    It runs the command's arguments as written (a string constant of its module that the test
    uses) or reads them from the README.
    """
    commands = [c for _, _, c in all_commands()]
    for key, test in RUN_ELSEWHERE.items():
        (command,) = [c for c in commands if key in c]  # one command, still in the docs
        arguments = shlex.split(command)[3:]
        function, module = _function_and_module(test)
        constants = {
            n.targets[0].id: n.value.value
            for n in module.body
            if isinstance(n, ast.Assign)
            and isinstance(n.targets[0], ast.Name)
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
        }
        as_written = [
            name
            for name, value in constants.items()
            if shlex.split(value) == arguments and re.search(rf"\b{name}\b", function)
        ]
        config = re.search(r"--config=configs/(\w+)\.yaml", key)
        from_the_readme = config is not None and f'readme_command("{config[1]}")' in function
        assert as_written or from_the_readme, f"{test} does not run `{command}`"


def test_the_harness_finds_every_kind_of_example():
    """The extraction itself: blocks in list items, continuation lines, chains, inline code."""
    python = [b for p in documents() for b in runnable_blocks(p) if b.lang == "python"]
    assert len(python) == len(GIVENS)
    assert all(sum(g.marker in b.code for b in python) == 1 for g in GIVENS)
    commands = [c for _, _, c in all_commands()]
    assert any(c.endswith("-m tfprune.bin.compare --output_dir=results") for c in commands)
    assert any("--raw_dtype=uint8" in c and "--base_dir=/tmp/serving" in c for c in commands)
    assert not any("pip install" in c or "pytest" in c for c in commands)
    assert all(not c.startswith(("tfprune-", "TF_CONFIG")) for c in commands)


def test_a_runnable_marker_marks_the_block_that_follows_it():
    text = "a\n\n<!-- runnable -->\n```python\nx = 1\n```\n\n```python\ny = 2\n```\n"
    assert [(b.code, b.marked) for b in readme_blocks(text)] == [
        ("x = 1\n", True),
        ("y = 2\n", False),
    ]


def _facade_names() -> list[str]:
    """``__all__`` of ``tfprune/__init__.pyi``: every name ``import tfprune`` offers."""
    tree = ast.parse((REPO_ROOT / "tfprune" / "__init__.pyi").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("tfprune/__init__.pyi has no __all__")


def test_the_api_reference_has_an_entry_for_every_public_name():
    entries = re.findall(r"^::: tfprune\.(\w+)\s*$", (DOCS / "api.md").read_text(), flags=re.M)
    names = _facade_names()
    assert len(names) > 50
    assert sorted(set(names) - set(entries)) == [], "add them to docs/api.md"
    assert sorted(set(entries) - set(names)) == [], "not public names of tfprune/__init__.pyi"
    assert len(entries) == len(set(entries))


def test_the_docs_include_every_example_and_only_existing_files():
    included = {
        m[1]
        for p in documents()
        for m in re.finditer(r'^--8<-- "([^":]+)(?::[-\w]+)?"', p.read_text(), flags=re.M)
    }
    assert all((REPO_ROOT / f).is_file() for f in included), included
    examples = {f"examples/{p.name}" for p in (REPO_ROOT / "examples").iterdir() if p.is_file()}
    assert examples <= included, sorted(examples - included)
