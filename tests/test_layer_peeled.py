"""The Layer-Peeled Model (Fang et al., PNAS 2021): its minimizers, minority collapse, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from scipy.optimize import minimize

from nclab.core.errors import NCInputError
from nclab.studies.imbalance_ufm import minority_collapse_sweep, solve_counts
from nclab.ufm import LayerPeeledUFM


def brute_objective(w: np.ndarray, h: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of the logits h_i . w_k, one sample at a time."""
    total = 0.0
    for feature, label in zip(h, labels, strict=True):
        logits = w @ feature
        top = logits.max()
        total += top + np.log(np.exp(logits - top).sum()) - logits[label]
    return total / len(labels)


def brute_cosine(rows: np.ndarray) -> float:
    pairs = [(a, b) for a in range(len(rows)) for b in range(a + 1, len(rows))]
    return float(np.mean([rows[a] @ rows[b] / np.linalg.norm(rows[a]) / np.linalg.norm(rows[b])
                          for a, b in pairs]))


def test_balanced_minimizer_is_the_etf_with_both_budgets_spent():
    model = LayerPeeledUFM(4, 4, 3, energy_w=2.0, energy_h=0.5)
    solution = model.solve(range(3), steps=2000)
    assert float(solution.gap.abs().max()) < 1e-10
    w, h = solution.weight.numpy(), solution.features.numpy()
    np.testing.assert_allclose((w**2).sum(axis=(1, 2)) / 4, 2.0, rtol=1e-12)
    np.testing.assert_allclose((h**2).sum(axis=(1, 2)) / 3 / 4, 0.5, rtol=1e-12)
    for run in w:
        assert brute_cosine(run) == pytest.approx(-1 / 3, abs=1e-6)
    mu_w, mu_h = model.multipliers(solution.weight, solution.features)
    assert bool((mu_w > 0).all() and (mu_h > 0).all())


def test_objective_and_gradient_match_a_brute_force():
    model = LayerPeeledUFM(3, 2, counts=[3, 2, 1])
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    h = torch.randn(1, 6, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    value, (grad_w, grad_h) = model.value_and_grad((w.detach(), h.detach()))
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert float(value[0]) == pytest.approx(
        brute_objective(w[0].detach().numpy(), h[0].detach().numpy(), labels), rel=1e-12)
    auto_w, auto_h = torch.autograd.grad(
        torch.nn.functional.cross_entropy(h[0] @ w[0].T, torch.tensor(labels)), (w, h))
    torch.testing.assert_close(grad_w, auto_w, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_h, auto_h, rtol=1e-12, atol=1e-14)


def reduced_minimum(counts: list[int], dim: int, energy_w: float, energy_h: float
                    ) -> tuple[float, np.ndarray]:
    """The program in class means (Jensen: a class's features may as well be equal), by
    SLSQP with the two budgets as inequalities, best of several starts: (f, W)."""
    k = len(counts)
    shares = np.asarray(counts, dtype=float) / sum(counts)

    def split(x):
        return x[: k * dim].reshape(k, dim), x[k * dim:].reshape(k, dim)

    def objective(x):
        w, m = split(x)
        logits = m @ w.T
        top = logits.max(axis=1, keepdims=True)
        lse = (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))[:, 0]
        return float(shares @ (lse - np.diag(logits)))

    budgets = [{"type": "ineq", "fun": lambda x: energy_w - (split(x)[0] ** 2).sum() / k},
               {"type": "ineq", "fun": lambda x: energy_h - (split(x)[1] ** 2).sum() / k}]
    best = None
    for seed in range(4):
        start = np.random.default_rng(seed).standard_normal(2 * k * dim) * 0.3
        result = minimize(objective, start, method="SLSQP", constraints=budgets,
                          options={"ftol": 1e-14, "maxiter": 2000})
        if best is None or result.fun < best.fun:
            best = result
    return best.fun, split(best.x)[0]


def test_minimum_matches_the_class_mean_program_solved_by_scipy():
    counts, energy_w, energy_h = [6, 6, 1, 1], 1.0, 3.0
    model = LayerPeeledUFM(4, 4, counts=counts, energy_w=energy_w, energy_h=energy_h)
    solution = model.solve(range(2), steps=4000)
    value, weight = reduced_minimum(counts, 4, energy_w, energy_h)
    assert float(solution.objective.min()) == pytest.approx(value, abs=1e-7)
    best = int(solution.objective.argmin())
    assert brute_cosine(solution.weight[best, 2:].numpy()) == pytest.approx(
        brute_cosine(weight[2:]), abs=1e-3)


