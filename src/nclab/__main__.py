"""``python -m nclab`` runs the command line."""

from nclab.cli import main

main()
