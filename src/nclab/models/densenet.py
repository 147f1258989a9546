"""DenseNet-BC (Huang et al. 2017) with a CIFAR-style stem, for 1-D or 2-D inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nclab.core.errors import NCInputError
from nclab.models import layers
from nclab.models.base import Network


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (4k channels) - BN-ReLU-Conv3x3 (k channels), concatenated."""

    def __init__(self, dims: int, c_in: int, growth: int) -> None:
        super().__init__()
        self.new = nn.Sequential(
            layers.batch_norm(dims, c_in), nn.ReLU(inplace=True),
            layers.conv(dims, c_in, 4 * growth, kernel=1),
            layers.batch_norm(dims, 4 * growth), nn.ReLU(inplace=True),
            layers.conv(dims, 4 * growth, growth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.new(x)], dim=1)


def densenet(
    input_shape: tuple[int, ...],
    num_classes: int,
    blocks: Sequence[int] = (6, 12, 24, 16),
    growth_rate: int = 12,
    compression: float = 0.5,
) -> Network:
    """DenseNet-BC: dense blocks of ``blocks[i]`` layers adding ``growth_rate`` channels
    each, separated by transitions that compress the channels by ``compression`` and
    halve the resolution (while a side of at least 2 remains).

    The defaults are the small CIFAR DenseNet (growth 12); ``densenet121`` is
    blocks (6, 12, 24, 16) with growth 32.
    """
    if not 0 < compression <= 1:
        raise NCInputError(f"compression must lie in (0, 1]; got {compression}")
    if growth_rate < 1 or not blocks or min(blocks) < 1:
        raise NCInputError("growth_rate and every entry of blocks must be >= 1")
    dims = layers.spatial_dims(input_shape, "densenet")
    halvings_left = layers.halvings(input_shape)
    channels = 2 * growth_rate
    body: list[nn.Module] = [layers.conv(dims, input_shape[0], channels)]
    for i, count in enumerate(blocks):
        for _ in range(count):
            body.append(DenseLayer(dims, channels, growth_rate))
            channels += growth_rate
        if i < len(blocks) - 1:
            out = max(1, int(channels * compression))
            body += [layers.batch_norm(dims, channels), nn.ReLU(inplace=True),
                     layers.conv(dims, channels, out, kernel=1)]
            if halvings_left > 0:
                body.append(layers.avg_pool(dims))
                halvings_left -= 1
            channels = out
    body += [layers.batch_norm(dims, channels), nn.ReLU(inplace=True),
             layers.global_pool(dims)]
    return Network(nn.Sequential(*body), channels, num_classes)
