"""The classification network of seed 000 (paper §2.2).

Input: the segmentation network's features (144 channels for the proposed net) concatenated
with its one-channel segmentation map (145 channels), at 1/8 resolution.

Structure (as built here)::

    DS(in -> 64, s1) -> DS(64 -> 64, s2) -> DS(64 -> 32, s2)        DS = dw 5×5 + bias + ReLU,
                                                                          pw 1×1 + bias + ReLU
    [global max, global avg] of the 32 channels            -> 64 values
    [global max, global avg] of the segmentation map       ->  2 values
    Linear(66 -> 1)                                         -> logit (sigmoid = probability)

Choices (the paper gives the kernel size, the two stride-2 downsamplings, the 32 output
channels and the 64 + 2 pooled values, nothing else):

1. Three depthwise-separable layers: one at stride 1 that brings the 145 input channels down to
   64, then the two stride-2 layers the paper asks for (64 -> 64, 64 -> 32). Padding 2 (5×5),
   so a stride-2 layer maps H to ceil(H/2).
2. ReLU after both the depthwise and the pointwise convolution (the paper: depthwise-separable
   convolution "increases the nonlinearity"). **No BatchNorm** (``norm=False``, the default):
   convolutions with biases. With the paper's batch 1, BatchNorm in training normalises each
   image by its own statistics -- it removes exactly the per-channel spatial mean that the
   average pooling is meant to read -- and evaluates with running statistics the classifier
   never trained on. Measured on KolektorSDD's training folds only (fold 1 trains, fold 2
   validates; the check and its results are in commit 87daf65): with BatchNorm the classifier
   fitted its training images perfectly and ranked the validation images far worse than the
   segmentation map's maximum alone; without it, about as well. ``norm=True`` builds the
   BatchNorm variant.
3. The segmentation map enters as a *probability* (sigmoid of the logits), both as the 145th
   input channel and for the two pooled values, so the classifier sees the same bounded
   quantity in both places whatever the scale of the frozen segmentation net's logits
   (``seg_map="logits"`` feeds the raw logits to both instead).
4. The output is the pre-sigmoid logit (train with ``BCEWithLogitsLoss``); the paper's
   probability is ``torch.sigmoid(classifier(features, logits))``, defective when >= 0.9.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation

__all__ = ["DepthwiseSeparable", "DefectClassifier"]

KERNEL = 5


class DepthwiseSeparable(nn.Sequential):
    """dw k×k conv + ReLU, then pw 1×1 conv + ReLU (BatchNorm after each conv with ``norm=True``)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = KERNEL, *, norm: bool = False
    ) -> None:
        norm_layer = nn.BatchNorm2d if norm else None  # None: convolutions get biases
        super().__init__(
            Conv2dNormActivation(
                in_channels, in_channels, kernel_size=kernel_size, stride=stride, groups=in_channels,
                norm_layer=norm_layer,
            ),
            Conv2dNormActivation(in_channels, out_channels, kernel_size=1, norm_layer=norm_layer),
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride


class DefectClassifier(nn.Module):
    """Image-level defect classifier on top of a (frozen) segmentation network.

    ``forward(features, logits)``: features (N, C, h, w) with C + 1 == ``in_channels``, logits
    (N, 1, h, w) pre-sigmoid segmentation map; returns the (N,) pre-sigmoid defect logit.
    """

    def __init__(
        self,
        in_channels: int = 145,
        width: int = 32,
        *,
        hidden: int = 64,
        seg_map: Literal["probability", "logits"] = "probability",
        norm: bool = False,
    ) -> None:
        super().__init__()
        if seg_map not in ("probability", "logits"):
            raise ValueError(f"seg_map must be 'probability' or 'logits', got {seg_map!r}")
        self.in_channels = in_channels
        self.width = width
        self.seg_map = seg_map
        self.norm = norm
        self.layers = nn.Sequential(
            DepthwiseSeparable(in_channels, hidden, stride=1, norm=norm),
            DepthwiseSeparable(hidden, hidden, stride=2, norm=norm),
            DepthwiseSeparable(hidden, width, stride=2, norm=norm),
        )
        self.fc = nn.Linear(2 * width + 2, 1)

    def forward(self, features: Tensor, logits: Tensor) -> Tensor:
        if features.shape[1] + logits.shape[1] != self.in_channels:
            raise ValueError(
                f"features ({features.shape[1]} ch) + map ({logits.shape[1]} ch) != in_channels={self.in_channels}"
            )
        seg = torch.sigmoid(logits) if self.seg_map == "probability" else logits
        x = self.layers(torch.cat([features, seg], dim=1))
        pooled = torch.cat(
            [
                x.amax(dim=(2, 3)),
                x.mean(dim=(2, 3)),
                seg.amax(dim=(2, 3)),
                seg.mean(dim=(2, 3)),
            ],
            dim=1,
        )
        return self.fc(pooled).squeeze(1)
