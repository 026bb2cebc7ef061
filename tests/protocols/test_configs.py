"""Layered configs: overrides parsing, strict merging, validation messages, config.yaml."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from tfprune import defaults
from tfprune.configs import (
    ProtocolConfig,
    TrainConfig,
    check_dataset_files,
    checks,
    parse_params_override,
    resolve_protocol_config,
    save_config,
)
from tfprune.errors import ConfigError, DatasetNotFoundError
from tfprune.protocols import PROTOCOLS
from tfprune.protocols.params import defaults_of
from tfprune.training import TrainingRecipe


@dataclasses.dataclass(frozen=True)
class ToyParams:
    """A protocol's settings; each declares its check in its type."""

    dataset: checks.Dataset = "digits"
    data_dir: str | None = None
    model: checks.Model = "mlp7_linear"
    ratios: checks.Ratios = dataclasses.field(default_factory=lambda: [0.5])
    seeds: checks.Seeds = dataclasses.field(default_factory=lambda: [1, 2])
    baselines: bool = True
    base: checks.Recipe = dataclasses.field(
        default_factory=lambda: {"schedule": "0:0.01,10:0.001", "epochs": 15}
    )
    retrain: checks.Recipe = dataclasses.field(
        default_factory=lambda: {"schedule": "0:0.01,5:0.001", "epochs": 10, "batch_size": 100}
    )
    lrs: checks.ScheduleMap = dataclasses.field(
        default_factory=lambda: {"large": "0:0.01", "small": "0:0.001"}
    )
    options: dict = dataclasses.field(default_factory=dict)


class _Proto:
    """A registry entry: the config layer reads ``default_config`` and ``params``."""

    def __init__(self, default_config, params=None):
        self.default_config = default_config
        self.params = params


REGISTRY = {
    "toy": _Proto(defaults_of(ToyParams), ToyParams),
    "other": _Proto({"dataset": "digits", "seeds": [1]}),
}


def resolve(*overrides, **kw):
    return resolve_protocol_config("toy", overrides=list(overrides), registry=REGISTRY, **kw)


def test_parse_override_pairs_and_yaml():
    assert parse_params_override("a.b=1,c=x,d=[1, 2],e=true,f=1e-3") == {
        "a": {"b": 1},
        "c": "x",
        "d": [1, 2],
        "e": True,
        "f": 1e-3,
    }
    assert parse_params_override("{a: {b: 2}, c: [3]}") == {"a": {"b": 2}, "c": [3]}
    assert parse_params_override('{"a": 1}') == {"a": 1}
    assert parse_params_override("") == {}
    with pytest.raises(ConfigError, match="key=value"):
        parse_params_override("a=1,justakey")
    with pytest.raises(ConfigError, match="unbalanced"):
        parse_params_override("a=[1,2")


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("protocol: toy\nseeds: [3, 4, 5]\nretrain:\n  epochs: 7\n")
    cfg = resolve_protocol_config(
        None, path, ["retrain.epochs=8", "{ratios: [0.3, 0.7]}"], registry=REGISTRY
    )
    assert cfg.protocol == "toy"
    assert cfg.params.seeds == [3, 4, 5]
    assert cfg.params.retrain == {"schedule": "0:0.01,5:0.001", "epochs": 8, "batch_size": 100}
    assert cfg.params.ratios == [0.3, 0.7]
    assert cfg.params.base["epochs"] == 15
    assert cfg.runner.continue_on_error is False and cfg.output.plots is True


def test_open_dicts_accept_new_keys():
    cfg = resolve("options.jsv_samples=100,runner.continue_on_error=true")
    assert cfg.params.options == {"jsv_samples": 100}
    assert cfg.runner.continue_on_error is True
    # Label maps take new labels; null drops one.
    cfg = resolve("lrs.mid='0:0.005',lrs.small=null")
    assert cfg.params.lrs == {"large": "0:0.01", "mid": "0:0.005"}
    # ... but "base" is merged strictly.
    with pytest.raises(ConfigError, match=r"'base.epoch' \(did you mean 'epochs'\?\)"):
        resolve("base.epoch=3")
    # A count may replace a list of seeds and vice versa.
    assert resolve("seeds=3").params.seeds == 3


def test_unknown_key_did_you_mean():
    with pytest.raises(
        ConfigError, match=r"unknown config field 'retrain.epoch' \(did you mean 'epochs'\?\)"
    ):
        resolve("retrain.epoch=3")
    with pytest.raises(ConfigError, match=r"'seed' \(did you mean 'seeds'\?\)"):
        resolve("seed=3")
    with pytest.raises(
        ConfigError, match=r"runner.continue_on_eror.*did you mean 'continue_on_error'"
    ):
        resolve("runner.continue_on_eror=true")


