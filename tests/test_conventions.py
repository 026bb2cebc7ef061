"""Keras conventions a user relies on.

Counts are numbers, both exports return one type, and messages name what was passed.
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import pytest

import tfprune
from tfprune.compat import keras
from tfprune.errors import UnsupportedModelError
from tfprune.export import ExportResult

L = keras.layers


def _model() -> keras.Model:
    inputs = keras.Input((6,), name="features")
    x = L.Dense(8, activation="relu", name="hidden")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def test_count_params_is_usable_as_the_number_keras_returns():
    model = _model()
    count = tfprune.count_params(model)
    expected = model.count_params()  # 6*8+8 + 4*8 + 8*3+3 = 115
    assert f"{count:,}" == f"{expected:,}"
    assert int(count) == expected and count == expected and expected == count
    assert count > expected - 1 and count >= expected and count < expected + 1
    assert count / 5 == expected / 5 and 2 * count == 2 * expected
    assert sum([count, count]) == 2 * expected
    assert count - tfprune.count_params(model, trainable_only=True) == 16  # BN moving stats
    assert list(range(3))[count - expected] == 0  # an index, like an int
    assert "total" in str(count) and "hidden" in f"{count}"  # the table, as before
    assert count.per_layer["hidden"] == 6 * 8 + 8
    assert count == tfprune.count_params(model)
    assert count != tfprune.count_flops(model)


def test_both_exports_return_an_export_result_that_is_the_path(tmp_path):
    model = _model()
    single = tfprune.export_saved_model(model, tmp_path / "single")
    served = tfprune.export_for_serving(model, tmp_path / "serving", warmup=False)
    for result, path in ((single, tmp_path / "single"), (served, tmp_path / "serving" / "1")):
        assert isinstance(result, ExportResult) and isinstance(result, str)
        assert result == str(path) == result.path
        assert os.path.isfile(os.path.join(result, "saved_model.pb"))
        assert f"exported to {result}" == f"exported to {path}"
        assert "reloaded vs model" in result.summary()
    assert single.version is None and served.version == 1


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_exports_do_not_log_the_unbuilt_metrics_note(tmp_path):
    model = _model()
    logger = logging.getLogger("tensorflow")
    collect = _Collect()
    logger.addHandler(collect)
    try:
        keras.models.save_model(model, str(tmp_path / "plain"), save_format="tf")
        plain = list(collect.messages)
        collect.messages.clear()
        tfprune.export_saved_model(model, tmp_path / "single")
        tfprune.export_for_serving(model, tmp_path / "serving", warmup=False)
    finally:
        logger.removeHandler(collect)
    note = "compiled metrics have yet to be built"
    assert any(note in m for m in plain)  # what tf_keras prints on its own
    assert not any(note in m for m in collect.messages), collect.messages
    assert not logger.filters  # the export's filter is gone afterwards


def test_a_layer_passed_as_a_model_is_named_a_layer():
    with pytest.raises(UnsupportedModelError, match="Dense is a layer, not a model") as err:
        tfprune.prune_filters(L.Dense(4), 0.5)
    assert "Keras 3" not in str(err.value)
    assert "keras.Sequential([keras.Input(shape), layer])" in str(err.value)


def test_onnx_export_logs_no_tf2onnx_info_lines(tmp_path, caplog):
    for module in ("tf2onnx", "onnxruntime"):
        pytest.importorskip(module, reason=f"the deploy extra ({module}) is not installed")
    caplog.set_level(logging.INFO)
    result = tfprune.export_saved_model(_model(), tmp_path / "m", onnx=True)
    assert os.path.isfile(result.onnx_path)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("tf2onnx")] == []
    assert logging.getLogger("tf2onnx").level == logging.NOTSET  # restored afterwards


def test_every_public_error_type_is_defined_in_tfprune_errors():
    # One import path per error: a public exception class anywhere else is a second home.
    package = Path(tfprune.__file__).parent
    elsewhere = []
    for path in sorted(package.rglob("*.py")):
        if path == package / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            bases = [ast.unparse(b) for b in getattr(node, "bases", [])]
            if (
                isinstance(node, ast.ClassDef)
                and not node.name.startswith("_")
                and any(b.endswith(("Error", "Exception")) for b in bases)
            ):
                elsewhere.append(f"{path.relative_to(package)}:{node.name}")
    assert elsewhere == []


def test_no_module_imports_another_modules_private_name():
    # A helper two modules share is a public building block of the module that defines it.
    package = Path(tfprune.__file__).parent
    private = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfprune"):
                private += [
                    f"{path.relative_to(package)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert private == []


def _all_names(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            return set(ast.literal_eval(node.value))
    return set()


def test_each_public_name_has_one_home():
    # A module's __all__ lists what it defines; a package's lists what its own modules define.
    package = Path(tfprune.__file__).parent
    second_homes = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        public = _all_names(tree)
        parts = path.relative_to(package.parent).with_suffix("").parts
        own = ".".join(parts[:-1]) + "." if path.name == "__init__.py" else None
        for node in tree.body:
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if not (module or "").startswith("tfprune"):
                continue
            if own is not None and module.startswith(own):
                continue  # a package gathers the names of its own modules
            second_homes += [
                f"{path.relative_to(package)}: {alias.asname or alias.name} from {module}"
                for alias in node.names
                if (alias.asname or alias.name) in public
            ]
    assert second_homes == []
