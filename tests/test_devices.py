"""One device check (``nclab.core.distributed.resolve_device``) for the Python API, the
trainer and every command's ``--device``: the same verdict, the same words."""

import pytest
import torch
from cli_helpers import run_cli

from nclab.core.distributed import resolve_device
from nclab.core.errors import NCInputError
from nclab.train import TrainConfig, Trainer

REFUSED = ["tpu9", "meta", "xpu", "cuda:99", *([] if torch.cuda.is_available() else ["cuda"])]


@pytest.mark.parametrize("name", REFUSED)
def test_the_command_line_refuses_a_device_with_the_python_message(name, tmp_path, capsys,
                                                                   monkeypatch):
    with pytest.raises(NCInputError) as info:
        resolve_device(name)
    message = str(info.value)
    assert message.startswith(f"device '{name}'") and "\n" not in message
    monkeypatch.chdir(tmp_path)
    for command in (["train"], ["ufm"]):
        code, _, err = run_cli([*command, "--device", name], capsys)
        assert code == 2 and err == f"error: --{message}\n", err
    assert list(tmp_path.iterdir()) == []


def test_the_trainer_refuses_meta_before_writing(tmp_path):
    # a device torch can allocate on but nclab cannot train on
    with pytest.raises(NCInputError, match="device 'meta': nclab computes on cpu, cuda or mps"):
        Trainer(TrainConfig(dataset="gaussian"), tmp_path / "run", device="meta").fit()
    assert not (tmp_path / "run").exists()


def test_auto_is_this_process_gpu_else_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)


def test_cuda_index_and_mps_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(NCInputError, match=r"'cuda:2': this machine has 2 CUDA device\(s\), "
                                           r"cuda:0..cuda:1"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(NCInputError, match="--device 'mps': MPS is not available here"):
        resolve_device("mps", "--device")
