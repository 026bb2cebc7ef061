"""The tools as a new user meets them.

They never touch others' files, never score a model on its own training images, build every zoo
model or say why not, and answer mistakes in one line.

Tools run in this process on a command line (``BINARY([...])``); the signal tests start real
processes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from core_helpers import tool_error_line

import tfprune
from tfprune.bin import compare, export, prune, report, train
from tfprune.compat import keras, tf
from tfprune.data import load_dataset
from tfprune.errors import InvalidArgumentError
from tfprune.models import list_models
from tfprune.protocols.execute import build_model

REPO = Path(__file__).resolve().parents[2]
QUICK_PRUNE = ["--train_epochs=0", "--retrain_epochs=0"]


def one_line_error(capsys, tool: str, *needles: str) -> str:
    """The tool's error line; asserts it is one line holding ``needles``.

    Only a flag error adds the hint "(run with --help to see the flags)" below it.
    """
    line = tool_error_line(capsys.readouterr().err, tool)
    for needle in needles:
        assert needle in line, line
    return line


@pytest.fixture
def precious(tmp_path) -> Path:
    """A user's folder with a thesis and a subfolder in it."""
    folder = tmp_path / "precious"
    (folder / "chapters").mkdir(parents=True)
    (folder / "thesis.txt").write_text("my thesis")
    (folder / "chapters" / "one.txt").write_text("chapter one")
    return folder


def untouched(folder: Path) -> bool:
    return (folder / "thesis.txt").read_text() == "my thesis" and sorted(
        p.name for p in folder.rglob("*")
    ) == ["chapters", "one.txt", "thesis.txt"]


# -- 1. never destroy what tfprune did not write ---------------------------------------------------


@pytest.mark.parametrize(
    "tool, args, flag",
    [
        ("prune", QUICK_PRUNE, "--export_dir"),
        ("train", ["--epochs=1"], "--output_dir"),
        ("compare", [], "--output_dir"),
        ("export", ["--model=small_cnn", "--nowarmup"], "--base_dir"),
    ],
)
def test_a_folder_of_someone_elses_files_is_refused_and_kept(tool, args, flag, precious, capsys):
    binary = {"prune": prune, "train": train, "compare": compare, "export": export}[tool].BINARY
    assert binary([*args, f"{flag}={precious}"]) == 2
    line = one_line_error(capsys, tool, flag, "thesis.txt", "new or empty folder")
    assert str(precious) in line
    assert untouched(precious)


@pytest.mark.parametrize("tool", ["prune", "train", "compare", "export"])
def test_the_current_folder_and_a_git_checkout_are_refused(tool, tmp_path, monkeypatch, capsys):
    flag = {"prune": "--export_dir", "export": "--base_dir"}.get(tool, "--output_dir")
    extra = {"prune": QUICK_PRUNE, "export": ["--model=small_cnn", "--nowarmup"]}.get(tool, [])
    binary = {"prune": prune, "train": train, "compare": compare, "export": export}[tool].BINARY
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "README.md").write_text("# a project")
    monkeypatch.chdir(checkout)
    for target in (".", str(checkout)):
        assert binary([*extra, f"{flag}={target}"]) == 2
        one_line_error(capsys, tool, flag, "a git repository")
    assert sorted(p.name for p in checkout.iterdir()) == [".git", "README.md"]


