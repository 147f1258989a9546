"""The deep unconstrained features model: objective, per-layer metrics, deep collapse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nclab.core.errors import NCInputError
from nclab.ufm.deep import DeepUFM


def brute_objective(params, labels, activation, lam_w, lam_h) -> float:
    """f in float64 numpy with columns as samples, as in Sukenik et al."""
    h = params[0].T  # d x N
    for weight in params[1:-1]:
        h = weight @ h
        h = np.maximum(h, 0) if activation == "relu" else h
    out = params[-1] @ h
    targets = np.eye(out.shape[0])[:, labels]
    return float(np.sum((out - targets) ** 2) / (2 * len(labels))
                 + lam_w / 2 * sum(np.sum(w**2) for w in params[1:])
                 + lam_h / 2 * np.sum(params[0] ** 2))


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_objective_and_gradient_match_a_brute_force(activation):
    ufm = DeepUFM(3, 4, 2, layers=3, activation=activation, lambda_w=0.1, lambda_h=0.05)
    start = ufm.random_start([0, 1])
    value, grads = ufm.evaluate(start)
    labels = ufm.labels().numpy()
    for run in range(2):
        params = [p[run].numpy() for p in start]
        assert float(value[run]) == pytest.approx(
            brute_objective(params, labels, activation, 0.1, 0.05), rel=1e-12)
        # central differences of the brute force along a random direction
        rng = np.random.default_rng(run)
        direction = [rng.standard_normal(p.shape) for p in params]
        eps = 1e-6
        plus = brute_objective([p + eps * v for p, v in zip(params, direction, strict=True)],
                               labels, activation, 0.1, 0.05)
        minus = brute_objective([p - eps * v for p, v in zip(params, direction, strict=True)],
                                labels, activation, 0.1, 0.05)
        slope = sum(float(np.sum(g[run].numpy() * v)) for g, v in zip(grads, direction,
                                                                       strict=True))
        assert slope == pytest.approx((plus - minus) / (2 * eps), rel=1e-6)


def test_linear_deep_ufm_collapses_at_every_layer():
    ufm = DeepUFM(4, 6, 3, layers=3, activation="linear", lambda_w=5e-3, lambda_h=5e-3)
    solution = ufm.solve(range(4), steps=3000)
    assert float(solution.grad_norm.max()) < 1e-8
    # every start ends at the same value (no spurious minimum on this tiny case)
    assert float(solution.objective.max() - solution.objective.min()) < 1e-10
    layers = solution.layer_metrics(solution.best)
    assert len(layers) == 3
    assert all(m.nc1 <= 1e-3 for m in layers)
    assert layers[-1].etf_error_means < 1e-6
    # no bias and targets e_k: the last classifier's rows are orthogonal of equal norm
    # (its Gram is proportional to I, not to the centred simplex ETF)
    weight = solution.params[-1][solution.best].numpy()
    gram = weight @ weight.T
    assert np.allclose(gram / np.trace(gram), np.eye(4) / 4, atol=1e-8)


def test_relu_deep_ufm_collapses_for_two_classes():
    # K = 2: deep neural collapse is the optimum (Sukenik et al., 2023)
    ufm = DeepUFM(2, 4, 3, layers=3, activation="relu", lambda_w=5e-3, lambda_h=5e-3)
    solution = ufm.solve(range(6), steps=4000)  # the default: 4 smoothing stages, then ReLU
    best = solution.best
    from nclab.ufm.deep_lowrank import dnc_objective

    dnc = dnc_objective(2, 3, lambda_w=5e-3, lambda_h=5e-3, per_class=3).objective
    assert float(solution.objective[best]) == pytest.approx(dnc, abs=1e-8)
    assert float(solution.grad_norm[best]) < 1e-5
    assert all(m.nc1 <= 1e-3 for m in solution.layer_metrics(best))
    features = solution.layer_features(best)
    assert all(bool((h >= 0).all()) for h in features[1:])  # after a ReLU


def test_layer_features_are_the_forward_pass_of_the_run():
    ufm = DeepUFM(3, 4, 2, layers=2, activation="relu", lambda_w=0.1, lambda_h=0.1)
    solution = ufm.solve(range(2), steps=0)
    h1, w1 = solution.params[0][1], solution.params[1][1]
    first, second = solution.layer_features(1)
    assert torch.equal(first, h1)
    assert torch.allclose(second, torch.relu(h1 @ w1.T), atol=1e-14, rtol=0)


@pytest.mark.parametrize("kwargs", [{"layers": 0}, {"layers": 2.5}, {"layers": True},
                                    {"activation": "tanh"}, {"lambda_w": 0.0},
                                    {"lambda_h": float("nan")}, {"lambda_w": "x"},
                                    {"lambda_h": True}])
def test_bad_settings_are_one_line(kwargs):
    with pytest.raises(NCInputError) as error:
        DeepUFM(3, 4, 2, **kwargs)
    assert "\n" not in str(error.value)


def test_nclab_ufm_layers_writes_the_metrics_of_every_layer(tmp_path, capsys):
    import json

    from cli_helpers import run_cli

    out = tmp_path / "deep"
    code, text, err = run_cli(["ufm", "--layers", "3", "--activation", "linear", "--classes",
                               "3", "--dim", "4", "--per-class", "2", "--seeds", "2",
                               "--steps", "2000", "--threads", "1", "--out", out], capsys)
    assert code == 0, err
    document = json.loads((out / "ufm.json").read_text())
    assert [row["layer"] for row in document["layers"]] == [1, 2, 3]
    assert all(row["nc1"] <= 1e-3 for row in document["layers"])
    assert document["config"]["layers"] == 3 and document["config"]["loss"] == "mse"
    assert "collapse metrics of each layer" in text
    assert all(run["certified"] and run["kinks"] == 0 for run in document["runs"])


def test_nclab_ufm_layers_anneal_reaches_the_json(tmp_path, capsys):
    import json

    from cli_helpers import run_cli

    out = tmp_path / "relu"
    code, text, err = run_cli(["ufm", "--layers", "2", "--anneal", "2", "--classes", "2",
                               "--dim", "3", "--per-class", "2", "--seeds", "2", "--steps",
                               "600", "--threads", "1", "--out", out], capsys)
    assert code == 0, err
    document = json.loads((out / "ufm.json").read_text())
    assert document["anneal"] == 2 and document["widths"] == [0.1, 0.01]
    assert [row["layer"] for row in document["layers"]] == [1, 2]
    assert {"kinks", "kink_slope", "certified"} <= set(document["runs"][0])
    assert "certified" in text


@pytest.mark.parametrize("args, message", [
    (["--layers", "0"], "--layers must be >= 1"),
    (["--layers", "2", "--imbalance", "step:0.1,2"], "--imbalance: not available with --layers"),
    (["--layers", "2", "--loss", "ce"], "squared error"),
    (["--layers", "2", "--activation", "tanh"], "activation must be one of relu, linear"),
    (["--layers", "2", "--anneal", "-1"], "--anneal"),
    (["--layers", "2", "--anneal", "13"], "--anneal"),
    (["--layers", "2", "--anneal", "x"], "--anneal"),
    (["--anneal", "2"], "--anneal: only with --layers"),
])
def test_nclab_ufm_layers_refuses_bad_combinations_in_one_line(args, message, tmp_path, capsys):
    from cli_helpers import run_cli

    out = tmp_path / "none"
    code, _, err = run_cli(["ufm", *args, "--out", out], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()


def test_nclab_ufm_layers_says_when_the_outputs_vanish(tmp_path, capsys):
    import json

    from cli_helpers import run_cli

    out = tmp_path / "zero"
    code, text, err = run_cli(["ufm", "--layers", "3", "--lambda-w", "1", "--lambda-h", "1",
                               "--classes", "3", "--dim", "4", "--per-class", "2",
                               "--steps", "500", "--threads", "1", "--out", out], capsys)
    assert code == 0, err
    assert json.loads((out / "ufm.json").read_text())["vanishing"] is True
    assert "outputs of the best start vanish" in " ".join(text.split())


# --- the smoothed ReLU, the kink report, the annealed solve -----------------------------

def test_smooth_relu_is_c1_zero_below_and_within_half_width_of_relu():
    from nclab.ufm.deep import smooth_relu

    x = torch.linspace(-1, 1, 2001, dtype=torch.float64)
    width = 0.25
    y = smooth_relu(x, width).numpy()
    xs = x.numpy()
    brute = np.where(xs <= 0, 0.0, np.where(xs < width, xs**2 / (2 * width), xs - width / 2))
    assert np.allclose(y, brute, atol=1e-15, rtol=0)
    assert np.all(np.abs(y - np.maximum(xs, 0)) <= width / 2 + 1e-15)
    slope = np.diff(y) / np.diff(xs)  # continuous slope: no jump above one grid step's change
    assert np.max(np.abs(np.diff(slope))) <= np.diff(xs)[0] / width + 1e-9
    assert torch.equal(smooth_relu(x, 0.0), torch.relu(x))


def test_kink_report_counts_kinks_and_finds_a_negative_slope():
    from nclab.ufm.deep import kink_report

    ufm = DeepUFM(2, 2, 1, layers=2, activation="relu", lambda_w=1e-3, lambda_h=1e-3)
    # H_1 = I, W_1 = diag(1, 0): pre-activations (1, 0) and (0, 0): three at the kink
    h1 = torch.eye(2, dtype=torch.float64)[None]
    w1 = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    w2 = torch.eye(2, dtype=torch.float64)[None]
    kinks, slope = kink_report(ufm, (h1, w1, w2))
    assert int(kinks[0]) == 3
    # brute force: pushing h_2 of sample 2 (class 1, target 1, output 0) up lowers f
    # with slope -(1 - 0) / N = -0.5 (the weight decay does not depend on h)
    assert float(slope[0]) == pytest.approx(-0.5, abs=1e-12)
    assert int(kink_report(DeepUFM(2, 2, 1, layers=2, activation="linear"),
                           (h1, w1, w2))[0][0]) == 0


def test_annealed_relu_solve_reaches_deep_collapse_where_plain_descent_stalls():
    # K = 4, L = 3: the plain descent from these starts ends on kinks above the DNC value
    ufm = DeepUFM(4, 6, 2, layers=3, activation="relu", lambda_w=5e-3, lambda_h=5e-3)
    from nclab.ufm.deep_lowrank import dnc_objective

    dnc = dnc_objective(4, 3, lambda_w=5e-3, lambda_h=5e-3, per_class=2).objective
    annealed = ufm.solve(range(4), steps=2500, anneal=4)
    assert annealed.widths == [1e-1, 1e-2, 1e-3, 1e-4]
    assert annealed.trace.objective.shape == (annealed.trace.iterations + 1, 4)
    best = annealed.best
    assert float(annealed.objective[best]) == pytest.approx(dnc, abs=1e-6)
    assert all(m.nc1 <= 1e-3 for m in annealed.layer_metrics(best))
    assert bool(annealed.certified(1e-5)[best])
    plain = ufm.solve(range(4), steps=2500, anneal=0, method="descent")
    assert plain.widths == []
    assert float(plain.objective.min()) > dnc + 1e-4


def test_lbfgs_matches_scipy_on_a_batch_of_smooth_problems():
    from scipy.optimize import minimize

    from nclab.ufm.lbfgs import lbfgs

    # f_s(x) = sum_i (x_i - c_si)^4 / 4 + (x . A_s x) / 2 + b_s . x, strictly convex
    rng = np.random.default_rng(0)
    size, dim = 3, 5
    mats = [m @ m.T + np.eye(dim) for m in rng.standard_normal((size, dim, dim))]
    shifts, linear = rng.standard_normal((size, dim)), rng.standard_normal((size, dim))

    def brute(x, s):
        value = np.sum((x - shifts[s]) ** 4) / 4 + x @ mats[s] @ x / 2 + linear[s] @ x
        return value, (x - shifts[s]) ** 3 + mats[s] @ x + linear[s]

    class Quartic:
        def evaluate(self, params):
            x = params[0]
            values = [brute(row.numpy(), s) for s, row in enumerate(x)]
            return (torch.tensor([v for v, _ in values]),
                    (torch.tensor(np.stack([g for _, g in values])),))

    start = (torch.zeros(size, dim, dtype=torch.float64),)
    (end,), trace = lbfgs(Quartic(), start, steps=500, grad_tol=1e-12)
    assert trace.iterations < 500
    assert bool((trace.objective[1:] <= trace.objective[:-1] + 1e-15).all())
    for s in range(size):
        reference = minimize(lambda x, s=s: brute(x, s), np.zeros(dim), jac=True,
                             method="BFGS", options={"gtol": 1e-12}).x
        assert np.allclose(end[s].numpy(), reference, atol=1e-8)


def test_refined_srg_point_is_a_smoothed_stationary_point_below_dnc():
    # K = 6 (r = 4), L = 4: the SRG candidate is below DNC; polished with smoothing it
    # falls further, stays of low rank (<= 4 < K) before the last ReLU, stationary at a
    # small width while the test at the true ReLU (relu'(0) = 0) fails on its kinks
    from nclab.ufm.deep import _forward  # noqa: PLC2701 (module-internal helper in a test)
    from nclab.ufm.deep_lowrank import candidate_params, dnc_objective, srg_shape

    ufm = DeepUFM(6, 6, 1, layers=4, lambda_w=4e-3, lambda_h=4e-3)
    start = candidate_params(srg_shape(4), 4, lambda_w=4e-3, lambda_h=4e-3)
    before = float(ufm.objective(start)[0])
    refined = ufm.refine(start, steps=1200, anneal=3, grad_tol=1e-9)
    after = float(refined.objective[0])
    dnc = dnc_objective(6, 4, lambda_w=4e-3, lambda_h=4e-3).objective
    assert after < before < dnc
    assert bool(refined.certified(1e-6, smoothed=True)[0])
    labels = refined.labels.numpy()
    params = [p[0].numpy() for p in refined.params]
    assert after == pytest.approx(brute_objective(params, labels, "relu", 4e-3, 4e-3),
                                  rel=1e-12)
    last_pre = _forward(refined.params, "relu")[1][-1][0].numpy()
    values = np.linalg.svd(last_pre, compute_uv=False)
    assert int((values > 1e-6 * values[0]).sum()) <= 4  # DNC: 6


def test_bad_method_is_one_line():
    with pytest.raises(NCInputError) as error:
        DeepUFM(3, 4, 2).solve([0], steps=1, method="newton")
    assert "method" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("anneal", [-1, 13, 2.5, True, "4"])
def test_bad_anneal_is_one_line(anneal):
    ufm = DeepUFM(3, 4, 2)
    with pytest.raises(NCInputError) as error:
        ufm.solve([0], steps=1, anneal=anneal)
    assert "anneal" in str(error.value) and "\n" not in str(error.value)


# --- DNC against the low-rank (SRG) candidate ------------------------------------------

def brute_candidate_objective(inner, head, layers, lam_w, lam_h, n):
    """Minimize f over the L + 1 scales of the candidate with a generic optimizer (scipy),
    f evaluated by the brute force above on the built point."""
    from scipy.optimize import minimize

    width, size = inner.shape
    labels = np.repeat(np.arange(size), n)

    def f(log_scales):
        x = np.exp(log_scales)
        blocks = [x[0] * np.repeat(inner, n, axis=1).T]
        blocks += [x[j] * np.eye(width) for j in range(1, layers - 1)]
        params = [*blocks, x[layers - 1] * head, x[layers] * np.eye(size)]
        return brute_objective(params, labels, "relu", lam_w, lam_h)

    best = min((minimize(f, np.full(layers + 1, start), method="Nelder-Mead",
                         options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 40000})
                for start in (0.0, -0.5)), key=lambda result: result.fun)
    return best.fun


@pytest.mark.parametrize("vertices, layers", [(4, 2), (4, 4), (5, 3)])
def test_candidate_objectives_match_direct_evaluation(vertices, layers):
    from nclab.ufm.deep_lowrank import (
        candidate_params,
        dnc_objective,
        dnc_shape,
        low_rank_objective,
        srg_shape,
    )

    classes = vertices * (vertices - 1) // 2
    options = {"lambda_w": 4e-3, "lambda_h": 6e-3, "per_class": 2}
    ufm = DeepUFM(classes, classes, 2, layers=layers, lambda_w=4e-3, lambda_h=6e-3)
    labels = ufm.labels().numpy()
    for shape, closed in ((dnc_shape(classes), dnc_objective(classes, layers, **options)),
                          (srg_shape(vertices), low_rank_objective(vertices, layers,
                                                                   **options))):
        params = candidate_params(shape, layers, **options)
        direct = brute_objective([p[0].numpy() for p in params], labels, "relu", 4e-3, 6e-3)
        assert closed.objective == pytest.approx(direct, rel=1e-12)
        assert closed.objective == pytest.approx(float(ufm.objective(params)[0]), rel=1e-12)
        # the closed form is the minimum over the scales: a generic optimizer finds no lower
        brute = brute_candidate_objective(*shape, layers, 4e-3, 6e-3, 2)
        assert closed.objective <= brute + 1e-10
        assert closed.objective == pytest.approx(brute, abs=1e-7)
        # relu(Y X) = I: orthogonal class means after the last ReLU, and DNC1 everywhere
        features = ufm.refine(params, steps=0).layer_metrics(0)
        assert all(m.nc1 <= 1e-20 for m in features)
    assert closed.rank == (vertices - 1 if vertices == 4 else vertices)


def test_srg_beats_dnc_exactly_where_the_closed_form_criterion_says():
    from nclab.ufm.deep_lowrank import dnc_objective, low_rank_objective

    for vertices in (3, 4, 5, 7):
        classes = vertices * (vertices - 1) // 2
        for layers in (2, 3, 4, 6):
            dnc = dnc_objective(classes, layers, lambda_w=4e-3, lambda_h=4e-3).objective
            srg = low_rank_objective(vertices, layers, lambda_w=4e-3, lambda_h=4e-3).objective
            # SRG wins iff K^2 r^(L-1) / 2 < K^(L+1)  <=>  r 2^(L-3) < (r - 1)^(L-2)
            assert (srg < dnc) == (vertices * 2.0 ** (layers - 3) < (vertices - 1) ** (layers - 2))


def test_dnc_point_is_a_critical_point_and_the_zero_point_past_heavy_decay():
    from nclab.ufm.deep_lowrank import candidate_params, dnc_objective, dnc_shape

    ufm = DeepUFM(3, 3, 1, layers=3, lambda_w=5e-3, lambda_h=5e-3)
    params = candidate_params(dnc_shape(3), 3, lambda_w=5e-3, lambda_h=5e-3)
    _, grads = ufm.evaluate(params)
    assert max(float(g.abs().max()) for g in grads) < 1e-12
    heavy = dnc_objective(3, 3, lambda_w=1.0, lambda_h=1.0)
    assert heavy.scale == 0.0 and heavy.objective == 0.5


@pytest.mark.parametrize("call", [
    lambda m: m.srg_shape(2), lambda m: m.dnc_shape(1),
    lambda m: m.low_rank_objective(4, 1, lambda_w=1e-3, lambda_h=1e-3),
    lambda m: m.low_rank_objective(4, 3, lambda_w=0.0, lambda_h=1e-3),
    lambda m: m.candidate_objective((np.eye(3), -np.eye(3)), 3, lambda_w=1e-3, lambda_h=1e-3),
    lambda m: m.candidate_objective((-np.eye(3), -np.eye(3)), 3, lambda_w=1e-3,
                                    lambda_h=1e-3),
    lambda m: m.candidate_params(m.srg_shape(4), 3, lambda_w=1e-3, lambda_h=1e-3, dim=5),
])
def test_bad_candidates_are_one_line(call):
    from nclab.ufm import deep_lowrank

    with pytest.raises(NCInputError) as error:
        call(deep_lowrank)
    assert "\n" not in str(error.value)
