"""CIFAR ResNets (He et al. 2016, Sec. 4.2): ResNet-20/32/44/56/110 and their pruned variants.

Architecture: a 3x3 stem conv with 16 filters, BN and ReLU; three stages of ``n = (depth - 2) / 6``
BasicBlocks with 16/32/64 filters (the first block of stages 2 and 3 has stride 2); global average
pooling; a Dense classifier. Convolutions have no bias (BN follows each one); the Dense layer has.

Shortcuts where the shape changes:

* ``shortcut="A"`` (the paper's and the authors' CIFAR code's option A): parameter-free.
  The input is subsampled spatially (``x[:, ::2, ::2, :]``) and zero-padded in the channel axis,
  ``(out - in) // 2`` zero channels before and the rest after (the authors' PyTorch code pads
  ``planes // 4`` on each side). Both ops are TF-op layers (``SlicingOpLambda``/``TFOpLambda``)
  that tf_keras creates from TensorFlow ops, so the model saves and loads as SavedModel, ``.keras``
  and ``.h5`` with plain tf_keras, without tfprune.
* ``shortcut="B"``: a strided 1x1 conv + BN projection.

Layer names (``S`` = stage 1..3, ``B`` = block 0..n-1), designed for regex ratio patterns
(``re.fullmatch`` on layer names; see :func:`stage_ratio_patterns`)::

    stem_conv, stem_bn, stem_relu
    stageS_blockB_conv1, stageS_blockB_bn1, stageS_blockB_relu1,
    stageS_blockB_conv2, stageS_blockB_bn2, stageS_blockB_add, stageS_blockB_relu2
    stageS_block0_shortcut_subsample, stageS_block0_shortcut_pad      (option A, S = 2, 3)
    stageS_block0_shortcut_conv, stageS_block0_shortcut_bn            (option B, S = 2, 3)
    avg_pool, fc

Small-dense pruned architectures (only the first conv of each block narrower, the papers'
ResNet-56 scheme ``[0, pr, pr, pr, 0]``) are built directly with ``conv1_widths``; see
:func:`conv1_widths_from_ratios`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tfprune.compat import keras, producing_layer, rename_layer, tf
from tfprune.errors import InvalidArgumentError
from tfprune.models.widths import block_width_table
from tfprune.selection import pruned_count

__all__ = [
    "SUPPORTED_DEPTHS",
    "BASE_WIDTHS",
    "resnet_cifar",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "blocks_per_stage",
    "kept_channels",
    "conv1_widths_from_ratios",
    "stage_ratio_patterns",
]

SUPPORTED_DEPTHS = (20, 32, 44, 56, 110)
"""Depths of the paper; any ``depth = 6 n + 2`` with ``n >= 1`` is accepted."""

BASE_WIDTHS = (16, 32, 64)
"""Filters of stages 1, 2 and 3 (the stem has the width of stage 1)."""


def blocks_per_stage(depth: int) -> int:
    """Number of BasicBlocks per stage, ``(depth - 2) / 6``; validates ``depth``."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 8 or (depth - 2) % 6:
        raise InvalidArgumentError(
            f"depth must be an int of the form 6n + 2 with n >= 1 (e.g. {SUPPORTED_DEPTHS}), "
            f"got {depth!r}"
        )
    return (depth - 2) // 6


def kept_channels(n: int, ratio: float) -> int:
    """Filters kept when pruning ``ratio`` of ``n``: ``n - ceil(ratio * n)``, at least 1.

    The papers' rule (GReg code), computed exactly as tfprune's selection does
    (:func:`tfprune.selection.pruned_count`), so a small-dense model built from these widths
    matches ``tfprune.shrink`` with the same ratios.
    """
    if not 0.0 <= ratio < 1.0:
        raise InvalidArgumentError(f"ratio must be in [0, 1), got {ratio!r}")
    return n - pruned_count(n, ratio)


def _stage_widths(width_multipliers: float | Sequence[float] | None) -> tuple[int, int, int]:
    if width_multipliers is None:
        return BASE_WIDTHS
    if isinstance(width_multipliers, (int, float)):
        mults = (float(width_multipliers),) * 3
    else:
        mults = tuple(float(m) for m in width_multipliers)
    if len(mults) != 3 or any(m <= 0 for m in mults):
        raise InvalidArgumentError(
            "width_multipliers must be a positive number or 3 positive numbers (one per stage), "
            f"got {width_multipliers!r}"
        )
    return tuple(max(1, int(round(b * m))) for b, m in zip(BASE_WIDTHS, mults))  # type: ignore[return-value]


def _conv1_table(
    conv1_widths: Sequence[int] | Sequence[Sequence[int]] | None,
    widths: tuple[int, int, int],
    n: int,
) -> list[list[int]]:
    return block_width_table(conv1_widths, widths, [n] * len(widths))


