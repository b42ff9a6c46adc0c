"""The `spgd` command line: it parses arguments, calls one function of the experiment layer and prints."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
