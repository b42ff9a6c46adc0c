"""`python -m spgd ...` runs the `spgd` command."""

import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
