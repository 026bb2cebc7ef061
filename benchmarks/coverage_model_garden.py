"""Prune TF Model Garden backbones (``tf-models-official``) at 50% and print a coverage table.

Model Garden builds its networks from custom blocks (``BottleneckBlock``,
``InvertedBottleneckBlock``, ``SqueezeExcitation``...); tfprune traces them into layer graphs.
For each model (random weights, BatchNorm statistics calibrated on one batch so activations
stay O(1)): fraction of all filters that are prunable, FLOPs (MACs) before/after
``prune_filters(model, 0.5)`` + ``strip_filters``, the max relative error between the masked
and the stripped model, and what blocks the rest. Classification models wrap each backbone
(only the classifier's logits are a model output); a backbone alone must keep every endpoint.

    python benchmarks/coverage_model_garden.py [--models resnet18,mobilenet_v2] [--json out.json]
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import tfprune  # noqa: E402
from tfprune.batch_norm import recalibrate_batch_norm  # noqa: E402
from tfprune.compat import keras  # noqa: E402
from tfprune.flops import count_flops  # noqa: E402


def _classifier(backbone_fn: Callable[[keras.layers.InputSpec], keras.Model], size: int):
    def build() -> keras.Model:
        from official.vision.modeling import classification_model

        spec = keras.layers.InputSpec(shape=[None, size, size, 3])
        return classification_model.ClassificationModel(
            backbone_fn(spec), num_classes=10, input_specs=spec
        )

    return build


def _resnet(model_id: int, **kwargs):
    def fn(spec):
        from official.vision.modeling.backbones import resnet

        return resnet.ResNet(model_id=model_id, input_specs=spec, **kwargs)

    return fn


def _mobilenet(model_id: str):
    def fn(spec):
        from official.vision.modeling.backbones import mobilenet

        return mobilenet.MobileNet(model_id=model_id, input_specs=spec)

    return fn


def _efficientnet(spec):
    from official.vision.modeling.backbones import efficientnet

    return efficientnet.EfficientNet(model_id="b0", input_specs=spec, se_ratio=0.25)


def _spinenet_mobile(spec):
    from official.vision.modeling.backbones import spinenet_mobile

    return spinenet_mobile.SpineNetMobile(input_specs=spec, model_id="49")


def _mobiledet(spec):
    from official.vision.modeling.backbones import mobiledet

    return mobiledet.MobileDet(model_id="MobileDetCPU", input_specs=spec)


def _vit(spec):
    from official.vision.modeling.backbones import vit

    return vit.VisionTransformer(
        input_specs=spec,
        patch_size=16,
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        mlp_dim=128,
        pooler="token",
        representation_size=0,
    )


def _bert() -> keras.Model:
    from official.nlp.modeling import networks

    return networks.BertEncoder(
        vocab_size=100,
        hidden_size=32,
        num_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_sequence_length=16,
    )


def _bert_classifier() -> keras.Model:
    from official.nlp.modeling import models

    return models.BertClassifier(_bert(), num_classes=3)


MODELS: dict[str, tuple[Callable[[], keras.Model], int]] = {
    "resnet18": (_classifier(_resnet(18), 64), 64),
    "resnet50": (_classifier(_resnet(50), 64), 64),
    "resnet50_se_sd": (
        _classifier(_resnet(50, se_ratio=0.25, init_stochastic_depth_rate=0.1), 64),
        64,
    ),
    "mobilenet_v1": (_classifier(_mobilenet("MobileNetV1"), 64), 64),
    "mobilenet_v2": (_classifier(_mobilenet("MobileNetV2"), 64), 64),
    "mobilenet_v3_small": (_classifier(_mobilenet("MobileNetV3Small"), 64), 64),
    "mobilenet_v3_large": (_classifier(_mobilenet("MobileNetV3Large"), 64), 64),
    "mobilenet_multi_avg": (_classifier(_mobilenet("MobileNetMultiAVG"), 64), 64),
    "mobilenet_v4_conv_small": (_classifier(_mobilenet("MobileNetV4ConvSmall"), 64), 64),
    "efficientnet_b0": (_classifier(_efficientnet, 64), 64),
    "spinenet_mobile_49": (_classifier(_spinenet_mobile, 128), 128),
    "mobiledet_cpu": (_classifier(_mobiledet, 64), 64),
    "vit_tiny": (_classifier(_vit, 64), 64),
    "bert_encoder_small": (_bert, 0),
    "bert_classifier_small": (_bert_classifier, 0),
}


def _inputs(model: keras.Model, size: int, rng: np.random.Generator, n: int) -> object:
    if size:
        return rng.normal(size=(n, size, size, 3)).astype(np.float32)
    seq = 16
    return {
        "input_word_ids": rng.integers(0, 100, size=(n, seq)).astype(np.int32),
        "input_mask": np.ones((n, seq), np.int32),
        "input_type_ids": np.zeros((n, seq), np.int32),
    }


def _flat(outputs: object) -> np.ndarray:
    if isinstance(outputs, dict):
        outputs = [outputs[k] for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return np.concatenate([np.ravel(_flat(o)) for o in outputs])
    return np.ravel(np.asarray(outputs))


def measure(name: str) -> dict:
    """Prune one Model Garden model at 50% and compare masked vs stripped outputs."""
    build, size = MODELS[name]
    model = build()
    rng = np.random.default_rng(0)
    if size:
        recalibrate_batch_norm(model, _inputs(model, size, rng, 16))
    x = _inputs(model, size, rng, 2)
    report = tfprune.explain(model)
    row = {
        "model": name,
        "input": f"{size}x{size}x3" if size else "16 tokens",
        "prunable_fraction": report.prunable_fraction,
        "blocking": report.blocking_layers[:3],
    }
    if not report.prunable_fraction:
        return {**row, "flops_reduction": 0.0, "rel_error": float("nan")}
    t0 = time.perf_counter()
    try:
        masked = tfprune.prune_filters(model, 0.5)
    except tfprune.errors.UnsupportedModelError as err:  # no pruned copy can be built
        return {
            **row,
            "prunable_fraction": 0.0,
            "flops_reduction": 0.0,
            "rel_error": float("nan"),
            "blocking": [str(err)],
        }
    small = tfprune.strip_filters(masked)
    seconds = time.perf_counter() - t0
    a, b = _flat(masked(x, training=False)), _flat(small(x, training=False))
    rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
    ref = _flat(model(x, training=False))
    rel_orig = float(np.abs(ref - a).max() / max(np.abs(ref).max(), 1e-12))
    # FLOPs (count_flops looks inside custom blocks) before and after.
    # Sequence models have no fixed length: count at the length of the check inputs.
    shapes = None
    if isinstance(x, dict):
        shapes = [x[t.name.split(":")[0]].shape[1:] for t in model.inputs]
    before = count_flops(model, input_shapes=shapes)
    after = count_flops(small, input_shapes=shapes)
    return {
        **row,
        "flops_before": before.total,
        "flops_after": after.total,
        "flops_reduction": 1 - after.total / before.total if before.total else 0.0,
        "flops_lower_bound": bool(before.uncounted or after.uncounted),
        "rel_error": rel,
        "rel_error_unpruned_vs_masked_trace": rel_orig,
        "prune_strip_seconds": seconds,
    }


HEADER = (
    "| model | input | prunable filters (of all) | FLOPs reduction at 50% | max rel. error "
    "| blocked by |\n|---|---|---|---|---|---|"
)


def row_markdown(r: dict) -> str:
    """One table row (with what blocks models that are not fully prunable)."""
    if "error" in r:
        return f"| {r['model']} | FAILED: {r['error'][:120]} | | | | |"
    blocked = "; ".join(r.get("blocking", [])[:2]) if r["prunable_fraction"] < 0.995 else ""
    if r["prunable_fraction"] < 0.995 and not blocked:
        blocked = "model outputs"  # explain leaves inputs/outputs out of its blocking layers
    bound = " (lower bound)" if r.get("flops_lower_bound") else ""
    error = "n/a" if r["rel_error"] != r["rel_error"] else f"{r['rel_error']:.1e}"  # NaN: not run
    return (
        f"| {r['model']} | {r['input']} | {r['prunable_fraction']:.0%} | "
        f"{r['flops_reduction']:.0%}{bound} | {error} | {blocked[:160]} |"
    )


flags.DEFINE_string(
    "models", "", "Comma-separated subset of " + ",".join(MODELS) + "; default all."
)
flags.DEFINE_string("json", "", "Also write the rows to this JSON file.")
flags.DEFINE_string("from_json", "", "Only print the table of rows saved with --json.")


def main(argv: list[str]) -> None:
    """Run the sweep and print a Markdown table."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; see --help")
    args = flags.FLAGS
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            print(HEADER)
            for r in json.load(f):
                print(row_markdown(r))
        return
    try:
        import official  # noqa: F401
    except ImportError:
        sys.exit("tf-models-official is not installed (see .ci/run for the install lines)")
    names = [n for n in args.models.split(",") if n] or list(MODELS)
    rows = []
    print(HEADER)
    for name in names:
        try:
            rows.append(measure(name))
        except Exception as e:  # noqa: BLE001 - report and go on
            rows.append({"model": name, "error": f"{type(e).__name__}: {e}"})
            traceback.print_exc(file=sys.stderr)
        print(row_markdown(rows[-1]), flush=True)
        keras.backend.clear_session()
        gc.collect()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    app.run(main)
