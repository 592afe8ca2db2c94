"""Regenerates the README's figures from the loss-gallery notebook.

Runs ``01_loss_gallery.ipynb`` top to bottom at full size in a fresh kernel and writes the PNG
output of every cell tagged ``figure:<name>`` to ``notebooks/figures/<name>.png``, so the figures
come from the same code as the notebook.

  python notebooks/make_figures.py
"""

from __future__ import annotations

import base64
import os
import pathlib

import nbclient
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
NOTEBOOK = HERE / "01_loss_gallery.ipynb"
FIGURES = HERE / "figures"


def main() -> None:
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # High-resolution PNGs (twice the default dpi); this cell is not saved anywhere.
  nb.cells.insert(0, nbformat.v4.new_code_cell(
      "%config InlineBackend.figure_formats = ['retina']"))
  env = {k: v for k, v in os.environ.items() if k not in ("JAXLOSS_NOTEBOOK_SMALL", "MPLBACKEND")}
  nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(HERE)}}).execute(env=env)
  FIGURES.mkdir(exist_ok=True)
  for cell in nb.cells:
    for tag in cell.metadata.get("tags", []):
      if not tag.startswith("figure:"):
        continue
      pngs = [out.data["image/png"] for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
      if len(pngs) != 1:
        raise RuntimeError(f"cell tagged {tag} produced {len(pngs)} PNG figures, expected 1")
      target = FIGURES / f"{tag.removeprefix('figure:')}.png"
      target.write_bytes(base64.b64decode(pngs[0]))
      print(f"wrote {target.relative_to(HERE.parent)}")


if __name__ == "__main__":
  main()
