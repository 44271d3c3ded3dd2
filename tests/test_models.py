"""Tests of defectlib.models: shapes, the Table 1 encoder, the bottleneck, baselines, counting."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import _make_divisible
from torchvision.ops import SqueezeExcitation

from defectlib.models import (
    MODELS,
    DefectClassifier,
    LightweightSegNet,
    SegOutput,
    build_model,
    build_segnet,
    deeplabv3plus_segnet,
    lightweight_segnet,
    unet_segnet,
)
from defectlib.models.seg000_baselines import DeepLabV3PlusEighth
from defectlib.models.counting import (
    bottleneck_weight_table,
    count_parameters,
    count_weights_without_norm,
    flops_per_image,
)
from defectlib.models.seg000_proposed import ENCODER_SETTINGS, MULTI_KERNELS, MultiKernelBottleneck, make_divisible

torch.manual_seed(0)

# (H, W): multiples of 8 and 16, odd multiples of 8, and a size that is not a multiple of 8.
SIZES = [(64, 32), (96, 64), (136, 72), (100, 60)]
SMP_SIZES = [(64, 32), (100, 60)]


def eighth(size: tuple[int, int]) -> tuple[int, int]:
    return tuple(math.ceil(s / 8) for s in size)


@pytest.fixture(scope="module")
def proposed() -> LightweightSegNet:
    return lightweight_segnet().eval()


@pytest.fixture(scope="module")
def unet():
    return unet_segnet().eval()


@pytest.fixture(scope="module")
def deeplab(monkeypatch_module):
    return deeplabv3plus_segnet().eval()


@pytest.fixture(scope="module")
def monkeypatch_module(tmp_path_factory):
    """No weights anywhere: an empty project cache and an empty torch hub."""
    mp = pytest.MonkeyPatch()
    empty = tmp_path_factory.mktemp("empty")
    mp.setenv("DEFECTLIB_CACHE", str(empty / "cache"))
    mp.setenv("TORCH_HOME", str(empty / "torch"))
    yield mp
    mp.undo()


# ------------------------------------------------------------------------------ Table 1 encoder


def test_encoder_settings_read_like_table_1():
    rows = [(s.block, s.operator, s.out_channels, s.stride, s.use_se, s.activation) for s in ENCODER_SETTINGS]
    assert rows == [
        (1, "conv", 16, 2, False, "HS"),
        (2, "bottleneck", 16, 1, False, "RE"),
        (3, "bottleneck", 24, 2, False, "RE"),
        (4, "bottleneck", 24, 1, False, "RE"),
        (5, "bottleneck", 48, 2, True, "RE"),
        (6, "bottleneck", 48, 1, True, "RE"),
        (7, "bottleneck", 48, 1, True, "RE"),
        (8, "bottleneck", 96, 2, True, "HS"),
        (9, "bottleneck", 96, 1, True, "HS"),
        (10, "bottleneck", 96, 1, True, "HS"),
    ]
    with pytest.raises(Exception):
        ENCODER_SETTINGS[0].stride = 1  # frozen


def test_encoder_table_at_paper_resolution(proposed):
    table = proposed.encoder_table((1408, 512))
    assert [r["block"] for r in table] == list(range(1, 11))
    assert [r["output"] for r in table] == ["704×256"] * 2 + ["352×128"] * 2 + ["176×64"] * 3 + ["88×32"] * 3
    assert [r["out"] for r in table] == [16, 16, 24, 24, 48, 48, 48, 96, 96, 96]
    assert [r["in"] for r in table] == [1, 16, 16, 24, 24, 48, 48, 48, 96, 96]
    assert table[0]["operator"] == "conv 5×5" and table[0]["activation"] == "h-swish"
    assert [r["se"] for r in table] == [False] * 4 + [True] * 6
    assert table[6]["out"] == 48  # block 7, the decoder's skip
    assert table[0]["parameters"] == 5 * 5 * 16 + 2 * 16  # conv (no bias) + BN
    assert sum(r["parameters"] for r in table) + count_parameters(proposed.head) == count_parameters(proposed)
    assert not proposed.training  # table restores the mode it found


def test_encoder_table_restores_training_mode():
    net = lightweight_segnet().train()
    net.encoder_table((64, 32))
    assert net.training


def test_decoder_features_are_144_channels(proposed):
    assert proposed.feature_channels == 144
    with torch.no_grad():
        out = proposed(torch.randn(1, 1, 128, 64))
    assert isinstance(out, SegOutput)
    assert out.features.shape == (1, 144, 16, 8)
    # the first 48 channels are block 7's output, unchanged; the other 96 come from block 10
    x = torch.randn(1, 1, 128, 64)
    with torch.no_grad():
        out = proposed(x)
        blocks = proposed.encode(x)
    assert blocks[6].shape == (1, 48, 16, 8) and blocks[9].shape == (1, 96, 8, 4)
    assert torch.equal(out.features[:, :48], blocks[6])


def test_residual_exactly_where_shapes_match(proposed):
    bottlenecks = [m for m in proposed.encoder if isinstance(m, MultiKernelBottleneck)]
    assert len(bottlenecks) == 9
    used = [b.use_res_connect for b in bottlenecks]
    # blocks 2..10; shapes match in 2, 4, 6, 7, 9, 10
    assert used == [True, False, True, False, True, True, False, True, True]
    for b in bottlenecks:
        assert b.use_res_connect == (b.stride == 1 and b.in_channels == b.out_channels)


def test_residual_is_added():
    torch.manual_seed(1)
    block = MultiKernelBottleneck(8, 8).eval()
    x = torch.randn(1, 8, 12, 10)
    with torch.no_grad():
        nn.init.zeros_(block.project[1].weight)  # project BN -> 0: output is the input
        nn.init.zeros_(block.project[1].bias)
        assert torch.equal(block(x), x)
        block.use_res_connect = False
        assert torch.count_nonzero(block(x)) == 0


# ------------------------------------------------------------------------ multi-kernel bottleneck


def test_bottleneck_has_eight_depthwise_paths():
    assert MULTI_KERNELS == ((3, 3), (5, 5), (1, 7), (7, 1), (1, 9), (9, 1), (1, 11), (11, 1))
    block = MultiKernelBottleneck(16, 24, stride=2, use_se=True, activation="HS")
    convs = list(block.paths)
    assert [tuple(c.kernel_size) for c in convs] == list(MULTI_KERNELS)
    for c in convs:
        assert c.groups == 16 and c.in_channels == 16 and c.out_channels == 16
        assert tuple(c.stride) == (2, 2) and c.bias is None
    assert isinstance(block.norm, nn.BatchNorm2d) and block.norm.num_features == 128  # one BN, 8·16 channels
    assert isinstance(block.activation, nn.Hardswish)
    assert isinstance(block.se, SqueezeExcitation)
    assert block.se.fc1.in_channels == 128 and block.se.fc1.out_channels == 32  # 8·16 / 4
    assert isinstance(block.se.scale_activation, nn.Hardsigmoid)
    assert block.project[0].kernel_size == (1, 1) and block.project[0].in_channels == 128
    assert block.project[0].out_channels == 24
    y = block(torch.randn(2, 16, 15, 9))
    assert y.shape == (2, 24, 8, 5)  # ceil(15/2), ceil(9/2): 'same' padding on every path


class _PerPathBottleneck(nn.Module):
    """The bottleneck as the paper draws it: conv + BatchNorm per path, then cat (the reference)."""

    def __init__(self, block: MultiKernelBottleneck) -> None:
        super().__init__()
        self.block = block
        c = block.in_channels
        self.norms = nn.ModuleList(nn.BatchNorm2d(c) for _ in block.paths)
        with torch.no_grad():
            for i, bn in enumerate(self.norms):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, name).copy_(getattr(block.norm, name)[i * c:(i + 1) * c])

    def forward(self, x):
        b = self.block
        y = torch.cat([bn(path(x)) for path, bn in zip(b.paths, self.norms)], dim=1)
        y = b.project(b.se(b.activation(y)))
        return y + x if b.use_res_connect else y


@pytest.mark.parametrize("training", [True, False])
def test_one_batchnorm_over_the_paths_is_one_batchnorm_per_path(training):
    """Choice 3 of the module docstring: the shared BatchNorm is the paper's per-path one."""
    torch.manual_seed(0)
    block = MultiKernelBottleneck(8, 8, use_se=True, activation="HS")
    with torch.no_grad():  # non-trivial statistics and affine parameters
        block.norm.running_mean.uniform_(-0.3, 0.3)
        block.norm.running_var.uniform_(0.5, 1.5)
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.2, 0.2)
    reference = _PerPathBottleneck(copy.deepcopy(block))
    block.train(training), reference.train(training)
    x = torch.randn(2, 8, 20, 12)
    y, y_ref = block(x), reference(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    w = torch.linspace(-1, 1, y.numel()).view_as(y)
    (y * w).sum().backward(), (y_ref * w).sum().backward()
    for (name, p), p_ref in zip(block.paths.named_parameters(), reference.block.paths.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)
    grad_weight = torch.cat([bn.weight.grad for bn in reference.norms])
    torch.testing.assert_close(block.norm.weight.grad, grad_weight, rtol=1e-4, atol=1e-5)
    running = torch.cat([bn.running_mean for bn in reference.norms])
    torch.testing.assert_close(block.norm.running_mean, running)  # updated alike in training
    if training:
        assert not torch.equal(block.norm.running_mean, reference.block.norm.running_mean)


@pytest.mark.parametrize("training", [True, False])
def test_per_path_norm_switch_is_the_per_path_reference(training):
    torch.manual_seed(0)
    assert MultiKernelBottleneck(8, 16).per_path_norm is False  # the default: one BatchNorm over the paths
    block = MultiKernelBottleneck(8, 16, stride=2, use_se=True, activation="RE", per_path_norm=True).train(training)
    reference = _PerPathBottleneck(copy.deepcopy(block)).train(training)
    x = torch.randn(2, 8, 20, 12)
    y, y_ref = block(x), reference(x)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)  # the same operations
    running = torch.cat([bn.running_var for bn in reference.norms])
    torch.testing.assert_close(block.norm.running_var, running, rtol=0, atol=0)
    assert int(block.norm.num_batches_tracked) == int(training)


