"""Inference copies (BatchNorm folded, channels-last) and the in-place bottleneck forward.

Tiny inputs only: these check values, not speed.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from defectlib.models import DefectClassifier, build_segnet
from defectlib.models.fuse import count_batchnorms, fuse_conv_bn, inference_model
from defectlib.models.seg000_proposed import MultiKernelBottleneck

SIZES = [(64, 32), (40, 24)]  # a multiple of 16, and one that is not


class SegAndClassifier(nn.Module):
    def __init__(self, segnet: nn.Module) -> None:
        super().__init__()
        self.segnet = segnet
        self.classifier = DefectClassifier(in_channels=segnet.feature_channels + 1, norm=True)

    def forward(self, x):
        features, logits = self.segnet(x)
        return features, logits, self.classifier(features, logits)


def _randomise_batchnorms(module: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters (fresh ones make BN ~ the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))


def _build(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "pair":  # the proposed net + the classifier (BatchNorm variant, so it has BNs to fold)
        model = SegAndClassifier(build_segnet("proposed"))
    elif name == "deeplabv3plus":
        model = build_segnet("deeplabv3plus", find_weights=False)
    else:
        model = build_segnet(name)
    _randomise_batchnorms(model)
    return model.eval()


def _outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.inference_mode():
        out = model(x)
    return tuple(t.clone() for t in out)


@pytest.fixture(scope="module", params=["proposed", "pair", "unet", "deeplabv3plus"])
def model(request):
    return request.param, _build(request.param)


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_model_matches_the_original(model, channels_last):
    name, original = model
    state = copy.deepcopy(original.state_dict())
    fused = inference_model(original, channels_last=channels_last)
    # every BatchNorm of these networks sits right after a convolution, so all are folded
    assert count_batchnorms(original) > 0
    assert count_batchnorms(fused) == 0, name
    assert fused.fused_bn_pairs == count_batchnorms(original)
    assert not fused.training and not any(p.requires_grad for p in fused.parameters())
    for h, w in SIZES:
        x = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(h))
        expected = _outputs(original, x)
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        got = _outputs(fused, xin)
        assert len(got) == len(expected)
        for e, g in zip(expected, got):
            assert e.shape == g.shape
            scale = max(1.0, e.abs().max().item())
            assert (e - g).abs().max().item() <= 1e-4 * scale, (name, (h, w))
    # the original is untouched: same weights, same BatchNorms, still in eval mode with gradients on
    assert not original.training
    after = original.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], state[k]) for k in state)
    assert all(p.requires_grad for p in original.parameters())


def test_inference_model_leaves_train_mode_and_layout_alone():
    torch.manual_seed(0)
    net = build_segnet("proposed").train()
    fused = inference_model(net)
    assert net.training and not fused.training
    conv = next(m for m in fused.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d)) is not None
    # no fusion: a plain eval copy
    plain = inference_model(net, fuse_bn=False, channels_last=False)
    assert count_batchnorms(plain) == count_batchnorms(net) and plain.fused_bn_pairs == 0


def test_fuse_conv_bn_needs_eval_mode_and_skips_unknown_patterns():
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))

    class Custom(nn.Sequential):  # a forward of its own: its conv/bn order is not known
        def forward(self, x):
            return self[1](self[0](x)) + self[0](x)

    model = nn.Sequential(Custom(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), nn.Conv2d(2, 2, 1),
                          nn.BatchNorm2d(2, track_running_stats=False)).eval()
    assert fuse_conv_bn(model) == 0
    assert count_batchnorms(model) == 2


# ------------------------------------------------------------------ the in-place bottleneck forward


def _block(kwargs: dict, *, inplace: bool, training: bool) -> MultiKernelBottleneck:
    torch.manual_seed(0)
    block = MultiKernelBottleneck(**kwargs, inplace=inplace)
    _randomise_batchnorms(block)
    return block.train(training)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(in_channels=8, out_channels=8, stride=1, use_se=False, activation="RE"),  # residual
        dict(in_channels=8, out_channels=16, stride=2, use_se=True, activation="RE"),
        dict(in_channels=8, out_channels=8, stride=1, use_se=True, activation="HS"),  # residual + SE
    ],
)
@pytest.mark.parametrize("training", [False, True])
def test_inplace_bottleneck_is_bit_identical(kwargs, training):
    x = torch.randn(2, 8, 20, 12)

    def run(inplace: bool, grad: bool):
        b = _block(kwargs, inplace=inplace, training=training)
        xi = x.clone().requires_grad_(grad)
        if grad:
            y = b(xi)
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
            grads = [xi.grad] + [p.grad for p in b.parameters()]
            return y.detach(), grads, b.state_dict()
        with torch.no_grad():
            y = b(xi)
        return y, [], b.state_dict()

    for grad in (False, True):
        y_ref, g_ref, s_ref = run(False, grad)
        y_new, g_new, s_new = run(True, grad)
        assert torch.equal(y_ref, y_new), grad
        assert len(g_ref) == len(g_new) and all(torch.equal(a, b) for a, b in zip(g_ref, g_new))
        # same keys, and in training the same running statistics afterwards
        assert s_ref.keys() == s_new.keys()
        assert all(torch.equal(s_ref[k], s_new[k]) for k in s_ref)
    # the input is never overwritten
    x0 = x.clone()
    with torch.no_grad():
        _block(kwargs, inplace=True, training=training)(x)
    assert torch.equal(x, x0)


def test_inplace_is_a_constructor_argument_of_each_network():
    fast, plain = build_segnet("proposed"), build_segnet("proposed", inplace=False)
    blocks = lambda net: [m for m in net.modules() if isinstance(m, MultiKernelBottleneck)]  # noqa: E731
    assert {b.inplace for b in blocks(fast)} == {True} and {b.inplace for b in blocks(plain)} == {False}
    assert not hasattr(MultiKernelBottleneck, "inplace")  # no process-wide switch


def test_inplace_proposed_net_is_bit_identical():
    x = torch.rand(1, 1, 64, 32)
    outputs = {}
    for inplace in (False, True):
        torch.manual_seed(0)
        net = build_segnet("proposed", inplace=inplace)
        _randomise_batchnorms(net)
        net.eval()
        with torch.inference_mode():
            outputs[inplace] = net(x)
        fused = inference_model(net)  # the fused copy uses the same forward
        with torch.inference_mode():
            outputs[(inplace, "fused")] = fused(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(outputs[False], outputs[True]):
        assert torch.equal(a, b)
    for a, b in zip(outputs[(False, "fused")], outputs[(True, "fused")]):
        assert torch.equal(a, b)
