"""The task registry: every task runs from its defaults; options are typed and checked."""

import json
import warnings
from dataclasses import dataclass, fields

import numpy as np
import pytest
from torch_threads import one_thread  # noqa: F401

from nclab.core.errors import NCInputError
from nclab.data import CLASSIFICATION, REGRESSION
from nclab.train import EVALUATORS, TASKS, TrainConfig, Trainer, make_task
from nclab.train.task import TaskOptions

pytestmark = pytest.mark.usefixtures("one_thread")

#: A tiny data set of each kind: 10 fine classes (the coarse task's default pairs them
#: into 5 superclasses) x 4 samples, and a 40-sample teacher.
TINY_DATA = {
    CLASSIFICATION: {"dataset": "hierarchical", "dataset_options": {
        "dim": 8, "train_per_class": 4, "test_per_class": 2}},
    REGRESSION: {"dataset": "teacher", "dataset_options": {
        "num_samples": 40, "input_dim": 4, "target_dim": 2}, "loss": "mse"},
}
#: One column each default evaluator writes into a logged row.
EVALUATOR_COLUMN = {"collapse": "train_nc1", "nrc": "train_nrc1", "recovery": "fine_nc1",
                    "layers": "train_layer_nc1"}


def tiny_config(name: str, **changes) -> TrainConfig:
    """The task ``name`` with every setting of its own at its default, on tiny data."""
    settings = {**TINY_DATA[TASKS[name].data_kind], **changes}
    return TrainConfig(task=name, model="mlp", model_options={"widths": [8]}, epochs=1,
                       batch_size=16, log_points=1, **settings)


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_runs_one_epoch_from_its_defaults(name, tmp_path):
    task = make_task(tiny_config(name))
    assert task.options == task.options_type()  # no options given: every default
    assert task.default_evaluators and set(task.default_evaluators) <= set(EVALUATORS)
    summary = Trainer(tiny_config(name), tmp_path, progress=False).fit()
    assert summary["epochs_done"] == 1
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1]
    for evaluator in task.default_evaluators:
        value = rows[0][EVALUATOR_COLUMN[evaluator]]
        assert value is not None and np.isfinite(value)


def test_every_evaluator_is_covered_by_the_column_table():
    assert set(EVALUATOR_COLUMN) == set(EVALUATORS)


def test_regression_task_from_a_plain_config():
    task = make_task(TrainConfig(task="regression", dataset="teacher", loss="mse"))
    assert task.evaluator_names == ("nrc",) and task.options.head_bias is True
    assert make_task(TrainConfig()).evaluator_names == ("collapse",)


@pytest.mark.parametrize("name", list(TASKS))
def test_unknown_options_and_wrong_types_are_one_line(name):
    with pytest.raises(NCInputError) as err:
        make_task(tiny_config(name, options={"bogus": 1}))
    assert f"{name} has no option bogus; it accepts: " in str(err.value)
    for field in fields(TASKS[name].options_type):
        # a list of dicts is none of the option types (bool, int, float, text, list of
        # ints, dict, None)
        with pytest.raises(NCInputError, match=f"{name} option {field.name} must be ") as err:
            make_task(tiny_config(name, options={field.name: [{}]}))
        assert "\n" not in str(err.value)


def test_options_read_back_from_json_and_ints_are_floats():
    config = tiny_config("normalized", options={"tau": 3})
    back = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    task = make_task(back)
    assert task.options.tau == 3.0 and isinstance(task.options.tau, float)
    coarse = make_task(tiny_config("coarse", options={"coarse_pairing": "explicit",
                                                      "coarse_map": {"0": 0, "1": 1}}))
    assert coarse.options.coarse_map == {"0": 0, "1": 1}


@dataclass(frozen=True)
class ExampleOptions(TaskOptions):
    flag: bool = False
    count: int = 2
    scale: float = 1.0
    name: str | None = None
    widths: list[int] | None = None


