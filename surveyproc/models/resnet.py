"""ResNet-18 backbone for multi-band cutouts (our own: torchvision does not install beside torch).

He et al. (2016) layout: a 7x7 stride-2 stem and 3x3 max-pool, then four stages
of two basic blocks with 64, 128, 256, 512 channels (times ``width / 64``),
global average pooling.  Any number of input bands and any cutout size: the
pooling makes the output size-independent.  The output is the pooled feature
vector (512 numbers at the standard width), which the heads in this package
read.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet18"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """Pooled ResNet-18 features of (batch, bands, height, width) cutouts.

    Parameters
    ----------
    in_bands
        Number of input bands.
    width
        Channels of the first stage (64 in the standard network); the pooled
        feature vector has ``8 * width`` entries.

    Examples
    --------
    >>> net = ResNet18(in_bands=3)
    >>> net(torch.zeros(2, 3, 48, 48)).shape
    torch.Size([2, 512])
    """

    def __init__(self, in_bands: int, width: int = 64) -> None:
        super().__init__()
        self.in_bands = in_bands
        self.width = width
        self.stem = nn.Sequential(
            nn.Conv2d(in_bands, width, 7, 2, 3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages = []
        channels = width
        for i, out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(channels, out, stride), BasicBlock(out, out, 1)]
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():  # zero-init the last BN of each block (Goyal et al. 2017)
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    @staticmethod
    def features_for(width: int) -> int:
        """Length of the pooled feature vector of a network of this ``width``."""
        return 8 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)
