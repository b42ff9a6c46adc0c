"""What the command line prints: results on stdout; status lines, progress bars, details and warnings on stderr
(through tqdm, so a line never breaks a bar)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm


class Console:
    """What the command line prints: results on stdout, progress/notes/warnings on stderr.

    level 0 (-q): warnings and results only; 1: plus status lines and progress bars; 2 (-v): plus details.
    """

    def __init__(self, level: int = 1):
        self.level = level

    @classmethod
    def of_flags(cls, quiet: bool = False, verbose: bool = False) -> "Console":
        """The Console of -q (level 0), neither (1) or -v (2)."""
        return cls(0 if quiet else 2 if verbose else 1)

    def result(self, text: str) -> None:
        print(text, file=sys.stdout, flush=True)

    def info(self, text: str) -> None:
        if self.level >= 1:
            self._err(text)

    def detail(self, text: str) -> None:
        if self.level >= 2:
            self._err(text)

    def warn(self, text: str) -> None:
        self._err(f"spgd: warning: {text}")

    def _err(self, text: str) -> None:
        tqdm.write(text, file=sys.stderr)  # above any progress bar, not through it

    def progress(self, total: int, desc: str, unit: str = "img"):
        """A tqdm bar on stderr (with ETA), or a silent stand-in in quiet mode."""
        if self.level >= 1:
            return auto_tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)
        return _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
