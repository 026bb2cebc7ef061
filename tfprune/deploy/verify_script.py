"""Check a SavedModel in a process that imports only numpy and TensorFlow (never tfprune).

Run as a script by :func:`tfprune.deploy.serving.verify_in_fresh_process`::

    python verify_script.py SAVED_MODEL DATA.npz SIGNATURE RTOL ATOL

``DATA.npz`` holds ``in/<name>`` inputs and ``out/<name>`` expected outputs. Prints the
signatures (as ``saved_model_cli show --all`` does) and, on the last line, a JSON summary.
This file imports nothing from tfprune so that running it proves the export stands alone.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2


def signature_text(path: str) -> str:
    """The signatures of the SavedModel at ``path``, as ``saved_model_cli show --all`` prints."""
    sm = saved_model_pb2.SavedModel()
    with open(path + "/saved_model.pb", "rb") as f:
        sm.ParseFromString(f.read())
    lines = []
    for key, sig in sorted(sm.meta_graphs[0].signature_def.items()):
        if key.startswith("__"):
            continue
        lines.append(f"signature_def['{key}']:")
        for what, infos in (("input", sig.inputs), ("output", sig.outputs)):
            lines.append(f"  The given SavedModel SignatureDef contains the following {what}(s):")
            for name, info in sorted(infos.items()):
                dims = tuple(d.size for d in info.tensor_shape.dim)
                shape = "unknown_rank" if info.tensor_shape.unknown_rank else str(dims)
                lines.append(f"    {what}s['{name}'] tensor_info:")
                lines.append(f"        dtype: {types_pb2.DataType.Name(info.dtype)}")
                lines.append(f"        shape: {shape}")
                lines.append(f"        name: {info.name}")
        lines.append(f"  Method name is: {sig.method_name}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    """Load, run the signature on the inputs, compare with the expected outputs, print."""
    path, data, signature, rtol, atol = argv[1:6]
    rtol, atol = float(rtol), float(atol)
    arrays = np.load(data)
    inputs = {k[3:]: arrays[k] for k in arrays.files if k.startswith("in/")}
    want = {k[4:]: arrays[k] for k in arrays.files if k.startswith("out/")}
    fn = tf.saved_model.load(path).signatures[signature]
    out = fn(**{k: tf.constant(v) for k, v in inputs.items()})
    got = {k: v.numpy() for k, v in out.items()}
    worst, ok = 0.0, sorted(got) == sorted(want)
    for name, w in want.items():
        if name not in got or got[name].shape != w.shape:
            ok = False
            continue
        w64, g64 = w.astype(np.float64), got[name].astype(np.float64)
        diff = float(np.max(np.abs(w64 - g64))) if w.size else 0.0
        scale = float(np.max(np.abs(w64))) if w.size else 0.0
        worst = max(worst, diff / max(scale, 1e-12))
        ok = ok and diff <= atol + rtol * scale
    print(signature_text(path))
    summary = {
        "ok": bool(ok),
        "max_relative_difference": worst,
        "outputs": sorted(got),
        "tfprune_imported": any(m.split(".")[0] == "tfprune" for m in sys.modules),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main(sys.argv)
