"""The block Grams of Moments: the host BLAS's syrk on the CPU, torch's products elsewhere."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info
from torch_threads import one_thread  # noqa: F401  (the host path runs on one thread)

from nclab.core import moments
from nclab.core.moments import Moments, host_syrk_applies

pytestmark = pytest.mark.usefixtures("one_thread")


def _brute_force_scatter(x, groups, num_groups):
    """sum over groups of (x - mean_g)^T (x - mean_g), in float64 from explicit sums."""
    h = x.double().numpy()
    labels = groups.numpy()
    scatter = np.zeros((h.shape[1], h.shape[1]))
    for g in range(num_groups):
        centred = h[labels == g] - h[labels == g].mean(axis=0)
        scatter += centred.T @ centred
    return scatter


def _moments(x, groups, num_groups):
    """Moments over x in three updates (blocks of rows folded straight and staged)."""
    state = Moments(num_groups, x.shape[1])
    state.BLOCK_ROWS = 64
    for part in (slice(0, 150), slice(150, 151), slice(151, None)):
        state.update(x[part], groups[part])
    return state.moments()


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_host_syrk_and_torch_products_agree(dtype, rtol, monkeypatch):
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(400, 37, generator=gen, dtype=torch.float64) * 2 + 50).to(dtype)
    groups = torch.randint(0, 5, (400,), generator=gen)
    calls = []
    real = moments.host_gram
    monkeypatch.setattr(moments, "host_gram", lambda z, out: calls.append(z) or real(z, out))
    host = _moments(x, groups, 5)
    assert calls  # the host path ran ...
    monkeypatch.setattr(moments, "host_syrk_applies", lambda z: False)
    calls.clear()
    torch_path = _moments(x, groups, 5)
    assert not calls  # ... and here it did not
    reference = _brute_force_scatter(x, groups, 5)
    scale = np.abs(reference).max()
    for scatter in (host[3], torch_path[3]):
        np.testing.assert_allclose(scatter.numpy(), reference, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(host[3].numpy(), torch_path[3].numpy(), rtol=0,
                               atol=rtol * scale)
    np.testing.assert_array_equal(host[3].numpy(), host[3].numpy().T)
    for a, b in zip(host[:3], torch_path[:3], strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # no Gram in them


def test_only_plain_contiguous_cpu_floats_on_one_thread_take_the_host_path():
    x = torch.randn(8, 6)
    assert host_syrk_applies(x)
    assert host_syrk_applies(x.double())
    assert host_syrk_applies(x[2:5])  # a row range of a contiguous block is contiguous
    for other in (x.T, x[:, ::2], x.half(), x.to(torch.int32), x.clone().requires_grad_(),
                  torch.nn.Parameter(x.clone()), torch.empty(8, 6, device="meta"),
                  torch.zeros(8, 6).to_sparse()):
        assert not host_syrk_applies(other)
    torch.set_num_threads(2)
    assert not host_syrk_applies(x)


def test_a_strided_view_takes_torchs_products(monkeypatch):
    monkeypatch.setattr(moments, "host_gram", lambda z, out: pytest.fail("host path"))
    z = torch.randn(30, 40, dtype=torch.float64)[:, ::2]
    target = torch.zeros(20, 20, dtype=torch.float64)
    moments._add_upper_gram(target, z, alpha=0.5)
    whole = (target + target.T) / 2  # the upper-block form, made whole
    np.testing.assert_allclose(whole.numpy(), 0.5 * z.numpy().T @ z.numpy(), rtol=1e-12)


def test_the_host_blas_keeps_its_thread_count():
    x = torch.randn(300, 16)
    before = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    out = moments.host_gram(x, torch.empty(16, 16))
    after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
    assert after == before
    np.testing.assert_allclose(out.numpy(), x.double().numpy().T @ x.double().numpy(),
                               rtol=1e-5, atol=1e-4)
