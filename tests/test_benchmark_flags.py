"""The benchmark scripts take absl flags with help texts, as the tools do.

Read from the scripts' source (running one imports TensorFlow and measures for minutes); one
script that imports TensorFlow only when it measures is asked for ``--help``.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO_ROOT / "benchmarks").glob("*.py"))


def _flags_of(path: pathlib.Path) -> dict[str, ast.expr | None]:
    """``flags.DEFINE_*(name, default, help)`` calls of a script: name -> help expression."""
    found: dict[str, ast.expr | None] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("DEFINE_")
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "flags"
        ):
            continue
        name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else None
        helps = [k.value for k in node.keywords if k.arg == "help"] + node.args[2:3]
        found[name] = helps[0] if helps else None
    return found


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_benchmark_defines_absl_flags_with_help_texts(path):
    source = path.read_text()
    assert not re.search(r"^\s*import argparse|^\s*from argparse", source, re.M)
    assert "app.run(main)" in source
    defined = _flags_of(path)
    assert defined, f"{path.name} defines no flags"
    for name, text in defined.items():
        assert isinstance(name, str), f"{path.name}: a flag without a literal name"
        empty = isinstance(text, ast.Constant) and not str(text.value).strip()
        assert text is not None and not empty, f"{path.name}: --{name} has no help text"


def _readme_benchmark_flags() -> list[tuple[str, str]]:
    """``(script, flag)`` of every flag the README or the docs pass to a benchmark script."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    text = "\n".join(p.read_text() for p in pages)
    out = []
    command = re.compile(r"benchmarks/(\w+\.py)((?:[ \t]+[^\s`]+)*)")  # to the line's end
    for match in command.finditer(text):
        for flag in re.findall(r"--([\w-]+)", match[2]):
            out.append((match[1], flag))
    return sorted(set(out))


def test_every_flag_the_readme_gives_a_benchmark_is_defined():
    used = _readme_benchmark_flags()
    assert ("deploy_speed.py", "no_torch") in used and ("coverage.py", "size") in used
    assert ("input_speed.py", "image_size") in used  # in a comment after the command
    for script, flag in used:
        assert flag in _flags_of(REPO_ROOT / "benchmarks" / script), (script, flag)


def test_benchmark_help_lists_flags_with_their_help():
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "export_verify.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr  # absl's --help exits 1
    assert "--timeout: Seconds each model may take" in done.stdout
    assert "--[no]no_runtimes: Skip the TFLite and ONNX" in done.stdout
