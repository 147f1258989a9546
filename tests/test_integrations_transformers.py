"""The HF TrainerCallback logs exactly what nclab.track gives on the trained model: a
sequence classifier on dict batches with attention masks, and a causal LM's
next-token collapse. Tiny random-init models built from configs (no download)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from docs_helpers import documented, numbers, run_documented
from integration_helpers import assert_same_values
from torch.utils.data import DataLoader, Dataset
from torch_threads import one_thread  # noqa: F401

import nclab
from nclab import NCInputError

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

from nclab.integrations.transformers import CollapseCallback  # noqa: E402

SEQ, VOCAB = 10, 24


class Sentences(Dataset):
    """Token sequences whose class sets the token range, right-padded to SEQ: the
    attention mask matters."""

    def __init__(self, samples: int = 36, classes: int = 3, causal: bool = False) -> None:
        gen = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(samples):
            label, length = i % classes, 4 + i % (SEQ - 3)
            ids = torch.zeros(SEQ, dtype=torch.long)
            ids[:length] = 1 + label * 7 + torch.randint(0, 7, (length,), generator=gen)
            mask = (torch.arange(SEQ) < length).long()
            target = torch.where(mask.bool(), ids, -100) if causal else label
            self.items.append({"input_ids": ids, "attention_mask": mask, "labels": target})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def _trainer_run(model, dataset, tmp_path, callbacks):
    """One epoch of ``transformers.Trainer`` (which needs accelerate)."""
    pytest.importorskip("accelerate")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=8,
        per_device_eval_batch_size=16, learning_rate=1e-2, report_to=[], save_strategy="no",
        logging_strategy="no", disable_tqdm=True, use_cpu=True, seed=0)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset,
                                   data_collator=transformers.default_data_collator)
    for make in callbacks:
        trainer.add_callback(make(trainer))
    trainer.train()
    return trainer.state, trainer.callback_handler.callbacks


def _hooks_run(model, dataset, tmp_path, callbacks):
    """One epoch of AdamW in a plain loop, with transformers' own CallbackHandler,
    TrainerState and TrainerControl calling the callbacks where Trainer calls them."""
    from transformers.trainer_callback import CallbackHandler, TrainerControl, TrainerState

    args = SimpleNamespace(world_size=1, process_index=0, per_device_eval_batch_size=16)
    loader = DataLoader(dataset, batch_size=8, shuffle=True,
                        collate_fn=transformers.default_data_collator)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    handler = CallbackHandler([make(None) for make in callbacks], model, None, optimizer, None)
    handler.train_dataloader = loader
    state, control = TrainerState(), TrainerControl()
    handler.on_train_begin(args, state, control)
    model.train()
    for batch in loader:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        state.global_step += 1
    state.epoch = 1.0
    handler.on_epoch_end(args, state, control)
    return state, handler.callbacks


RUNS = {"trainer": _trainer_run, "hooks": _hooks_run}


def _logged(state, prefix: str) -> dict[str, float]:
    rows = [row for row in state.log_history if any(k.startswith(prefix) for k in row)]
    assert len(rows) == 1 and rows[0]["epoch"] == 1
    return {k: v for k, v in rows[0].items() if k.startswith(prefix)}


def _expected(model, dataset, prefix: str, **options) -> dict[str, float]:
    # the callback's batches (per_device_eval_batch_size): nc1 of float32 features with
    # C > d + 1 is ill-conditioned enough to move by 1e-6 with another batching
    loader = DataLoader(dataset, batch_size=16, collate_fn=transformers.default_data_collator)
    metrics = nclab.track(model, loader, **options)
    return {k: v for k, v in metrics.scalars(prefix).items() if math.isfinite(v)}


@pytest.mark.parametrize("run", list(RUNS))
def test_sequence_classifier_with_attention_masks(tmp_path, run):
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=SEQ, num_labels=3)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    dataset = Sentences()
    state, _ = RUNS[run](model, dataset, tmp_path, [
        lambda trainer: CollapseCallback(trainer),            # through trainer.log
        lambda trainer: CollapseCallback(prefix="unbound/"),  # straight into log_history
    ])
    expected = _expected(model, dataset, "nc/")
    assert "nc/ncc_mismatch" in expected
    assert_same_values(_logged(state, "nc/"), expected)
    assert_same_values(_logged(state, "unbound/"),
                       {k.replace("nc/", "unbound/"): v for k, v in expected.items()})
    # the mask matters: without it the padding changes the features
    unmasked = [{"input_ids": item["input_ids"], "labels": item["labels"]}
                for item in dataset.items]
    assert _expected(model, unmasked, "nc/")["nc/nc1"] != pytest.approx(expected["nc/nc1"])


@pytest.mark.parametrize("run", list(RUNS))
def test_causal_lm_next_token_collapse(tmp_path, run):
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=16,
                                     n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    dataset = Sentences(causal=True)
    state, callbacks = RUNS[run](model, dataset, tmp_path,
                                 [lambda trainer: CollapseCallback(trainer, shift_labels=True)])
    expected = _expected(model, dataset, "nc/", shift_labels=True)
    assert_same_values(_logged(state, "nc/"), expected)
    # every position but the last of each sequence has a next token to predict
    positions = sum(int(item["attention_mask"].sum()) - 1 for item in dataset.items)
    assert callbacks[-1].metrics.num_samples == positions


def test_bad_every_n_epochs_is_one_clear_error():
    with pytest.raises(NCInputError, match="every_n_epochs"):
        CollapseCallback(every_n_epochs=0)


def test_the_documented_example_prints_what_the_docs_say(tmp_path, monkeypatch, capsys):
    pytest.importorskip("accelerate")
    monkeypatch.chdir(tmp_path)  # its TrainingArguments write into the working directory
    namespace = run_documented("in_your_training.md", "## HF Trainer")
    # the Trainer prints its logs too; the example's own lines come last
    printed = capsys.readouterr().out.strip().splitlines()[-3:]
    shown = documented("in_your_training.md", "## HF Trainer")[1]
    assert numbers("\n".join(printed)) == pytest.approx(numbers(shown), rel=2e-3)
    trainer = namespace["trainer"]
    logged = [row["nc/nc1"] for row in trainer.state.log_history if "nc/nc1" in row]
    assert len(logged) == 3
    loader = DataLoader(namespace["Sentences"](),
                        batch_size=trainer.args.per_device_eval_batch_size,
                        collate_fn=transformers.default_data_collator)
    assert logged[-1] == pytest.approx(nclab.track(trainer.model, loader).nc1, rel=1e-6)
