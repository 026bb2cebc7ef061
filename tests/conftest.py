"""Shared pytest setup for tfprune tests.

Importing this module (pytest does so before collecting any test) sets the environment TensorFlow
reads at import time and splits the host CPU into two logical devices, so tests can run
``tf.distribute.MirroredStrategy`` on a machine without accelerators. Logical devices can only be
configured before the TensorFlow runtime initializes, which is why this happens at import time and
not inside a fixture.
"""

from __future__ import annotations

import os
import pathlib

# Must be set before TensorFlow is imported anywhere: Keras 2 (tf_keras) everywhere, quiet C++ logs.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from tfprune.compat import tf  # noqa: E402
from tfprune.distribute import get_strategy  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
NUM_LOGICAL_CPUS = 2
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _split_cpu(n: int) -> str | None:
    """Splits the first physical CPU into `n` logical devices; returns why not, or None."""
    cpus = tf.config.list_physical_devices("CPU")
    if not cpus:
        return "no physical CPU device"
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as err:  # The runtime was already initialized by an earlier import.
        return f"TensorFlow was initialized before tests/conftest.py ran: {err}"
    return None


_SPLIT_CPU_ERROR = _split_cpu(NUM_LOGICAL_CPUS)


@pytest.fixture(scope="session")
def cpu_devices() -> list[str]:
    """Names of the two logical CPU devices, e.g. for ``MirroredStrategy(devices=...)``."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < NUM_LOGICAL_CPUS:
        pytest.skip(f"need {NUM_LOGICAL_CPUS} logical CPU devices: {_SPLIT_CPU_ERROR}")
    return devices[:NUM_LOGICAL_CPUS]


@pytest.fixture(scope="session")
def mirrored_strategy(cpu_devices: list[str]) -> tf.distribute.MirroredStrategy:
    """A MirroredStrategy over the two logical CPU devices."""
    return get_strategy("mirrored", devices=cpu_devices)


@pytest.fixture(scope="session")
def mnist_dir() -> pathlib.Path:
    """The shared MNIST test-set folder (``../shared/data/mnist``); skips the test if absent."""
    path = SHARED_DATA / "mnist"
    missing = [name for name in MNIST_FILES if not (path / name).is_file()]
    if missing:
        pytest.skip(f"MNIST data not found in {path} (missing {', '.join(missing)})")
    return path


@pytest.fixture(scope="session")
def resnet56_model():
    """``tfprune.models.resnet56()`` (CIFAR, 32x32), built once per session.

    Shared by the FLOPs, speed-up, target and zoo tests: they only count it or prune it, and
    ``prune_filters`` / ``shrink`` return new models, so no test changes it.
    """
    from tfprune.models.resnet_cifar import resnet56

    return resnet56()


@pytest.fixture(scope="session")
def resnet34_224():
    """``tfprune.models.resnet34(seed=0)`` (224x224, 1000 classes), built once per session.

    Shared by the ResNet-34 and zoo tests: they only count it, match patterns on it or
    ``shrink`` it (a new model), so no test changes it.
    """
    from tfprune.models.resnet_imagenet import resnet34

    return resnet34(seed=0)


@pytest.fixture(scope="session")
def keras_resnet50_224():
    """``keras.applications.ResNet50(weights=None)`` (224x224), built once per session.

    Shared by the FLOPs and speed-up tests: they only count it or ``shrink`` it (a new model), so
    no test changes it.
    """
    from tfprune.compat import keras

    return keras.applications.ResNet50(weights=None)
