"""ResNet (He et al. 2016) with the CIFAR-style stem, for 1-D or 2-D inputs."""

from __future__ import annotations

import torch
from torch import nn

from nclab.core.errors import NCInputError
from nclab.models import layers
from nclab.models.base import Network


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, dims: int, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            layers.conv(dims, c_in, planes, stride=stride), layers.batch_norm(dims, planes),
            nn.ReLU(inplace=True),
            layers.conv(dims, planes, planes), layers.batch_norm(dims, planes),
        )
        self.shortcut = _shortcut(dims, c_in, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, dims: int, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.residual = nn.Sequential(
            layers.conv(dims, c_in, planes, kernel=1), layers.batch_norm(dims, planes),
            nn.ReLU(inplace=True),
            layers.conv(dims, planes, planes, stride=stride), layers.batch_norm(dims, planes),
            nn.ReLU(inplace=True),
            layers.conv(dims, planes, out, kernel=1), layers.batch_norm(dims, out),
        )
        self.shortcut = _shortcut(dims, c_in, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.residual(x) + self.shortcut(x))


def _shortcut(dims: int, c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(layers.conv(dims, c_in, c_out, kernel=1, stride=stride),
                         layers.batch_norm(dims, c_out))


#: depth -> (block type, blocks per stage)
CONFIGS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


def resnet(
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 18,
    width: float = 1.0,
) -> Network:
    """ResNet-``depth``: a 3x3 stem without max-pooling (CIFAR style), four stages of
    64, 128, 256, 512 channels times ``width``, global average pooling.

    Stages 2-4 halve the resolution while a side of at least 2 remains.
    """
    if depth not in CONFIGS:
        raise NCInputError(f"ResNet depth must be one of {sorted(CONFIGS)}; got {depth}")
    dims = layers.spatial_dims(input_shape, "resnet")
    block, counts = CONFIGS[depth]
    halvings_left = layers.halvings(input_shape)
    c_in = layers.scaled(64, width)
    body: list[nn.Module] = [layers.conv(dims, input_shape[0], c_in),
                             layers.batch_norm(dims, c_in), nn.ReLU(inplace=True)]
    for stage, count in enumerate(counts):
        planes = layers.scaled(64 * 2**stage, width)
        stride = 2 if stage > 0 and halvings_left > 0 else 1
        halvings_left -= stride == 2
        for i in range(count):
            body.append(block(dims, c_in, planes, stride if i == 0 else 1))
            c_in = planes * block.expansion
    body.append(layers.global_pool(dims))
    return Network(nn.Sequential(*body), c_in, num_classes)
