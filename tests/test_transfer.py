"""Few-shot NCC episodes and their CDNV bound (definitions §11) against explicit loops."""

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from torch import nn

from nclab.core.errors import NCInputError
from nclab.transfer import few_shot, few_shot_model, ncc_bound


def gaussian(seed=0, classes=8, dim=5, per_class=12, spread=1.0, sizes=None):
    rng = np.random.default_rng(seed)
    sizes = sizes or [per_class] * classes
    centres = rng.normal(size=(classes, dim)) * 2.0
    labels = np.repeat(np.arange(classes), sizes)
    return centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels


def brute_cdnv(x, y, a, b):
    """(var_a + var_b) / (2 ||mu_a - mu_b||^2), population variances, by explicit loops."""
    def moments(c):
        rows = [x[i] for i in range(len(y)) if y[i] == c]
        mean = sum(rows) / len(rows)
        return mean, sum(float((r - mean) @ (r - mean)) for r in rows) / len(rows)
    (ma, va), (mb, vb) = moments(a), moments(b)
    return (va + vb) / (2 * float((ma - mb) @ (ma - mb)))


def brute_episodes(x, y, ways, shots, queries, episodes, seed):
    """The documented protocol, with explicit loops: numpy's PCG64 seeded [seed, k];
    per episode n classes, then k + q samples of each (the first k the support)."""
    rng = np.random.default_rng([seed, shots])
    classes = sorted(c for c in set(y.tolist()) if (y == c).sum() >= shots + queries)
    errors, cdnvs = [], []
    for _ in range(episodes):
        chosen = rng.choice(len(classes), size=ways, replace=False)
        drawn = [rng.choice(np.flatnonzero(y == classes[c]), size=shots + queries,
                            replace=False) for c in chosen]
        centres = [sum(x[i] for i in idx[:shots]) / shots for idx in drawn]
        wrong = total = 0
        for truth, idx in enumerate(drawn):
            for i in idx[shots:]:
                dists = [float((x[i] - c) @ (x[i] - c)) for c in centres]
                wrong += int(np.argmin(dists) != truth)
                total += 1
        errors.append(wrong / total)
        pairs = [brute_cdnv(x, y, classes[a], classes[b]) for a in chosen for b in chosen
                 if a != b]
        cdnvs.append(sum(pairs) / len(pairs))
    return np.array(errors), np.array(cdnvs), classes


@pytest.mark.parametrize("ways, shots, queries, sizes", [
    (3, 1, 2, None), (4, 2, 3, None), (2, 1, 1, [2, 5, 9, 2, 3, 30, 4, 7]),
])
def test_episodes_match_explicit_loops(ways, shots, queries, sizes):
    x, y = gaussian(sizes=sizes)
    (got,) = few_shot(x, y, ways=ways, shots=shots, queries=queries, episodes=25, seed=3)
    errors, cdnvs, classes = brute_episodes(x, y, ways, shots, queries, 25, 3)
    assert got.error == pytest.approx(errors.mean(), rel=1e-12, abs=1e-15)
    assert got.cdnv == pytest.approx(cdnvs.mean(), rel=1e-9)
    assert got.bound == pytest.approx(12 * (ways - 1) * (1 + 2 / shots) * cdnvs.mean(),
                                      rel=1e-9)
    half = 1.959963984540054 * errors.std(ddof=1) / np.sqrt(25)
    assert got.interval == pytest.approx((max(errors.mean() - half, 0),
                                          min(errors.mean() + half, 1)), abs=1e-12)
    assert got.num_classes == len(classes) and got.dim == 5
    everything = [brute_cdnv(x, y, a, b) for a in classes for b in classes if a != b]
    assert got.cdnv_all == pytest.approx(np.mean(everything), rel=1e-9)


def test_the_bound_holds_where_it_says_something():
    # tight classes: the bound is below 1, and the measured error below the bound
    x, y = gaussian(seed=1, classes=10, dim=8, per_class=30, spread=0.15)
    for result in few_shot(x, y, ways=5, shots=(1, 5), episodes=200):
        assert result.bound < 1
        assert result.interval[0] <= result.error <= result.bound