def _rename(tensor: Any, name: str) -> Any:
    """Gives the TF-op layer that produced ``tensor`` a readable name (before model creation)."""
    rename_layer(producing_layer(tensor), name)  # TFOpLambda names are auto-made
    return tensor


def resnet_cifar(
    depth: int,
    num_classes: int = 10,
    input_shape: Sequence[int] = (32, 32, 3),
    *,
    width_multipliers: float | Sequence[float] | None = None,
    conv1_widths: Sequence[int] | Sequence[Sequence[int]] | None = None,
    shortcut: str = "A",
    weight_decay: float = 0.0,
    name: str | None = None,
) -> keras.Model:
    """Builds a CIFAR ResNet of ``depth`` = 6n + 2 layers (20, 32, 44, 56, 110, ...).

    Args:
        depth: 6n + 2 (n BasicBlocks per stage).
        num_classes: units of the ``fc`` Dense layer (logits, no softmax).
        input_shape: ``(height, width, channels)``, channels last.
        width_multipliers: scales the stage widths 16/32/64: one number for all stages or three
            (one per stage); widths are rounded and at least 1. The stem has the stage-1 width.
        conv1_widths: filters of the first conv of each block (the only conv pruned under the
            papers' ResNet scheme), to build the small-dense pruned architecture directly: three
            ints (one per stage) or three sequences of ``n`` ints (one per block). Default: the
            stage width. See :func:`conv1_widths_from_ratios`.
        shortcut: ``"A"`` (parameter-free subsample + zero-pad, the default) or ``"B"``
            (1x1 conv + BN projection) where the shape changes; identity elsewhere.
        weight_decay: PyTorch-style SGD weight decay ``wd`` applied to every trainable weight
            (conv kernels, BN gamma/beta, FC kernel and bias) as an L2 regulariser
            ``wd / 2 * ||w||^2``, which has the same gradient. 0 (default) adds no regularisers
            (leave decay to the optimizer); the papers' CIFAR recipe uses 5e-4.
        name: model name; default ``f"resnet{depth}"``.

    Returns:
        An uncompiled functional ``keras.Model`` with He-normal initialised convolutions.
    """
    n = blocks_per_stage(depth)
    if shortcut not in ("A", "B"):
        raise InvalidArgumentError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(f"num_classes must be a positive int, got {num_classes!r}")
    if weight_decay < 0:
        raise InvalidArgumentError(f"weight_decay must be >= 0, got {weight_decay!r}")
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise InvalidArgumentError(
            f"input_shape must be (height, width, channels), got {input_shape!r}"
        )
    widths = _stage_widths(width_multipliers)
    table = _conv1_table(conv1_widths, widths, n)
    reg = keras.regularizers.L2(weight_decay / 2.0) if weight_decay > 0 else None

    def conv(filters: int, kernel: int, stride: int, layer_name: str) -> keras.layers.Layer:
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            kernel_regularizer=reg,
            name=layer_name,
        )

    def bn(layer_name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(
            momentum=0.9,  # PyTorch's momentum 0.1
            epsilon=1e-5,  # PyTorch's default
            beta_regularizer=reg,
            gamma_regularizer=reg,
            name=layer_name,
        )

    inputs = keras.Input(shape=input_shape, name="input")
    x = conv(widths[0], 3, 1, "stem_conv")(inputs)
    x = bn("stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    in_width = widths[0]
    for s, width in enumerate(widths, start=1):
        for b in range(n):
            p = f"stage{s}_block{b}_"
            stride = 2 if (s > 1 and b == 0) else 1
            y = conv(table[s - 1][b], 3, stride, p + "conv1")(x)
            y = bn(p + "bn1")(y)
            y = keras.layers.ReLU(name=p + "relu1")(y)
            y = conv(width, 3, 1, p + "conv2")(y)
            y = bn(p + "bn2")(y)
            if stride == 1 and in_width == width:
                short = x
            elif shortcut == "B":
                short = conv(width, 1, stride, p + "shortcut_conv")(x)
                short = bn(p + "shortcut_bn")(short)
            else:
                short = x
                if stride != 1:
                    short = _rename(short[:, ::stride, ::stride, :], p + "shortcut_subsample")
                if width != in_width:
                    if width < in_width:
                        raise InvalidArgumentError(
                            f"option-A shortcuts cannot shrink channels ({in_width} -> {width}); "
                            "use shortcut='B' or non-decreasing width_multipliers"
                        )
                    before = (width - in_width) // 2
                    after = width - in_width - before
                    short = tf.pad(short, [[0, 0], [0, 0], [0, 0], [before, after]])
                    short = _rename(short, p + "shortcut_pad")
            x = keras.layers.Add(name=p + "add")([y, short])
            x = keras.layers.ReLU(name=p + "relu2")(x)
            in_width = width
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(
        num_classes,
        kernel_initializer="he_normal",
        kernel_regularizer=reg,
        bias_regularizer=reg,
        name="fc",
    )(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def resnet20(**kwargs: Any) -> keras.Model:
    """ResNet-20 for CIFAR; keyword arguments as :func:`resnet_cifar`."""
    return resnet_cifar(20, **kwargs)


def resnet32(**kwargs: Any) -> keras.Model:
    """ResNet-32 for CIFAR; keyword arguments as :func:`resnet_cifar`."""
    return resnet_cifar(32, **kwargs)


def resnet44(**kwargs: Any) -> keras.Model:
    """ResNet-44 for CIFAR; keyword arguments as :func:`resnet_cifar`."""
    return resnet_cifar(44, **kwargs)


def resnet56(**kwargs: Any) -> keras.Model:
    """ResNet-56 for CIFAR (0.85 M params, 0.25 G FLOPs = 2 x MACs); see :func:`resnet_cifar`."""
    return resnet_cifar(56, **kwargs)


def resnet110(**kwargs: Any) -> keras.Model:
    """ResNet-110 for CIFAR; keyword arguments as :func:`resnet_cifar`."""
    return resnet_cifar(110, **kwargs)


def _check_stage_ratios(ratios: Sequence[float]) -> list[float]:
    values = [float(r) for r in ratios]
    if len(values) != 5:
        raise InvalidArgumentError(
            f"ratios must be the stage notation [s0, s1, s2, s3, s_fc] (5 entries), got {ratios!r}"
        )
    for i, r in enumerate(values):
        if not 0.0 <= r < 1.0:
            raise InvalidArgumentError(f"ratios[{i}] must be in [0, 1), got {r!r}")
    if values[0] != 0.0 or values[4] != 0.0:
        raise InvalidArgumentError(
            "ratios[0] (stem conv) and ratios[4] (fc) must be 0 for filter pruning of a CIFAR "
            f"ResNet (the stem output feeds the residual stream, fc outputs are classes); got "
            f"{ratios!r}"
        )
    return values


def _parse_skip(skip: Sequence[str | tuple[int, int]]) -> set[tuple[int, int]]:
    out = set()
    for item in skip:
        if isinstance(item, str):
            match = re.fullmatch(r"(\d+)\.(\d+)", item.strip())
            if not match:
                raise InvalidArgumentError(
                    f"skip entries must be 'stage.block' like '2.0', got {item!r}"
                )
            out.add((int(match.group(1)), int(match.group(2))))
        else:
            stage, block = item
            out.add((int(stage), int(block)))
    return out


def stage_ratio_patterns(
    ratios: Sequence[float], *, skip: Sequence[str | tuple[int, int]] = ()
) -> dict[str, float]:
    r"""Turns the stage notation ``[s0, s1, s2, s3, s_fc]`` into ``{layer-name regex: ratio}``.

    Only the first conv of each block (``stageS_blockB_conv1``) is selected, the papers' ResNet-56
    scheme ``[0, pr, pr, pr, 0]`` (Sec. 4.3): the stem conv, the second conv of each block, the
    shortcut convs and ``fc`` are never pruned, so ``s0`` and ``s_fc`` must be 0. Stages with
    ratio 0 get no pattern. Patterns are meant for ``re.fullmatch`` on layer names.

    Args:
        ratios: 5 per-stage ratios in ``[0, 1)``.
        skip: blocks left unpruned, as ``"stage.block"`` strings (``"2.0"``) or ``(2, 0)``.

    Returns:
        e.g. ``{"stage1_block\d+_conv1": 0.5, ...}``.
    """
    values = _check_stage_ratios(ratios)
    skipped = _parse_skip(skip)
    patterns: dict[str, float] = {}
    for stage in (1, 2, 3):
        ratio = values[stage]
        if ratio == 0.0:
            continue
        blocks = sorted(b for s, b in skipped if s == stage)
        guard = f"(?!(?:{'|'.join(str(b) for b in blocks)})_)" if blocks else ""
        patterns[f"stage{stage}_block{guard}\\d+_conv1"] = ratio
    return patterns


def conv1_widths_from_ratios(
    depth: int,
    ratios: Sequence[float],
    *,
    width_multipliers: float | Sequence[float] | None = None,
    skip: Sequence[str | tuple[int, int]] = (),
) -> list[list[int]]:
    """The ``conv1_widths`` of the small-dense model the stage ratios prune to.

    Each pruned conv keeps :func:`kept_channels` ``(width, ratio)`` filters
    (``n - ceil(pr * n)``, at least 1). Pass the result to :func:`resnet_cifar`.
    """
    n = blocks_per_stage(depth)
    values = _check_stage_ratios(ratios)
    skipped = _parse_skip(skip)
    widths = _stage_widths(width_multipliers)
    return [
        [w if (s, b) in skipped else kept_channels(w, values[s]) for b in range(n)]
        for s, w in enumerate(widths, start=1)
    ]
