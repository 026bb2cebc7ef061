"""TF Serving layout: version folders, warm-up requests, signatures, a check in a fresh process.

TF Serving watches a base folder and serves its integer-named sub-folders (``<base>/<version>/``),
replaying the ``PredictionLog`` records in ``<version>/assets.extra/tf_serving_warmup_requests``
before it routes traffic to a new version. The warm-up records are built with
``tensorflow-serving-api`` (the ``deploy`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfprune.compat import tf
from tfprune.deploy import verify_script
from tfprune.deploy.runtimes import DEPLOY_EXTRA
from tfprune.errors import InvalidArgumentError, TfpruneError, VersionExistsError
from tfprune.files import MARKER, describe_entries, foreign_entries

__all__ = [
    "WARMUP_FILE",
    "next_version",
    "read_warmup_requests",
    "require_serving_apis",
    "verify_in_fresh_process",
    "version_dir",
    "write_warmup_requests",
]

#: Where TF Serving looks for warm-up requests, relative to a version folder.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


_NO_SERVING_APIS = (
    f"warm-up requests need tensorflow-serving-api (or pass warmup=False / --nowarmup): "
    f"{DEPLOY_EXTRA}"
)


def require_serving_apis() -> None:
    """Raises TfpruneError naming the install command if tensorflow-serving-api is missing."""
    if importlib.util.find_spec("tensorflow_serving") is None:
        raise TfpruneError(_NO_SERVING_APIS)


def _serving_apis() -> tuple[Any, Any, Any]:
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as err:  # optional dependency
        raise TfpruneError(_NO_SERVING_APIS) from err
    return model_pb2, predict_pb2, prediction_log_pb2


def _not_a_version(name: str) -> bool:
    """True for what a serving base folder should not hold: not a version, staging or marker."""
    return not (name.isdigit() or name == MARKER or _staging(name))


def _staging(name: str) -> bool:
    """An export's temporary folder beside its version folder (``.<v>.tmp-*``, ``.<v>.old-*``)."""
    return name.startswith(".") and (".tmp-" in name or ".old-" in name)


def _versions(base: str) -> list[int]:
    if not os.path.isdir(base):
        return []
    return [int(n) for n in os.listdir(base) if n.isdigit()]


def next_version(base: str | os.PathLike[str]) -> int:
    """The next free TF Serving version under ``base``: 1 + the largest integer folder (or 1)."""
    return max(_versions(os.fspath(base)), default=0) + 1


def version_dir(base: str | os.PathLike[str], version: int | None = None) -> tuple[str, int]:
    """``(<base>/<version>, version)``; ``version=None`` takes :func:`next_version`.

    Raises :class:`VersionExistsError` if that folder exists already, and
    :class:`tfprune.errors.InvalidArgumentError` if ``base`` holds anything but version folders
    (tfprune adds versions only to a TF Serving base folder, not to someone's folder).
    """
    base = os.path.abspath(os.fspath(base))
    if os.path.exists(base) and not os.path.isdir(base):
        raise InvalidArgumentError(f"serving base {base!r} exists and is not a folder")
    foreign = foreign_entries(base, ignore=lambda n: not _not_a_version(n))
    if foreign:
        raise InvalidArgumentError(
            f"base_dir={base!r} (--base_dir) holds {describe_entries(foreign)}, which are not "
            "TF Serving version folders; give a new or empty folder, or the base folder TF "
            "Serving watches"
        )
    if version is None:
        version = next_version(base)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidArgumentError(f"version must be a non-negative int, got {version!r}")
    path = os.path.join(base, str(version))
    if os.path.exists(path):
        raise VersionExistsError(
            f"version folder {path!r} already exists; TF Serving versions are immutable. Leave "
            f"version unset to take the next free one ({next_version(base)}) or remove it."
        )
    return path, version


def write_warmup_requests(
    saved_model_dir: str,
    inputs: Mapping[str, np.ndarray],
    *,
    signature_name: str = "serving_default",
    model_name: str = "model",
    num_requests: int = 1,
) -> str:
    """Write ``num_requests`` Predict requests on ``inputs`` as TF Serving warm-up records.

    Returns the path of ``assets.extra/tf_serving_warmup_requests``.
    """
    model_pb2, predict_pb2, prediction_log_pb2 = _serving_apis()
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for _ in range(num_requests):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name)
            )
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(path: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Parse a warm-up file: ``[(signature name, {input name: array}), ...]``."""
    _, _, prediction_log_pb2 = _serving_apis()
    requests = []
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        requests.append((request.model_spec.signature_name, inputs))
    return requests


def verify_in_fresh_process(
    path: str,
    inputs: Mapping[str, np.ndarray],
    expected: Mapping[str, np.ndarray],
    *,
    signature_name: str = "serving_default",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    timeout: float = 600,
) -> dict[str, Any]:
    """Load ``path`` in a new Python process that imports only TensorFlow and compare outputs.

    Returns ``{"ok", "max_relative_difference", "outputs", "tfprune_imported", "signatures"}``
    where ``signatures`` is the ``saved_model_cli show``-style text printed by that process.
    An output passes when ``max |got - expected| <= atol + rtol * max |expected|``.
    """
    with tempfile.TemporaryDirectory(prefix="tfprune-verify-") as tmp:
        data = os.path.join(tmp, "data.npz")
        arrays = {f"in/{k}": np.asarray(v) for k, v in inputs.items()}
        arrays.update({f"out/{k}": np.asarray(v) for k, v in expected.items()})
        np.savez(data, **arrays)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        done = subprocess.run(
            [
                sys.executable,
                verify_script.__file__,
                path,
                data,
                signature_name,
                str(rtol),
                str(atol),
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    if done.returncode != 0:
        raise TfpruneError(
            f"loading {path!r} in a fresh TensorFlow process failed:\n{done.stderr[-3000:]}"
        )
    text, _, last = done.stdout.rstrip().rpartition("\n")
    result = json.loads(last)
    result["signatures"] = text
    return result
