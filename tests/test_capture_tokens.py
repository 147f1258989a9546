"""Token-level labels: (batch, seq, d) features, ignore_index, HF's causal-LM shift."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from docs_helpers import documented, numbers, run_documented
from reference import reference_metrics
from torch import nn
from torch_threads import one_thread  # noqa: F401

import nclab
from nclab import NCInputError
from nclab.capture import Arrangement, Probe, collect, features
from nclab.core.stats import CollapseStats

pytestmark = pytest.mark.usefixtures("one_thread")
PAGE = "in_your_training.md"
#: Metrics that do not depend on how the classifier's argmax treats unseen classes.
MEAN_METRICS = ("nc1", "nc1_trace", "cdnv", "equinorm_means", "etf_error_means",
                "equiangularity_means", "maxangle_means")


class TokenTagger(nn.Module):
    """A label per token: embedding, a tanh layer, a linear head on every position."""

    def __init__(self, vocab=20, d=8, classes=5):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.body = nn.Sequential(nn.Linear(d, d), nn.Tanh())
        self.head = nn.Linear(d, classes)

    def forward(self, ids):
        return self.head(self.body(self.embed(ids)))


def tagged(n=24, s=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 20, (n, s), generator=g)
    labels = ids % 5
    labels[torch.rand(n, s, generator=g) < 0.3] = -100
    return ids, labels


def assert_reference(metrics, h, y, weight=None, bias=None, names=None):
    want = reference_metrics(h.double().numpy(), y.numpy(),
                             None if weight is None else weight.double().numpy(),
                             None if bias is None else bias.double().numpy())
    for name in names or want:
        assert getattr(metrics, name) == pytest.approx(want[name], rel=1e-6, abs=1e-9), name


def test_token_labels_are_flattened_and_ignored_positions_dropped():
    torch.manual_seed(0)
    model = TokenTagger()
    ids, labels = tagged()
    loader = [(ids[i:i + 8], labels[i:i + 8]) for i in range(0, 24, 8)]
    got = nclab.track(model, loader)
    with torch.no_grad():
        h = model.body(model.embed(ids)).reshape(-1, 8)
    keep = labels.reshape(-1) != -100
    assert got.num_samples == int(keep.sum()) < labels.numel()
    assert_reference(got, h[keep], labels.reshape(-1)[keep], model.head.weight.detach(),
                     model.head.bias.detach())
    # another ignore_index: class 4 is dropped and reported empty
    dropped = [(x, y.masked_fill(y == -100, 0)) for x, y in loader]
    fours = nclab.track(model, dropped, ignore_index=4)
    assert fours.empty_classes == (4,)
    with pytest.raises(NCInputError, match="labels must be >= 0; found -100"):
        nclab.track(model, loader, ignore_index=None)


def test_token_features_need_token_labels_and_the_shift_needs_tokens():
    model = TokenTagger()
    ids, labels = tagged(8)
    with pytest.raises(NCInputError, match=r"the input of layer 'head' has shape \(8, 7, 8\) "
                                           r"and the labels \(8,\)"):
        nclab.track(model, [(ids, labels[:, 0].clamp(min=0))])
    flat = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.raises(NCInputError, match=r"shift_labels=True needs labels of shape "
                                           r"\(batch, seq\)"):
        nclab.track(flat, [(torch.randn(9, 4), torch.arange(9) % 3)], shift_labels=True)


# ------------------------------------------------------------------ causal LM (GPT-2)
def tiny_gpt2(vocab, d=32, layers=2, seed=0):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    config = transformers.GPT2Config(n_layer=layers, n_embd=d, n_head=2, n_positions=32,
                                     vocab_size=vocab, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(config).eval()


def lm_batches(vocab, n=12, s=10, size=4, seed=0, used=None):
    """Right-padded dict batches; the tokens drawn from ``used`` (default: all)."""
    g = torch.Generator().manual_seed(seed)
    used = torch.arange(vocab) if used is None else torch.as_tensor(used)
    ids = used[torch.randint(0, len(used), (n, s), generator=g)]
    mask = (torch.arange(s) < torch.randint(4, s + 1, (n,), generator=g)[:, None]).long()
    labels = ids.masked_fill(mask == 0, -100)
    return [{"input_ids": ids[i:i + size], "attention_mask": mask[i:i + size],
             "labels": labels[i:i + size]} for i in range(0, n, size)]


def hand_shifted(model, loader):
    """The lm_head's inputs at positions 0..s-2 and the labels at 1..s-1, kept where the
    label is not -100, computed from HF's own hidden states."""
    hs, ys = [], []
    model.eval()  # a model built from a config starts in training mode (dropout)
    with torch.no_grad():
        for batch in loader:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True)
            h, y = out.hidden_states[-1][:, :-1], batch["labels"][:, 1:]
            hs.append(h[y != -100])
            ys.append(y[y != -100])
    return torch.cat(hs), torch.cat(ys)


