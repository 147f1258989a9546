"""VGG (Simonyan & Zisserman 2015) with batch normalization, for 1-D or 2-D inputs."""

from __future__ import annotations

from torch import nn

from nclab.core.errors import NCInputError
from nclab.models import layers
from nclab.models.base import Network

#: Convolution widths per configuration; "M" is a 2x max-pooling.
CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def vgg(
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 11,
    width: float = 1.0,
    batch_norm: bool = True,
) -> Network:
    """VGG-``depth`` with channel counts scaled by ``width``.

    Poolings that would shrink a side below 1 are skipped, so small inputs (8 x 8 digits,
    40-long sequences) work; a global average pool makes the features (512 x width
    channels), which is the usual flatten for 32 x 32 inputs.
    """
    if depth not in CONFIGS:
        raise NCInputError(f"VGG depth must be one of {sorted(CONFIGS)}; got {depth}")
    dims = layers.spatial_dims(input_shape, "vgg")
    pools_left = layers.halvings(input_shape)
    body: list[nn.Module] = []
    c_in = input_shape[0]
    for item in CONFIGS[depth]:
        if item == "M":
            if pools_left > 0:
                body.append(layers.max_pool(dims))
                pools_left -= 1
            continue
        c_out = layers.scaled(int(item), width)
        body.append(layers.conv(dims, c_in, c_out))
        if batch_norm:
            body.append(layers.batch_norm(dims, c_out))
        body.append(nn.ReLU(inplace=True))
        c_in = c_out
    body.append(layers.global_pool(dims))
    return Network(nn.Sequential(*body), c_in, num_classes)
