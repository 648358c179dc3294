"""Flamingo Workbench: train OpenFlamingo-style models and run controlled ablations of them."""

__version__ = "0.1.0"
