"""Command-line options shared by the training commands (one definition, one help text)."""

import typer

PER_CLASS = typer.Option(None, help="At most this many training samples per class.")
PER_CLASS_TEST = typer.Option(None, help="At most this many test samples per class.")
DATA_OPT = typer.Option(None, help="Data set option KEY=VALUE (repeatable), "
                                   "e.g. num_samples=10000.")
WIDTHS = typer.Option(None, help="MLP hidden widths, e.g. 256,256,256.")
MODEL_OPT = typer.Option(None, help="Model option KEY=VALUE (repeatable).")
MOMENTUM = typer.Option(0.9, help="SGD momentum.")
BATCH_SIZE = typer.Option(128, help="Batch size.")
