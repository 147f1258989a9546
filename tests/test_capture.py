"""nclab.track equals the metrics of features extracted by hand."""

import numpy as np
import pytest
import torch
from capture_helpers import assert_same_metrics
from reference import reference_metrics
from torch import nn
from torch_threads import one_thread  # noqa: F401

import nclab
from nclab import NCInputError

pytestmark = pytest.mark.usefixtures("one_thread")


class TwoHeads(nn.Module):
    """A model whose classifier is not the last nn.Linear in module order."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 9), nn.ReLU())
        self.head = nn.Linear(9, 4)
        self.aux = nn.Linear(9, 2)  # an auxiliary output, registered last

    def forward(self, x):
        h = self.encoder(x)
        return self.head(h), self.aux(h)


def data(n=120, d=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, d, generator=g) + 2 * nn.functional.one_hot(y, d)
    return x, y


def batches(x, y, size=32):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def assert_matches_reference(metrics, features, y, weight=None, bias=None):
    want = reference_metrics(features.double().numpy(), y.numpy(),
                             None if weight is None else weight.double().numpy(),
                             None if bias is None else bias.double().numpy())
    for name, value in want.items():
        assert getattr(metrics, name) == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_track_equals_reference_on_hand_extracted_features():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                          nn.Linear(8, 4))
    x, y = data()
    got = nclab.track(model, batches(x, y))
    with torch.no_grad():
        h = model[:4](x)
    W, b = model[4].weight.detach(), model[4].bias.detach()
    assert_matches_reference(got, h, y, W, b)
    # and nclab.measure agrees on every metric, ncc_mismatch and accuracy included
    direct = nclab.measure(h, y, W, b)
    assert_same_metrics(got, direct)
    assert got.accuracy == pytest.approx(float((model(x).argmax(1) == y).float().mean()))


def test_named_classifier_layer_profile_and_no_cache():
    torch.manual_seed(1)
    model = TwoHeads().train()
    x, y = data()
    loader = batches(x, y)
    profile = nclab.track(model, loader, classifier="head", layers=["encoder.2"],
                          cache_bytes=0)  # the second pass runs the model again
    assert list(profile) == ["encoder.2", "head"]
    assert model.training  # mode restored
    with torch.no_grad():
        h12 = model.encoder[:2](x)
        h13 = model.encoder[:3](x)
        h = model.encoder(x)
    assert_matches_reference(profile["head"], h, y, model.head.weight.detach(),
                             model.head.bias.detach())
    assert_matches_reference(profile["encoder.2"], h13, y)  # a layer's output by default
    assert profile["encoder.2"].ncc_mismatch is None  # no classifier at that layer
    inputs = nclab.track(model, loader, classifier="head", layers={"encoder.2": "input"})
    assert_matches_reference(inputs["encoder.2"], h12, y)
    # the default (last nn.Linear) would be the auxiliary head with its 2 outputs
    with pytest.raises(NCInputError, match=r"label 3 is out of range .* taken to be 'aux'.*"
                                           r"pass classifier="):
        nclab.track(model, loader)


def test_convolutional_inputs_are_averaged_over_positions():
    torch.manual_seed(2)
    conv = nn.Sequential(nn.Conv1d(1, 5, 3, padding=1), nn.ReLU())
    model = nn.Sequential(conv, nn.Conv1d(5, 7, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(),
                          nn.Linear(7, 3))
    y = torch.arange(60) % 3
    x = torch.randn(60, 1, 10) + y[:, None, None]
    profile = nclab.track(model, batches(x, y, 25), layers=["1"], layer_point="input")
    with torch.no_grad():
        h1 = conv(x).mean(dim=2)
        out1 = model[:2](x)  # (60, 7, 8)
    assert_matches_reference(profile["1"], h1, y)
    flat = nclab.track(model, batches(x, y, 25), layers={"1": "input"}, spatial="flatten")
    assert_matches_reference(flat["1"], conv(x).flatten(1).detach(), y)
    outputs = nclab.track(model, batches(x, y, 25), layers=["1"])
    assert outputs["1"].dim == 7
    assert_matches_reference(outputs["1"], out1.mean(dim=2), y)


def test_bad_input_is_named():
    x, y = data()
    with pytest.raises(NCInputError, match="has no nn.Linear"):
        nclab.track(nn.Sequential(nn.ReLU()), batches(x, y))
    model = nn.Sequential(nn.Linear(6, 4))
    with pytest.raises(NCInputError, match="no layer named 'fc'; layers: 0"):
        nclab.track(model, batches(x, y), classifier="fc")
    with pytest.raises(NCInputError, match="yielded no batches"):
        nclab.track(model, [])
    with pytest.raises(NCInputError, match="one-shot iterator"):
        nclab.track(model, iter(batches(x, y)), cache_bytes=0)
    with pytest.raises(NCInputError, match=r"the batch is a Tensor of shape \(120, 6\); "
                                           r"expected \(inputs, labels, \.\.\.\) tuples"):
        nclab.track(model, [x])
    with pytest.raises(NCInputError, match="spatial must be one of"):
        nclab.track(model, batches(x, y), spatial="max")


def test_features_on_an_nclab_model_match_its_body():
    from nclab.models import build_model

    torch.manual_seed(3)
    model = build_model("cnn1d", (1, 40), 5, channels=(4, 4), hidden=16)
    y = torch.arange(50) % 5
    x = torch.randn(50, 1, 40) + y[:, None, None].float()
    got = nclab.track(model, batches(x, y, 16))
    model.eval()
    with torch.no_grad():
        h = model.body(x)
    assert_matches_reference(got, h, y, model.classifier.weight.detach(),
                             model.classifier.bias.detach())
    assert np.isfinite(got.nc1)


def test_features_returns_what_the_classifier_receives():
    torch.manual_seed(4)
    model = TwoHeads()
    x, y = data()
    got = nclab.capture.features(model, batches(x, y), classifier="head")
    with torch.no_grad():
        expected = model.encoder(x)
    torch.testing.assert_close(got.features, expected)
    assert torch.equal(got.labels, y)
    assert got.outputs is None  # the model returns two heads


def test_token_inputs_of_a_linear_classifier_are_refused():
    model = nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    x = torch.randn(8, 4, 6)  # (batch, tokens, features)
    with pytest.raises(NCInputError, match=r"the input of layer '1' has shape \(8, 4, 5\) "
                                           r"and the labels \(8,\); expected \(batch, "):
        nclab.track(model, [(x, torch.arange(8) % 3)])
