"""tfprune.models: model zoo builders (uncompiled functional tf_keras models, logits outputs).

Use :func:`get_model` / :func:`list_models`, or the builders directly. Layer-ratio schemes
(``{regex: ratio}``, matched with ``re.fullmatch`` on layer names) come with each family:
:func:`mlp_scheme`, :func:`lenet_scheme`, :func:`vgg_scheme`, :func:`resnet50_stage_scheme`,
:func:`resnet34_stage_scheme` and :func:`resnet34_pruned` (ImageNet ResNet-34, :func:`resnet34`).
The CIFAR ResNets live in :mod:`tfprune.models.resnet_cifar`.
"""

from tfprune.models.applications import (
    RESNET50_SCHEMES,
    keras_application,
    list_applications,
    resnet50_stage_scheme,
)
from tfprune.models.lenet import lenet5, lenet5_linear, lenet_scheme
from tfprune.models.mlp import (
    index_pattern,
    matching_layers,
    mlp,
    mlp7_linear,
    mlp7_relu,
    mlp_scheme,
    parse_index_ratios,
)
from tfprune.models.registry import get_model, list_models, load_model, model_builder
from tfprune.models.resnet_imagenet import (
    RESNET34_LI_RATIOS,
    RESNET34_LI_SKIP,
    resnet34,
    resnet34_conv1_widths,
    resnet34_pruned,
    resnet34_stage_scheme,
)
from tfprune.models.small_cnn import small_cnn
from tfprune.models.vgg import (
    VGG_CONFIGS,
    vgg16_bn,
    vgg16_li_pruned_a_scheme,
    vgg19_bn,
    vgg_bn,
    vgg_scheme,
)

__all__ = [
    "RESNET34_LI_RATIOS",
    "RESNET34_LI_SKIP",
    "RESNET50_SCHEMES",
    "VGG_CONFIGS",
    "get_model",
    "index_pattern",
    "keras_application",
    "lenet5",
    "lenet5_linear",
    "lenet_scheme",
    "list_applications",
    "list_models",
    "matching_layers",
    "mlp",
    "mlp7_linear",
    "mlp7_relu",
    "mlp_scheme",
    "load_model",
    "model_builder",
    "parse_index_ratios",
    "resnet34",
    "resnet34_conv1_widths",
    "resnet34_pruned",
    "resnet34_stage_scheme",
    "resnet50_stage_scheme",
    "small_cnn",
    "vgg16_bn",
    "vgg16_li_pruned_a_scheme",
    "vgg19_bn",
    "vgg_bn",
    "vgg_scheme",
]
