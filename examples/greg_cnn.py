"""Growing regularization (GReg-1, Wang et al., ICLR 2021) on a small CNN, then OrthP.

    python examples/greg_cnn.py

Trains tfprune's ``small_cnn`` on the scikit-learn digits (8x8 images, embedded, CPU seconds),
lets GReg push half of the filters of every group towards zero, cuts them out and measures
the trainability of the result (mean Jacobian singular value) before and after OrthP.
``--epochs=1`` makes it quicker (GReg then warns that its masks were not set yet).
"""

import argparse

import tfprune
from tfprune.compat import keras
from tfprune.data import load_dataset
from tfprune.models import get_model


def main() -> None:
    """Pretrain, regularize with GReg-1, strip, report params and mean JSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the GReg stage")
    parser.add_argument("--base_epochs", type=int, default=3, help="epochs of pretraining")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    data = load_dataset("digits", batch_size=32, seed=0, deterministic=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)  # small_cnn: logits
    base = get_model("small_cnn", seed=0)
    base.compile(keras.optimizers.SGD(1e-2, momentum=0.9), loss, metrics=["accuracy"])
    base.fit(data.train, epochs=args.base_epochs, verbose=2)

    masked = tfprune.prune_filters(base, sparsity=0.0)  # all-ones masks for GReg to set
    masked.compile(keras.optimizers.SGD(1e-2, momentum=0.9), loss, metrics=["accuracy"])
    # A schedule for 8x8 digits: the masks are set within a few hundred steps. The authors'
    # (delta=1e-4, ceiling=1, stabilize_steps=10_000) needs about 110,000 steps.
    greg = tfprune.GrowingRegularization(
        sparsity=0.5,
        variant="greg1",
        delta=1.0,
        ceiling=150.0,  # lr x ceiling stays below 2: SGD stays stable
        update_every=1,
        stabilize_steps=200,
        include_inputs=True,
        mag_ratio_limit=500.0,  # kept/pruned magnitude ratio that counts as separated
    )
    masked.fit(data.train, epochs=args.epochs, callbacks=[greg], verbose=2)  # stops when set

    small = tfprune.strip_filters(masked)
    x_sample = next(iter(data.test))[0]
    print(f"GReg phase: {greg.phase}")
    print(f"params: {base.count_params():,} -> {small.count_params():,}")
    print(f"mean JSV after pruning: {tfprune.mean_jsv(small, x_sample).mean:.4f}")
    tfprune.orthp(small)  # OrthP re-initialization, in place
    print(f"mean JSV after OrthP:   {tfprune.mean_jsv(small, x_sample).mean:.4f}")


if __name__ == "__main__":
    main()
