"""Joint image-and-mask augmentation (seed 004, §3.3: rotation, perspective transform,
saturation and brightness), built on torchvision's transforms v2, which move a
``tv_tensors.Mask`` with its image (bilinear for the image, nearest-neighbour for the mask, fill 0 for both).

The paper gives no magnitudes; :class:`Augmentation` defaults are ours: rotation uniform in
±15°, a perspective distortion of scale 0.2 with probability 0.5, brightness and saturation
factors uniform in [0.8, 1.2]. Saturation changes nothing on the grey images of KolektorSDD
and MagneticTile (it is kept so the transform is the paper's on colour data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["Augmentation"]

#: Images are resampled bilinearly; torchvision always resamples a Mask with nearest neighbour.
BILINEAR = v2.InterpolationMode.BILINEAR


@dataclass(frozen=True)
class Augmentation:
    """``aug(image, mask) -> (image, mask)`` on ``(C, H, W)`` tensors, image in [0, 1].

    Examples
    --------
    >>> aug = Augmentation()
    >>> image, mask = torch.rand(1, 32, 32), (torch.rand(1, 32, 32) > 0.9).float()
    >>> a, m = aug(image, mask)
    >>> a.shape, m.shape, set(m.unique().tolist()) <= {0.0, 1.0}
    (torch.Size([1, 32, 32]), torch.Size([1, 32, 32]), True)
    """

    rotation: float = 15.0
    perspective: float = 0.2
    perspective_p: float = 0.5
    brightness: float = 0.2
    saturation: float = 0.2

    def transform(self) -> v2.Transform:
        return v2.Compose([
            v2.RandomRotation(self.rotation, interpolation=BILINEAR),
            v2.RandomPerspective(self.perspective, p=self.perspective_p, interpolation=BILINEAR),
            v2.ColorJitter(brightness=self.brightness, saturation=self.saturation),
        ])

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_image, out_mask = self.transform()(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return out_image.as_subclass(torch.Tensor).clamp_(0, 1), out_mask.as_subclass(torch.Tensor)