def test_a_failed_train_leaves_no_folder(tmp_path, capsys):
    for args in (
        ["--dataset=mnist", f"--data_dir={tmp_path / 'nowhere'}"],  # refused before any folder
        ["--model=lenet5"],  # refused once training starts (digits are 8x8)
    ):
        out = tmp_path / "base"
        assert train.BINARY([*args, "--epochs=1", f"--output_dir={out}"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("tfprune-train: error: ") and "Traceback" not in err
        assert not out.exists()


def test_export_without_the_deploy_extra_says_how_to_install_and_leaves_no_folder(tmp_path, capsys):
    if importlib.util.find_spec("tensorflow_serving") is None:
        wanted = []  # warm-up requests (on by default) need tensorflow-serving-api
    elif importlib.util.find_spec("tf2onnx") is None:
        wanted = ["--nowarmup", "--tflite", "--onnx"]
    else:
        pytest.skip("the deploy extra is installed")
    base = tmp_path / "serving"
    assert export.BINARY(["--model=small_cnn", *wanted, f"--base_dir={base}"]) == 2
    one_line_error(capsys, "export", "pip install 'tfprune[deploy]'", "pip install -e '.[deploy]'")
    assert not base.exists()


# -- 2. no leakage: a trained model is tested on its own held-out split ------------------------


def test_prune_tests_a_trained_model_on_the_split_it_was_trained_beside(tmp_path, capsys):
    """... and replaces its own export only with --overwrite (the same two prunings export)."""
    out = tmp_path / "base"
    assert train.BINARY(["--epochs=1", "--schedule=0:0.05", f"--output_dir={out}"]) == 0
    captured = capsys.readouterr().out
    assert "held-out test split: digits, seed 0" in captured
    metrics = json.loads(captured[captured.index("{") :])
    split = json.loads((out / "split.json").read_text())
    assert split == {"dataset": "digits", "data_dir": None, "seed": 0}
    # A seed other than the tools' default: prune must take it from split.json.
    assert train.BINARY(["--epochs=1", "--seed=3", f"--output_dir={tmp_path / 'b3'}"]) == 0
    metrics3 = json.loads((tmp_path / "b3" / "metrics.json").read_text())
    capsys.readouterr()
    small = tmp_path / "small"
    # The first pruning exports to small/; the second is refused there, then replaces it.
    for folder, acc, overwrite in (
        (out, metrics["acc"], []),
        (tmp_path / "b3", metrics3["acc"], ["--overwrite"]),
    ):
        args = [*QUICK_PRUNE, f"--load_model={folder / 'model.keras'}", f"--export_dir={small}"]
        if overwrite:
            assert prune.BINARY(args) == 2
            one_line_error(capsys, "prune", "--export_dir", "pass overwrite=True (--overwrite)")
        assert prune.BINARY([*args, *overwrite]) == 0
        table = capsys.readouterr().out
        base_row = next(line for line in table.splitlines() if line.startswith("| base |"))
        assert base_row.split("|")[4].strip() == f"{acc:.2%}"
        assert "| stripped (exported, BN recalibrated) |" in table
        assert f"stripped model exported to {small}" in table
        assert (small / "saved_model.pb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b3", "base", "small"]  # no staging
    model = str(tmp_path / "b3" / "model.keras")
    assert prune.BINARY([*QUICK_PRUNE, f"--load_model={model}", "--seed=0"]) == 2
    one_line_error(capsys, "prune", "seed 3", "--seed=0", "--seed=3")
    assert prune.BINARY([*QUICK_PRUNE, f"--load_model={model}", "--dataset=mnist"]) == 2
    one_line_error(capsys, "prune", "'digits'", "--dataset='mnist'", "--dataset=digits")


def test_the_tools_share_one_seed_batch_size_weight_decay_and_model():
    for name in ("seed", "batch_size", "weight_decay", "model"):
        assert train.FLAGS[name].default == prune.FLAGS[name].default, name
        assert train.FLAGS[name].help == prune.FLAGS[name].help, name
    assert "Global batch size" in prune.FLAGS["batch_size"].help


# -- 4. every zoo model in every tool, or a clear error ----------------------------------------


def test_prune_builds_the_mlp_and_refuses_vgg_on_digits_in_one_line(capsys):
    assert prune.BINARY([*QUICK_PRUNE, "--model=mlp7_relu"]) == 0
    assert "| base |" in capsys.readouterr().out
    assert prune.BINARY([*QUICK_PRUNE, "--model=vgg16_bn"]) == 2
    one_line_error(capsys, "prune", "'vgg16_bn' cannot be built for inputs of shape (8, 8, 1)")


# One model of each family runs through both tools; the others share its code and are checked
# cheaply: built for digits (or refused in one line), analysed, one training step on 8 images.
TOOL_MODELS = ["lenet5", "mlp7_relu", "resnet20", "resnet34", "small_cnn", "vgg16_bn"]
OTHER_MODELS = sorted(set(list_models(include_applications=False)) - set(TOOL_MODELS))


def family(model: str) -> str:
    return re.match(r"[a-z]+", model)[0]


def test_every_zoo_family_has_a_model_run_through_the_tools():
    assert set(TOOL_MODELS) <= set(list_models(include_applications=False))
    assert {family(m) for m in OTHER_MODELS} <= {family(m) for m in TOOL_MODELS}


# test_prune_builds_the_mlp_and_refuses_vgg_on_digits_in_one_line prunes these two as written.
PRUNED_ABOVE = {"mlp7_relu", "vgg16_bn"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "tool, model",
    [("train", m) for m in TOOL_MODELS]
    + [("prune", m) for m in TOOL_MODELS if m not in PRUNED_ABOVE],
)
def test_a_zoo_model_of_each_family_runs_on_digits_or_says_why_not(tool, model, tmp_path, capsys):
    if tool == "train":
        args = ["--epochs=1", f"--model={model}", f"--output_dir={tmp_path / 'out'}"]
        status = train.BINARY(args)
    else:
        status = prune.BINARY([*QUICK_PRUNE, f"--model={model}"])
    if status == 2:
        one_line_error(capsys, tool)
    else:
        assert status == 0, capsys.readouterr().err[-3000:]


@pytest.mark.parametrize("model", OTHER_MODELS)
def test_every_other_zoo_model_takes_a_training_step_on_digits_or_says_why_not(model):
    data = load_dataset("digits", flatten=model.startswith("mlp"))
    try:
        net = build_model(model, data.input_shape, data.num_classes, seed=0)
    except InvalidArgumentError as err:  # the line the tools print
        assert "\n" not in str(err) and str(data.input_shape) in str(err)
        return
    assert tfprune.explain(net).prunable_fraction > 0
    x, y = next(iter(data.train.unbatch().batch(8)))
    with tf.GradientTape() as tape:  # one eager step: no graph to trace
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, net(x, True))
    grads = tape.gradient(loss, net.trainable_variables)
    assert np.isfinite(float(loss)) and all(g is not None for g in grads)
    keras.optimizers.SGD(0.01).apply_gradients(zip(grads, net.trainable_variables))


# -- 8. one line for every user error; Ctrl-C and SIGTERM ---------------------------------------


def test_files_that_are_not_models_are_one_line_errors(tmp_path, capsys):
    not_saved = tmp_path / "folder"
    not_saved.mkdir()
    (not_saved / "notes.txt").write_text("x")
    for bad in (REPO / "README.md", not_saved):
        assert prune.BINARY([*QUICK_PRUNE, f"--load_model={bad}"]) == 2
        one_line_error(capsys, "prune", f"--load_model='{bad}' is not a saved Keras model")
        base = f"--base_dir={tmp_path / 'serving'}"
        assert export.BINARY([f"--model_path={bad}", base, "--nowarmup"]) == 2
        one_line_error(capsys, "export", f"--model_path='{bad}' is not a saved Keras model")
    assert not (tmp_path / "serving").exists()


def test_a_keras_application_too_small_for_its_input_is_one_line(tmp_path, capsys):
    args = ["--model=keras:MobileNetV2", "--input_shape=8,8,3", f"--base_dir={tmp_path / 's'}"]
    assert export.BINARY([*args, "--nowarmup"]) == 2
    one_line_error(capsys, "export", "'keras:MobileNetV2' cannot be built", "(8, 8, 3)")


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, status, word",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_ctrl_c_and_sigterm_end_in_one_line(sig, status, word, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        # A base too long to finish before the signal, which ends the job anyway.
        "protocol: finetune_lr\nbase: {schedule: '0:0.02', epochs: 10000, batch_size: 32}\n"
        "budgets: [1]\nmethods: [l1]\nlrs: [0.01]\nseeds: [0]\nbaselines: false\n"
        "jsv_samples: 0\njsv_every_epoch: false\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfprune.bin.compare",
            f"--config={config}",
            f"--output_dir={tmp_path / 'out'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env_as_a_user_has_it(),
    )
    lines = iter(proc.stdout.readline, "")
    assert any(" starting" in line for line in lines)  # the run has started
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"tfprune-compare: {word}: rerun the same command to resume"
    )
    _no_start_up_lines(err)


