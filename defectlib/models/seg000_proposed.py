"""The proposed lightweight segmentation network of seed 000.

Paper: "Surface defect detection model of motor commutator based on semantic segmentation",
§2.1.

Structure
---------
* Encoder (paper Table 1, :data:`ENCODER_SETTINGS`): a 5×5 stride-2 convolution, then nine
  :class:`MultiKernelBottleneck` blocks. Output of block 7 is at 1/8, of block 10 at 1/16.
* Decoder: block 10 upsampled ×2 to block 7's size, concatenated with block 7
  (48 + 96 = 144 channels, :attr:`LightweightSegNet.feature_channels`), a 1×1 convolution
  to one channel of logits at 1/8 resolution.
* :meth:`LightweightSegNet.forward` returns :class:`SegOutput` ``(features, logits)``: the
  144-channel concatenation (the classification network's input) and the pre-sigmoid map.

Choices and deviations (the paper does not say, or says it inconsistently)
-------------------------------------------------------------------------
1. Table 1's N column (1, 1, 3, 3, 4) contradicts its block numbers; the block numbers are used
   (10 blocks: 1 | 2 | 3-4 | 5-7 | 8-10). "178×64" is read as 176×64.
2. "RE" in Table 1 is ReLU6 (the paper prints ReLU6; torchvision's MobileNetV3 uses plain ReLU
   for "RE"); "HS" is h-swish (``nn.Hardswish``).
3. Bottleneck: each of the 8 depthwise paths is a convolution (no bias) followed by
   BatchNorm, and the block's activation. Both are applied once to the concatenation of the
   paths (one ``BatchNorm2d`` over the 8·C_in channels): that is the same function as one
   BatchNorm and one activation per path, because BatchNorm normalises each channel on its
   own (its statistics, weight, bias and running averages are per channel) and the activation
   is element-wise. One normalisation of a contiguous tensor is what makes the channels-last
   layout pay (see "Speed" below). There is no 1×1 expansion: the 8 paths *are* the ×8
   expansion.
4. SE (where Table 1 says so) is torchvision's ``SqueezeExcitation`` on the 8·C_in concatenated
   channels, squeeze channels ``make_divisible(8·C_in / 4, 8)`` (reduction 4), ReLU inside and
   a hard-sigmoid gate, as in MobileNetV3.
5. Projection: 1×1 convolution (no bias) + BatchNorm, no activation (a linear bottleneck, as in
   MobileNetV3). Residual connection when stride is 1 and C_in == C_out (blocks 2, 4, 6, 7, 9, 10).
6. Stride goes on every depthwise path of the first block of a group (the paper: "S is used in
   the first depthwise convolution"). Padding is ``k // 2`` per axis, so a stride-2 layer maps
   H to ceil(H / 2): the 1/8 outputs are ``ceil(ceil(ceil(H/2)/2)/2) = ceil(H/8)`` rows, for
   any H, not only multiples of 8 (e.g. 100×60 → 13×8).
7. The decoder upsamples bilinearly (``align_corners=False``) to *exactly* block 7's size (×2
   when H is a multiple of 16; otherwise the size differs by one from ×2). Concatenation order
   is ``[block 7, upsampled block 10]``. The 1×1 output convolution has a bias and no norm.
8. BatchNorm uses PyTorch's defaults (eps 1e-5, momentum 0.1), not MobileNetV3's (1e-3, 0.01):
   the runs here are short (about 1500 steps at batch 1) and the running statistics must
   settle within them.
9. Initialisation as torchvision's MobileNetV3: Kaiming-normal (fan_out) convolutions, zero
   biases, BatchNorm weight 1 / bias 0 -- except the 1×1 output convolution, which is
   initialised like MobileNetV3's final *linear* layer, normal(0, 0.01) with bias 0. Kaiming
   fan_out on a 144 -> 1 convolution gives weights of std sqrt(2) and initial logits of std
   about 17; measured on KolektorSDD's training folds only (fold 1 trains, fold 2 validates;
   the check and its results are in commit 87daf65) that start cost the network its
   generalisation: with it the map's maximum ranked the validation images far worse than with
   the small init, though both fitted their training images.

Speed
-----
The network keeps its parameters, and converts its input, to the channels-last memory layout
(``channels_last``, default True): the depthwise convolutions' backward pass is faster in that
layout on the CPU. It pays only together with the single BatchNorm of choice 3: with one
BatchNorm per path, each path's gradient is a strided slice of the concatenation's, and
BatchNorm's backward on such a slice is slow. The layout changes only the order of
floating-point operations, not the function: outputs agree to float rounding (tested).

Two more options of the constructor change speed and not the function: ``inplace`` (default
True) and ``per_path_norm`` (default False), passed on to every
:class:`MultiKernelBottleneck`. The performance chapter measures each (``defectlib bench``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

__all__ = [
    "BlockSettings",
    "ENCODER_SETTINGS",
    "MULTI_KERNELS",
    "STEM_KERNEL",
    "EXPANSION",
    "SE_REDUCTION",
    "SegOutput",
    "make_divisible",
    "MultiKernelBottleneck",
    "LightweightSegNet",
    "lightweight_segnet",
]


class SegOutput(NamedTuple):
    """What every segmentation network of this package returns.

    features: (N, C, H/8, W/8), C = the network's ``feature_channels`` (the classifier's input).
    logits:   (N, 1, H/8, W/8), the pre-sigmoid segmentation map.
    """

    features: Tensor
    logits: Tensor


@dataclass(frozen=True)
class BlockSettings:
    """One row of the paper's Table 1, one block per row (the table's N column expanded)."""

    operator: Literal["conv", "bottleneck"]
    out_channels: int
    stride: int
    use_se: bool
    activation: Literal["HS", "RE"]  # HS: h-swish, RE: ReLU6
    block: int


# Paper Table 1 (segmentation network encoder), input 1×1408×512.
#                 operator      out  S  SE     act   block     output at 1408×512
ENCODER_SETTINGS: tuple[BlockSettings, ...] = (
    BlockSettings("conv",        16, 2, False, "HS", 1),   # 704×256  (5×5 conv)
    BlockSettings("bottleneck",  16, 1, False, "RE", 2),   # 704×256
    BlockSettings("bottleneck",  24, 2, False, "RE", 3),   # 352×128
    BlockSettings("bottleneck",  24, 1, False, "RE", 4),   # 352×128
    BlockSettings("bottleneck",  48, 2, True,  "RE", 5),   # 176×64
    BlockSettings("bottleneck",  48, 1, True,  "RE", 6),   # 176×64
    BlockSettings("bottleneck",  48, 1, True,  "RE", 7),   # 176×64   -> decoder skip
    BlockSettings("bottleneck",  96, 2, True,  "HS", 8),   # 88×32
    BlockSettings("bottleneck",  96, 1, True,  "HS", 9),   # 88×32
    BlockSettings("bottleneck",  96, 1, True,  "HS", 10),  # 88×32    -> decoder, upsampled ×2
)  # fmt: skip

# Kernel of the first block ("5×5" in Table 1).
STEM_KERNEL = 5

# The improved bottleneck's depthwise paths (§2.1.1), one per kernel (height, width).
MULTI_KERNELS: tuple[tuple[int, int], ...] = ((3, 3), (5, 5), (1, 7), (7, 1), (1, 9), (9, 1), (1, 11), (11, 1))

EXPANSION = len(MULTI_KERNELS)  # 8, "the bottleneck expansion rate in this paper is 8"
SE_REDUCTION = 4  # "the dimension reduction rate in the SE attention mechanism is 4"

#: Std of the normal initialisation of the 1×1 output convolution (choice 9).
HEAD_INIT_STD = 0.01

SKIP_BLOCK = 7  # the decoder concatenates block 7's output ...
DEEP_BLOCK = 10  # ... with block 10's, upsampled ×2

_ACTIVATIONS: dict[str, type[nn.Module]] = {"HS": nn.Hardswish, "RE": nn.ReLU6}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` (MobileNet's rule; torchvision's ``_make_divisible``)."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # never round down by more than 10 %
        new_value += divisor
    return new_value


class MultiKernelBottleneck(nn.Module):
    """The paper's bottleneck (Fig. 2b): 8 parallel depthwise paths, SE, pointwise projection.

    ``x -> act(BN(cat_k(dwconv_k(x)))) -> [SE] -> BN(conv1x1) (+ x)``, k in :data:`MULTI_KERNELS`
    (one BatchNorm over the concatenation: the same as one per path, choice 3 of the module
    docstring).

    Parameters
    ----------
    in_channels, out_channels
        Channels of the block's input and output.
    stride
        1, or 2 on every depthwise path.
    use_se
        Squeeze-and-excitation on the concatenated paths.
    activation
        ``"RE"`` (ReLU6) or ``"HS"`` (h-swish).
    kernels
        One depthwise path per (height, width) kernel.
    se_reduction
        SE's channel reduction.
    inplace
        Overwrite the ×8-channel intermediate instead of allocating a new one: the activation
        in place always, and without autograd also the SE gate and the residual sum. Values and
        gradients are bit-for-bit those of the out-of-place formulation,
        :meth:`_forward_reference`, which ``inplace=False`` selects. With autograd on the saving
        is smaller than it looks: PyTorch's in-place ReLU6 / h-swish keep a copy of their input
        for the backward pass.
    per_path_norm
        Normalise each path on its own, as the paper draws it (slices of :attr:`norm`'s
        parameters and statistics: the same function and the same state dict). Slower; a
        reference for tests and the bench.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        use_se: bool = False,
        activation: Literal["HS", "RE"] = "RE",
        kernels: tuple[tuple[int, int], ...] = MULTI_KERNELS,
        se_reduction: int = SE_REDUCTION,
        inplace: bool = True,
        per_path_norm: bool = False,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.inplace = bool(inplace)
        self.per_path_norm = bool(per_path_norm)
        self.kernels = tuple(tuple(k) for k in kernels)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        expanded = len(self.kernels) * in_channels

        # One depthwise path per kernel; together they are the ×8 "expansion". Their BatchNorm
        # is one module over the concatenation (choice 3 of the module docstring).
        self.paths = nn.ModuleList(
            nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size=kernel,
                stride=stride,
                padding=(kernel[0] // 2, kernel[1] // 2),
                groups=in_channels,
                bias=False,
            )
            for kernel in self.kernels
        )
        self.norm = nn.BatchNorm2d(expanded)
        self.activation = _ACTIVATIONS[activation]()
        if use_se:
            squeeze = make_divisible(expanded / se_reduction, 8)
            self.se: nn.Module = SqueezeExcitation(expanded, squeeze, scale_activation=nn.Hardsigmoid)
        else:
            self.se = nn.Identity()
        self.project = Conv2dNormActivation(expanded, out_channels, kernel_size=1, activation_layer=None)

    @property
    def use_se(self) -> bool:
        return isinstance(self.se, SqueezeExcitation)

    def forward(self, x: Tensor) -> Tensor:
        if not self.inplace or self.per_path_norm:
            return self._forward_reference(x)
        # The same operations as _forward_reference, on the same values: only buffers that
        # nothing else reads are overwritten, so the result (and, in training, every gradient)
        # is bit-for-bit the same, with fewer ×8-channel tensors allocated.
        y = self.norm(torch.cat([path(x) for path in self.paths], dim=1))  # a fresh tensor, ours alone
        y = self._activate_(y)  # BatchNorm's backward does not read its output: autograd-safe
        if not torch.is_grad_enabled():
            # Autograd off (no_grad / inference_mode): SE's gate multiplies in place and the
            # residual adds in place. With autograd on they stay out of place (the product's
            # backward needs its input).
            if self.use_se:
                y = y.mul_(self.se._scale(y))
            y = self.project(y)
            return y.add_(x) if self.use_res_connect else y
        y = self.project(self.se(y))
        return y + x if self.use_res_connect else y

    def _forward_reference(self, x: Tensor) -> Tensor:
        """The plain formulation (every step out of place); :meth:`forward` with ``inplace`` off
        (or with :attr:`per_path_norm`, which this method implements)."""
        if self.per_path_norm:
            y = torch.cat([self._norm_path(i, path(x)) for i, path in enumerate(self.paths)], dim=1)
            if self.norm.training and isinstance(self.norm, nn.BatchNorm2d):
                self.norm.num_batches_tracked.add_(1)
        else:
            y = self.norm(torch.cat([path(x) for path in self.paths], dim=1))
        y = self.se(self.activation(y))
        y = self.project(y)
        if self.use_res_connect:
            y = y + x
        return y

    def _norm_path(self, i: int, y: Tensor) -> Tensor:
        """Path ``i``'s share of :attr:`norm` applied to that path's output alone."""
        bn = self.norm
        if not isinstance(bn, nn.BatchNorm2d):  # folded into the convolutions (models.fuse)
            return bn(y)
        part = slice(i * y.shape[1], (i + 1) * y.shape[1])
        use_batch_stats = bn.training or not bn.track_running_stats
        return F.batch_norm(
            y,
            bn.running_mean[part] if bn.running_mean is not None else None,
            bn.running_var[part] if bn.running_var is not None else None,
            bn.weight[part],
            bn.bias[part],
            use_batch_stats,
            bn.momentum if bn.momentum is not None else 0.0,
            bn.eps,
        )

    def _activate_(self, y: Tensor) -> Tensor:
        """``self.activation(y)``, computed in place where the activation allows it."""
        if type(self.activation) is nn.ReLU6:
            return F.relu6(y, inplace=True)
        if type(self.activation) is nn.Hardswish:
            return F.hardswish(y, inplace=True)
        return self.activation(y)


