"""track's second pass reuses the classifier's own decisions; ood_loader gives NC5."""

import numpy as np
import pytest
import torch
from capture_helpers import assert_same_metrics
from torch import nn
from torch_threads import one_thread  # noqa: F401

import nclab
from nclab.core.metrics import METRIC_NAMES, compute_metrics
from nclab.core.stats import CollapseStats, DecisionStats

pytestmark = pytest.mark.usefixtures("one_thread")


def mixture(n=300, d=10, classes=7, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=g)
    return centres[y] + 0.8 * torch.randn(n, d, generator=g) + shift, y


def batches(x, y, size=64):
    return [(x[i:i + size], y[i:i + size]) for i in range(0, len(y), size)]


def mlp(classes=7, d=10, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 24), nn.ReLU(), nn.Linear(24, 12), nn.Tanh(),
                         nn.Linear(12, classes))


def recomputed(h, y, weight, bias, size=64):
    """The path that applies W again: DecisionStats without the model's decisions."""
    stats = CollapseStats(weight.shape[0])
    for xb, yb in zip(h.split(size), y.split(size), strict=True):
        stats.update(xb, yb)
    decisions = DecisionStats.from_stats(stats, weight, bias)
    for xb, yb in zip(h.split(size), y.split(size), strict=True):
        decisions.update(xb, yb)
    return compute_metrics(stats, weight, bias, decisions=decisions)


def assert_identical(got, want):
    for name in METRIC_NAMES:
        value = getattr(want, name)
        if value is None:
            assert getattr(got, name) is None, name
        else:
            assert getattr(got, name) == pytest.approx(value, rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("cache_bytes", [1 << 30, 0])
def test_track_uses_the_classifier_outputs_and_equals_the_recomputing_path(
        monkeypatch, cache_bytes):
    model = mlp()
    x, y = mixture()
    seen = []
    update = DecisionStats.update

    def spy(self, features, labels, logits=None, *, predictions=None):
        seen.append(predictions)
        return update(self, features, labels, logits, predictions=predictions)

    monkeypatch.setattr(DecisionStats, "update", spy)
    got = nclab.track(model, batches(x, y), cache_bytes=cache_bytes)
    assert len(seen) == 5 and all(p is not None and p.dtype == torch.int64 for p in seen)
    with torch.no_grad():
        h, logits = model[:4](x), model(x)
    assert torch.equal(torch.cat(seen), logits.argmax(dim=1))
    weight, bias = model[4].weight.detach(), model[4].bias.detach()
    monkeypatch.setattr(DecisionStats, "update", update)
    want = recomputed(h, y, weight, bias)
    assert_identical(got, want)
    assert 0 < got.accuracy < 1 and got.ncc_mismatch > 0  # a non-trivial comparison
    assert got.accuracy == pytest.approx(float((logits.argmax(1) == y).double().mean()),
                                         abs=1e-12)


class NegatedHead(nn.Module):
    """A head with a weight whose forward is not W h + b: its outputs must not be used."""

    def __init__(self, d, classes):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, d))
        self.bias = nn.Parameter(torch.randn(classes))

    def forward(self, h):
        return -(h @ self.weight.T + self.bias)


def test_a_head_that_is_not_an_nn_linear_is_decided_by_w_h_plus_b():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(10, 12), nn.Tanh(), NegatedHead(12, 7))
    x, y = mixture(seed=3)
    got = nclab.track(model, batches(x, y), classifier="2")
    with torch.no_grad():
        h = model[:2](x)
    want = recomputed(h, y, model[2].weight.detach(), model[2].bias.detach())
    assert_identical(got, want)


def test_decision_stats_checks_predictions():
    stats = CollapseStats(3).update(torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    decisions = DecisionStats.from_stats(stats, torch.randn(3, 2))
    with pytest.raises(nclab.NCInputError, match="logits or predictions"):
        decisions.update(torch.randn(2, 2), torch.tensor([0, 1]), torch.randn(2, 3),
                         predictions=torch.tensor([0, 1]))
    with pytest.raises(nclab.NCInputError):
        decisions.update(torch.randn(2, 2), torch.tensor([0, 1]),
                         predictions=torch.tensor([0, 3]))


def test_ood_loader_gives_nc5_as_measure_on_the_same_features():
    model = mlp(seed=4)
    x, y = mixture(seed=4)
    x_ood, y_ood = mixture(n=90, seed=5, shift=1.5)
    with torch.no_grad():
        h, h_ood = model[:4](x), model[:4](x_ood)
    weight, bias = model[4].weight.detach(), model[4].bias.detach()
    want = nclab.measure(h, y, weight, bias, ood_features=h_ood)
    assert want.nc5_ood_orthogonality is not None
    for ood_loader in (batches(x_ood, y_ood, 32), list(x_ood.split(40))):  # bare tensors
        got = nclab.track(model, batches(x, y), ood_loader=ood_loader)
        assert_same_metrics(got, want, rel=1e-9)
    # independent float64 brute force of the definition (the streamed class means of
    # float32 features agree to float32 precision)
    means = np.stack([h[y == c].double().mean(0).numpy() for c in range(7)])
    ood = h_ood.double().mean(0).numpy()
    cosines = means @ ood / (np.linalg.norm(means, axis=1) * np.linalg.norm(ood))
    assert got.nc5_ood_orthogonality == pytest.approx(np.abs(cosines).mean(), rel=1e-6)
    assert nclab.track(model, batches(x, y)).nc5_ood_orthogonality is None
