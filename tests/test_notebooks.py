"""The notebooks under notebooks/: executed top to bottom, committed clean, linked from the README.

Each notebook runs in a fresh kernel of the interpreter running the tests (jupyter_client maps the
``python3`` kernel spec's ``python`` to ``sys.executable``), with ``JAXLOSS_NOTEBOOK_SMALL=1`` so
it finishes in seconds, and no network: the install cell skips ``%pip`` because jaxloss imports.
A cell that raises, including a failed assertion inside a notebook, fails the test.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
COLAB = "https://colab.research.google.com/github/jaxloss/jaxloss/blob/main/notebooks/"
CELL_TIMEOUT_S = 120


def test_there_are_notebooks():
  assert {"01_loss_gallery.ipynb", "02_training_with_flax_and_optax.ipynb",
          "03_large_vocab_cross_entropy.ipynb", "04_preference_and_distillation.ipynb",
          "05_metric_learning.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path):
  nb = nbformat.read(path, as_version=4)
  env = {**os.environ, "JAXLOSS_NOTEBOOK_SMALL": "1"}
  env.pop("MPLBACKEND", None)  # ipykernel then selects the inline backend, as in Jupyter
  # The tests' strict promotion (conftest) does not reach the kernel: notebooks run as users do.
  client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                   resources={"metadata": {"path": str(path.parent)}})
  client.execute(env=env)  # raises CellExecutionError naming the cell on any error


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  assert nb.metadata.kernelspec.name == "python3"
  for cell in nb.cells:
    if cell.cell_type == "code":
      assert cell.outputs == [] and cell.execution_count is None, f"outputs in {cell.id}"
  # The first cell installs jaxloss on Colab, and only where it is missing.
  first = nb.cells[0]
  assert first.cell_type == "code"
  assert "import jaxloss" in first.source and "%pip install -q jaxloss" in first.source
  # The install cell is valid IPython (an indented line magic) and compiles.
  from IPython.core.inputtransformer2 import TransformerManager
  compile(TransformerManager().transform_cell(first.source), path.name, "exec")


def test_readme_links_every_notebook_and_figure():
  readme = (ROOT / "README.md").read_text()
  for path in NOTEBOOKS:
    assert f"({COLAB}{path.name})" in readme, f"no Colab badge for {path.name}"
  figures = sorted((ROOT / "notebooks" / "figures").glob("*.png"))
  assert len(figures) >= 2
  for figure in figures:
    assert f"(notebooks/figures/{figure.name})" in readme
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_readme_train_step_matches_notebook_2():
  # The README's "Use with Flax/optax" section shows notebook 2's train step verbatim.
  nb = json.loads((ROOT / "notebooks" / "02_training_with_flax_and_optax.ipynb").read_text())
  source = next("".join(c["source"]) for c in nb["cells"]
                if "def make_train_step" in "".join(c["source"]))
  start = source.index("def make_train_step")
  step = source[start:source.index("\n\n\n", start)]
  assert step in (ROOT / "README.md").read_text()
