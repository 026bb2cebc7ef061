"""Typed protocol configs and their layered resolution (default → YAML → overrides).

A protocol config file is flat YAML::

    protocol: finetune_lr  # a key of tfprune.protocols.grids.PROTOCOLS
    runner: {continue_on_error: false}
    output: {report: true, plots: true}
    runtime: {mixed_precision: false, jit_compile: false}  # or the binaries' flags
    # every other key belongs to the protocol (its ``default_config``): dataset, model,
    # grid axes, budgets, seeds, baselines, ...
    dataset: mnist
    seeds: [1, 2, 3]

:func:`resolve_protocol_config` starts from the protocol's registered ``default_config``, merges
the YAML file and then each ``--params_override`` strictly (unknown keys fail with a "did you
mean" hint), and checks every setting as the protocol's params dataclass declares it (dataset
and its files, model, ratios, epochs, schedules, recipes, seeds) before any training starts.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tfprune.configs import checks
from tfprune.configs.base import (
    config_from_dict,
    config_to_dict,
    dump_yaml,
    load_yaml,
    merge_strict,
    parse_params_override,
)
from tfprune.errors import ConfigError, InvalidArgumentError, did_you_mean
from tfprune.files import atomic_write_text
from tfprune.runtime import Runtime

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_PROTOCOL",
    "OutputConfig",
    "ProtocolConfig",
    "RunnerConfig",
    "RuntimeConfig",
    "resolve_protocol_config",
    "params_dict",
    "save_config",
    "validate_params",
]

DEFAULT_PROTOCOL = "finetune_lr"
CONFIG_FILE = "config.yaml"
_ENVELOPE = ("protocol", "runner", "output", "runtime")


@dataclasses.dataclass(frozen=True)
class RunnerConfig:
    """How the runner treats the grid.

    Attributes:
      continue_on_error: Record a failing run's ``error.json`` and go on with the next run
        (the runner still exits with an error at the end); ``False`` re-raises at once.
      summarize: Write the report (tables, plots) once every run of the grid is finished.
    """

    continue_on_error: bool = False
    summarize: bool = True

    def validate(self) -> None:
        """Booleans only."""
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"runner.{f.name} must be true or false")


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """What the report writes under ``<output_dir>/report/``.

    Attributes:
      report: Write the Markdown/CSV tables.
      plots: Also write PNG plots (matplotlib, Agg backend).
    """

    report: bool = True
    plots: bool = True

    def validate(self) -> None:
        """Booleans only."""
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"output.{f.name} must be true or false")


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """How every run of the grid computes (see :class:`tfprune.runtime.Runtime`).

    A run's precision is part of its comparison setup (and of its run id and base model); XLA is
    recorded beside it.

    Attributes:
      mixed_precision: ``false`` (``float32``), ``true`` (``mixed_float16`` on a GPU,
        ``mixed_bfloat16`` on CPU/TPU) or a policy name (``mixed_float16``,
        ``mixed_bfloat16``).
      jit_compile: Compile training and evaluation steps with XLA.
    """

    # None (= float32) until validated, so that a YAML or override may give a bool or a name.
    mixed_precision: Any = None
    jit_compile: bool = False

    def validated(self) -> RuntimeConfig:
        """A known precision and a boolean ``jit_compile``; ``true`` becomes the policy name.

        Returns the checked copy; its saved ``config.yaml`` then names the precision the runs
        used on this machine.
        """
        runtime = self.resolve()
        return dataclasses.replace(
            self, mixed_precision=runtime.precision if runtime.mixed else False
        )

    def resolve(self) -> Runtime:
        """The :class:`~tfprune.runtime.Runtime` on this machine (``true`` picks the policy)."""
        try:
            return Runtime(self.mixed_precision, self.jit_compile)
        except InvalidArgumentError as err:
            raise ConfigError(f"runtime: {err}") from None


def params_dict(params: Any) -> dict[str, Any]:
    """A protocol's settings (a params dataclass or a mapping) as a plain dict, in order."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    return dict(params)


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """A resolved protocol config.

    Attributes:
      protocol: Protocol name.
      params: The protocol's own settings (its defaults with the YAML file and overrides
        merged in), an instance of the protocol's params dataclass (a plain dict for a
        protocol without one, or as read back from a ``config.yaml`` by :meth:`from_flat_dict`);
        what :meth:`Protocol.expand` receives.
      runner: Runner options.
      output: Report options.
      runtime: Mixed precision and XLA of every run.
    """

    protocol: str = DEFAULT_PROTOCOL
    params: Any = dataclasses.field(default_factory=dict)
    runner: RunnerConfig = dataclasses.field(default_factory=RunnerConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        """The flat form written to ``config.yaml`` (envelope keys first, then the params)."""
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "runner": config_to_dict(self.runner),
            "output": config_to_dict(self.output),
            "runtime": config_to_dict(self.runtime),
        }
        out.update(copy.deepcopy(params_dict(self.params)))
        return out

    def to_yaml(self) -> str:
        """YAML text of :meth:`to_dict`; loading it back gives the same config."""
        return dump_yaml(self.to_dict())

    @classmethod
    def from_flat_dict(cls, data: Mapping[str, Any]) -> ProtocolConfig:
        """Inverse of :meth:`to_dict` (no defaults merged, no validation)."""
        data = dict(data)
        return cls(
            protocol=str(data.pop("protocol", DEFAULT_PROTOCOL)),
            runner=config_from_dict(RunnerConfig, data.pop("runner", {}), "runner"),
            output=config_from_dict(OutputConfig, data.pop("output", {}), "output"),
            runtime=config_from_dict(RuntimeConfig, data.pop("runtime", {}), "runtime"),
            params=data,
        )

    def validate(self, check_files: bool = True, schema: type | None = None) -> ProtocolConfig:
        """The validated config: the envelope and ``params`` checked, the runtime resolved.

        ``schema`` is the protocol's params dataclass, whose declared field types say how each
        setting is checked (see :func:`validate_params`).
        """
        self.runner.validate()
        self.output.validate()
        runtime = self.runtime.validated()
        validate_params(params_dict(self.params), check_files=check_files, schema=schema)
        return dataclasses.replace(self, runtime=runtime)


