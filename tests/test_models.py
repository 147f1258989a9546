"""Every model family builds for 1-D and 2-D inputs and ends in one nn.Linear."""

import pytest
import torch
from torch import nn
from torch_threads import one_thread  # noqa: F401

from nclab import NCInputError
from nclab.capture import find_classifier
from nclab.models import MODELS, build_model
from nclab.models.resnet import resnet

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = {"cnn1d": [(1, 40), (3, 17)], "densenet121": [(1, 40), (1, 8, 8)]}
DEFAULT_SHAPES = [(3, 32, 32), (1, 40), (1, 8, 8)]
SMALL = {"width": 0.125}  # narrow versions keep the test fast; the shapes are the same


def small_options(name):
    if name.startswith(("vgg", "resnet")):
        return SMALL
    if name == "densenet_cifar":
        return {"blocks": (2, 2), "growth_rate": 4}
    return {}


@pytest.mark.parametrize("name", list(MODELS))
def test_output_shape_and_classifier(name):
    for shape in SHAPES.get(name, DEFAULT_SHAPES):
        model = build_model(name, shape, 7, **small_options(name)).eval()
        out = model(torch.randn(3, *shape))
        assert out.shape == (3, 7), (name, shape)
        linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        assert linears[-1] == "classifier" == find_classifier(model)
        assert model.classifier.in_features == model.feature_dim
        assert model.body(torch.randn(2, *shape)).shape == (2, model.feature_dim)


def test_mlp_widths_make_the_three_by_256_mlp():
    model = build_model("mlp", (1, 40), 10, widths=(256, 256, 256))
    hidden = [m for m in model.body if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in hidden] == [(40, 256), (256, 256),
                                                                  (256, 256)]
    assert sum(isinstance(m, nn.ReLU) for m in model.body) == 3


def test_standard_sizes_match_the_published_cifar_networks():
    # ResNet-18 for CIFAR-10 (3x3 stem, no max-pool): 11,173,962 parameters.
    count = sum(p.numel() for p in build_model("resnet18", (3, 32, 32), 10).parameters())
    assert count == 11_173_962
    # VGG-11 with BN, convolutions without bias: 9,231,114 minus the 2,752 conv biases.
    count = sum(p.numel() for p in build_model("vgg11", (3, 32, 32), 10).parameters())
    assert count == 9_231_114 - 2_752


def test_width_multiplier_scales_channels():
    narrow = build_model("resnet18", (3, 16, 16), 5, width=0.5)
    assert narrow.feature_dim == 256
    assert build_model("resnet50", (3, 16, 16), 5, width=0.25).feature_dim == 512


def test_unknown_names_and_options_list_the_choices():
    with pytest.raises(NCInputError, match="choose from: .*mlp.*resnet18"):
        build_model("resnet7", (3, 32, 32), 10)
    with pytest.raises(NCInputError, match="accepts: widths, activation, batch_norm"):
        build_model("mlp", (1, 40), 10, depth=3)
    with pytest.raises(NCInputError, match=r"\(channels, length\)"):
        build_model("cnn1d", (3, 32, 32), 10)
    with pytest.raises(NCInputError, match="depth must be one of"):
        resnet((3, 8, 8), 10, depth=20)
    with pytest.raises(NCInputError, match="unknown activation 'swish'; choose from: relu"):
        build_model("mlp", (1, 40), 10, activation="swish")
