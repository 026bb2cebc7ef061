"""Is input the bottleneck? Input pipeline examples/s next to the model's training rate.

Both are measured in one run, for the CIFAR-10 pipeline feeding ResNet-56 and the ImageNet
pipeline feeding ResNet-50.

The benchmark writes synthetic files in the standard formats to a temporary folder (CIFAR-10
"python version" pickle batches; ImageNet TFRecord shards of JPEG-encoded ``tf.train.Example`` s),
builds the pipelines with :func:`tfprune.data.load_dataset` exactly as training does, and prints,
per dataset: input examples/s (iterating the training pipeline alone), model examples/s (``fit``
steps of ResNet-56 / ResNet-50 on one cached batch, so no input cost) and their ratio. A ratio
below 1 means the model waits for data.

    python benchmarks/input_speed.py [--batch 64] [--steps 10] [--image_size 224]
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from tfprune.compat import keras, tf  # noqa: E402
from tfprune.data import load_dataset  # noqa: E402
from tfprune.models import get_model  # noqa: E402

LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def write_cifar10(root: str, per_file: int) -> str:
    """Five training batches and a test batch of random CIFAR-10 images; returns the folder."""
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
            b"labels": rng.integers(0, 10, per_file).tolist(),
        }
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def write_imagenet(root: str, shards: int, per_shard: int, size: int = 320) -> str:
    """TFRecord shards ``train-*`` / ``validation-*`` of random JPEGs; returns the folder."""
    folder = os.path.join(root, "imagenet")
    os.makedirs(folder)
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        n = shards if split == "train" else 1
        for i in range(n):
            path = os.path.join(folder, f"{split}-{i:05d}-of-{n:05d}")
            with tf.io.TFRecordWriter(path) as writer:
                for _ in range(per_shard):
                    h, w = int(rng.integers(size // 2, size)), int(rng.integers(size // 2, size))
                    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                    jpeg = tf.io.encode_jpeg(pixels, quality=90).numpy()
                    feature = {
                        "image/encoded": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[jpeg])
                        ),
                        "image/class/label": tf.train.Feature(
                            int64_list=tf.train.Int64List(value=[int(rng.integers(0, 1000))])
                        ),
                    }
                    example = tf.train.Example(features=tf.train.Features(feature=feature))
                    writer.write(example.SerializeToString())
    return folder


def input_rate(data: tf.data.Dataset, batches: int) -> float:
    """Examples/s of iterating ``data`` (after one warm-up batch)."""
    it = iter(data.repeat())
    next(it)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        x, _ = next(it)
        count += int(x.shape[0])
    return count / (time.perf_counter() - start)


def model_rate(model: keras.Model, data: tf.data.Dataset, steps: int) -> float:
    """Examples/s of ``fit`` on one batch of ``data`` held in memory (no input cost)."""
    x, y = next(iter(data))
    cached = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), LOSS)
    model.fit(cached, epochs=1, steps_per_epoch=2, verbose=0)  # trace and warm up
    start = time.perf_counter()
    model.fit(cached, epochs=1, steps_per_epoch=steps, verbose=0)
    return steps * int(x.shape[0]) / (time.perf_counter() - start)


flags.DEFINE_integer("batch", 64, "Training batch size of both pipelines.", lower_bound=1)
flags.DEFINE_integer("steps", 10, "Timed input batches and fit steps.", lower_bound=1)
flags.DEFINE_integer("image_size", 224, "ImageNet crop size (pixels).", lower_bound=1)


def main(argv: list[str]) -> None:
    """Time both pipelines and the models they feed; print the table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    print(
        f"load average: {os.getloadavg()}, CPUs: {os.cpu_count()}, "
        f"GPUs: {len(tf.config.list_physical_devices('GPU'))}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as root:
        cifar = load_dataset("cifar10", write_cifar10(root, 1000), batch_size=args.batch)
        resnet56 = get_model("resnet56", num_classes=10, input_shape=cifar.input_shape)
        rows.append(("cifar10 pickle / resnet56", cifar.train, resnet56))
        imagenet_dir = write_imagenet(root, shards=4, per_shard=max(args.batch, 32))
        imagenet = load_dataset(
            "imagenet", imagenet_dir, batch_size=args.batch, image_size=args.image_size
        )
        resnet50 = get_model("keras:ResNet50", input_shape=imagenet.input_shape, num_classes=1000)
        rows.append(("imagenet tfrecord / resnet50", imagenet.train, resnet50))
        print(
            f"{'pipeline / model':32s} {'input ex/s':>11s} {'model ex/s':>11s} {'input/model':>12s}"
        )
        for label, data, model in rows:
            inp = input_rate(data, args.steps)
            mod = model_rate(model, data, args.steps)
            print(f"{label:32s} {inp:11.1f} {mod:11.1f} {inp / mod:12.2f}")


if __name__ == "__main__":
    app.run(main)
