"""Type-check gate, run by ``.ci/run`` after ``mypy`` has passed on ``jaxloss/``.

1. mypy on ``misuse.py`` must report exactly the errors its ``# E: <text>`` comments announce
   (each line's message containing ``<text>``) and no other error in that file.
2. Every public callable in ``jaxloss.__all__`` must keep its real signature for the type
   checker: ``reveal_type`` shows a ``def (...)`` naming each of its parameters (what
   ``inspect.signature`` shows at run time), never ``(*Any, **Any) -> Any``.

Usage (from the repository root): ``python tests/typecheck/check.py``. Exit status 0 when
both hold, 1 otherwise, with what differed. Errors that mypy reports inside ``jaxloss/``
itself are the first ``mypy`` step's business and are ignored here.
"""

from __future__ import annotations

import inspect
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
MISUSE = pathlib.Path(__file__).resolve().with_name("misuse.py")
# Generated next to misuse.py and deleted after the run. A fixed path, not a temporary
# directory: mypy's incremental cache reports a cached module's notes under its old path.
REVEAL = MISUSE.with_name("_reveal_public.py")
_EXPECT = re.compile(r"\S.*#\s*E:\s*(.+)$")  # code, then the comment
_LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<message>.*)$")


def mypy(*paths: pathlib.Path) -> list[tuple[str, int, str, str]]:
  """(path, line, kind, message) of mypy's report on ``paths``, with the project's config."""
  result = subprocess.run(
      [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
       "--no-error-summary", "--show-absolute-path", *map(str, paths)],
      cwd=ROOT, capture_output=True, text=True, check=False)
  if result.returncode not in (0, 1):  # 2: mypy itself failed (a crash, a bad flag)
    sys.exit(f"check.py: mypy exited {result.returncode}:\n{result.stdout}{result.stderr}")
  report = []
  for text in result.stdout.splitlines():
    m = _LINE.match(text)
    if m:
      report.append((str(pathlib.Path(m["path"]).resolve()), int(m["line"]), m["kind"],
                     m["message"]))
  return report


def expected_errors() -> dict[int, str]:
  """{line: text} from the ``# E: <text>`` comments of ``misuse.py``."""
  expected = {}
  for number, text in enumerate(MISUSE.read_text().splitlines(), start=1):
    m = _EXPECT.search(text)
    if m:
      expected[number] = m[1].strip()
  return expected


def reveal_file(path: pathlib.Path) -> dict[int, tuple[str, list[str]]]:
  """Writes ``reveal_type(jaxloss.NAME)`` lines to ``path``; returns {line: (NAME, parameters)}."""
  sys.path.insert(0, str(ROOT))
  import jaxloss  # imported here: after sys.path points at this checkout

  lines = ["from typing import reveal_type", "", "import jaxloss", ""]
  wanted = {}
  for name in sorted(jaxloss.__all__):
    obj = getattr(jaxloss, name)
    if not callable(obj):
      continue
    lines.append(f"reveal_type(jaxloss.{name})")
    wanted[len(lines)] = (name, list(inspect.signature(obj).parameters))
  path.write_text("\n".join(lines) + "\n")
  return wanted


def main() -> int:
  problems = []
  try:
    wanted = reveal_file(REVEAL)
    report = mypy(MISUSE, REVEAL)
  finally:
    REVEAL.unlink(missing_ok=True)
  misuse, revealed = str(MISUSE), str(REVEAL)
  expected = expected_errors()
  got = {line: message for path, line, kind, message in report
         if path == misuse and kind == "error"}
  for line, text in sorted(expected.items()):
    if line not in got:
      problems.append(f"misuse.py:{line}: mypy accepted a call it must reject ({text!r})")
    elif text not in got[line]:
      problems.append(f"misuse.py:{line}: expected an error containing {text!r}, "
                      f"got {got[line]!r}")
  for line, message in sorted(got.items()):
    if line not in expected:
      problems.append(f"misuse.py:{line}: unexpected error: {message}")

  notes = {line: message for path, line, kind, message in report
           if path == revealed and kind == "note" and message.startswith("Revealed type")}
  for line, (name, params) in sorted(wanted.items()):
    shown = notes.get(line, "")
    missing = [p for p in params if not re.search(rf"\b{re.escape(p)}\s*:", shown)]
    # The wrapper's own (*Any, **Any) would mean the ParamSpec was lost; a parameter or return
    # type that is itself a callable of (*Any, **Any) (reduce_fn, a returned loss) is fine.
    erased = shown.startswith('Revealed type is "def (*Any, **Any)')
    if not shown.startswith('Revealed type is "def (') or erased or missing:
      problems.append(f"jaxloss.{name}: the type checker sees {shown or 'nothing'!r}; "
                      f"expected its signature with {params}")
  for problem in problems:
    print(problem)
  n_public = len(wanted)
  if problems:
    print(f"check.py: {len(problems)} problem(s)")
    return 1
  print(f"check.py: {len(expected)} misuse errors found as expected; "
        f"{n_public} public signatures seen by mypy")
  return 0


if __name__ == "__main__":
  sys.exit(main())
