"""Writes the API reference pages (``docs/api/``, not committed) when the build starts.

One page per family module of jaxloss (``jaxloss/<family>.py``, found by listing the package,
so a new module gets its page without an edit here), with the module's docstring, a summary
table and every public function of the module. A function exported by ``jaxloss`` (in
``jaxloss.__all__``) is documented under the name users call, ``jaxloss.<name>``; one the
module defines but the package does not export yet is documented as ``jaxloss.<family>.<name>``.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil
import re
import types

import jaxloss

# The order of the families on the API index (modules found but not listed here follow, sorted),
# and a page title for each. Modules that define no function of their own (``classification``
# only gathers the softmax, sigmoid and divergence families) get no page.
FAMILIES = {
    "reduce": "Reduction",
    "regression": "Regression",
    "robust": "Robust regression",
    "relative": "Relative-error regression",
    "deviance": "Deviances and the Brier score",
    "softmax": "Softmax cross-entropy",
    "sigmoid": "Sigmoid (binary) cross-entropy",
    "divergence": "Kullback–Leibler divergence",
    "margin": "Margin losses",
    "embedding": "Embedding losses",
    "similarity": "Cosine similarity and NT-Xent",
    "contrastive": "Representation learning",
    "regularizers": "Regularizers and structural risk",
    "large_vocab": "Large vocabulary",
    "language_model": "Language-model log-probabilities",
    "preference": "Preference and policy-gradient objectives",
    "distillation": "Distillation divergences",
    "sequence": "Sequences (CTC)",
    "fenchel_young": "Fenchel–Young losses",
    "ranking": "Ranking",
    "segmentation": "Segmentation",
    "detection": "Detection (boxes)",
}
SKIP = {"conftest"}


def family_modules() -> list[types.ModuleType]:
  """The public modules of jaxloss that define public functions, in the index's order."""
  names = [m.name for m in pkgutil.iter_modules(jaxloss.__path__)
           if not m.name.startswith("_") and m.name not in SKIP]
  order = {name: i for i, name in enumerate(FAMILIES)}
  names.sort(key=lambda n: (order.get(n, len(order)), n))
  modules = [importlib.import_module(f"jaxloss.{n}") for n in names]
  return [m for m in modules if public_functions(m)]


def public_functions(module: types.ModuleType) -> list[str]:
  """Names of the functions ``module`` defines (not imports), public ones only, in file order."""
  names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
  found = []
  for name in names:
    obj = getattr(module, name)
    if inspect.isfunction(obj) and obj.__module__ == module.__name__:
      found.append(name)
  line = lambda n: inspect.getsourcelines(inspect.unwrap(getattr(module, n)))[1]  # noqa: E731
  return sorted(found, key=line)


def documented_name(module: types.ModuleType, name: str) -> str:
  """``jaxloss.<name>`` where the package exports this very function, else its module path."""
  if name in jaxloss.__all__ and getattr(jaxloss, name) is getattr(module, name):
    return f"jaxloss.{name}"
  return f"{module.__name__}.{name}"


def title(module: types.ModuleType) -> str:
  short = module.__name__.rpartition(".")[2]
  if short in FAMILIES:
    return FAMILIES[short]
  first = (module.__doc__ or short).strip().splitlines()[0]
  return first.split(":")[0].rstrip(".")


def _page(module: types.ModuleType) -> str:
  head = f"{title(module)} (``{module.__name__}``)"
  names = [documented_name(module, n) for n in public_functions(module)]
  lines = [head, "=" * len(head), "", f".. automodule:: {module.__name__}"]
  if module.__name__ in names:  # jaxloss.reduce is the function; the module is not indexed
    lines.append("   :no-index:")
  lines += ["", ".. currentmodule:: jaxloss", "", ".. autosummary::", ""]
  lines += [f"   {n.removeprefix('jaxloss.')}" for n in names]
  lines.append("")
  for n in names:
    lines += [f".. autofunction:: {n}", ""]
  return "\n".join(lines)


