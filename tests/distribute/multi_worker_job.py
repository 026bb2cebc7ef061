"""One worker of the two-process multi-worker test (run by ``test_multi_worker.py``).

Reads ``TF_CONFIG`` from the environment, builds ``MultiWorkerMirroredStrategy`` through
``tfprune.distribute.get_strategy``, trains two masked small CNNs for a few steps on random
images (a one-shot 50 % pruned model with plain ``fit``, then a GReg-1 run that ends with its
masks set) and writes, per run, the final weights, the pruned units and the outputs of the
masked and stripped models on fixed inputs to ``<out_dir>/worker<index>.npz``. Then it runs a
one-run protocol grid into its own ``<out_dir>/grid<index>`` folder: only the chief's folder may
get the run's files.

Usage: ``python multi_worker_job.py OUT_DIR``
"""

from __future__ import annotations

import json
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

import tfprune  # noqa: E402
from tfprune.compat import keras, tf  # noqa: E402
from tfprune.distribute import get_strategy  # noqa: E402
from tfprune.models import small_cnn  # noqa: E402
from tfprune.protocols import resolve_config  # noqa: E402
from tfprune.protocols.runner import run_protocol  # noqa: E402

GRID = (
    "base.epochs=1,base.schedule='0:0.02',budgets=[1],seeds=[0],methods=[l1],lrs=[0.01],"
    "baselines=false,jsv_every_epoch=false,jsv_samples=0"
)
GLOBAL_BATCH = 16
STEPS = 6
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data() -> tf.data.Dataset:
    """The same random images on every worker; the strategy shards them by example."""
    rng = np.random.default_rng(0)
    x = rng.random((GLOBAL_BATCH * 4, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, GLOBAL_BATCH * 4).astype(np.int64)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)


def _run(strategy, sparsity: float, callbacks: list, epochs: int) -> dict[str, np.ndarray]:
    keras.utils.set_random_seed(0)
    with strategy.scope():
        masked = tfprune.prune_filters(small_cnn(width=8, seed=0), sparsity=sparsity)
        masked.compile(keras.optimizers.SGD(0.05, momentum=0.9), LOSS)
    masked.fit(_data(), epochs=epochs, steps_per_epoch=STEPS, callbacks=callbacks, verbose=0)
    probe = np.random.default_rng(1).random((8, 8, 8, 1), dtype=np.float32)
    stripped = tfprune.strip_filters(masked)
    out = {f"w{i}": w for i, w in enumerate(masked.get_weights())}
    pruned = tfprune.FilterPruner.for_model(masked).current_pruned()
    out.update({f"pruned{k}": np.asarray(v) for k, v in sorted(pruned.items())})
    # Called outside the strategy, the model reads the cross-worker mean of each BN moving
    # statistic (the value get_weights, checkpoints and strip_filters see); predict() inside the
    # strategy would use this worker's own, unsynchronized moving statistics instead.
    out["masked_out"] = masked(probe, training=False).numpy()
    out["stripped_out"] = stripped(probe, training=False).numpy()
    out["stripped_params"] = np.asarray(stripped.count_params())
    out["masked_params"] = np.asarray(masked.count_params())
    return out


def main(out_dir: str) -> None:
    strategy = get_strategy("multi_worker_mirrored")
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    result = {f"plain_{k}": v for k, v in _run(strategy, 0.5, [], 1).items()}
    greg = tfprune.GrowingRegularization(
        0.5, delta=0.5, ceiling=1.0, update_every=1, stabilize_steps=4
    )
    result.update({f"greg_{k}": v for k, v in _run(strategy, 0.0, [greg], 3).items()})
    result["greg_phase_done"] = np.asarray(greg.phase == "done")
    config = resolve_config("finetune_lr", overrides=[GRID])
    (record,) = run_protocol(
        config, os.path.join(out_dir, f"grid{index}"), strategy=strategy, log=lambda s: None
    )
    result["grid_run_id"] = np.asarray(record.run_spec().run_id())
    result["grid_final_acc"] = np.asarray(record.metrics["final_acc"])
    np.savez(os.path.join(out_dir, f"worker{index}.npz"), **result)


if __name__ == "__main__":
    main(sys.argv[1])