def _conv_block(in_channels: int, setting: BlockSettings, **_options) -> nn.Module:
    return Conv2dNormActivation(
        in_channels,
        setting.out_channels,
        kernel_size=STEM_KERNEL,
        stride=setting.stride,
        activation_layer=_ACTIVATIONS[setting.activation],
    )


def _bottleneck_block(in_channels: int, setting: BlockSettings, **options) -> nn.Module:
    return MultiKernelBottleneck(
        in_channels,
        setting.out_channels,
        stride=setting.stride,
        use_se=setting.use_se,
        activation=setting.activation,
        **options,
    )


_BUILDERS = {"conv": _conv_block, "bottleneck": _bottleneck_block}


class LightweightSegNet(nn.Module):
    """Encoder (Table 1) + the ×2-upsampling decoder; output at 1/8 resolution.

    ``forward(x)`` with ``x`` of shape (N, 1, H, W) returns :class:`SegOutput` with features
    (N, 144, ceil(H/8), ceil(W/8)) and logits (N, 1, ceil(H/8), ceil(W/8)).

    Parameters
    ----------
    settings
        The encoder, one row per block (default: the paper's Table 1).
    in_channels
        Channels of the input image.
    channels_last
        Store the parameters, and convert the input, in the channels-last memory layout, so
        every activation (and the outputs) are channels-last too (the module docstring's
        "Speed"). Shapes and values do not depend on it (up to float rounding).
    inplace, per_path_norm
        Passed to every :class:`MultiKernelBottleneck` (speed options; the same function).
    """

    def __init__(
        self,
        settings: tuple[BlockSettings, ...] = ENCODER_SETTINGS,
        in_channels: int = 1,
        *,
        channels_last: bool = True,
        inplace: bool = True,
        per_path_norm: bool = False,
    ) -> None:
        super().__init__()
        blocks = [s.block for s in settings]
        if blocks != list(range(1, len(settings) + 1)):
            raise ValueError(f"block numbers must be 1..{len(settings)} in order, got {blocks}")
        if len(settings) < DEEP_BLOCK:
            raise ValueError(f"the decoder needs blocks {SKIP_BLOCK} and {DEEP_BLOCK}; got {len(settings)} blocks")
        self.settings = tuple(settings)
        self.in_channels = in_channels

        layers: list[nn.Module] = []
        channels = in_channels
        for setting in self.settings:
            layers.append(_BUILDERS[setting.operator](channels, setting, inplace=inplace,
                                                      per_path_norm=per_path_norm))
            channels = setting.out_channels
        self.encoder = nn.ModuleList(layers)

        skip_channels = self.settings[SKIP_BLOCK - 1].out_channels
        deep_channels = self.settings[DEEP_BLOCK - 1].out_channels
        self.feature_channels = skip_channels + deep_channels  # 48 + 96 = 144
        self.head = nn.Conv2d(self.feature_channels, 1, kernel_size=1)
        self._init_weights()
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def _init_weights(self) -> None:
        # As torchvision's MobileNetV3.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The output layer as MobileNetV3's final linear layer (choice 9 of the module docstring).
        nn.init.normal_(self.head.weight, 0.0, HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)

    def encode(self, x: Tensor) -> list[Tensor]:
        """The outputs of blocks 1..10 (index i holds block i + 1)."""
        outputs = []
        for layer in self.encoder:
            x = layer(x)
            outputs.append(x)
        return outputs

    def forward(self, x: Tensor) -> SegOutput:
        if self.channels_last:
            # ``to`` (not ``contiguous``) re-strides a one-channel image, which is contiguous
            # in both layouts, so that the first convolution picks the channels-last kernel.
            x = x.to(memory_format=torch.channels_last)
        outputs = self.encode(x)
        skip = outputs[SKIP_BLOCK - 1]
        deep = F.interpolate(outputs[DEEP_BLOCK - 1], size=skip.shape[-2:], mode="bilinear", align_corners=False)
        features = torch.cat([skip, deep], dim=1)
        return SegOutput(features, self.head(features))

    @torch.no_grad()
    def encoder_table(self, input_size: tuple[int, int] = (1408, 512)) -> list[dict]:
        """Table 1 as built: one row per block, output sizes measured by a forward pass with hooks.

        Rows: block, operator, in, out, stride, se, activation, output ("H×W"), output_hw
        (tuple), parameters (trainable, of that block).
        """
        sizes: dict[int, tuple[int, int]] = {}
        hooks = [
            layer.register_forward_hook(lambda _m, _i, out, i=i: sizes.__setitem__(i, tuple(out.shape[-2:])))
            for i, layer in enumerate(self.encoder)
        ]
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            self(torch.zeros(1, self.in_channels, *input_size, dtype=param.dtype, device=param.device))
        finally:
            for hook in hooks:
                hook.remove()
            self.train(was_training)

        rows = []
        channels = self.in_channels
        for i, (setting, layer) in enumerate(zip(self.settings, self.encoder)):
            h, w = sizes[i]
            rows.append(
                {
                    "block": setting.block,
                    "operator": f"conv {STEM_KERNEL}×{STEM_KERNEL}" if setting.operator == "conv" else "bottleneck",
                    "in": channels,
                    "out": setting.out_channels,
                    "stride": setting.stride,
                    "se": setting.use_se,
                    "activation": "h-swish" if setting.activation == "HS" else "ReLU6",
                    "output": f"{h}×{w}",
                    "output_hw": (h, w),
                    "parameters": sum(p.numel() for p in layer.parameters() if p.requires_grad),
                }
            )
            channels = setting.out_channels
        return rows


def lightweight_segnet(**kwargs) -> LightweightSegNet:
    """The proposed segmentation network (Table 1 encoder, ×2 decoder, 144 feature channels).

    ``kwargs`` go to :class:`LightweightSegNet` (``channels_last``, ``inplace``,
    ``per_path_norm``, ...).

    Examples
    --------
    >>> net = lightweight_segnet(inplace=False)
    >>> {block.inplace for block in net.modules() if isinstance(block, MultiKernelBottleneck)}
    {False}
    """
    return LightweightSegNet(**kwargs)

