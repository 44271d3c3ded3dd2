"""Parameter and FLOP counts: the numbers the book prints about model size and cost.

* :func:`count_parameters` — parameters of a module (trainable only, optionally).
* :func:`bottleneck_weight_table` — the paper's §2.1.1 claim, "the weights of the improved
  bottleneck are fewer under the same conditions", checked by building both blocks: our
  :class:`~defectlib.models.seg000_proposed.MultiKernelBottleneck` (C -> C, stride 1, SE) against
  torchvision's MobileNetV3 ``InvertedResidual`` with 1×1 expansion ×8, 3×3 depthwise, SE /4,
  1×1 projection (``InvertedResidualConfig(C, 3, 8C, C, True, "RE", 1, 1, 1.0)``). The paper's
  weight formula is lost from the text; the formula columns are this module's own
  closed forms (convolution and SE weights + biases, no BatchNorm) and only cross-check the
  counts taken from the modules:

      ours        = sum_k(kh·kw)·C + SE(8C) + 8C·C        = 40C² + 98C   (kernels sum to 88)
      MobileNetV3 = 8C·C + 9·8C + SE(8C) + 8C·C           = 48C² + 82C
      SE(8C)      = 8C·2C + 2C + 2C·8C + 8C               = 32C² + 10C   (squeeze 2C)

* :func:`flops_per_image` — FLOPs of one forward pass (batch 1, one grey channel) counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as 2 FLOPs; element-wise
  operations, BatchNorm in eval and pooling are not counted by it).
"""

from __future__ import annotations

from functools import partial

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig

from .seg000_proposed import MULTI_KERNELS, MultiKernelBottleneck

__all__ = ["count_parameters", "count_weights_without_norm", "bottleneck_weight_table", "flops_per_image"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of ``module`` (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def count_weights_without_norm(module: nn.Module) -> int:
    """Parameters outside normalisation layers: convolution / linear weights and biases."""
    norm_params = {id(p) for m in module.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    return sum(p.numel() for p in module.parameters() if id(p) not in norm_params)


def _mobilenetv3_bottleneck(channels: int, expansion: int) -> nn.Module:
    config = InvertedResidualConfig(channels, 3, expansion * channels, channels, True, "RE", 1, 1, 1.0)
    return InvertedResidual(config, norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.01))


def bottleneck_weight_table(
    channels: tuple[int, ...] = (16, 24, 48, 96), *, expansion: int = 8, se_reduction: int = 4
) -> pd.DataFrame:
    """Weights of our bottleneck vs MobileNetV3's, C -> C, stride 1, with SE, for each C.

    Columns: channels, ours, mobilenetv3 (all parameters, BatchNorm included), ours_no_bn,
    mobilenetv3_no_bn (convolution/linear weights and biases only), ratio, ratio_no_bn
    (ours / MobileNetV3), ours_formula, mobilenetv3_formula (closed forms of the no-BN counts,
    valid for ``expansion`` 8 and ``se_reduction`` 4 only; NaN otherwise).
    """
    if expansion != len(MULTI_KERNELS):
        raise ValueError(f"our bottleneck's expansion is its number of kernels, {len(MULTI_KERNELS)}; got {expansion}")
    kernel_area = sum(kh * kw for kh, kw in MULTI_KERNELS)
    rows = []
    for c in channels:
        ours = MultiKernelBottleneck(c, c, stride=1, use_se=True, se_reduction=se_reduction)
        theirs = _mobilenetv3_bottleneck(c, expansion)
        formula = expansion == 8 and se_reduction == 4 and (2 * c) % 8 == 0
        se = 32 * c * c + 10 * c
        rows.append(
            {
                "channels": c,
                "ours": count_parameters(ours),
                "mobilenetv3": count_parameters(theirs),
                "ours_no_bn": count_weights_without_norm(ours),
                "mobilenetv3_no_bn": count_weights_without_norm(theirs),
                "ours_formula": kernel_area * c + se + 8 * c * c if formula else float("nan"),
                "mobilenetv3_formula": 8 * c * c + 9 * 8 * c + se + 8 * c * c if formula else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
    table["ratio"] = table["ours"] / table["mobilenetv3"]
    table["ratio_no_bn"] = table["ours_no_bn"] / table["mobilenetv3_no_bn"]
    order = ["channels", "ours", "mobilenetv3", "ratio", "ours_no_bn", "mobilenetv3_no_bn", "ratio_no_bn",
             "ours_formula", "mobilenetv3_formula"]  # fmt: skip
    return table[order]


def flops_per_image(model: nn.Module, input_size: tuple[int, int] = (1408, 512), *, in_channels: int = 1) -> int:
    """FLOPs of ``model`` on one (1, in_channels, H, W) image, in eval mode without gradients.

    For a segmentation network this is its forward pass (features + logits). The model's
    training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        x = torch.zeros(1, in_channels, *input_size, device=device, dtype=dtype)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
