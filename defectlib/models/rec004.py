"""The recognition networks of seed 004: fully convolutional block detection ("DR") and the
ResNet-50 image classifier it is compared with.

Paper: "Defect detection of mechanical design products using deep neural network"
(``/work/shared/seeds/004_*``), read as ``STUDY.md`` section "Seed 004" says.

DR (:class:`BlockDetector`)
    torchvision's ResNet-50 up to its last residual stage (``layer4``, stride 32); the global
    pooling and the fully connected layer are replaced by a 1×1 convolution with the same
    weights shape (2048 -> 2): the fully connected layer applied at every position. At the
    224×224 input the output is a 7×7 map of 2-class scores, one per 32×32 block
    (:func:`block_labels` gives the matching labels). An image's defect score is the
    defect probability of its most defective block (:func:`image_scores`).

ResNet-50 (:func:`resnet50_classifier`)
    torchvision's ResNet-50 with a 2-class fully connected layer: one score per image.

Choices (the paper does not say):

1. Grey input: both networks take one channel (KolektorSDD and MagneticTile are grey). When
   ImageNet weights are found locally (:func:`~defectlib.models.deeplab.find_resnet50_weights`)
   ``conv1`` is summed over its three input channels; otherwise the networks train from
   scratch (``model.pretrained`` is then None), and the book says so.
2. Initialisation otherwise torchvision's (Kaiming for convolutions, BatchNorm 1/0); the 1×1
   block classifier is initialised like torchvision's fully connected layer.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet50

from .deeplab import find_resnet50_weights

__all__ = ["BlockDetector", "block_detector", "resnet50_classifier", "block_labels", "image_scores",
           "BLOCK"]

#: Side of the square image area one output cell of DR stands for at the network input.
BLOCK = 32


def _grey_resnet50(weights_path: str | os.PathLike | None, find_weights: bool) -> tuple[nn.Module, str | None]:
    net = resnet50(weights=None, num_classes=1000)
    path = find_resnet50_weights(weights_path) if (weights_path is not None or find_weights) else None
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    conv1 = net.conv1
    grey = nn.Conv2d(1, conv1.out_channels, kernel_size=conv1.kernel_size, stride=conv1.stride,
                     padding=conv1.padding, bias=False)
    with torch.no_grad():
        if path is not None:
            grey.weight.copy_(conv1.weight.sum(dim=1, keepdim=True))
        else:
            nn.init.kaiming_normal_(grey.weight, mode="fan_out", nonlinearity="relu")
    net.conv1 = grey
    return net, (str(path) if path is not None else None)


class BlockDetector(nn.Module):
    """DR: ResNet-50 whose fully connected layer is a 1×1 convolution; (N, 2, H/32, W/32) scores."""

    def __init__(self, *, weights_path: str | os.PathLike | None = None, find_weights: bool = True) -> None:
        super().__init__()
        net, self.pretrained = _grey_resnet50(weights_path, find_weights)
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                  net.layer1, net.layer2, net.layer3, net.layer4)
        self.classifier = nn.Conv2d(net.fc.in_features, 2, kernel_size=1)
        bound = 1 / net.fc.in_features**0.5  # nn.Linear's default initialisation
        nn.init.uniform_(self.classifier.weight, -bound, bound)
        nn.init.uniform_(self.classifier.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.body(x))


def block_detector(**kwargs) -> BlockDetector:
    """DR, the paper's fully convolutional block detector."""
    return BlockDetector(**kwargs)


class ResNet50Classifier(nn.Module):
    """The image classifier baseline: ResNet-50, 2 classes; (N, 2) scores."""

    def __init__(self, *, weights_path: str | os.PathLike | None = None, find_weights: bool = True) -> None:
        super().__init__()
        self.net, self.pretrained = _grey_resnet50(weights_path, find_weights)
        self.net.fc = nn.Linear(self.net.fc.in_features, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def resnet50_classifier(**kwargs) -> ResNet50Classifier:
    """The ResNet-50 image classifier of the paper's comparison."""
    return ResNet50Classifier(**kwargs)


def block_labels(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """Block labels ``(N, gh, gw)`` (long) of masks ``(N, 1, H, W)``.

    A block is defective (1) when **any** mask pixel inside it is: a 1-pixel defect makes its
    block defective, which is what a small-defect detector must find. Blocks are the cells of
    adaptive max pooling to ``grid`` (exactly the 32×32 squares when H and W are 32 × grid).

    Examples
    --------
    >>> m = torch.zeros(1, 1, 224, 224); m[0, 0, 40, 200] = 1
    >>> block_labels(m, (7, 7))[0].nonzero().tolist()
    [[1, 6]]
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (N, 1, H, W), got shape {tuple(mask.shape)}")
    return F.adaptive_max_pool2d((mask > 0).float(), tuple(grid))[:, 0].long()


def image_scores(output: Tensor) -> Tensor:
    """Defect probability per image: of the image (N, 2), or of its most defective block
    (N, 2, h, w), class 1 being "defective"."""
    prob = torch.softmax(output.float(), dim=1)[:, 1]
    return prob if prob.ndim == 1 else prob.flatten(1).amax(dim=1)
