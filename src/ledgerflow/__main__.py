"""``python -m ledgerflow``."""

from ledgerflow.cli import main

main()
