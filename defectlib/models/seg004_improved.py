"""Seed 004's improved DeepLabv3+: no ASPP, a local branch network, local image input.

It takes a grey image ``(N, 1, H, W)`` and returns logits ``(N, 1, H, W)`` at full resolution
(one defect logit per pixel; ``sigmoid`` gives the defect probability), like the plain
DeepLabv3+ it is compared with (:class:`~defectlib.models.deeplab.DeepLabV3Plus`, whose smp
parts it reuses; ``encoder_weights=None``: nothing is ever downloaded).

The improved DeepLabv3+ (:class:`ImprovedDeepLabV3Plus`), the paper's Fig. 2 as read here
    * **Backbone**: the same ResNet-50 encoder at output stride 16 (the paper keeps DeepLabv3+'s
      backbone design but with ResNet-50 instead of ResNet-101/Xception).
    * **ASPP removed** (``aspp=False``, the default): the 2048-channel 1/16 features go through
      a 1×1 convolution to 256 channels + BatchNorm + ReLU instead (the projection that ASPP's
      own 1×1 branch would make). ``aspp=True`` puts smp's ASPP back (ablation).
    * **Branch network** (``branch=True``, the default): a large-kernel convolution,
      **7×7, stride 2, 64 channels** + BatchNorm + ReLU (ResNet's stem kernel, without its
      max-pool, so the output stays at 1/2), then **the structure of ResNet-50's first residual
      stage**: 3 bottlenecks (torchvision's ``Bottleneck``), width 64, 256 output channels, the
      first with a 1×1 projection shortcut; all at 1/2 resolution. Its 256 channels are
      projected to 48 (1×1 + BatchNorm + ReLU), as DeepLabv3+ does with its low-level features.
      The branch does not share weights with the backbone. ``branch=False`` drops it (ablation).
    * **Decoder, three upsampling steps**: (1) deep features 1/16 → 1/4, concatenated with the
      48-channel low-level features, fused by DeepLabv3+'s separable 3×3 convolution (256 ch);
      (2) 1/4 → 1/2, concatenated with the 48-channel branch features, fused by a separable 3×3
      convolution to **128 channels** + BatchNorm + ReLU, then a 1×1 convolution to one logit;
      (3) the logits 1/2 → full resolution (bilinear), as DeepLabv3+'s last step upsamples its
      logits. All upsampling is bilinear (``align_corners=False``) to the target size.
    * **Local image input** (§4.3): ``forward(image, crop)`` sends the whole image to the
      backbone and only the crop ``(top, left, h, w)`` (input pixels) to the branch; the deep
      and low-level features are cut to the crop's region before fusion, so the output is the
      ``(N, 1, h, w)`` logits of the crop. ``crop`` may be one box for the whole batch or one
      box per image (same ``h, w``). Boxes whose corners are multiples of 16 (what
      :func:`defectlib.training.seg004.random_crop_box` draws) cut the feature maps exactly
      (slicing); other boxes are resampled with ``torchvision.ops.roi_align``. ``crop=None``
      (inference, and "whole-image training") runs both paths on the whole image.
    * The branch's convolutions see zero padding at the crop's border during training and the
      image's context at inference; the paper does not discuss this.

Initialisation: the paper's step 1, "initialize network parameters randomly": encoder and
branch as torchvision's ResNet (He-normal ``fan_out``, BatchNorm 1 / 0), the rest as smp
initialises its decoders and heads, or PyTorch's defaults for the new layers. ImageNet weights
of ResNet-50 load into the encoder only when asked (``find_weights=True`` or a
``weights_path``) and found on disk (:func:`~defectlib.models.deeplab.find_resnet50_weights`);
``model.pretrained`` is then the file's path, else ``None`` (trained from scratch).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from .deeplab import OUTPUT_STRIDE, load_weights, resize as _resize, smp_deeplabv3plus

__all__ = [
    "ImprovedDeepLabV3Plus",
    "crop_boxes",
    "improved_deeplabv3plus",
    "parameter_count",
]

#: Branch network: large-kernel convolution (kernel, stride, channels).
BRANCH_KERNEL, BRANCH_STRIDE, BRANCH_CHANNELS = 7, 2, 64
#: Channels of the projected low-level and branch features (DeepLabv3+'s 48).
SKIP_CHANNELS = 48
#: Channels of the second fusion (at 1/2 resolution).
FUSE2_CHANNELS = 128


def crop_boxes(crop, n: int) -> list[tuple[int, int, int, int]]:
    """``crop`` as ``n`` boxes ``(top, left, h, w)``: one box for all images, or one per image.

    Examples
    --------
    >>> crop_boxes((0, 16, 32, 32), 2)
    [(0, 16, 32, 32), (0, 16, 32, 32)]
    >>> crop_boxes(torch.tensor([[0, 0, 8, 8], [16, 0, 8, 8]]), 2)
    [(0, 0, 8, 8), (16, 0, 8, 8)]
    """
    if isinstance(crop, Tensor):
        crop = crop.tolist()
    crop = list(crop)
    if len(crop) == 4 and all(isinstance(v, (int, float)) or hasattr(v, "__index__") for v in crop):
        boxes = [tuple(int(v) for v in crop)] * n
    else:
        boxes = [tuple(int(v) for v in box) for box in crop]
    if len(boxes) != n or any(len(b) != 4 for b in boxes):
        raise ValueError(f"crop must be one (top, left, h, w) box or {n} of them, got {crop!r}")
    if len({b[2:] for b in boxes}) != 1:
        raise ValueError(f"every crop box of a batch must have the same (h, w), got {boxes}")
    return boxes


def _check_boxes(boxes, height: int, width: int) -> None:
    for top, left, h, w in boxes:
        if h < 1 or w < 1 or top < 0 or left < 0 or top + h > height or left + w > width:
            raise ValueError(f"crop box (top={top}, left={left}, h={h}, w={w}) is not inside the {height}×{width} image")


def _cut(x: Tensor, boxes, stride: int) -> Tensor:
    """The region of every box (input pixels) on a feature map of the given stride."""
    h, w = boxes[0][2:]
    out = (-(-h // stride), -(-w // stride))
    if all(v % stride == 0 for box in boxes for v in box[:2]) and h % stride == 0 and w % stride == 0:
        return torch.stack([x[i, :, t // stride:t // stride + out[0], l // stride:l // stride + out[1]]
                            for i, (t, l, _, _) in enumerate(boxes)])
    from torchvision.ops import roi_align

    rois = torch.tensor([[i, l, t, l + w, t + h] for i, (t, l, _, _) in enumerate(boxes)],
                        dtype=x.dtype, device=x.device)
    return roi_align(x, rois, output_size=out, spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True)


def _init_resnet_like(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ------------------------------------------------------------------------- improved DeepLabv3+


def branch_network(in_channels: int = 1) -> nn.Sequential:
    """7×7/2 convolution (64 ch) + the structure of ResNet-50's first stage (3 bottlenecks, 256 ch)."""
    width, expansion = BRANCH_CHANNELS, Bottleneck.expansion
    shortcut = nn.Sequential(nn.Conv2d(width, width * expansion, 1, bias=False), nn.BatchNorm2d(width * expansion))
    net = nn.Sequential(
        nn.Conv2d(in_channels, width, BRANCH_KERNEL, stride=BRANCH_STRIDE, padding=BRANCH_KERNEL // 2, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        Bottleneck(width, width, downsample=shortcut),
        Bottleneck(width * expansion, width),
        Bottleneck(width * expansion, width),
    )
    _init_resnet_like(net)
    return net


def _projection(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())


class ImprovedDeepLabV3Plus(nn.Module):
    """The improved DeepLabv3+ of seed 004 (module docstring): no ASPP, a local branch at 1/2.

    ``forward(image, crop=None)``: logits ``(N, 1, H, W)`` of the whole image, or with
    ``crop=(top, left, h, w)`` (or one box per image) the ``(N, 1, h, w)`` logits of the crop,
    the branch seeing only the crop.

    Examples
    --------
    >>> model = ImprovedDeepLabV3Plus().eval()
    >>> x = torch.zeros(2, 1, 64, 64)
    >>> with torch.no_grad():
    ...     model(x).shape, model(x, crop=(16, 32, 32, 32)).shape
    (torch.Size([2, 1, 64, 64]), torch.Size([2, 1, 32, 32]))
    """

    supports_crop = True

    def __init__(self, *, branch: bool = True, aspp: bool = False, weights_path: str | os.PathLike | None = None,
                 find_weights: bool = False, in_channels: int = 1) -> None:
        super().__init__()
        full = smp_deeplabv3plus(in_channels)
        self.has_branch, self.has_aspp = bool(branch), bool(aspp)
        self.encoder = full.encoder
        deep_in = self.encoder.out_channels[-1]  # 2048
        decoder_channels = full.decoder.block2[0][1].out_channels  # 256
        self.deep = full.decoder.aspp if aspp else _projection(deep_in, decoder_channels)
        self.low = full.decoder.block1  # 1/4 features, 256 -> 48
        self.fuse1 = full.decoder.block2  # separable 3×3, 256 + 48 -> 256
        if branch:
            self.branch = branch_network(in_channels)
            self.branch_proj = _projection(BRANCH_CHANNELS * Bottleneck.expansion, SKIP_CHANNELS)
        else:
            self.branch = self.branch_proj = None
        fuse2_in = decoder_channels + (SKIP_CHANNELS if branch else 0)
        self.fuse2 = nn.Sequential(
            smp.decoders.deeplabv3.decoder.SeparableConv2d(fuse2_in, FUSE2_CHANNELS, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(FUSE2_CHANNELS),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(FUSE2_CHANNELS, 1, kernel_size=1)
        self.pretrained = load_weights(self.encoder, weights_path, find_weights)

    def forward(self, x: Tensor, crop=None) -> Tensor:
        n, _, height, width = x.shape
        features = self.encoder(x)
        deep, low = self.deep(features[-1]), self.low(features[2])
        if crop is None:
            out_size = (height, width)
            local = x
        else:
            boxes = crop_boxes(crop, n)
            _check_boxes(boxes, height, width)
            out_size = boxes[0][2:]
            deep, low = _cut(deep, boxes, OUTPUT_STRIDE), _cut(low, boxes, 4)
            local = torch.stack([x[i, :, t:t + h, l:l + w] for i, (t, l, h, w) in enumerate(boxes)])
        # step 1: 1/16 -> 1/4, fused with the backbone's low-level features
        fused = self.fuse1(torch.cat([_resize(deep, low.shape[-2:]), low], dim=1))
        # step 2: 1/4 -> 1/2, fused with the branch's local features
        half = (-(-out_size[0] // 2), -(-out_size[1] // 2))
        parts = [_resize(fused, half)]
        if self.branch is not None:
            parts.append(_resize(self.branch_proj(self.branch(local)), half))
        logits = self.head(self.fuse2(torch.cat(parts, dim=1)))
        # step 3: 1/2 -> full resolution
        return _resize(logits, out_size)


def improved_deeplabv3plus(**kwargs) -> ImprovedDeepLabV3Plus:
    """The improved DeepLabv3+ (branch on, ASPP off unless asked otherwise)."""
    return ImprovedDeepLabV3Plus(**kwargs)


def parameter_count(model: nn.Module, prefixes: Sequence[str] | None = None) -> int:
    """Number of parameters (of the sub-modules whose names start with ``prefixes``)."""
    return sum(p.numel() for name, p in model.named_parameters()
               if prefixes is None or any(name.startswith(pre) for pre in prefixes))
