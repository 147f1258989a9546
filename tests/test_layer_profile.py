"""Layer profiles: inputs or outputs per layer, depth order, the figure and nclab profile."""

import json
import warnings

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from reference import reference_metrics
from torch import nn
from torch_threads import one_thread  # noqa: F401
from train_helpers import TINY, trained_model

import nclab
from nclab import NCInputError
from nclab.capture import profile

pytestmark = pytest.mark.usefixtures("one_thread")


class Backwards(nn.Module):
    """Modules declared in the reverse of the order the forward pass calls them."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(5, 3)
        self.late = nn.Sequential(nn.Linear(7, 5), nn.ReLU())
        self.early = nn.Sequential(nn.Linear(4, 7), nn.Tanh())

    def forward(self, x):
        return self.head(self.late(self.early(x)))


def data(n=90, d=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    return torch.randn(n, d, generator=g) + 2 * nn.functional.one_hot(y, d), y


def assert_reference(metrics, h, y):
    # float32 features: 1e-5 leaves room for rounding, a wrong layer or point is far off
    want = reference_metrics(h.double().numpy(), y.numpy())
    for name in ("nc1", "nc1_trace", "cdnv"):
        assert getattr(metrics, name) == pytest.approx(want[name], rel=1e-5), name


def test_layers_at_their_outputs_or_inputs_come_in_the_order_of_the_forward_calls():
    torch.manual_seed(0)
    model = Backwards()
    x, y = data()
    loader = [(x[:50], y[:50]), (x[50:], y[50:])]
    got = nclab.track(model, loader, "head", layers=["late", "early"])
    assert list(got) == ["early", "late", "head"]
    with torch.no_grad():
        early, late = model.early(x), model.late(model.early(x))
    assert_reference(got["early"], early, y)
    assert_reference(got["late"], late, y)
    mixed = profile(model, loader, {"late.0": "input", "early.0": "output"}, "head")
    assert mixed.names == ("early.0", "late.0", "head")
    assert mixed.points == ("output", "input", "input")
    with torch.no_grad():
        assert_reference(mixed.metrics[0], model.early[0](x), y)
    assert_reference(mixed.metrics[1], early, y)  # late.0's input is early's output
    rows = mixed.to_dict()["layers"]
    assert [row["name"] for row in rows] == ["early.0", "late.0", "head"]
    assert rows[1]["nc1"] == pytest.approx(mixed.metrics[1].nc1)
    with pytest.raises(NCInputError, match="the point must be one of input, output"):
        nclab.track(model, loader, "head", layers={"late": "middle"})


class SharedHead(nn.Module):
    """The classifier is applied twice (to two views), and a ReLU module is reused."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = self.act(self.body(x))
        return self.head(h) + self.head(self.act(h - 1))


def test_a_layer_called_twice_in_one_forward_pass_is_an_error():
    x, y = data(12)
    with pytest.raises(NCInputError, match=r"layer 'head' was called 2 times in one forward "
                                           r"pass"):
        nclab.track(SharedHead(), [(x, y)])
    with pytest.raises(NCInputError, match="layer 'act' was called 2 times"):
        nclab.track(SharedHead(), [(x, y)], classifier="head", layers=["act"])
    with pytest.raises(NCInputError, match="layer 'head' was called 2 times"):
        nclab.capture.features(SharedHead(), [(x, y)])


class AuxHead(nn.Module):
    """An auxiliary head with as many outputs as the classifier, declared after it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)
        self.aux = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.body(x)), self.aux(x)


def test_an_ambiguous_default_classifier_says_to_pass_classifier():
    x, y = data()
    model = AuxHead()
    with pytest.warns(UserWarning, match=r"taken to be 'aux'.* but head also has 3 outputs: "
                                         r"pass classifier="):
        nclab.track(model, [(x, y)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = nclab.track(model, [(x, y)], classifier="head")
    with torch.no_grad():
        assert_reference(named, model.body(x), y)


def test_the_profile_figure_is_a_png_with_one_point_per_layer(tmp_path):
    from matplotlib.image import imread

    from nclab.report.profile import profile_figure

    torch.manual_seed(1)
    model = Backwards()
    x, y = data()
    result = profile(model, [(x, y)], ["early", "late"], model.head)
    path = tmp_path / "profile.png"
    profile_figure(result, path, title="three layers")
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 500
    document = json.loads(json.dumps(result.to_dict()))
    profile_figure(document, tmp_path / "from_json.png")  # the JSON draws the same figure
    assert (tmp_path / "from_json.png").stat().st_size > 10_000
    with pytest.raises(NCInputError, match="no layers to draw"):
        profile_figure({"layers": []}, tmp_path / "empty.png")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from nclab.train import Trainer

    run_dir = tmp_path_factory.mktemp("run") / "tiny"
    with torch.random.fork_rng():
        torch.set_num_threads(1)
        Trainer(TINY, run_dir, progress=False).fit()
    return run_dir


def test_nclab_profile_measures_the_trained_checkpoint(trained_run, tmp_path, capsys):
    code, out, err = run_cli(["profile", trained_run, "--out", tmp_path / "p", "--threads", "1"],
                             capsys)
    assert code == 0, err
    assert "profile.png" in out
    document = json.loads((tmp_path / "p" / "profile.json").read_text())
    # the stages of the MLP (the last ReLU's output is the classifier's input)
    assert [row["name"] for row in document["layers"]] == ["body.2", "classifier"]
    assert document["epoch"] == TINY.epochs and document["split"] == "train"
    assert (tmp_path / "p" / "profile.png").stat().st_size > 10_000
    # the same numbers from the checkpoint loaded by hand
    model, splits = trained_model(trained_run)
    with torch.no_grad():
        hand = (model.body[:3](splits.train.x), model.body(splits.train.x))
    for row, h in zip(document["layers"], hand, strict=True):
        want = reference_metrics(h.double().numpy(), splits.train.y.numpy())
        assert row["nc1"] == pytest.approx(want["nc1"], rel=1e-6)
        assert row["nc1_trace"] == pytest.approx(want["nc1_trace"], rel=1e-6)
    assert np.isfinite([row["nc1"] for row in document["layers"]]).all()


def test_nclab_profile_refuses_bad_input_before_writing(trained_run, tmp_path, capsys):
    out = tmp_path / "none"
    code, _, err = run_cli(["profile", tmp_path, "--out", out], capsys)
    assert code == 2 and "has no config.json" in err
    code, _, err = run_cli(["profile", trained_run, "--out", out, "--layer", "body.9"], capsys)
    assert code == 2 and "no layer named 'body.9'" in err
    code, _, err = run_cli(["profile", trained_run, "--out", out, "--split", "val"], capsys)
    assert code == 2 and "split must be one of train, test" in err
    assert not out.exists()


def test_the_report_of_a_profiled_run_shows_the_profile(trained_run, tmp_path, capsys):
    from nclab.report import write_report

    assert run_cli(["profile", trained_run, "--threads", "1"], capsys)[0] == 0
    page = write_report(trained_run, tmp_path / "report").read_text()
    assert "Collapse layer by layer" in page and "src='profile.png'" in page
    assert (tmp_path / "report" / "profile.png").read_bytes() == \
        (trained_run / "profile.png").read_bytes()