def test_unknown_protocol_did_you_mean():
    with pytest.raises(ConfigError, match=r"unknown protocol 'toi' \(did you mean 'toy'\?\)"):
        resolve_protocol_config("toi", registry=REGISTRY)


def test_protocol_mismatch_between_flag_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("protocol: other\n")
    with pytest.raises(ConfigError, match="--protocol='toy' but config file"):
        resolve_protocol_config("toy", path, registry=REGISTRY)
    assert resolve_protocol_config(None, path, registry=REGISTRY).protocol == "other"


@pytest.mark.parametrize(
    "override, message",
    [
        ("model=resnet57", r"model='resnet57' is not a known model \(did you mean 'resnet56'\?\)"),
        ("dataset=cifar", r"dataset='cifar' is not a known dataset \(did you mean 'cifar10'\?\)"),
        ("ratios=[0.5,1.0]", r"ratios\[1\] must be in \[0, 1\) .*got 1.0"),
        ("ratios=[-0.1]", r"ratios\[0\] must be in \[0, 1\) .*got -0.1"),
        ("retrain.schedule='0:0.01,30:0.001,20:0.0001'", r"decreasing epochs \(30 then 20\)"),
        ("retrain.epochs=-1", r"retrain.epochs=-1 is negative"),
        ("base.epochs=2.5", r"base.epochs must be a whole number"),
        ("seeds=0", r"seeds=0 must be >= 1 \(the number of seeds to run\)"),
        ("seeds=[-1,1]", r"seeds must hold integers >= 0"),
        ("seeds=[1,1]", r"duplicates"),
        ("retrain.batch_size=0", r"retrain.batch_size must be >= 1"),
        ("lrs.small='0:-0.1'", r"non-positive LR"),
        ("lrs.large='cosin:0.1:0.001'", r"did you mean 'cosine'"),
        ("baselines=[1]", r"'baselines' must be a bool"),
        ("data_dir=/tmp/x", r"data_dir must be empty \(null\) for dataset 'digits'"),
    ],
)
def test_validation_messages(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve(override)


def test_missing_dataset_files_name_expected_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"t10k-images-idx3-ubyte") as info:
        resolve(f"dataset=mnist,data_dir={tmp_path}")
    assert str(tmp_path) in str(info.value)
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-batches-py/data_batch_1"):
        check_dataset_files("cifar10", tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"TFRecord shards"):
        check_dataset_files("imagenet", tmp_path)
    # check_files=False skips only the file check.
    assert resolve(f"dataset=mnist,data_dir={tmp_path}", check_files=False).params.dataset


def test_mnist_files_found(mnist_dir):
    check_dataset_files("mnist", mnist_dir)
    assert resolve(f"dataset=mnist,data_dir={mnist_dir}").params.data_dir == str(mnist_dir)


def test_config_yaml_round_trip(tmp_path):
    cfg = resolve("retrain.epochs=3")
    path = save_config(cfg, tmp_path)
    assert path.name == "config.yaml"
    data = yaml.safe_load(path.read_text())
    assert list(data)[:3] == ["protocol", "runner", "output"]
    again = resolve_protocol_config(None, path, registry=REGISTRY)
    assert again == cfg
    assert ProtocolConfig.from_flat_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("protocol: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_protocol_config(None, path, registry=REGISTRY)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_protocol_config(None, tmp_path / "none.yaml", registry=REGISTRY)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve_protocol_config(None, path, registry=REGISTRY)


def test_train_config_holds_one_training_recipe():
    config = TrainConfig(
        model="lenet5", recipe=TrainingRecipe("0:0.01", 5, defaults.batch_size("digits"))
    ).validate()
    assert config.to_dict()["recipe"] == config.recipe.to_dict()
    assert TrainConfig().recipe.batch_size == defaults.batch_size(TrainConfig().dataset)
    with pytest.raises(ConfigError, match=r"recipe.optimizer must be 'sgd' or 'adam'"):
        TrainingRecipe("0:0.01", 5, 32, optimizer="rmsprop")
    with pytest.raises(ConfigError, match=r"recipe.schedule"):
        TrainConfig(recipe=TrainingRecipe("0:0.01,30:", 5, 32)).validate()


def test_a_null_batch_size_is_the_datasets_default():
    digits = resolve_protocol_config("finetune_lr", registry=PROTOCOLS, check_files=False)
    assert digits.params.batch_size == defaults.batch_size("digits") == 32
    mnist = resolve_protocol_config(
        "finetune_lr", overrides=["dataset=mnist"], registry=PROTOCOLS, check_files=False
    )
    assert mnist.params.batch_size == defaults.batch_size("mnist") == 100
    given = resolve_protocol_config(
        "finetune_lr",
        overrides=["dataset=mnist,batch_size=50"],
        registry=PROTOCOLS,
        check_files=False,
    )
    assert given.params.batch_size == 50
    assert "batch_size: 100" in mnist.to_yaml()  # the saved config states the size it ran
