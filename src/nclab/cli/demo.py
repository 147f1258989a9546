"""``nclab demo``: neural collapse on MNIST-1D in a few minutes on a laptop CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from nclab.cli.app import app, console
from nclab.cli.train import run_training
from nclab.runs import RunDir
from nclab.studies.demo import DEMO_CONFIG, DEMO_RUN_DIR, DEMO_THREADS


@app.command("demo")
def demo_command(
    run_dir: Path = typer.Option(Path(DEMO_RUN_DIR), help="Output folder."),
    device: str = typer.Option("auto", help="auto (CUDA if available), cpu, cuda..."),
    threads: int = typer.Option(DEMO_THREADS, help="CPU threads of torch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Train the demo network on MNIST-1D into the terminal phase, then write its report.

    An interrupted demo continues from its checkpoint when run again.
    """
    c = DEMO_CONFIG
    widths = "-".join(str(w) for w in c.model_options["widths"])
    console.print(f"nclab demo: MNIST-1D ({c.per_class} training samples per class), "
                  f"MLP {widths} with batch norm, {c.loss.upper()} loss, {c.epochs} epochs of "
                  f"SGD (lr {c.lr}, momentum {c.momentum}, weight decay {c.weight_decay}) "
                  f"-> {run_dir}", highlight=False)
    resume = RunDir(run_dir).read_config() is not None
    run_training(DEMO_CONFIG, run_dir, resume=resume, device=device, checkpoint_every=None,
                 progress=progress, threads=threads, report=True)