def test_proposed_net_layout_does_not_change_the_function():
    torch.manual_seed(0)
    fast = build_segnet("proposed")
    plain = build_segnet("proposed", channels_last=False)
    plain.load_state_dict(fast.state_dict())
    assert fast.channels_last and not plain.channels_last
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in fast.parameters() if p.dim() == 4)
    x = torch.rand(2, 1, 64, 32)
    (f1, l1), (f2, l2) = fast(x), plain(x)
    assert f1.is_contiguous(memory_format=torch.channels_last) and f2.is_contiguous()
    torch.testing.assert_close(f1, f2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(l1, l2, rtol=1e-4, atol=1e-5)
    (l1.sum() + f1.mean()).backward(), (l2.sum() + f2.mean()).backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-4, msg=name)


def test_bottleneck_without_se_and_relu6():
    block = MultiKernelBottleneck(24, 24)
    assert isinstance(block.se, nn.Identity) and not block.use_se
    assert isinstance(block.activation, nn.ReLU6)
    with pytest.raises(ValueError):
        MultiKernelBottleneck(8, 8, stride=3)


@pytest.mark.parametrize("value", [8 * 16 / 4, 8 * 24 / 4, 8 * 48 / 4, 8 * 96 / 4, 7, 13.5, 100])
def test_make_divisible_matches_torchvision(value):
    assert make_divisible(value, 8) == _make_divisible(value, 8)