def test_minority_rows_merge_and_stay_nonzero_at_the_acceptance_shape():
    # C = 10, d = 16, K = 5 as in the issue, with n_max = 20 so that R = 0.05 leaves one
    # feature per minority class (n_max/n_min = 20, past the threshold measured in
    # docs/imbalance.md); R = 1 with n = 2. The full size (n_max = 1000, R = 1e-3) is in
    # the docs, with its command and run time.
    balanced, = minority_collapse_sweep([1.0], per_class=2, seeds=1, steps=2000,
                                        energies=(1.0, 5.0))
    tail, = minority_collapse_sweep([0.05], per_class=20, seeds=1, steps=3000,
                                    energies=(1.0, 5.0))
    assert abs(balanced["minority_collapse_weights"] + 1 / 9) < 1e-6
    assert tail["counts"] == [20] * 5 + [1] * 5
    assert tail["minority_collapse_weights"] >= 0.9
    assert tail["minority_norm_ratio"] > 0.1  # merged, not vanished
    assert tail["multipliers"] > 0 and tail["grad_norm"] < 1e-8


def test_plain_ufm_command_with_a_profile_solves_the_layer_peeled_model(tmp_path, capsys):
    code, out, err = run_cli(["ufm", "--loss", "ce", "--imbalance", "step:0.05,5",
                              "--per-class", 20, "--steps", 3000, "--no-progress",
                              "--out", tmp_path], capsys)
    assert code in (0, None), err
    data = json.loads((tmp_path / "ufm.json").read_text())
    assert data["model"] == "LayerPeeledUFM"
    assert data["config"]["energy_w"] == 1.0 and data["config"]["energy_h"] == 5.0
    assert data["minority_collapse_weights"] >= 0.9
    assert data["runs"][0]["multipliers"]["energy_w"] > 0
    assert "every run spends both budgets" in " ".join(out.split())


def test_weight_decay_keeps_the_regularized_model(tmp_path, capsys):
    code, _, err = run_cli(["ufm", "--classes", 4, "--dim", 4, "--per-class", 4,
                            "--imbalance", "step:0.25,2", "--lambda-w", 1e-3, "--steps", 10,
                            "--out", tmp_path], capsys)
    assert code in (0, None), err
    assert json.loads((tmp_path / "ufm.json").read_text())["model"] == "RegularizedUFM"


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "layer-peeled", "--energy-w", "0"], "--energy-w must be > 0; got 0"),
    (["--model", "layer-peeled", "--energy-h", "nan"], "--energy-h must be a finite number"),
    (["--model", "layer-peeled", "--lambda-w", "1e-3"], "--lambda-w: the Layer-Peeled Model"),
    (["--energy-w", "2", "--lambda-b", "0"], "--energy-w apply to --model layer-peeled only"),
    (["--model", "layer-peeled", "--loss", "mse"], "Layer-Peeled Model uses cross-entropy"),
    (["--model", "layer-peeled", "--normalized"], "--normalized is a model of its own"),
    (["--model", "foo"], "--model must be one of regularized, layer-peeled; got 'foo'"),
    (["--layers", "2", "--model", "layer-peeled"], "--model: --layers is the deep UFM"),
    (["--imbalance", "step:1e-3,5", "--per-class", "100"], "class 5 would keep 0 of 100"),
])
def test_bad_layer_peeled_options_are_one_line_and_write_nothing(args, message, tmp_path,
                                                                 capsys):
    code, _, err = run_cli(["ufm", *args, "--out", tmp_path / "run"], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"energy_w": 0.0}, "energy_w"),
    ({"energy_h": -1.0}, "energy_h"),
    ({"energy_w": float("inf")}, "energy_w"),
    ({"counts": [3, 0, 1]}, "every class count must be an integer >= 1"),
    ({"counts": [3, 1]}, "one entry per class"),
])
def test_bad_model_arguments_raise_one_line(kwargs, message):
    with pytest.raises(NCInputError, match=message):
        LayerPeeledUFM(3, 2, 2, **kwargs)


def test_zero_start_and_wrong_loss_are_refused():
    model = LayerPeeledUFM(3, 2, 2)
    with pytest.raises(NCInputError, match="nonzero W and H"):
        model.solve([0], start=(torch.zeros(1, 3, 2, dtype=torch.float64),
                                torch.ones(1, 6, 2, dtype=torch.float64)))
    with pytest.raises(NCInputError, match="cross-entropy"):
        solve_counts([2, 1], 2, [1], loss="mse", lambda_w=1e-3, lambda_h=1e-3, lambda_b=0.0,
                     seeds=1, steps=1, energies=(1.0, 1.0))
