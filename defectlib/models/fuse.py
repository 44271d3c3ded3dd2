"""Inference copies of the study's networks: BatchNorm folded into the convolutions, channels-last.

:func:`inference_model` returns an eval-mode deep copy of a module (the original is left as it
is) in which every ``Conv2d`` that is *directly* followed by a ``BatchNorm2d`` has the
normalisation folded into its weight and bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and
the ``BatchNorm2d`` replaced by ``nn.Identity``, and whose parameters are converted to the
channels-last memory format. Outputs equal the original's eval-mode outputs up to float
rounding (about 1e-6 relative); the copy is for inference only (``requires_grad`` is off).

Which pairs are folded (module walking, no ``torch.fx`` tracing):

* in a container whose ``forward`` is ``nn.Sequential.forward`` (torchvision's
  ``Conv2dNormActivation``, smp's ``Conv2dReLU``, ``ASPPConv``, ...): a ``Conv2d`` at position
  *i* and a ``BatchNorm2d`` at *i + 1*; also when position *i* is itself such a container whose
  last module is (recursively) a ``Conv2d`` (smp's ``SeparableConv2d`` followed by a BatchNorm);
* named pairs of modules whose ``forward`` is known to apply the BatchNorm straight to the
  convolution's output: torchvision's ``BasicBlock`` / ``Bottleneck`` (``conv1/bn1``, ...),
  ``ResNet`` and smp's ``ResNetEncoder`` (the stem ``conv1/bn1``);
* the proposed network's :class:`~defectlib.models.seg000_proposed.MultiKernelBottleneck`: its one
  BatchNorm over the concatenated depthwise paths is split per path (BatchNorm is per
  channel) and each part folded into its path's convolution.

Anything else (a subclass that overrides ``forward``, a BatchNorm without running statistics)
is left unfused, so a model this module does not know stays correct, only slower.
:func:`fuse_conv_bn` returns how many pairs it folded.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["inference_model", "fuse_conv_bn", "count_batchnorms"]


def _is_plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _last_conv(module: nn.Module) -> tuple[nn.Module, str] | None:
    """``(parent, name)`` of the Conv2d whose output is ``module``'s output, if there is one."""
    if isinstance(module, nn.Conv2d):
        return None  # handled by the caller (the conv is the module itself)
    if _is_plain_sequential(module) and len(module) > 0:
        name = str(len(module) - 1)
        last = module[-1]
        if isinstance(last, nn.Conv2d):
            return module, name
        return _last_conv(last)
    return None


def _fusable(bn: nn.Module) -> bool:
    return (
        type(bn) is nn.BatchNorm2d
        and bn.track_running_stats
        and bn.running_mean is not None
        and bn.running_var is not None
    )


def _named_pairs(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """(conv, bn) attribute pairs applied back to back by ``module.forward`` (known classes only)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    forward = type(module).forward
    if forward is BasicBlock.forward:
        return (("conv1", "bn1"), ("conv2", "bn2"))
    if forward is Bottleneck.forward:
        return (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))
    if forward is ResNet.forward:
        return (("conv1", "bn1"),)
    try:  # smp's ResNet encoder: x = self.conv1(x); x = self.bn1(x); ...
        from segmentation_models_pytorch.encoders.resnet import ResNetEncoder
    except ImportError:  # pragma: no cover - smp is a dependency, but stay usable without it
        return ()
    if forward is ResNetEncoder.forward:
        return (("conv1", "bn1"),)
    return ()


def _fuse_into(parent: nn.Module, conv_name: str, bn: nn.BatchNorm2d) -> None:
    conv = getattr(parent, conv_name)
    if conv.training or bn.training:
        raise ValueError("fusion needs eval-mode modules")
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))


def _bn_slice(bn: nn.BatchNorm2d, start: int, stop: int) -> nn.BatchNorm2d:
    """The channels ``start:stop`` of an eval-mode BatchNorm2d, as a BatchNorm2d of their own."""
    part = nn.BatchNorm2d(stop - start, eps=bn.eps, momentum=bn.momentum, affine=bn.affine).eval()
    with torch.no_grad():
        part.running_mean.copy_(bn.running_mean[start:stop])
        part.running_var.copy_(bn.running_var[start:stop])
        if bn.affine:
            part.weight.copy_(bn.weight[start:stop])
            part.bias.copy_(bn.bias[start:stop])
    return part.to(bn.running_mean.device)


def _fuse_multi_kernel(block: nn.Module) -> bool:
    """Fold a MultiKernelBottleneck's shared BatchNorm into its depthwise paths (in place)."""
    from .seg000_proposed import MultiKernelBottleneck

    if type(block).forward is not MultiKernelBottleneck.forward or not _fusable(block.norm):
        return False
    if not all(isinstance(path, nn.Conv2d) for path in block.paths):
        return False
    start = 0
    for i, path in enumerate(block.paths):
        stop = start + path.out_channels
        _fuse_into(block.paths, str(i), _bn_slice(block.norm, start, stop))
        start = stop
    if start != block.norm.num_features:
        raise ValueError(f"paths give {start} channels but the BatchNorm has {block.norm.num_features}")
    block.norm = nn.Identity()
    return True


def fuse_conv_bn(module: nn.Module) -> int:
    """Fold every directly following BatchNorm2d into its Conv2d, **in place** (eval mode only).

    Returns the number of folded pairs. ``module`` must be in eval mode (the running statistics
    are what gets folded); use :func:`inference_model` for a fused copy.
    """
    if module.training:
        raise ValueError("fuse_conv_bn needs an eval-mode module (call .eval() first)")
    fused = 0
    for parent in list(module.modules()):
        if _is_plain_sequential(parent):
            children = list(parent._modules.items())
            for (name, first), (bn_name, second) in zip(children, children[1:]):
                if not _fusable(second):
                    continue
                if isinstance(first, nn.Conv2d):
                    _fuse_into(parent, name, second)
                else:
                    target = _last_conv(first)
                    if target is None:
                        continue
                    _fuse_into(target[0], target[1], second)
                setattr(parent, bn_name, nn.Identity())
                fused += 1
        fused += _fuse_multi_kernel(parent)
        for conv_name, bn_name in _named_pairs(parent):
            conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
            if isinstance(conv, nn.Conv2d) and bn is not None and _fusable(bn):
                _fuse_into(parent, conv_name, bn)
                setattr(parent, bn_name, nn.Identity())
                fused += 1
    return fused


def count_batchnorms(module: nn.Module) -> int:
    """How many BatchNorm modules (of any dimension) ``module`` contains."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def inference_model(module: nn.Module, *, channels_last: bool = True, fuse_bn: bool = True) -> nn.Module:
    """An eval-mode deep copy of ``module`` for inference: BatchNorm folded into the preceding
    convolutions (``fuse_bn``), parameters channels-last (``channels_last``), gradients off.

    ``module`` itself is not changed (not even its train/eval mode). Feed the copy
    channels-last inputs (``x.contiguous(memory_format=torch.channels_last)``) to get the
    channels-last kernels throughout (for a one-channel image the two layouts coincide).
    The number of folded pairs is ``copy.fused_bn_pairs``.
    """
    model = copy.deepcopy(module).eval()
    fused = fuse_conv_bn(model) if fuse_bn else 0
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.requires_grad_(False)
    model.fused_bn_pairs = fused
    return model
