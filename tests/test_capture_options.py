"""CaptureOptions: the capture keywords in one object, checked once, equal to the keywords."""

import dataclasses

import numpy as np
import pytest
import torch
from capture_helpers import assert_same_metrics
from torch import nn

import nclab
from nclab.capture import Arrangement, BatchFormat, CaptureOptions, features
from nclab.core.errors import NCInputError
from nclab.ood import evaluate_model
from nclab.transfer import few_shot_model

#: The options of the equivalence tests: all away from their defaults.
KEYWORDS = {"label_key": "target", "ignore_index": -1, "shift_labels": True, "device": "cpu"}


def token_model_and_loader():
    """An embedding + linear head over dict batches of token ids and unshifted labels."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(11, 6), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 11, (8, 7), generator=g)
    labels = torch.randint(0, 3, (8, 7), generator=g)
    labels[0, :3] = -1  # ignored positions
    loader = [{"input": ids[:4], "target": labels[:4]}, {"input": ids[4:], "target": labels[4:]}]
    return model, loader, ids, labels


def brute_rows(model, ids, labels):
    """Float64 rows by hand: the embedding at t paired with the label at t + 1, -1 dropped."""
    table = model[0].weight.detach().to(torch.float64)
    rows, kept = [], []
    for i in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if int(labels[i, t + 1]) != -1:
                rows.append(table[int(ids[i, t])])
                kept.append(int(labels[i, t + 1]))
    return torch.stack(rows), torch.tensor(kept)


@pytest.mark.parametrize(("options", "field"), [
    ({"spatial": "max"}, "spatial"),
    ({"label_key": 3}, "label_key"),
    ({"forward": 5}, "forward"),
    ({"labels": "y"}, "labels"),
    ({"ignore_index": 1.5}, "ignore_index"),
    ({"ignore_index": True}, "ignore_index"),
    ({"shift_labels": "yes"}, "shift_labels"),
    ({"device": "nonsense"}, "device"),
    ({"device": 2.5}, "device"),
])
def test_bad_options_are_refused_in_one_line(options, field):
    with pytest.raises(NCInputError, match=field) as caught:
        CaptureOptions(**options)
    assert "\n" not in str(caught.value)


def test_a_bad_device_keyword_is_one_line_before_any_batch():
    model, loader, _, _ = token_model_and_loader()
    with pytest.raises(NCInputError, match="device 'nonsense'"):  # was torch's RuntimeError
        nclab.track(model, loader, device="nonsense", label_key="target")


def test_the_options_are_frozen_and_give_collects_keywords():
    options = CaptureOptions(device="cpu", spatial="flatten", ignore_index=np.int64(-1),
                             shift_labels=np.bool_(True))
    assert options.device == torch.device("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.spatial = "mean"  # type: ignore[misc]
    run = options.collect_kwargs()
    assert run["device"] == torch.device("cpu")
    assert run["batch_format"] == BatchFormat("labels", None, None)
    assert run["prepare"] == Arrangement("flatten", -1, True)
    assert CaptureOptions().collect_kwargs()["device"] is None  # the model's device


def test_the_object_and_the_keywords_give_the_same_features():
    model, loader, ids, labels = token_model_and_loader()
    by_keywords = features(model, loader, **KEYWORDS)
    by_object = features(model, loader, capture=CaptureOptions(**KEYWORDS))
    want_x, want_y = brute_rows(model, ids, labels)
    for got in (by_keywords, by_object):
        torch.testing.assert_close(got.features.to(torch.float64), want_x, rtol=1e-6, atol=0)
        assert torch.equal(got.labels, want_y)


def test_the_object_and_the_keywords_measure_the_same():
    model, loader, _, _ = token_model_and_loader()
    capture = CaptureOptions(**KEYWORDS)
    assert_same_metrics(nclab.track(model, loader, capture=capture),
                        nclab.track(model, loader, **KEYWORDS), rel=1e-12)
    episodes = {"ways": 2, "shots": 1, "queries": 1, "episodes": 4}
    assert few_shot_model(model, loader, capture=capture, **episodes) == \
        few_shot_model(model, loader, **KEYWORDS, **episodes)
    ood = [{"input": torch.randint(0, 11, (3, 7)), "target": torch.zeros(3, 7).long()}]
    by_object = evaluate_model(model, loader, {"far": ood}, capture=capture)
    by_keywords = evaluate_model(model, loader, {"far": ood}, **KEYWORDS)
    assert by_object.to_dict() == by_keywords.to_dict()
    assert by_object.num_id == 6 * 8 - 2  # 7 tokens shifted to 6, two labels of -1 dropped


def test_a_conflicting_keyword_is_refused_and_an_agreeing_one_accepted():
    model, loader, _, _ = token_model_and_loader()
    capture = CaptureOptions(**KEYWORDS)
    with pytest.raises(NCInputError, match="label_key='y' conflicts") as caught:
        nclab.track(model, loader, capture=capture, label_key="y")
    assert "\n" not in str(caught.value)
    with pytest.raises(NCInputError, match="ignore_index=None conflicts"):
        few_shot_model(model, loader, capture=capture, ignore_index=None)
    with pytest.raises(NCInputError, match="capture must be a CaptureOptions"):
        evaluate_model(model, loader, {"far": loader}, capture=KEYWORDS)
    agreeing = features(model, loader, capture=capture, label_key="target", device="cpu")
    assert agreeing.features.shape[0] == 6 * 8 - 2
