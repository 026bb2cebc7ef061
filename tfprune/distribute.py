"""Choosing a ``tf.distribute`` strategy by name (the binaries' ``--strategy`` flag)."""

from __future__ import annotations

import functools
from typing import Any

from tfprune.choices import STRATEGIES
from tfprune.compat import tf
from tfprune.errors import InvalidArgumentError

__all__ = ["get_strategy", "is_chief", "is_multi_worker"]


def get_strategy(name: str = "default", *, tpu_address: str = "", devices: Any = None) -> Any:
    """Return the ``tf.distribute`` strategy called ``name``.

    ``default`` (no distribution), ``mirrored`` (all local GPUs, or the local CPUs/logical
    devices), ``multi_worker_mirrored`` (reads ``TF_CONFIG``), ``tpu`` (``tpu_address``; empty
    for a local TPU) or ``one_device``. Asking twice for ``mirrored`` over the same devices
    returns the same strategy.
    """
    key = (name or "default").lower()
    if key == "default":
        return tf.distribute.get_strategy()
    if key == "mirrored":
        if devices is None:
            gpus = tf.config.list_logical_devices("GPU")
            devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return _mirrored(tuple(devices))
    if key == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if key == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(
            (gpus[0] if gpus else tf.config.list_logical_devices("CPU")[0]).name
        )
    if key == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise InvalidArgumentError(f"Unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}.")


@functools.cache
def _mirrored(devices: tuple[str, ...]) -> Any:
    # One MirroredStrategy per device set and process: two of them over the same devices number
    # their collective ops alike, and TensorFlow then mixes up their all-reduces.
    return tf.distribute.MirroredStrategy(devices=list(devices))


def is_chief(strategy: Any) -> bool:
    """Whether this process writes a run's results: always, except on a non-chief worker.

    Under ``MultiWorkerMirroredStrategy`` every worker runs every step, but only the chief (the
    ``chief`` task, else worker 0) should write records and reports, so each is written once.
    Reads the strategy's public ``extended.should_checkpoint``.
    """
    if strategy is None:
        return True
    return bool(getattr(strategy.extended, "should_checkpoint", True))


def is_multi_worker(strategy: Any) -> bool:
    """Whether ``strategy`` spans several processes that run every step together."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
