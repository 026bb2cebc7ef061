"""Layered config plumbing: YAML files, ``--params_override`` strings, strict merging.

The layers, each on top of the previous one (as in tensorflow/models ``official/``):

1. the registered default (a plain dict, e.g. a protocol's ``default_config``),
2. a YAML file (``--config path.yaml``),
3. ``--params_override`` strings: ``"a.b=1,c=x"`` and/or a YAML/JSON mapping string.

Merging is strict: a key the default does not have is an error that names the full dotted path
and suggests the closest known key ("did you mean ...?"). Dicts whose default is empty (free-form
option bags) accept any key.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from tfprune.errors import ConfigError, did_you_mean

__all__ = [
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "load_yaml",
    "merge_strict",
    "parse_params_override",
    "split_top_level",
    "yaml_load",
]


def _unknown_key_error(path: str, key: str, known: Iterable[str]) -> ConfigError:
    known = sorted(str(k) for k in known)
    where = f"{path}.{key}" if path else key
    return ConfigError(
        f"unknown config field {where!r}{did_you_mean(key, known)}; "
        f"known fields{' of ' + repr(path) if path else ''}: {', '.join(known)}"
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float, as YAML 1.2 and JSON do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: Any) -> Any:
    """``yaml.safe_load`` that reads ``1e-3`` as a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping from ``path`` (an empty file gives ``{}``).

    Raises:
      ConfigError: the file is missing, is not valid YAML, or does not hold a mapping.
    """
    if os.path.isdir(path):
        raise ConfigError(
            f"config file {str(path)!r} is a folder; pass one YAML file in it (e.g. "
            "configs/finetune_lr.yaml)"
        )
    if not os.path.isfile(path):
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing YAML file")
    with open(path, encoding="utf-8") as f:
        try:
            data = yaml_load(f)
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of fields, got {type(data).__name__}"
        )
    return data


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text of a plain mapping (keys in insertion order)."""
    return yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=None, width=100)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split ``text`` on ``sep`` outside brackets, braces and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quote or depth:
        raise ConfigError(f"unbalanced brackets or quotes in override {text!r}")
    parts.append("".join(cur))
    return [p for p in (p.strip() for p in parts) if p]


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    if any(not k for k in keys):
        raise ConfigError(f"bad override key {dotted!r}: empty component")
    node = target
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r} sets a field below {k!r}, which is a value")
        node = child
    node[keys[-1]] = value


def parse_params_override(text: str | None) -> dict[str, Any]:
    """Parse one ``--params_override`` string into a nested dict.

    Accepted forms: ``"a.b=1,c=x,d=[1,2]"`` (values parsed as YAML scalars/lists), or a YAML /
    JSON mapping (``"{a: {b: 1}}"``, or several lines of YAML).

    Raises:
      ConfigError: the string is neither form; the message shows the expected syntax.
    """
    if text is None or not str(text).strip():
        return {}
    text = str(text).strip()
    looks_like_pairs = "=" in text and not text.startswith("{")
    if not looks_like_pairs:
        try:
            data = yaml_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"params_override {text!r} is not valid YAML/JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"params_override {text!r} must be 'a.b=1,c=x' pairs or a YAML/JSON mapping"
            )
        return data
    out: dict[str, Any] = {}
    for item in split_top_level(text):
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(
                f"params_override item {item!r} is not 'key=value' (e.g. 'retrain.epochs=5')"
            )
        try:
            value = yaml_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw.strip()
        _set_dotted(out, key.strip(), value)
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "dict"
    return type(value).__name__


def merge_strict(
    base: Mapping[str, Any],
    override: Mapping[str, Any],
    *,
    path: str = "",
    open_keys: Iterable[str] = (),
) -> dict[str, Any]:
    """Deep-merge ``override`` onto a copy of ``base``; unknown keys raise :class:`ConfigError`.

    Dicts that are empty in ``base`` and the dotted paths in ``open_keys`` accept any key (in an
    ``open_keys`` dict, a key set to ``None`` is removed). Values
    whose type clearly differs from the default (e.g. a list where a number is expected) are
    rejected; ``None`` defaults accept anything, and a number may replace a list or a mapping
    where a sweep axis allows a single value (the protocol validates those).
    """
    open_keys = set(open_keys)
    out = copy.deepcopy(dict(base))
    if not isinstance(override, Mapping):
        raise ConfigError(f"{path or 'config'} must be a mapping, got {override!r}")
    for key, value in override.items():
        key = str(key)
        where = f"{path}.{key}" if path else key
        free = path in open_keys
        if key not in out:
            if free:
                out[key] = copy.deepcopy(value)
                continue
            raise _unknown_key_error(path, key, out)
        current = out[key]
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            if not current or where in open_keys:
                merged = dict(current)
                for k, v in value.items():
                    if v is None and where in open_keys:
                        merged.pop(k, None)
                    else:
                        merged[k] = copy.deepcopy(v)
                out[key] = merged
            else:
                out[key] = merge_strict(current, value, path=where, open_keys=open_keys)
            continue
        kc, kv = _kind(current), _kind(value)
        compatible = (
            kc == kv
            or "none" in (kc, kv)
            or (kc in ("list", "dict") and kv in ("number", "str", "list", "dict"))
            or (kc == "number" and kv in ("dict", "list"))
            or (kc == "str" and kv == "number")
        )
        if not compatible:
            raise ConfigError(
                f"config field {where!r} must be a {kc} like its value so far {current!r}, "
                f"got {value!r} ({kv})"
            )
        out[key] = copy.deepcopy(value)
    return out


# ----------------------------------------------------------------------------------------------
# Typed dataclass configs


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _dataclass_of(tp: Any) -> type | None:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _dataclass_of(args[0])
    return None


def config_from_dict(cls: type, data: Mapping[str, Any] | None, path: str = "") -> Any:
    """Build the dataclass ``cls`` from ``data``, recursing into dataclass-typed fields.

    Unknown keys raise :class:`ConfigError` with the dotted path and a "did you mean" hint.
    """
    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config field {path or cls.__name__!r} must be a mapping, got {data!r}")
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _field_types(cls)
    for key in data:
        if key not in fields:
            raise _unknown_key_error(path, key, fields)
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_of(hints[name])
        where = f"{path}.{name}" if path else name
        if sub is not None and isinstance(value, Mapping):
            value = config_from_dict(sub, value, where)
        elif sub is not None and value is not None and not dataclasses.is_dataclass(value):
            raise ConfigError(f"config field {where!r} must be a mapping, got {value!r}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{path or cls.__name__}: {err}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a dataclass config (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(config):
        out[f.name] = _plain(getattr(config, f.name))
    return out
