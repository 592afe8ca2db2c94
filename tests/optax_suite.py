"""Runs optax's own loss tests against jaxloss.

Every ``optax/losses/*_test.py`` that the installed optax wheel ships is copied to a temporary
folder (nothing is written into the repository), its imports of optax's private loss modules
(``from optax.losses import _classification``, ``_regression``, ...) are rewritten to
``import jaxloss as _classification`` and so on, and pytest runs the copies. Everything else in
those files stays optax's: the reference helpers they use (``optax.projections``,
``optax._src.test_utils``) are the reference, not the thing under test.

Usage::

  python tests/optax_suite.py                # all files, a pass/fail line per test
  python tests/optax_suite.py -k ctc         # pytest's -k
  python tests/optax_suite.py --failures     # only the failures, grouped by error message
  python tests/optax_suite.py --keep         # keep (and print) the temporary folder

The exit status is pytest's (0 when every test passes). The file is not collected by the
repository's own pytest run (its name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

# `from optax.losses import _x` (optionally `as y`) -> `import jaxloss as _x` (or `as y`).
_IMPORT = re.compile(r"^(\s*)from\s+optax\.losses\s+import\s+(_\w+)(?:\s+as\s+(\w+))?\s*$",
                     re.MULTILINE)
# `import optax.losses._x as y` -> `import jaxloss as y`.
_IMPORT_AS = re.compile(r"^(\s*)import\s+optax\.losses\.(_\w+)\s+as\s+(\w+)\s*$", re.MULTILINE)
# Failures whose messages differ only in numbers (an axis tuple, a shape) form one group.
_NUMBERS = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
_TUPLES = re.compile(r"\(#(?:, #)*,?\)")


def _group_key(message: str) -> str:
  """The message with numbers as # and tuples of numbers as (#, ...)."""
  return _TUPLES.sub("(#, ...)", _NUMBERS.sub("#", message))


def optax_test_files() -> list[pathlib.Path]:
  """The ``losses/*_test.py`` files of the installed optax."""
  spec = importlib.util.find_spec("optax")
  if spec is None or spec.origin is None:
    raise SystemExit("optax_suite: optax is not installed")
  folder = pathlib.Path(spec.origin).parent / "losses"
  files = sorted(folder.glob("*_test.py"))
  if not files:
    raise SystemExit(f"optax_suite: no *_test.py files under {folder}")
  return files


def rewrite(source: str) -> str:
  """The test file with optax's private loss modules replaced by ``jaxloss``."""
  source = _IMPORT.sub(lambda m: f"{m[1]}import jaxloss as {m[3] or m[2]}", source)
  return _IMPORT_AS.sub(lambda m: f"{m[1]}import jaxloss as {m[3]}", source)


def _first_line(text: str | None) -> str:
  """A short description of a failure: the exception line of pytest's message."""
  if not text:
    return "(no message)"
  for line in text.splitlines():
    line = line.strip()
    if line.startswith("E "):
      return line[1:].strip()[:160]
  return text.strip().splitlines()[0][:160]


def _results(junit: pathlib.Path) -> list[tuple[str, str, str]]:
  """``(test id, outcome, message)`` for every test case in a junit XML report."""
  rows = []
  for case in ET.parse(junit).getroot().iter("testcase"):
    name = f"{case.get('classname', '')}::{case.get('name', '')}"
    outcome, message = "passed", ""
    for tag in ("failure", "error", "skipped"):
      node = case.find(tag)
      if node is not None:
        outcome = {"failure": "FAILED", "error": "ERROR", "skipped": "skipped"}[tag]
        message = _first_line(node.text or node.get("message"))
        break
    rows.append((name, outcome, message))
  return rows


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("-k", default=None, help="pytest -k expression")
  parser.add_argument("-n", default=None, help="pytest-xdist workers (default: none)")
  parser.add_argument("--failures", action="store_true", help="print only the failures")
  parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
  args = parser.parse_args(argv)

  tmp = pathlib.Path(tempfile.mkdtemp(prefix="jaxloss_optax_suite_"))
  try:
    for path in optax_test_files():
      (tmp / path.name).write_text(rewrite(path.read_text()))
    junit = tmp / "report.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--rootdir={tmp}", f"--junitxml={junit}", "-o", "junit_family=xunit1",
               "--continue-on-collection-errors", str(tmp)]
    if args.k:
      command += ["-k", args.k]
    if args.n:
      command += ["-n", args.n]
    # Run from the temporary folder, so that the repository's pytest configuration and
    # conftest (strict dtype promotion) do not apply: optax's tests run as optax runs them.
    proc = subprocess.run(command, check=False, cwd=tmp, capture_output=True, text=True)
    if not junit.exists():
      sys.stdout.write(proc.stdout + proc.stderr)
      return proc.returncode or 1
    rows = _results(junit)
    if not args.failures:
      for name, outcome, message in rows:
        print(f"{outcome:8s} {name}" + (f"  -- {message}" if message else ""))
    bad = [r for r in rows if r[1] in ("FAILED", "ERROR")]
    groups: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for name, _, message in bad:
      groups[_group_key(message)].append((name, message))
    if bad:
      print(f"\nfailures grouped by message, numbers as # ({len(groups)} groups):")
      for key, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"\n[{len(members)}] {key}")
        for name, message in members:
          print(f"    {name}" + (f"  ({message})" if message != key else ""))
    counts = collections.Counter(r[1] for r in rows)
    print(f"\noptax suite against jaxloss: {counts['passed']} passed, {counts['FAILED']} failed, "
          f"{counts['ERROR']} errors, {counts['skipped']} skipped ({len(rows)} tests)")
    if args.keep:
      print(f"kept: {tmp}")
    return proc.returncode
  finally:
    if not args.keep:
      shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  sys.exit(main())