def test_shift_labels_pairs_positions_exactly_as_the_huggingface_loss():
    model = tiny_gpt2(vocab=50)
    loader = lm_batches(50)
    got = features(model, loader, shift_labels=True)
    with torch.no_grad():  # HF shifts inside its loss; mean over the kept tokens per batch
        hf = [(model(**batch).loss, int((batch["labels"][:, 1:] != -100).sum()))
              for batch in loader]
    hf_mean = sum(loss * count for loss, count in hf) / sum(count for _, count in hf)
    assert F.cross_entropy(got.outputs, got.labels) == pytest.approx(float(hf_mean), rel=1e-5)
    h, y = hand_shifted(model, loader)
    torch.testing.assert_close(got.features, h)
    assert torch.equal(got.labels, y)
    # without the shift each position is paired with its own token: another loss
    unshifted = features(model, loader)
    assert F.cross_entropy(unshifted.outputs, unshifted.labels) != pytest.approx(
        float(hf_mean), rel=1e-3)


def test_a_vocabulary_of_50000_classes_stays_bounded_and_reports_empty_classes():
    vocab, d = 50_000, 8
    model = tiny_gpt2(vocab, d=d, layers=1)
    used = torch.linspace(0, vocab - 1, 24).long()  # 24 tokens across the vocabulary
    loader = lm_batches(vocab, n=8, s=16, size=4, used=used)
    got = nclab.track(model, loader, shift_labels=True, cache_bytes=0)
    h, y = hand_shifted(model, loader)
    present = torch.unique(y)
    assert got.num_classes == len(present) and got.num_samples == len(y)
    assert len(got.empty_classes) == vocab - len(present)
    assert set(got.empty_classes).isdisjoint(present.tolist())
    assert_reference(got, h, y, names=MEAN_METRICS)
    with torch.no_grad():  # the model's own prediction: argmax over the whole vocabulary
        accuracy = float((model.lm_head(h).argmax(1) == y).double().mean())
    assert got.accuracy == pytest.approx(accuracy)
    # the statistics hold O(C d + d^2) numbers, whatever the number of tokens
    sizes = []
    for batches in (loader[:1], loader):
        stats = collect(model, batches, lambda _: CollapseStats(vocab), [Probe(model, "lm_head")],
                        prepare=Arrangement(shift_labels=True))["lm_head"]
        sizes.append(sum(t.numel() for t in stats.state_dict().values()))
    assert sizes[0] == sizes[1] <= vocab * (d + 2) + d * d + 16


def test_the_documented_next_token_recipe_runs_and_prints_what_the_docs_say(capsys):
    heading = "## Token-level labels: next-token collapse of a causal LM"
    namespace = run_documented(PAGE, heading)  # the docs' own example, verbatim
    printed = capsys.readouterr().out
    output = documented(PAGE, heading)[1]
    assert numbers(printed) == pytest.approx(numbers(output), rel=2e-3)
    model, loader, metrics = namespace["model"], namespace["loader"], namespace["metrics"]
    h, y = hand_shifted(model, loader)
    assert_reference(metrics, h, y, names=MEAN_METRICS)
    assert metrics.num_samples == len(y) and np.isfinite(metrics.nc1)
