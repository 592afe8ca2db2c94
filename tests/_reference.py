"""Shared test helpers: tolerances from DESIGN.md and the PyTorch reference vectors."""

import json
import pathlib

import numpy as np

_VECTORS = pathlib.Path(__file__).parent / "data" / "torch_reference.json"


def assert_close(actual, reference, rtol=1e-5, atol_scale=1e-5, atol=None):
  """float32 results against float64 references: rtol, and an atol scaled to the reference."""
  actual = np.asarray(actual, np.float64)
  reference = np.asarray(reference, np.float64)
  assert actual.shape == reference.shape, (actual.shape, reference.shape)
  if atol is None:
    finite = reference[np.isfinite(reference)]
    atol = atol_scale * (np.max(np.abs(finite)) if finite.size else 1.0) + 1e-30
  np.testing.assert_allclose(actual, reference, rtol=rtol, atol=atol)


def torch_cases(torch_function):
  """The PyTorch reference cases (float64, reduction='none') for one torch function."""
  cases = json.loads(_VECTORS.read_text())["cases"]
  return [c for c in cases if c["torch_function"] == torch_function]
