"""Lets `python -m pipeline` behave exactly like the `tfxp` console script."""

from pipeline.cli import entry

entry()