# ------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("size", SIZES)
def test_proposed_shapes(proposed, size):
    with torch.no_grad():
        out = proposed(torch.randn(2, 1, *size))
    assert out.features.shape == (2, 144, *eighth(size))
    assert out.logits.shape == (2, 1, *eighth(size))


@pytest.mark.parametrize("size", SMP_SIZES)
def test_unet_shapes(unet, size):
    assert unet.feature_channels == 128
    with torch.no_grad():
        out = unet(torch.randn(2, 1, *size))
    assert isinstance(out, SegOutput)
    assert out.features.shape == (2, 128, *eighth(size))
    assert out.logits.shape == (2, 1, *eighth(size))


@pytest.mark.parametrize("size", SMP_SIZES)
def test_deeplab_shapes(deeplab, size):
    assert deeplab.feature_channels == 256
    with torch.no_grad():
        out = deeplab(torch.randn(2, 1, *size))
    assert isinstance(out, SegOutput)
    assert out.features.shape == (2, 256, *eighth(size))
    assert out.logits.shape == (2, 1, *eighth(size))


def test_deeplab_decoder_matches_smp_when_size_divides(deeplab):
    x = torch.randn(1, 1, 64, 32)
    with torch.no_grad():
        assert torch.allclose(deeplab.decode(x), deeplab.decoder(deeplab.encoder(x)))


