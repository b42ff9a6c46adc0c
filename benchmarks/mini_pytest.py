"""A tiny test runner for machines without pytest (the lent GPU machines have no pip): runs the test functions
of the given files that carry a mark (`-m cuda`), with the `tmp_path` and `monkeypatch` fixtures only.

    python benchmarks/mini_pytest.py -m cuda tests/test_cuda.py

Where pytest is missing, a minimal stand-in module `pytest` (marks, skip, fail, raises, fixture) is installed so
the test files import. Marks honoured: the `-m` filter and `skipif`. A test that needs any other fixture fails
with a message naming it. Exit status 0 when no test failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path


class Skipped(Exception):
    """Raised by the stand-in `pytest.skip`."""


class Failed(AssertionError):
    """Raised by the stand-in `pytest.fail`."""


class _Mark:
    """A mark, used as a decorator (`@mark.cuda`, `@mark.skipif(cond, reason=...)`) or in `pytestmark`."""

    def __init__(self, name: str, args: tuple = (), kwargs: dict | None = None):
        self.name, self.args, self.kwargs = name, args, kwargs or {}

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]):  # decorating a test (marks never take one callable)
            func = args[0]
            func.pytestmark = [*getattr(func, "pytestmark", []), self]
            return func
        return _Mark(self.name, args, kwargs)


class _MarkGenerator:
    def __getattr__(self, name: str) -> _Mark:
        return _Mark(name)


def _stand_in_pytest() -> types.ModuleType:
    mod = types.ModuleType("pytest")
    mod.mark = _MarkGenerator()

    def skip(reason: str = "") -> None:
        raise Skipped(reason)

    skip.Exception = Skipped

    def fail(reason: str = "") -> None:
        raise Failed(reason)

    @contextlib.contextmanager
    def raises(exc, match: str | None = None):
        try:
            yield
        except exc as e:
            if match is not None and not re.search(match, str(e)):
                raise Failed(f"{type(e).__name__}({e!s}) does not match {match!r}") from e
        else:
            raise Failed(f"DID NOT RAISE {exc}")

    def fixture(*args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f

    mod.skip, mod.fail, mod.raises, mod.fixture = skip, fail, raises, fixture
    mod.__mini__ = True
    return mod


class MonkeyPatch:
    """setattr / setenv / delenv, undone after the test."""

    def __init__(self) -> None:
        self._undo: list = []

    def setattr(self, target, name: str, value) -> None:
        old = getattr(target, name)
        self._undo.append(lambda: setattr(target, name, old))
        setattr(target, name, value)

    def setenv(self, name: str, value: str) -> None:
        old = os.environ.get(name)
        self._undo.append(lambda: os.environ.pop(name, None) if old is None else os.environ.__setitem__(name, old))
        os.environ[name] = str(value)

    def delenv(self, name: str, raising: bool = True) -> None:
        if name not in os.environ:
            if raising:
                raise KeyError(name)
            return
        old = os.environ.pop(name)
        self._undo.append(lambda: os.environ.__setitem__(name, old))

    def undo(self) -> None:
        for f in reversed(self._undo):
            f()
        self._undo.clear()


def _marks(obj) -> list:
    marks = getattr(obj, "pytestmark", [])
    return list(marks) if isinstance(marks, (list, tuple)) else [marks]


def _skip_reason(marks: list) -> str | None:
    for m in marks:
        if getattr(m, "name", None) == "skipif":
            args, kwargs = getattr(m, "args", ()), getattr(m, "kwargs", {})
            cond = args[0] if args else kwargs.get("condition", False)
            if cond:
                return kwargs.get("reason", "skipif")
        if getattr(m, "name", None) == "skip":
            return getattr(m, "kwargs", {}).get("reason", "skip")
    return None


def run_file(path: Path, mark: str | None, skip_exc: type) -> list[tuple[str, str, str]]:
    """(test id, outcome, detail) for every selected test of the file."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    results = []
    module_marks = _marks(module)
    for name, func in list(vars(module).items()):
        if not (name.startswith("test") and inspect.isfunction(func) and func.__module__ == module.__name__):
            continue
        marks = module_marks + _marks(func)
        test_id = f"{path.name}::{name}"
        if mark and mark not in {getattr(m, "name", None) for m in marks}:
            continue
        reason = _skip_reason(marks)
        if reason is not None:
            results.append((test_id, "skipped", reason))
            continue
        kwargs, cleanups = {}, []
        missing = []
        for p in inspect.signature(func).parameters:
            if p == "tmp_path":
                d = Path(tempfile.mkdtemp(prefix="mini_pytest_"))
                kwargs[p] = d
                cleanups.append(lambda d=d: shutil.rmtree(d, ignore_errors=True))
            elif p == "monkeypatch":
                mp = MonkeyPatch()
                kwargs[p] = mp
                cleanups.append(mp.undo)
            else:
                missing.append(p)
        if missing:
            results.append((test_id, "failed", f"fixture(s) not available in mini_pytest: {', '.join(missing)}"))
            print(f"{test_id} FAILED: {results[-1][2]}", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            func(**kwargs)
            outcome, detail = "passed", ""
        except skip_exc as e:
            outcome, detail = "skipped", str(e)
        except BaseException as e:  # noqa: BLE001 - a test's failure is reported, the next test runs
            if isinstance(e, KeyboardInterrupt):
                raise
            outcome, detail = "failed", "".join(traceback.format_exception(type(e), e, e.__traceback__))
        finally:
            for c in reversed(cleanups):
                c()
        results.append((test_id, outcome, detail))
        print(f"{test_id} {outcome.upper()} ({time.perf_counter() - t0:.1f} s)", flush=True)
        if outcome == "failed":
            print(detail, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", dest="mark", default=None, help="run only the tests carrying this mark")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        import pytest  # noqa: F401 - the real one, when installed

        print("mini_pytest: pytest is importable; its marks and skip are used", flush=True)
    except ImportError:
        sys.modules["pytest"] = _stand_in_pytest()
        print("mini_pytest: pytest is not installed; using the stand-in (marks, skip, raises, tmp_path, "
              "monkeypatch)", flush=True)
    import pytest

    skip_exc = getattr(pytest.skip, "Exception", Skipped)
    results = []
    for f in args.files:
        try:
            results += run_file(f.resolve(), args.mark, skip_exc)
        except Exception:  # noqa: BLE001 - an import error of one file is a failure, reported
            results.append((f.name, "failed", traceback.format_exc()))
            print(f"{f.name} FAILED to import\n{traceback.format_exc()}", flush=True)
    counts = {k: sum(1 for _, o, _ in results if o == k) for k in ("passed", "failed", "skipped")}
    for test_id, outcome, detail in results:
        if outcome == "skipped":
            print(f"SKIPPED {test_id}: {detail}")
    print(f"mini_pytest: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped", flush=True)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
