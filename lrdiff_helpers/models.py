"""Models of the course.

``SmallResNet`` *is* a ``torchvision.models.ResNet`` (a subclass built from torchvision's own
``BasicBlock`` and ``_make_layer``), sized for 8x8 grayscale digits. Its attribute names are torchvision's
(``conv1``, ``bn1``, ``layer1`` .. ``layer4``, ``fc``), so param-group code written for it runs unchanged on
``torchvision.models.resnet18``. Introduced in ``notebooks/04_experiment.ipynb``.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from .hub import load_state_dict

__all__ = ["SmallResNet", "TwoPartModel", "pretrained_small_resnet", "BACKBONE_CHECKPOINT"]

#: Name of the pretrained backbone in the checkpoint registry (``lrdiff_helpers.hub.CHECKPOINTS``).
BACKBONE_CHECKPOINT = "small_resnet_digits"


class SmallResNet(ResNet):
    """A ResNet for 8x8 single-channel images: a 3x3 stem, no max-pool, one ``BasicBlock`` per stage.

    Args:
        num_classes: outputs of the head ``fc``.
        widths: channels of ``layer1`` .. ``layer4``.
        blocks: ``BasicBlock`` s per stage.
        in_channels: input channels (1 for the digits).

    >>> m = SmallResNet(num_classes=10)
    >>> m(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: tuple[int, int, int, int] = (16, 32, 64, 128),
        blocks: tuple[int, int, int, int] = (1, 1, 1, 1),
        in_channels: int = 1,
    ) -> None:
        nn.Module.__init__(self)  # ResNet.__init__ hard-codes ImageNet sizes; reuse everything else
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = widths[0]
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
        self.layer1 = self._make_layer(BasicBlock, widths[0], blocks[0])
        self.layer2 = self._make_layer(BasicBlock, widths[1], blocks[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, widths[2], blocks[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, widths[3], blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


class TwoPartModel(nn.Module):
    """The two-part model of the syntax lessons: ``part1 = Linear(10, 5)``, ``part2 = Linear(5, 2)``.

    >>> TwoPartModel()(torch.zeros(3, 10)).shape
    torch.Size([3, 2])
    """

    def __init__(self, d_in: int = 10, d_hidden: int = 5, d_out: int = 2) -> None:
        super().__init__()
        self.part1 = nn.Linear(d_in, d_hidden)
        self.part2 = nn.Linear(d_hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.part2(torch.relu(self.part1(x)))


def pretrained_small_resnet(num_classes: int = 10, seed: int | None = None,
                            checkpoint: str = BACKBONE_CHECKPOINT) -> SmallResNet:
    """A ``SmallResNet`` with the pretrained backbone (checksum-verified) and a new, random head ``fc``.

    Args:
        num_classes: outputs of the new head.
        seed: seeds the new head's initialization; ``None`` uses the global RNG.
        checkpoint: the backbone's registered checkpoint (``lrdiff_helpers.hub.CHECKPOINTS``).

    >>> m = pretrained_small_resnet(seed=0)
    >>> m.fc.out_features
    10
    """
    model = SmallResNet(num_classes=num_classes)
    state = load_state_dict(checkpoint)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
        raise RuntimeError(f"checkpoint does not fit SmallResNet: missing={missing}, unexpected={unexpected}")
    if seed is not None:
        g = torch.Generator().manual_seed(seed)
        fresh = nn.Linear(model.fc.in_features, num_classes)
        bound = 1.0 / model.fc.in_features**0.5
        with torch.no_grad():
            fresh.weight.uniform_(-bound, bound, generator=g)
            fresh.bias.uniform_(-bound, bound, generator=g)
        model.fc = fresh
    return model
