"""track and features take batches of any shape: tuples, dicts, numpy, custom callables."""

import numpy as np
import pytest
import torch
from capture_helpers import assert_same_metrics
from docs_helpers import documented, numbers, run_documented
from torch import nn
from torch_threads import one_thread  # noqa: F401

import nclab
from nclab import NCInputError
from nclab.capture import features
from nclab.capture.batches import to_device

pytestmark = pytest.mark.usefixtures("one_thread")


class TwoInputs(nn.Module):
    """forward(x, scale): the second input matters."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 10), nn.Tanh())
        self.classifier = nn.Linear(10, 3)

    def forward(self, x, scale):
        return self.classifier(self.body(x * scale[:, None]))


def two_input_data(n=90, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + nn.functional.one_hot(y, 6)
    scale = torch.rand(n, generator=g) + 0.5
    return x, scale, y


def by_hand(model, x, scale, y):
    with torch.no_grad():
        h = model.body(x * scale[:, None])
    return nclab.measure(h, y, model.classifier.weight.detach(), model.classifier.bias.detach())


def chunks(n, size=32):
    return [slice(i, i + size) for i in range(0, n, size)]


def test_every_batch_form_gives_the_metrics_of_the_features_by_hand():
    torch.manual_seed(0)
    model = TwoInputs()
    x, scale, y = two_input_data()
    want = by_hand(model, x, scale, y)
    forms = {
        "tuple of inputs": [((x[s], scale[s]), y[s]) for s in chunks(90)],
        "dict of inputs": [({"x": x[s], "scale": scale[s]}, y[s]) for s in chunks(90)],
        "dict batch": [{"x": x[s], "scale": scale[s], "labels": y[s]} for s in chunks(90)],
        "numpy": [((x[s].numpy(), scale[s].numpy()), y[s].numpy()) for s in chunks(90)],
        "list batch with extras": [[(x[s], scale[s]), y[s], "extra"] for s in chunks(90)],
    }
    for form, loader in forms.items():
        assert_same_metrics(nclab.track(model, loader), want)
        assert form  # the loop names the form in the traceback on failure
    renamed = [{"x": x[s], "scale": scale[s], "target": y[s]} for s in chunks(90)]
    assert_same_metrics(nclab.track(model, renamed, label_key="target"), want)
    custom = [{"pair": (x[s], scale[s]), "y": y[s].tolist()} for s in chunks(90)]
    got = nclab.track(model, custom, forward=lambda m, b: m(*b["pair"]),
                      labels=lambda b: b["y"])
    assert_same_metrics(got, want)
    # the mask (here: scale) matters, so leaving it out would not pass unnoticed
    ones = torch.ones_like(scale)
    assert by_hand(model, x, ones, y).nc1 != pytest.approx(want.nc1, rel=1e-3)


def test_numpy_float64_inputs_take_the_model_dtype():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = np.random.default_rng(0).normal(size=(40, 4))  # float64
    y = np.arange(40) % 2
    got = features(model, [(x[:20], y[:20]), (x[20:], y[20:])])
    with torch.no_grad():
        want = model[:2](torch.from_numpy(x).float())
    torch.testing.assert_close(got.features, want)
    assert got.labels.tolist() == y.tolist()


def test_to_device_moves_nested_structures_and_keeps_their_types():
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    batch = {"ids": np.arange(3), "pair": Pair(torch.ones(2), [torch.zeros(1, dtype=torch.int64)]),
             "name": "x"}
    moved = to_device(batch, torch.device("cpu"), torch.bfloat16)
    assert moved["ids"].dtype == torch.int64  # integer tensors keep their dtype
    assert isinstance(moved["pair"], Pair) and moved["pair"].a.dtype == torch.bfloat16
    assert moved["pair"].b[0].dtype == torch.int64 and moved["name"] == "x"


def test_batches_that_cannot_be_read_are_named():
    model = TwoInputs()
    x, scale, y = two_input_data(8)
    with pytest.raises(NCInputError, match=r"the batch is a dict with keys \['input_ids', "
                                           r"'mask'\] but no 'labels' key; pass label_key= "
                                           r"or labels=\.\.\."):
        nclab.track(model, [{"input_ids": x, "mask": scale}])
    with pytest.raises(NCInputError, match=r"the batch is a tuple of 1 \(Tensor\)"):
        nclab.track(model, [(x,)])
    with pytest.raises(NCInputError, match=r"calling model\(\*\*\{'x', 'mask'\}\) failed .*"
                                           r"pass forward="):
        nclab.track(model, [{"x": x, "mask": scale, "labels": y}])
    with pytest.raises(NCInputError, match=r"inputs of the batch .* are a str"):
        nclab.track(model, [("text", y)])
    with pytest.raises(NCInputError, match="labels=... alone the inputs are unknown"):
        nclab.track(model, [x], labels=lambda b: y)
    with pytest.raises(NCInputError, match="the labels of the batch are a object"):
        nclab.track(model, [((x, scale), object())])


# ------------------------------------------------------------------ a HuggingFace model
def tiny_bert(num_labels=3, seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64,
                                     num_labels=num_labels)
    return transformers.BertForSequenceClassification(config).eval()


def padded_sentences(n=48, length=12, classes=3, seed=0):
    """Token ids whose class sets the first tokens; random lengths with padding 0."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    ids = torch.randint(5, 100, (n, length), generator=g)
    ids[:, 1] = 1 + y  # a class token
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return ids * mask, mask, y


