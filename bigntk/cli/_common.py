"""Argument helpers shared by the subcommands."""
from __future__ import annotations

import argparse


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """--device / --dtype, resolved by :mod:`bigntk.backend`."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: $BIGNTK_DEVICE, else CUDA if available)")
    parser.add_argument("--dtype", default=None, choices=["float32", "float64"], help="working dtype (default float32)")


def add_ntk_args(parser: argparse.ArgumentParser) -> None:
    """Architecture and regularisation of the fully connected NTK."""
    parser.add_argument("--depth", type=int, default=1, help="number of hidden layers (default 1)")
    parser.add_argument("--activation", default="relu", choices=["relu", "leaky_relu"])
    parser.add_argument("--negative-slope", type=float, default=0.01, help="LeakyReLU slope")
    parser.add_argument("--ridge", type=float, default=0.0, help="ridge added to the kernel diagonal (unscaled)")
    parser.add_argument("--nugget", type=float, default=0.0, help="identity nugget τ of the prior (paper: 1.5)")
    parser.add_argument("--solver", default="auto", help="auto | direct | eigenpro | cg")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