def test_deeplab_trains_at_batch_size_one(deeplab):
    deeplab.train()
    try:
        out = deeplab(torch.randn(1, 1, 64, 32))
        out.logits.sum().backward()
        assert out.logits.shape == (1, 1, *eighth((64, 32)))
        grads = [p.grad for p in deeplab.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)  # every layer, the pooling branch too
        assert any(g.abs().sum() > 0 for g in grads)
    finally:
        deeplab.zero_grad(set_to_none=True)
        deeplab.eval()


def test_unet_keeps_only_the_decoder_stages_to_one_eighth(unet):
    assert len(unet.decoder.blocks) == 2
    # normal initialisation: He normal with std sqrt(2 / fan_in)
    conv = unet.decoder.blocks[0].conv1[0]
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)


@pytest.mark.parametrize("size", [(64, 32), (100, 60)])
def test_classifier_shapes(size):
    h, w = eighth(size)
    clf = DefectClassifier()
    out = clf(torch.randn(2, 144, h, w), torch.randn(2, 1, h, w))
    assert out.shape == (2,)
    assert clf.fc.in_features == 66
    layers = list(clf.layers)
    assert [layer.stride for layer in layers] == [1, 2, 2] and layers[-1].out_channels == 32
    assert layers[0][0][0].kernel_size == (5, 5) and layers[0][0][0].groups == 145


def test_classifier_has_no_batchnorm_by_default_and_biases_instead():
    # Batch 1 BatchNorm in the classifier over-fitted (module docstring, choice 2).
    plain = DefectClassifier()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and all(c.bias is not None for c in convs)
    normed = DefectClassifier(norm=True)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in normed.modules()) == 6
    assert all(c.bias is None for c in normed.modules() if isinstance(c, nn.Conv2d))


def test_proposed_output_layer_starts_small():
    # The 1×1 output conv is initialised normal(0, 0.01), not Kaiming fan_out (std sqrt(2)),
    # so the untrained map's logits are near 0 instead of std ~17 (module docstring, choice 9).
    torch.manual_seed(0)
    net = lightweight_segnet().train()
    assert net.head.weight.std().item() == pytest.approx(0.01, rel=0.25)
    assert torch.all(net.head.bias == 0)
    with torch.no_grad():
        logits = net(torch.rand(2, 1, 128, 64)).logits
    assert logits.abs().max().item() < 2.0


