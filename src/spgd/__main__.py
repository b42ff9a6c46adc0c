"""`python -m spgd ...` runs the `spgd` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