def pooled_by_hand(model, ids, mask, y):
    """Hook the classifier's input ourselves and measure it with nclab.measure."""
    seen = []
    handle = model.classifier.register_forward_pre_hook(lambda _m, a: seen.append(a[0]))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    handle.remove()
    return nclab.measure(seen[0], y, model.classifier.weight.detach(),
                         model.classifier.bias.detach())


def test_a_huggingface_model_with_attention_masks_measures_its_pooled_features():
    model = tiny_bert()
    ids, mask, y = padded_sentences()
    want = pooled_by_hand(model, ids, mask, y)
    hf_batches = [{"input_ids": ids[s], "attention_mask": mask[s], "labels": y[s]}
                  for s in chunks(48, 16)]
    assert_same_metrics(nclab.track(model, hf_batches), want)
    positional = [((ids[s], mask[s]), y[s]) for s in chunks(48, 16)]
    assert_same_metrics(nclab.track(model, positional), want)
    tokenizer_like = [({"input_ids": ids[s], "attention_mask": mask[s]}, y[s])
                      for s in chunks(48, 16)]
    assert_same_metrics(nclab.track(model, tokenizer_like), want)
    # without the mask the padding is attended to: other features, other numbers
    unmasked = nclab.track(model, [(ids[s], y[s]) for s in chunks(48, 16)])
    assert unmasked.nc1 != pytest.approx(want.nc1, rel=1e-3)
    assert features(model, hf_batches).outputs.shape == (48, 3)  # the logits of the output


def test_the_documented_own_loop_runs_and_prints_what_the_docs_say(capsys):
    namespace = run_documented("in_your_training.md", "## Your own loop")
    printed = capsys.readouterr().out
    output = documented("in_your_training.md", "## Your own loop")[1]
    assert numbers(printed) == pytest.approx(numbers(output), rel=2e-3)
    model, measure = namespace["model"], namespace["measure"]
    x, y = measure.dataset.tensors
    with torch.no_grad():
        h = model[:4](x)
    want = nclab.measure(h, y, model[4].weight.detach(), model[4].bias.detach())
    assert namespace["metrics"].nc1 == pytest.approx(want.nc1, rel=1e-6)
    assert namespace["scalars"]["nc/nc1"] == namespace["metrics"].nc1
