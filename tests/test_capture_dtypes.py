"""Half-precision models (fp16, bf16) measure end to end; the classifier is read in float64."""

import pytest
import torch
from reference import reference_metrics
from torch import nn
from torch_threads import one_thread  # noqa: F401

import nclab

pytestmark = pytest.mark.usefixtures("one_thread")


def data(n=120, d=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return torch.randn(n, d, generator=g) + 3 * nn.functional.one_hot(y, d), y


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_half_precision_model_gives_the_metrics_of_its_own_features(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                          nn.Linear(8, 4)).to(dtype)
    x, y = data()  # float32 inputs: cast to the model's dtype on the way in
    loader = [(x[i:i + 40], y[i:i + 40]) for i in range(0, 120, 40)]
    got = nclab.track(model, loader, layers=["1"])
    with torch.no_grad():
        h1 = model[:2](x.to(dtype))
        h = model[:4](x.to(dtype))
    assert h.dtype == dtype
    W, b = model[4].weight.detach().double(), model[4].bias.detach().double()
    want = reference_metrics(h.double().numpy(), y.numpy(), W.numpy(), b.numpy())
    for name, value in want.items():
        assert getattr(got["4"], name) == pytest.approx(value, rel=1e-5, abs=1e-7), name
    assert got["1"].nc1 == pytest.approx(reference_metrics(h1.double().numpy(), y.numpy())["nc1"],
                                         rel=1e-5)
    assert nclab.capture.features(model, loader).features.dtype == dtype


def test_bf16_features_into_a_float32_head_and_a_bf16_head_alone():
    torch.manual_seed(1)
    body = nn.Sequential(nn.Linear(6, 8), nn.Tanh()).to(torch.bfloat16)
    head = nn.Linear(8, 4)

    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = body, head

        def forward(self, x):
            return self.head(self.body(x.to(torch.bfloat16)).float())

    x, y = data()
    got = nclab.track(Mixed(), [(x, y)], forward=lambda m, batch: m(batch[0]))
    with torch.no_grad():
        h = body(x.to(torch.bfloat16)).float()
    want = reference_metrics(h.double().numpy(), y.numpy(), head.weight.detach().double().numpy(),
                             head.bias.detach().double().numpy())
    assert got.nc1 == pytest.approx(want["nc1"], rel=1e-6)
    assert got.self_duality == pytest.approx(want["self_duality"], rel=1e-6)
    W, b = nclab.capture.classifier_parameters(nn.Linear(8, 4).to(torch.bfloat16), "")
    assert W.dtype == b.dtype == torch.float64
