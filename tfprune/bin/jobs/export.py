"""What ``tfprune-export`` does once its flags have parsed (see :mod:`tfprune.bin.export`)."""

from __future__ import annotations

from absl import app, flags

from tfprune.compat import keras
from tfprune.deploy.verify_script import signature_text
from tfprune.export import export_for_serving
from tfprune.models import get_model, load_model
from tfprune.pruning import custom_objects, shrink


def _load_model(args: flags.FlagValues):
    """The model from --model_path or --model (with --input_shape)."""
    if (args.model_path is None) == (args.model is None):
        raise app.UsageError("pass exactly one of --model_path and --model")
    if args.model_path is not None:
        return load_model(args.model_path, "model_path", custom_objects())
    kwargs = {}
    if args.input_shape:
        if not args.model.startswith("keras:"):
            raise app.UsageError("--input_shape applies to keras:<Application> models only")
        try:
            kwargs["input_shape"] = tuple(int(d) for d in args.input_shape)
        except ValueError:
            msg = f"--input_shape must be integers, got {args.input_shape}"
            raise app.UsageError(msg) from None
    return get_model(args.model, **kwargs)


def _preprocessing(model, args: flags.FlagValues):
    """A Rescaling model raw -> model input, from the --preprocess_* flags (or None)."""
    if args.preprocess_scale is None:
        return None
    if len(model.inputs) != 1:
        raise app.UsageError("--preprocess_scale needs a model with one input")
    (inp,) = model.inputs
    raw = keras.Input(tuple(inp.shape[1:]), dtype=args.raw_dtype, name=model.input_names[0])
    # Rescaling casts its input to its own float dtype first.
    x = keras.layers.Rescaling(args.preprocess_scale, args.preprocess_offset, name="rescale")(raw)
    return keras.Model(raw, x, name="preprocessing")


def main(args: flags.FlagValues) -> None:
    """Flags -> model -> (shrink) -> export_for_serving -> summary and signatures."""
    if not 0.0 <= args.sparsity < 1.0:
        raise app.UsageError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    model = _load_model(args)
    if args.sparsity > 0:
        model = shrink(model, args.sparsity)
    result = export_for_serving(
        model,
        args.base_dir,
        version=args.version,
        signature_name=args.signature_name,
        fold=args.fold,
        preprocessing=_preprocessing(model, args),
        preprocessing_signature_name=args.preprocess_signature,
        warmup=args.warmup,
        model_name=args.model_name,
        tflite=args.tflite,
        onnx=args.onnx,
        verify=args.verify,
        allow_masked=args.allow_masked,
        rtol=args.rtol,
        runtime_rtol=args.runtime_rtol,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print(result.summary())
    if result.verify is not None:
        print(result.verify["signatures"])
    else:
        print(signature_text(result.path))
