"""ResNet-34 for ImageNet / ImageNet-100 in torchvision's layout, and its pruning-ratio schemes.

Architecture (He et al. 2016, torchvision ``resnet34``): a 7x7 stride-2 stem conv with 64 filters,
BN, ReLU and a 3x3 stride-2 max pool; four stages of 3, 4, 6 and 3 BasicBlocks with 64, 128, 256
and 512 filters; global average pooling; a Dense classifier that outputs logits. The first block
of stages 2-4 has a stride-2 first conv and a 1x1 stride-2 conv + BN shortcut ("downsample").
Convolutions have no bias (BN follows each one); the Dense layer has one. Paddings are torchvision's
(symmetric ``ZeroPadding2D`` layers before the stride-2 convs and the max pool), so feature maps and
ported torchvision weights line up exactly. At 224x224 with 1000 classes: 21,797,672 trainable
parameters and 3.66 G multiply-accumulates (:func:`tfprune.count_flops`).

Layer names follow torchvision's module names with ``_`` for ``.`` (``S`` = stage 1..4,
``B`` = block, counted from 0), so ratio regexes (``re.fullmatch`` on layer names) are short::

    conv1_pad, conv1, bn1, relu, maxpool_pad, maxpool                      (stem)
    layerS_B_conv1, layerS_B_bn1, layerS_B_relu1,
    layerS_B_conv2, layerS_B_bn2, layerS_B_add, layerS_B_relu2
    layerS_0_pad1                        (S = 2, 3, 4: padding of the stride-2 first conv)
    layerS_0_downsample_conv, layerS_0_downsample_bn                        (S = 2, 3, 4)
    avgpool, fc

Initialisation (torchvision's): conv kernels He-normal with fan-out, ``N(0, 2 / (k*k*filters))``;
BN ``gamma = 1, beta = 0``; the classifier as PyTorch's ``nn.Linear`` (weights and bias
``U(-1/sqrt(512), 1/sqrt(512))``). With an int ``seed`` every layer gets its own seed.

Ratio schemes (the ``{regex: ratio}`` dicts of :func:`tfprune.prune_filters`):
:func:`resnet34_stage_scheme` turns the per-stage notation ``[s0, s1, s2, s3, s4, s_fc]`` into
ratios for the *first conv of every block* (the Wang et al. / GReg rule); :func:`resnet34_pruned`
gives Li et al.'s pruned-A / pruned-B schemes (re-implemented by Liu et al. 2019). Small-dense
pruned architectures are built directly with ``conv1_widths`` (see :func:`resnet34_conv1_widths`).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

from tfprune.compat import keras
from tfprune.errors import InvalidArgumentError
from tfprune.models.widths import block_width_table
from tfprune.selection import pruned_count

__all__ = [
    "RESNET34_BLOCKS",
    "RESNET34_LI_RATIOS",
    "RESNET34_LI_SKIP",
    "RESNET34_WIDTHS",
    "resnet34",
    "resnet34_conv1_widths",
    "resnet34_pruned",
    "resnet34_stage_scheme",
]

RESNET34_BLOCKS: tuple[int, ...] = (3, 4, 6, 3)
"""BasicBlocks in stages 1-4 (``layer1`` .. ``layer4``)."""

RESNET34_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
"""Filters of stages 1-4 (the stem has 64)."""

RESNET34_LI_SKIP: tuple[str, ...] = ("1.0", "2.0", "2.3", "3.0", "3.5", "4.0", "4.1", "4.2")
"""Blocks whose first conv Li et al.'s pruned-A/B leave intact, as ``"stage.block"``.

These are Liu et al. 2019's skip ids {2, 8, 14, 16, 26, 28, 30, 32} (convs numbered from 1 = stem,
downsample convs not numbered): the first convs of layer1.0, layer2.0, layer2.3, layer3.0,
layer3.5 and of all layer4 blocks.
"""

RESNET34_LI_RATIOS: dict[str, tuple[float, ...]] = {
    "A": (0.0, 0.3, 0.3, 0.3, 0.0, 0.0),
    "B": (0.0, 0.5, 0.6, 0.4, 0.0, 0.0),
}
"""Li et al.'s pruned-A (1.18x) and pruned-B (1.32x) stage ratios ``[s0, s1, s2, s3, s4, s_fc]``."""