def test_seeded_episodes_repeat_and_other_seeds_differ():
    x, y = gaussian(spread=1.5)
    first = few_shot(x, y, ways=4, shots=(1, 3), queries=4, episodes=40, seed=0)
    again = few_shot(torch.from_numpy(x).float(), y, ways=4, shots=(1, 3), queries=4,
                     episodes=40, seed=0)
    other = few_shot(x, y, ways=4, shots=(1, 3), queries=4, episodes=40, seed=1)
    assert [r.error for r in first] == pytest.approx([r.error for r in again], abs=1e-12)
    assert [r.cdnv for r in first] != [r.cdnv for r in other]


def test_fewer_samples_than_dimensions_and_one_episode():
    x, y = gaussian(dim=40, classes=5, per_class=4)
    (result,) = few_shot(x, y, ways=5, shots=1, queries=3, episodes=1)
    errors, _, _ = brute_episodes(x, y, 5, 1, 3, 1, 0)
    assert result.error == errors[0] and result.interval == (errors[0], errors[0])


@pytest.mark.parametrize("options, message", [
    ({"ways": 1}, "ways must be >= 2"), ({"ways": 9}, "9 classes with at least"),
    ({"shots": []}, "shots is empty"), ({"shots": 0}, "shots"), ({"episodes": 0}, "episodes"),
    ({"seed": -1}, "seed"), ({"queries": 20}, "at least 21 samples"),
])
def test_bad_options_are_one_line(options, message):
    x, y = gaussian()
    with pytest.raises(NCInputError, match=message) as info:
        few_shot(x, y, **{"episodes": 5, **options})
    assert "\n" not in str(info.value)


def test_bad_arrays_are_one_line():
    x, y = gaussian()
    x[3, 1] = np.nan
    with pytest.raises(NCInputError, match="NaN"):
        few_shot(x, y)
    with pytest.raises(NCInputError):
        few_shot(x[:, 0], y)
    with pytest.raises(NCInputError):
        few_shot(np.ones((5, 2)), [0, 1])


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(5, 7), nn.Tanh())
        self.head = nn.Linear(7, 3)

    def forward(self, x):
        return self.head(self.body(x))


def test_from_a_model_equals_the_features_it_computes():
    x, y = gaussian(classes=6, per_class=10)
    model = Net().double()
    loader = [(torch.from_numpy(x[i:i + 16]), torch.from_numpy(y[i:i + 16]))
              for i in range(0, len(y), 16)]
    options = {"ways": 3, "shots": (1, 2), "queries": 3, "episodes": 20}
    got = few_shot_model(model, loader, layers=["body.0"], **options)
    assert list(got) == ["body.0", "head"]
    with torch.no_grad():
        hidden = model.body[0](torch.from_numpy(x))
        feature = model.body(torch.from_numpy(x))
    for name, values in (("body.0", hidden), ("head", feature)):
        want = few_shot(values.numpy(), y, **options)
        assert [r.error for r in got[name]] == [r.error for r in want]
        assert [r.cdnv for r in got[name]] == pytest.approx([r.cdnv for r in want], rel=1e-9)
    assert few_shot_model(model, loader, **options)[0].dim == 7


def test_cli_writes_what_few_shot_gives(tmp_path, capsys):
    x, y = gaussian()
    np.savez(tmp_path / "novel.npz", features=x, labels=y)
    code, out, err = run_cli(["transfer", tmp_path / "novel.npz", "--ways", "3", "--shots",
                              "1,2", "--queries", "4", "--episodes", "30", "--seed", "2",
                              "--json", tmp_path / "t.json"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "t.json").read_text())
    want = few_shot(x, y, ways=3, shots=(1, 2), queries=4, episodes=30, seed=2)
    assert [r["shots"] for r in data["results"]] == [1, 2]
    for row, result in zip(data["results"], want, strict=True):
        assert row["error"] == pytest.approx(result.error)
        assert row["bound"] == pytest.approx(result.bound)
    assert "NCC error" in out


@pytest.mark.parametrize("extra, message", [
    (["--ways", "1"], "--ways"), (["--shots", "1,x"], "--shots"),
    (["--ways", "50"], "50 classes"),
])
def test_cli_bad_options_are_one_line(tmp_path, capsys, extra, message):
    x, y = gaussian()
    np.savez(tmp_path / "novel.npz", features=x, labels=y)
    code, _, err = run_cli(["transfer", tmp_path / "novel.npz", *extra, "--json",
                            tmp_path / "t.json"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "t.json").exists()


def test_ncc_bound_formula():
    assert ncc_bound(5, 1, 0.01) == pytest.approx(12 * 4 * 3 * 0.01)