def _index(modules: list[types.ModuleType]) -> str:
  lines = ["API reference", "=============", "",
           "Every public function, one page per family module. ``import jaxloss`` exports them "
           "all (the names listed in ``jaxloss.__all__``); a function documented under its "
           "module's name (``jaxloss.<family>.<name>``) is not exported by the package yet.", "",
           ".. py:data:: jaxloss.__version__", "",
           "   The package version, a string (PEP 440).", "",
           ".. toctree::", "   :maxdepth: 1", ""]
  lines += [f"   {m.__name__.rpartition('.')[2]}" for m in modules]
  return "\n".join(lines) + "\n"


def _write(path: pathlib.Path, text: str) -> None:
  if not path.exists() or path.read_text() != text:  # unchanged pages keep their mtime
    path.write_text(text)


def write_pages(app) -> None:
  out = pathlib.Path(app.srcdir) / "api"
  out.mkdir(exist_ok=True)
  modules = family_modules()
  wanted = {"index.rst"} | {f"{m.__name__.rpartition('.')[2]}.rst" for m in modules}
  for stale in out.glob("*.rst"):
    if stale.name not in wanted:
      stale.unlink()
  _write(out / "index.rst", _index(modules))
  for m in modules:
    _write(out / f"{m.__name__.rpartition('.')[2]}.rst", _page(m))


_INLINE = re.compile(r"(``.+?``|:[\w:-]+:`[^`]*`|`[^`]*`_{0,2})")


def _escape_bars(text: str) -> str:
  """``|x|`` of plain text as literal bars, outside inline literals, roles and references."""
  parts = _INLINE.split(text)
  for i in range(0, len(parts), 2):  # the even parts lie outside the inline markup
    parts[i] = re.sub(r"(?<!\\)\|", r"\\|", parts[i])
  return "".join(parts)


def escape_plain_text_bars(app, what, name, obj, options, lines: list[str]) -> None:
  """Docstrings write absolute values and norms as plain text, ``|p − t|``, ``‖a − p‖``,
  readable in ``help()``; reStructuredText reads ``|p − t|`` as a substitution reference.
  Bars are escaped everywhere but in literal and math blocks (a paragraph or directive ending
  in ``::``, and what is indented under it), doctest blocks and inline markup."""
  literal_indent = None  # the indent of the line that opened a literal/math block
  doctest = False
  for i, line in enumerate(lines):
    stripped = line.strip()
    indent = len(line) - len(line.lstrip())
    if literal_indent is not None:
      if not stripped or indent > literal_indent:
        continue
      literal_indent = None
    if doctest:
      if stripped:
        continue
      doctest = False
    if stripped.startswith(">>>"):
      doctest = True
      continue
    if "|" in line:
      lines[i] = _escape_bars(line)
    if stripped.endswith("::"):
      literal_indent = indent


# jax.typing.ArrayLike as the signature shows it once autodoc has evaluated it (a Union of
# jax.Array, numpy's ndarray and the scalar types), and the wrapper Sphinx leaves around an
# alias inside ``X | None``: both become ``ArrayLike`` again.
_ARRAY_LIKE = re.compile(r"~?(?:[\w.]+\.)?Array \| ~?(?:numpy\.)?ndarray \| ~?(?:numpy\.)?bool"
                         r"(?:_)? \| ~?(?:numpy\.)?number \| bool \| int \| float \| complex")
_FORWARD_REF = re.compile(r"TypeAliasForwardRef\('(?:jax\.typing\.)?([\w.]+)'\)")


def _short_types(text: str | None) -> str | None:
  if text is None:
    return None
  text = _ARRAY_LIKE.sub("ArrayLike", text)
  return _FORWARD_REF.sub(r"\1", text).replace("jax.typing.ArrayLike", "ArrayLike")


def short_signature(app, what, name, obj, options, signature, return_annotation):
  return _short_types(signature), _short_types(return_annotation)


def setup(app):
  app.connect("builder-inited", write_pages)
  app.connect("autodoc-process-docstring", escape_plain_text_bars)
  app.connect("autodoc-process-signature", short_signature)
  # env_version: a change to these hooks re-reads every page on the next incremental build.
  return {"env_version": 2, "parallel_read_safe": True, "parallel_write_safe": True}