# -- 9, 11, 12: honest output, plain help, quiet start-up ------------------------------------------


@pytest.mark.parametrize("tool", [compare, export, prune, report, train])
def test_help_is_plain_text_with_required_flags_marked(tool, capsys):
    assert tool.BINARY(["--help"]) == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and not re.search(r"::$", out, re.M)
    for flag in tool.FLAGS._flags().values():
        if flag.name in ("output_dir", "base_dir") and tool in (train, report, export):
            assert "(required) " in flag.help
    if tool is compare:
        assert "--output_dir=/shared/out \\\n        --shard_index=$i" in out


def test_list_models_prints_the_zoo(capsys):
    for tool in (train, prune, export):
        assert tool.BINARY(["--list_models"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert {"mlp7_linear", "small_cnn", "vgg16_bn"} <= set(out)
        assert out[-1].startswith("keras:<Application>, one of: ") and "MobileNetV2" in out[-1]


def _env_as_a_user_has_it() -> dict[str, str]:
    """This environment without TF_CPP_MIN_LOG_LEVEL (which the test session sets)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    return env


def _no_start_up_lines(stderr: str) -> None:
    """TensorFlow's start-up lines (the CUDA probe) are hidden at the default verbosity.

    Checked on the fresh processes of test_ctrl_c_and_sigterm_end_in_one_line, which load
    TensorFlow and train at the default verbosity as a user's run does.
    """
    assert "cudart_stub" not in stderr and "cuInit" not in stderr, stderr
    assert "absl::InitializeLog" not in stderr