@pytest.mark.parametrize("values, message", [
    ({"flag": 1}, "example option flag must be true or false; got 1"),
    ({"count": 2.0}, "example option count must be an integer; got 2.0"),
    ({"count": True}, "example option count must be an integer; got True"),
    ({"scale": "1"}, "example option scale must be a finite number; got '1'"),
    ({"name": 3}, "example option name must be text or none; got 3"),
    ({"widths": [1, "2"]},
     "example option widths must be a list of integers or none; got [1, '2']"),
    ({"size": 1, "colour": 2}, "example has no option colour, size; it accepts: flag, count"),
])
def test_typed_options_refuse_what_does_not_fit(values, message):
    with pytest.raises(NCInputError) as err:
        ExampleOptions.parse(values, "example")
    assert message in str(err.value)


def test_typed_options_accept_what_fits():
    parsed = ExampleOptions.parse({"flag": True, "count": 3, "scale": 2, "widths": [4, 5]},
                                  "example")
    assert parsed == ExampleOptions(True, 3, 2.0, None, [4, 5])
    assert parsed.to_dict() == {"flag": True, "count": 3, "scale": 2.0, "name": None,
                                "widths": [4, 5]}


def test_the_old_npz_name_still_loads_with_a_warning(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "set.npz"
    np.savez(path, x=rng.normal(size=(20, 3)).astype(np.float32), y=np.arange(20) % 2)
    new = make_task(tiny_config("classification", dataset="npz_labels", root=str(path),
                                dataset_options={})).load_data()
    with pytest.warns(FutureWarning, match="'npz' is renamed 'npz_labels'"):
        old = make_task(tiny_config("classification", dataset="npz", root=str(path),
                                    dataset_options={})).load_data()
    assert bool((old.train.x == new.train.x).all()) and old.num_classes == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_task(tiny_config("classification", dataset="npz_labels", root=str(path),
                              dataset_options={}))


def test_an_evaluator_of_the_other_kind_is_refused():
    with pytest.raises(NCInputError, match="'nrc' evaluator needs real targets"):
        make_task(tiny_config("classification", evaluators=("nrc",)))
    with pytest.raises(NCInputError, match="'collapse' evaluator needs class labels"):
        make_task(tiny_config("regression", evaluators=("collapse",)))


def test_a_data_set_of_the_other_kind_is_refused():
    with pytest.raises(NCInputError, match="unknown dataset 'teacher' for classification"):
        make_task(tiny_config("classification", dataset="teacher"))
    with pytest.raises(NCInputError, match="unknown dataset 'hierarchical' for regression"):
        make_task(tiny_config("regression", dataset="hierarchical"))


def test_option_texts_convert_to_the_annotated_types_from_python():
    from nclab.cli.parsing import options_from_text
    from nclab.train.config import Setting, parse_list, parse_number
    from nclab.train.tasks import option_types

    config = TrainConfig(dataset="gaussian", task="coarse")
    assert options_from_text(config, "dataset_options", ["num_classes=3", "dim=4"]) == {
        "num_classes": 3, "dim": 4}
    assert options_from_text(config, "model_options", ["widths=[8, 4]", "batch_norm=yes"]) == {
        "widths": [8, 4], "batch_norm": True}
    assert options_from_text(config, "options", ["num_coarse=none"]) == {"num_coarse": None}
    owner, hints = option_types(config, "options")
    assert owner == "task 'coarse'" and "num_coarse" in hints
    with pytest.raises(NCInputError, match="dataset_options num_classes=abc: dataset "
                                           "'gaussian' takes an integer for num_classes"):
        options_from_text(config, "dataset_options", ["num_classes=abc"])
    with pytest.raises(NCInputError, match="--model-opt: model 'mlp' has no option depth"):
        options_from_text(config, "model_options", ["depth=3"], "--model-opt")
    rule = Setting(help="", low=0, high=1, high_open=True)
    assert parse_number(" 0.5 ", float, rule, "momentum") == 0.5
    with pytest.raises(NCInputError, match=r"momentum must lie in \[0, 1\); got 1.0"):
        parse_number("1", float, rule, "momentum")
    with pytest.raises(NCInputError, match="momentum must be a finite number"):
        parse_number("inf", float, rule, "momentum")
    assert parse_list("0.1, 0.5", float, "milestones", rule) == (0.1, 0.5)
    with pytest.raises(NCInputError, match="milestones takes finite values in"):
        parse_list("0.1,nan", float, "milestones", rule)
