"""The documentation: every public docstring has runnable examples, the Sphinx site builds with
warnings as errors and indexes every public name, and the install instructions point at the
repository.

The doctests themselves run in the test command (``--doctest-modules`` over ``jaxloss/``,
pyproject.toml); here we check that each public function has some. The site build needs the
``docs`` extra (``pip install -e ".[docs]"``) and is skipped without it; it takes about 15 s of
CPU (one import of jaxloss, autodoc of every module, the notebooks rendered unexecuted).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

import jaxloss

ROOT = pathlib.Path(__file__).resolve().parent.parent
PUBLIC = [name for name in jaxloss.__all__ if name != "__version__"]
BUILD_TIMEOUT_S = 600


def _docstring(name: str) -> str:
  return inspect.getdoc(getattr(jaxloss, name)) or ""


def test_every_public_function_has_examples():
  # An `Examples:` section (napoleon's header) with at least one doctest line under it.
  pattern = re.compile(r"^Examples:\s*$(?:\n.*)*?\n\s+>>> ", re.M)
  missing = [name for name in PUBLIC if not pattern.search(_docstring(name))]
  assert not missing, f"no `Examples:` doctest in the docstring of {missing}"


# --- the site ------------------------------------------------------------------------------------

_DOCS_DEPS = ("sphinx", "furo", "myst_nb", "myst_parser")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
  missing = [m for m in _DOCS_DEPS if importlib.util.find_spec(m) is None]
  if missing:
    pytest.skip(f"the docs extra is not installed (no {', '.join(missing)}): "
                f'pip install -e ".[docs]"')
  out = tmp_path_factory.mktemp("site")
  env = {k: v for k, v in os.environ.items() if k != "JAXLOSS_DOCS_INTERSPHINX"}  # offline
  env["JAX_PLATFORMS"] = "cpu"
  # A fresh interpreter: autodoc imports jaxloss without this process's strict promotion, and
  # -W turns every warning (a broken docstring, a dangling reference) into a failure.
  result = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
       "-d", str(out / ".doctrees"), str(ROOT / "docs"), str(out / "html")],
      capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env, cwd=ROOT, check=False)
  assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stderr[-6000:]}"
  return out / "html"


def test_site_indexes_every_public_name(site):
  genindex = (site / "genindex.html").read_text()
  missing = [name for name in jaxloss.__all__ if f'#jaxloss.{name}"' not in genindex]
  assert not missing, f"not in the built index: {missing}"


def test_site_has_a_page_per_family_guides_notebooks_and_design(site):
  sys.path.insert(0, str(ROOT / "docs" / "_ext"))
  try:
    import jaxloss_api
  finally:
    sys.path.pop(0)
  families = [m.__name__.rpartition(".")[2] for m in jaxloss_api.family_modules()]
  # Every module that defines a public function, jaxloss.reduce's included.
  defining = {getattr(jaxloss, n).__module__.rpartition(".")[2] for n in PUBLIC}
  assert defining <= set(families)
  for page in [*(f"api/{f}.html" for f in families), "coming_from_optax.html",
               "coming_from_pytorch.html", "design.html", "index.html"]:
    assert (site / page).is_file(), page
  notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
  assert notebooks
  for nb in notebooks:
    assert (site / "notebooks" / f"{nb.stem}.html").is_file(), nb.name
  # Formulas go to MathJax: the reduction's ".. math::" block is a math node on its page.
  assert 'class="math' in (site / "api" / "reduce.html").read_text()
  index = (site / "index.html").read_text()
  for link in ("coming_from_optax.html", "coming_from_pytorch.html", "api/index.html",
               "design.html"):
    assert link in index, link


# --- install instructions ------------------------------------------------------------------------

def _repository() -> str:
  meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
  return meta["urls"]["Repository"]


def test_readme_installs_from_the_repository_and_links_the_docs():
  readme = (ROOT / "README.md").read_text()
  url = _repository()
  assert f'pip install "jaxloss @ git+{url}"' in readme
  assert f'pip install "jaxloss[cuda] @ git+{url}"' in readme
  assert 'pip install "jaxloss[cuda]"`' not in readme  # no index serves that name yet
  for link in ("(docs/index.md)", "(docs/coming_from_optax.md)", "(docs/coming_from_pytorch.md)"):
    assert link in readme, link


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda p: p.stem)
def test_notebook_installs_from_the_repository(path):
  first = "".join(json.loads(path.read_text())["cells"][0]["source"])
  assert f"%pip install -q jaxloss@git+{_repository()}" in first


def test_readme_loss_table_is_generated_from_the_docstrings():
  # A new loss reaches the README through its docstring: `python docs/loss_table.py` rewrites
  # the section between the markers; this fails when the committed README is stale.
  spec = importlib.util.spec_from_file_location("loss_table", ROOT / "docs" / "loss_table.py")
  loss_table = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(loss_table)
  readme = (ROOT / "README.md").read_text()
  assert readme == loss_table.rewrite(readme), "README.md is stale: run python docs/loss_table.py"
  listed = set(re.findall(r"^\| `(\w+)\(", readme, re.M))
  assert set(PUBLIC) <= listed, sorted(set(PUBLIC) - listed)
