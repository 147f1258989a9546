"""``nclab demo``: neural collapse on MNIST-1D in a few minutes on a laptop CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from nclab.cli.app import app, console
from nclab.cli.options import ConfigChanges, Runtime, runtime_options, training_options
from nclab.cli.train import OUT_HELP, print_summary, run_training
from nclab.runs import RunDir
from nclab.studies.demo import DEMO_CONFIG, DEMO_RUN_DIR


@app.command("demo")
@training_options(DEMO_CONFIG, exclude=("task",))
@runtime_options()
def demo_command(
    *,
    changes: ConfigChanges,
    runtime: Runtime,
    out: Path = typer.Option(Path(DEMO_RUN_DIR), "--out", help=OUT_HELP),
) -> None:
    """Train the demo network on MNIST-1D into the terminal phase, then write its report.

    An interrupted demo continues from its checkpoint when run again; a finished one is
    shown again, not retrained.
    """
    config = changes.apply(DEMO_CONFIG)
    run = RunDir(out)
    summary = run.read_summary()
    if run.read_config() == config.to_dict() and summary is not None \
            and summary.get("epochs_done") == config.epochs:
        console.print(f"{out} holds this finished demo run: its result (to train again, "
                      f"remove {out} or pass another --out)", highlight=False,
                      soft_wrap=True)
        print_summary(summary)
        console.print(f"report: {out / 'report.html'}", highlight=False, soft_wrap=True)
        return
    console.print(f"nclab demo: MNIST-1D ({config.per_class} training samples per class), "
                  f"model {config.model}, {config.loss.upper()} loss, "
                  f"{config.epochs} epochs of SGD (lr {config.lr}, momentum "
                  f"{config.momentum}, weight decay {config.weight_decay}) -> {out}",
                  highlight=False)
    run_training(config, out, resume=run.read_config() is not None, runtime=runtime)
