"""Sphinx configuration of jaxloss's documentation site.

Build (the ``docs`` extra installs what it needs; no network is used)::

    pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html

- The API pages (``docs/api/``) are written at the start of each build from the package itself
  (``_ext/jaxloss_api.py``): one page per family module, every public function.
- The notebooks are copied from ``notebooks/`` into ``docs/notebooks/`` and rendered by myst-nb
  as committed, never executed here (``nb_execution_mode = "off"``).
- Links into the jax, optax and numpy docs (intersphinx) need their inventories, fetched over the
  network: they are on only when ``JAXLOSS_DOCS_INTERSPHINX=1``; otherwise such a reference
  renders as plain code, and the build needs nothing from outside.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # importing jaxloss must not look for a GPU

import jaxloss  # noqa: E402

project = "jaxloss"
author = "the jaxloss authors"
copyright = "the jaxloss authors, Apache-2.0"  # noqa: A001 (Sphinx's name)
release = version = jaxloss.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "myst_nb",  # Markdown (myst-parser) and notebooks
    "jaxloss_api",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "guides.py"]
templates_path: list[str] = []

# --- the API pages -----------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Annotations are strings (``from __future__ import annotations``): show the alias, not its
# expansion into a dozen types.
autodoc_type_aliases = {
    "ArrayLike": "jax.typing.ArrayLike",
    "PyTree": "PyTree",
    "Axis": "Axis",
}
autosummary_generate = False
python_maximum_signature_line_length = 88
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# --- Markdown, notebooks ------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # design.md links to its own sections by their slugs
nb_execution_mode = "off"  # render the notebooks as committed; the test suite executes them

# The notebooks live in notebooks/ (linked from the README, run by tests/test_notebooks.py);
# Sphinx reads sources under docs/ only, so each build copies them in (docs/notebooks/ is not
# committed).
_NB_OUT = DOCS / "notebooks"
_NB_OUT.mkdir(exist_ok=True)
for _nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
  _dest = _NB_OUT / _nb.name
  if not _dest.exists() or _dest.read_bytes() != _nb.read_bytes():
    shutil.copyfile(_nb, _dest)

# --- cross-references --------------------------------------------------------------------------
intersphinx_mapping: dict[str, tuple[str, None]] = {}
if os.environ.get("JAXLOSS_DOCS_INTERSPHINX") == "1":
  intersphinx_mapping = {
      "jax": ("https://docs.jax.dev/en/latest/", None),
      "optax": ("https://optax.readthedocs.io/en/latest/", None),
      "numpy": ("https://numpy.org/doc/stable/", None),
      "python": ("https://docs.python.org/3/", None),
  }

# --- HTML --------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"jaxloss {release}"
html_static_path = ["_static"]
html_css_files = ["jaxloss.css"]
html_theme_options = {
    "source_repository": "https://github.com/jaxloss/jaxloss/",
    "source_branch": "main",
    "source_directory": "docs/",
}
