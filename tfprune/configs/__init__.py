"""tfprune.configs: typed, layered, strictly validated experiment and protocol configs.

Layers: registered default → YAML file (``--config``) → ``--params_override`` strings; unknown
keys fail with a "did you mean" hint and every known field is checked before training starts
(see :func:`resolve_protocol_config`). The resolved config is saved as ``config.yaml``.
"""

from tfprune.configs.base import (
    dump_yaml,
    load_yaml,
    merge_strict,
    parse_params_override,
)
from tfprune.configs.checks import (
    check_dataset,
    check_dataset_files,
    check_epochs,
    check_model,
    check_ratio,
    check_schedule,
    check_seeds,
)
from tfprune.configs.protocol import (
    CONFIG_FILE,
    DEFAULT_PROTOCOL,
    OutputConfig,
    ProtocolConfig,
    RunnerConfig,
    RuntimeConfig,
    resolve_protocol_config,
    save_config,
    validate_params,
)
from tfprune.configs.train import TrainConfig

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_PROTOCOL",
    "OutputConfig",
    "ProtocolConfig",
    "RunnerConfig",
    "RuntimeConfig",
    "TrainConfig",
    "check_dataset",
    "check_dataset_files",
    "check_epochs",
    "check_model",
    "check_ratio",
    "check_schedule",
    "check_seeds",
    "dump_yaml",
    "load_yaml",
    "merge_strict",
    "parse_params_override",
    "resolve_protocol_config",
    "save_config",
    "validate_params",
]