def validate_params(
    params: Mapping[str, Any], check_files: bool = True, schema: type | None = None
) -> None:
    """Check each setting of ``params`` as its protocol declares it, then the dataset files.

    ``schema`` is the protocol's params dataclass: each setting whose type declares a check
    (:data:`~tfprune.configs.checks.Ratio`, :data:`~tfprune.configs.checks.Schedule`, ...) is
    checked by it; without a schema the settings are not checked. With ``check_files``, the
    ``dataset``'s files must exist in ``data_dir``.
    """
    if schema is not None:
        checks.check_fields(schema, params)
    if check_files and isinstance(params.get("dataset"), str):
        checks.check_dataset_files(params["dataset"], params.get("data_dir"))


def resolve_protocol_config(
    protocol: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
    overrides: Iterable[str | Mapping[str, Any]] | str | None = None,
    *,
    registry: Mapping[str, Any],
    check_files: bool = True,
) -> ProtocolConfig:
    """Registered default → ``config_file`` → ``overrides``, validated.

    :func:`tfprune.protocols.resolve_config` calls this with tfprune's registered protocols.

    Args:
      protocol: Protocol name (e.g. the ``--protocol`` flag); ``None`` takes the YAML file's
        ``protocol`` or :data:`DEFAULT_PROTOCOL`. A YAML file naming another protocol is an error.
      config_file: Optional YAML file.
      overrides: ``--params_override`` strings (``"a.b=1,c=x"`` or YAML/JSON mappings) or dicts,
        applied in order.
      registry: Name → protocol (with a ``default_config`` dict and a ``params`` dataclass
        whose field types declare the checks), such as :data:`tfprune.protocols.PROTOCOLS`.
      check_files: Also check that the dataset files exist.

    Raises:
      ConfigError: unknown protocol or field (with "did you mean"), bad value.
      DatasetNotFoundError: the dataset files are missing (names the expected files).
    """
    from_file = load_yaml(config_file) if config_file else {}
    if isinstance(overrides, (str, Mapping)):
        overrides = [overrides]
    layers = [
        parse_params_override(o) if not isinstance(o, Mapping) else dict(o) for o in overrides or ()
    ]

    name = protocol
    file_name = from_file.get("protocol")
    if name and file_name and name != file_name:
        raise ConfigError(
            f"--protocol={name!r} but config file {str(config_file)!r} says protocol: "
            f"{file_name!r}; drop one of them"
        )
    name = name or file_name or DEFAULT_PROTOCOL
    for layer in layers:
        if "protocol" in layer and layer["protocol"] != name:
            raise ConfigError(
                f"params_override cannot switch the protocol ({name!r} -> "
                f"{layer['protocol']!r}); use --protocol or the config file's protocol: field"
            )
    if name not in registry:
        raise ConfigError(
            f"unknown protocol {name!r}{did_you_mean(name, registry)}; "
            f"known protocols: {', '.join(sorted(registry))}"
        )
    default = copy.deepcopy(dict(getattr(registry[name], "default_config", {}) or {}))
    for key in _ENVELOPE:
        if key in default:
            raise ConfigError(f"protocol {name!r} default_config uses the reserved key {key!r}")
    resolved: dict[str, Any] = {
        "protocol": name,
        "runner": config_to_dict(RunnerConfig()),
        "output": config_to_dict(OutputConfig()),
        "runtime": config_to_dict(RuntimeConfig()),
        **default,
    }
    # Label maps of the protocol (e.g. schedules: {FT: ..., CLR: ...}) take new labels, and a
    # label set to null is dropped; recipes ("base", ...), "runner" and "output" are strict.
    # "runtime" takes a bool or a policy name in any layer (RuntimeConfig checks its fields).
    open_keys = {
        k
        for k, v in default.items()
        if isinstance(v, Mapping) and k != "base" and not {"schedule", "epochs"} & set(v)
    } | {"runtime"}
    resolved = merge_strict(resolved, from_file, open_keys=open_keys)
    for layer in layers:
        resolved = merge_strict(resolved, layer, open_keys=open_keys)
    schema = getattr(registry[name], "params", None)
    config = ProtocolConfig.from_flat_dict(resolved).validate(check_files, schema)
    if schema is None:
        return config
    # Built once, checked above: the protocols read its attributes.
    return dataclasses.replace(config, params=schema(**config.params))


def save_config(config: ProtocolConfig, output_dir: str | os.PathLike[str]) -> Path:
    """Write ``config.yaml`` (the resolved config) into ``output_dir`` atomically."""
    return atomic_write_text(Path(output_dir) / CONFIG_FILE, config.to_yaml())