def test_classifier_on_each_segnet_features(proposed, unet):
    for net in (proposed, unet):
        with torch.no_grad():
            out = net(torch.randn(2, 1, 64, 32))
        clf = DefectClassifier(in_channels=net.feature_channels + 1)
        assert clf(*out).shape == (2,)
    with pytest.raises(ValueError):
        DefectClassifier()(torch.randn(1, 128, 8, 4), torch.randn(1, 1, 8, 4))


def test_classifier_uses_the_map_as_probability():
    torch.manual_seed(0)
    clf = DefectClassifier(in_channels=3).eval()
    feats = torch.randn(1, 2, 8, 4)
    with torch.no_grad():
        # logits beyond ±20 saturate the sigmoid: the output no longer depends on them
        a = clf(feats, torch.full((1, 1, 8, 4), 30.0))
        b = clf(feats, torch.full((1, 1, 8, 4), 60.0))
        c = clf(feats, torch.full((1, 1, 8, 4), -30.0))
    assert torch.allclose(a, b) and not torch.allclose(a, c)
    raw = DefectClassifier(in_channels=3, seg_map="logits").eval()
    with torch.no_grad():
        high, higher = torch.full((1, 1, 8, 4), 30.0), torch.full((1, 1, 8, 4), 60.0)
        assert not torch.allclose(raw(feats, high), raw(feats, higher))


# -------------------------------------------------------------------------------- gradients


def test_gradients_reach_every_parameter_of_the_proposed_net():
    torch.manual_seed(0)
    net = lightweight_segnet().train()
    out = net(torch.randn(2, 1, 64, 32))
    (out.logits.sum() + out.features.mean()).backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None]
    assert missing == []
    zero = [name for name, p in net.named_parameters() if not torch.any(p.grad != 0)]
    assert zero == []


def test_gradients_reach_every_parameter_of_the_classifier():
    clf = DefectClassifier()
    clf(torch.randn(2, 144, 8, 4), torch.randn(2, 1, 8, 4)).sum().backward()
    assert [n for n, p in clf.named_parameters() if p.grad is None] == []


# ------------------------------------------------------------------------------ registry


def test_registry_and_unknown_name():
    assert list(MODELS) == ["seg000/proposed", "seg000/deeplabv3plus", "seg000/unet", "rec004/dr",
                            "rec004/resnet50", "seg004/deeplabv3plus", "seg004/improved"]
    assert isinstance(build_model("seg000/proposed"), LightweightSegNet)
    assert isinstance(build_segnet("proposed"), LightweightSegNet)  # = build_model("seg000/proposed")
    from defectlib.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown network 'seg000/segnet'; choose one of: seg000/proposed, "
                                          "seg000/deeplabv3plus, seg000/unet, rec004/dr"):
        build_segnet("segnet")
    with pytest.raises(ValueError, match="unknown network 'proposed'"):  # names carry their paper
        build_model("proposed")
    with pytest.raises(ValueError, match="unknown network"):
        build_model(["seg000/proposed"])  # an unhashable name is an unknown name, not a TypeError
    import defectlib.models as models

    for gone in ("SEGMENTATION_MODELS", "RECOGNITION_MODELS", "SEG004_MODELS", "build_seg004"):
        assert not hasattr(models, gone)


@pytest.mark.parametrize("name, kwargs, cls, size, shape", [
    ("seg000/unet", {}, "UNetSegNet", (64, 32), None),
    ("rec004/dr", {"find_weights": False}, "BlockDetector", (64, 64), (1, 2, 2, 2)),
    ("rec004/resnet50", {"find_weights": False}, "ResNet50Classifier", (64, 64), (1, 2)),
    ("seg004/deeplabv3plus", {"find_weights": False}, "DeepLabV3Plus", (64, 64), (1, 1, 64, 64)),
    ("seg004/improved", {"find_weights": False, "aspp": True}, "ImprovedDeepLabV3Plus", (64, 64), (1, 1, 64, 64)),
])
def test_every_registered_network_builds_with_its_keywords_and_runs(name, kwargs, cls, size, shape,
                                                                     monkeypatch_module):
    torch.manual_seed(0)
    net = build_model(name, **kwargs).eval()
    assert type(net).__name__ == cls
    with torch.no_grad():
        out = net(torch.rand(1, 1, *size))
    if shape is None:  # seed 000's networks: (features, logits) at 1/8
        assert isinstance(out, SegOutput) and out.logits.shape == (1, 1, *eighth(size))
    else:
        assert out.shape == shape
    if name.startswith(("rec004", "seg004")):
        assert net.pretrained is None  # find_weights=False: from scratch