def _conv1_table(conv1_widths: Sequence[int | Sequence[int]] | None) -> list[list[int]]:
    return block_width_table(conv1_widths, RESNET34_WIDTHS, RESNET34_BLOCKS)


def _conv_init(seed: int | None, index: int) -> keras.initializers.Initializer:
    """A fresh He-normal fan-out initializer with its own seed (never shared between layers)."""
    return keras.initializers.VarianceScaling(
        2.0,
        mode="fan_out",
        distribution="untruncated_normal",
        seed=None if seed is None else int(seed) * 1000 + index,
    )


def resnet34(
    input_shape: Sequence[int] = (224, 224, 3),
    num_classes: int = 1000,
    seed: int | None = None,
    *,
    conv1_widths: Sequence[int | Sequence[int]] | None = None,
    name: str = "resnet34",
) -> keras.Model:
    """Builds ResNet-34 for ImageNet-sized inputs (torchvision's ``resnet34`` layout).

    Args:
        input_shape: ``(height, width, channels)``, channels last; 224x224x3 for ImageNet.
            Any size of at least 32x32 works (the network downsamples 32 times).
        num_classes: units of the ``fc`` Dense layer (logits, no softmax): 1000 for ImageNet,
            100 for ImageNet-100.
        seed: initialiser seed; ``None`` draws random weights. Each layer gets its own seed.
        conv1_widths: filters of the first conv of each block (the only convs the Wang/Li et al.
            schemes prune), to build a small-dense pruned architecture directly: four ints (one
            per stage) or four sequences of 3, 4, 6 and 3 ints (one per block). Default: the
            stage widths 64/128/256/512. See :func:`resnet34_conv1_widths`.
        name: model name.

    Returns:
        An uncompiled functional ``keras.Model`` (layer names in the module docstring).

    Raises:
        InvalidArgumentError: for a bad ``input_shape``, ``num_classes`` or ``conv1_widths``.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape
    ):
        raise InvalidArgumentError(
            f"input_shape must be (height, width, channels) positive ints, got {input_shape!r}"
        )
    shape = tuple(int(d) for d in shape)
    if shape[0] < 32 or shape[1] < 32:
        raise InvalidArgumentError(
            f"input_shape must be at least 32x32 (ResNet-34 downsamples 32 times), got {shape!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidArgumentError(f"num_classes must be a positive int, got {num_classes!r}")
    table = _conv1_table(conv1_widths)
    conv_index = 0

    def conv(
        filters: int, kernel: int, stride: int, padding: str, layer_name: str
    ) -> keras.layers.Layer:
        nonlocal conv_index
        conv_index += 1
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding=padding,
            use_bias=False,
            kernel_initializer=_conv_init(seed, conv_index),
            name=layer_name,
        )

    def bn(layer_name: str) -> keras.layers.Layer:
        return keras.layers.BatchNormalization(
            momentum=0.9,  # PyTorch's momentum 0.1
            epsilon=1e-5,  # PyTorch's default
            name=layer_name,
        )

    inputs = keras.Input(shape=shape, name="input")
    x = keras.layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = conv(64, 7, 2, "valid", "conv1")(x)
    x = bn("bn1")(x)
    x = keras.layers.ReLU(name="relu")(x)
    # Zero padding equals torchvision's -inf padding here: the input is >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name="maxpool_pad")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="maxpool")(x)
    in_width = 64
    for s, (width, blocks) in enumerate(zip(RESNET34_WIDTHS, RESNET34_BLOCKS), start=1):
        for b in range(blocks):
            p = f"layer{s}_{b}_"
            stride = 2 if (s > 1 and b == 0) else 1
            if stride == 2:
                y = keras.layers.ZeroPadding2D(1, name=p + "pad1")(x)
                y = conv(table[s - 1][b], 3, 2, "valid", p + "conv1")(y)
            else:
                y = conv(table[s - 1][b], 3, 1, "same", p + "conv1")(x)
            y = bn(p + "bn1")(y)
            y = keras.layers.ReLU(name=p + "relu1")(y)
            y = conv(width, 3, 1, "same", p + "conv2")(y)
            y = bn(p + "bn2")(y)
            if stride != 1 or in_width != width:
                short = conv(width, 1, stride, "valid", p + "downsample_conv")(x)
                short = bn(p + "downsample_bn")(short)
            else:
                short = x
            x = keras.layers.Add(name=p + "add")([y, short])
            x = keras.layers.ReLU(name=p + "relu2")(x)
            in_width = width
    x = keras.layers.GlobalAveragePooling2D(name="avgpool")(x)
    bound = 1.0 / in_width**0.5
    fc_seed = None if seed is None else int(seed) * 1000 + 998
    outputs = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.VarianceScaling(
            1.0 / 3.0, mode="fan_in", distribution="uniform", seed=fc_seed
        ),
        bias_initializer=keras.initializers.RandomUniform(
            -bound, bound, seed=None if seed is None else int(seed) * 1000 + 999
        ),
        name="fc",
    )(x)
    return keras.Model(inputs, outputs, name=name)


def _check_stage_ratios(ratios: Sequence[float]) -> list[float]:
    if isinstance(ratios, (str, bytes)) or not isinstance(ratios, Sequence):
        raise InvalidArgumentError(
            f"ratios must be a list [s0, s1, s2, s3, s4, s_fc] (6 entries), got {ratios!r}"
        )
    if len(ratios) != 6:
        raise InvalidArgumentError(
            f"ratios must be the stage notation [s0, s1, s2, s3, s4, s_fc] (6 entries), got "
            f"{len(ratios)}: {list(ratios)!r}"
        )
    values = []
    for i, r in enumerate(ratios):
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0.0 <= float(r) < 1.0:
            raise InvalidArgumentError(f"ratios[{i}] must be a number in [0, 1), got {r!r}")
        values.append(float(r))
    if values[0] != 0.0:
        raise InvalidArgumentError(
            f"ratios[0] (s0, the stem conv1) must be 0: the stem output feeds the residual stream "
            f"of layer1, which this scheme never prunes; got {values[0]!r}"
        )
    if values[5] != 0.0:
        raise InvalidArgumentError(
            f"ratios[5] (s_fc) must be 0: filter pruning cannot remove output classes; "
            f"got {values[5]!r}"
        )
    return values


def _parse_skip(skip: Sequence[str | tuple[int, int]]) -> set[tuple[int, int]]:
    if isinstance(skip, (str, bytes)):
        raise InvalidArgumentError(f"skip must be a list of 'stage.block' strings, got {skip!r}")
    out = set()
    for item in skip:
        if isinstance(item, str):
            match = re.fullmatch(r"(\d+)\.(\d+)", item.strip())
            if not match:
                raise InvalidArgumentError(
                    f"skip entries must be 'stage.block' like '2.0', got {item!r}"
                )
            stage, block = int(match.group(1)), int(match.group(2))
        else:
            try:
                stage, block = (int(v) for v in item)
            except (TypeError, ValueError) as err:
                raise InvalidArgumentError(
                    f"skip entries must be 'stage.block' strings or (stage, block), got {item!r}"
                ) from err
        if not 1 <= stage <= 4 or not 0 <= block < RESNET34_BLOCKS[stage - 1]:
            raise InvalidArgumentError(
                f"skip entry {item!r}: ResNet-34 has stages 1-4 with blocks 0-2, 0-3, 0-5, 0-2"
            )
        out.add((stage, block))
    return out


def resnet34_stage_scheme(
    ratios: Sequence[float], *, skip: Sequence[str | tuple[int, int]] = ()
) -> dict[str, float]:
    r"""Turns the stage notation ``[s0, s1, s2, s3, s4, s_fc]`` into ``{layer regex: ratio}``.

    Stage ``k`` (1-4) ratio applies to the first conv of every block of ``layer{k}``
    (``layer{k}_{b}_conv1``): Wang et al.'s ImageNet-100 rule "L1 on the first conv of every
    residual block; second convs, stem and FC untouched". The second convs and the downsample
    convs feed the residual stream and are never selected, so ``s0`` (stem) and ``s_fc``
    (classifier) must be 0. Zero-ratio stages are left out. ``[0, .5, .5, .5, .5, 0]`` matches 16
    convs.

    Args:
        ratios: 6 ratios in ``[0, 1)``; ``s0 = s_fc = 0``.
        skip: blocks whose first conv stays intact, as ``"stage.block"`` strings (``"2.3"``) or
            ``(stage, block)`` pairs; see :data:`RESNET34_LI_SKIP`.

    Returns:
        e.g. ``{"layer1_\d+_conv1": 0.5, ...}``; a skipped block is excluded with a negative
        look-ahead (``layer2_(?!(?:0|3)_)\d+_conv1``).

    Raises:
        InvalidArgumentError: wrong length, a ratio outside ``[0, 1)``, a non-zero ``s0`` or
            ``s_fc``, or a skip entry that names no block.
    """
    values = _check_stage_ratios(ratios)
    skipped = _parse_skip(skip)
    scheme: dict[str, float] = {}
    for stage in range(1, 5):
        ratio = values[stage]
        blocks = sorted(b for s, b in skipped if s == stage)
        if ratio == 0.0 or len(blocks) == RESNET34_BLOCKS[stage - 1]:
            continue
        guard = f"(?!(?:{'|'.join(str(b) for b in blocks)})_)" if blocks else ""
        scheme[f"layer{stage}_{guard}\\d+_conv1"] = ratio
    return scheme


def resnet34_pruned(variant: str) -> dict[str, float]:
    r"""Li et al.'s ResNet-34 *pruned-A* or *pruned-B* scheme (Liu et al. 2019's ImageNet configs).

    The first conv of every block is pruned with its stage ratio (A: 30 % in stages 1-3; B: 50 %,
    60 %, 40 %), except the blocks in :data:`RESNET34_LI_SKIP` (layer1.0, layer2.0, layer2.3,
    layer3.0, layer3.5 and all of layer4). FLOPs speed-ups at 224x224: A 1.18x, B 1.32x.

    Li et al. keep ``int(n * (1 - p))`` filters; tfprune removes ``ceil(p * n)`` (at most
    ``n - 1``), which is the same count (``n - ceil(p n) = floor(n (1 - p))``) for every layer
    of these schemes.

    Args:
        variant: ``"A"`` or ``"B"``.

    Raises:
        InvalidArgumentError: for another variant.
    """
    key = variant.upper() if isinstance(variant, str) else None
    if key not in RESNET34_LI_RATIOS:
        raise InvalidArgumentError(
            f"variant must be 'A' or 'B' (Li et al.'s pruned-A / pruned-B), got {variant!r}"
        )
    return resnet34_stage_scheme(RESNET34_LI_RATIOS[key], skip=RESNET34_LI_SKIP)


def resnet34_conv1_widths(
    ratios: Sequence[float], *, skip: Sequence[str | tuple[int, int]] = ()
) -> list[list[int]]:
    """The ``conv1_widths`` of the small-dense ResNet-34 that the stage ratios prune to.

    Each pruned first conv keeps ``n - ceil(ratio * n)`` filters (at least 1), exactly what
    :func:`tfprune.prune_filters` + :func:`tfprune.strip_filters` leave with
    :func:`resnet34_stage_scheme` ``(ratios, skip=skip)``. Pass the result to :func:`resnet34`.
    """
    values = _check_stage_ratios(ratios)
    skipped = _parse_skip(skip)
    return [
        [w if (s, b) in skipped else w - pruned_count(w, values[s]) for b in range(n)]
        for s, (w, n) in enumerate(zip(RESNET34_WIDTHS, RESNET34_BLOCKS), start=1)
    ]
