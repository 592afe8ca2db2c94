"""The README's table of losses, generated from the package: one section per family module.

Each row is a public function's call signature and the first paragraph of its docstring, in the
family order of the API reference (``docs/_ext/jaxloss_api.py``), so a new loss reaches the
README through its docstring alone. ``python docs/loss_table.py`` rewrites the part of
``README.md`` between the ``<!-- losses -->`` and ``<!-- /losses -->`` markers;
``tests/test_docs.py`` fails when the committed README differs from what this writes.
"""

from __future__ import annotations

import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import jaxloss_api  # noqa: E402

BEGIN, END = "<!-- losses -->", "<!-- /losses -->"
WIDE = 72  # a longer signature is shown by its leading positional parameters only


def call(name: str, fn: object) -> str:
  """``name(signature)``, or ``name(a, b, ...)`` when the full signature is long."""
  signature = inspect.signature(fn)  # type: ignore[arg-type]
  params = signature.parameters.values()
  bare = signature.replace(parameters=[p.replace(annotation=p.empty) for p in params],
                           return_annotation=signature.empty)
  text = f"{name}{bare}"
  if len(text) <= WIDE:
    return text
  positional = [p.name for p in params
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
  return f"{name}({', '.join([*positional, '...'])})"


def summary(fn: object) -> str:
  """The docstring's first paragraph, reStructuredText roles and literals as Markdown code."""
  doc = inspect.getdoc(fn) or ""
  text = " ".join(doc.split("\n\n")[0].split())
  text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
  return text.replace("``", "`")


def _cell(text: str) -> str:
  return text.replace("|", "\\|")


def table() -> str:
  """The generated section, markers included."""
  lines = [BEGIN, ""]
  for module in jaxloss_api.family_modules():
    lines += [f"### {jaxloss_api.title(module)} (`{module.__name__}`)", "",
              "| function | what it computes |", "| --- | --- |"]
    for name in jaxloss_api.public_functions(module):
      fn = getattr(module, name)
      lines.append(f"| `{_cell(call(name, fn))}` | {_cell(summary(fn))} |")
    lines.append("")
  return "\n".join([*lines, END])


def rewrite(readme: str) -> str:
  """``readme`` with the section between the markers replaced by :func:`table`."""
  start, stop = readme.index(BEGIN), readme.index(END) + len(END)
  return readme[:start] + table() + readme[stop:]


if __name__ == "__main__":
  path = ROOT / "README.md"
  path.write_text(rewrite(path.read_text()))