# ------------------------------------------------------------------------------ DeepLab weights


@pytest.fixture(scope="module")
def resnet50_state(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    state = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50-test.pth"
    torch.save(state, path)
    return path, state


def test_deeplab_loads_local_resnet50_weights(resnet50_state, monkeypatch_module):
    path, state = resnet50_state
    net = deeplabv3plus_segnet(weights_path=path)
    assert net.pretrained == str(path)
    encoder = net.encoder.state_dict()
    assert torch.allclose(encoder["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))
    assert encoder["conv1.weight"].shape == (64, 1, 7, 7)
    assert torch.equal(encoder["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
    assert torch.equal(encoder["bn1.running_var"], state["bn1.running_var"])
    assert not any(k.startswith("fc.") for k in encoder)


def test_deeplab_finds_weights_in_the_project_cache(resnet50_state, tmp_path, monkeypatch):
    path, state = resnet50_state
    monkeypatch.setenv("DEFECTLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "weights").mkdir()
    cached = tmp_path / "weights" / "resnet50-imagenet.pth"
    cached.write_bytes(path.read_bytes())
    net = deeplabv3plus_segnet()
    assert net.pretrained == str(cached)
    assert torch.equal(net.encoder.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert deeplabv3plus_segnet(find_weights=False).pretrained is None


def test_deeplab_without_weights_is_from_scratch(deeplab):
    assert isinstance(deeplab, DeepLabV3PlusEighth)
    assert deeplab.pretrained is None
    with pytest.raises(FileNotFoundError):
        deeplabv3plus_segnet(weights_path="/nonexistent/resnet50.pth")


# ------------------------------------------------------------------------------- counting


def test_bottleneck_weight_table_supports_the_papers_claim():
    table = bottleneck_weight_table()
    assert list(table["channels"]) == [16, 24, 48, 96]
    assert (table["ours"] < table["mobilenetv3"]).all()
    assert (table["ours_no_bn"] < table["mobilenetv3_no_bn"]).all()
    assert (table["ours_no_bn"] == table["ours_formula"]).all()
    assert (table["mobilenetv3_no_bn"] == table["mobilenetv3_formula"]).all()
    assert table.loc[0, "ours_no_bn"] == 40 * 16**2 + 98 * 16


def test_count_parameters():
    lin = nn.Linear(3, 2)
    bn = nn.BatchNorm1d(2)
    model = nn.Sequential(lin, bn)
    assert count_parameters(model) == 8 + 4
    assert count_weights_without_norm(model) == 8
    lin.weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 2 + 4
    assert count_parameters(model) == 12


def test_flops_per_image(proposed):
    # every FLOP of the proposed net is a convolution: 2 · weights · output pixels, summed
    total = 0

    def add(module, _inputs, output):
        nonlocal total
        total += 2 * module.weight.numel() * output.shape[-2] * output.shape[-1]

    hooks = [m.register_forward_hook(add) for m in proposed.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            proposed(torch.zeros(1, 1, 64, 32))
    finally:
        for hook in hooks:
            hook.remove()
    assert total > 0
    assert flops_per_image(proposed, (64, 32)) == total
    head = nn.Conv2d(1, 1, 1, bias=False).train()
    assert flops_per_image(head, (10, 10)) == 2 * 100
    assert head.training
