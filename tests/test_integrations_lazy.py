"""The core never needs an integration's library: ``import nclab`` (and the
integrations package, and the loggers module before a logger is made) import none."""

import json
import subprocess
import sys

from train_helpers import SRC

LIBRARIES = ("pytorch_lightning", "lightning", "transformers", "torchmetrics", "tensorboard",
             "torch.utils.tensorboard", "wandb", "mlflow", "accelerate")


def _imported_after(statement: str) -> list[str]:
    code = (f"import sys, json; {statement}; "
            f"print(json.dumps([m for m in {LIBRARIES!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": SRC, "PATH": ""}, timeout=120)
    return json.loads(out.stdout)


def test_import_nclab_imports_no_integration_library():
    assert _imported_after("import nclab; import nclab.integrations; "
                           "import nclab.integrations.loggers") == []


def test_the_check_sees_a_library_that_is_imported():
    assert _imported_after("import types; sys.modules['wandb'] = types.ModuleType('wandb')"
                           ) == ["wandb"]
