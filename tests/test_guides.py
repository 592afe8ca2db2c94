"""Every row of the "Coming from optax" and "Coming from PyTorch" guides, executed.

The rows live in ``docs/guides.py`` as source text; the pages are generated from them.

- optax rows: both calls are evaluated on the same float32 inputs and compared.
- PyTorch, torchvision and Keras rows: the jaxloss call is evaluated on the inputs stored in
  ``tests/data/torch_reduced.json`` / ``keras_reference.json`` and compared with the value the
  library computed there in float64 from the row's own call (``make_torch_vectors.py``).
- The committed pages equal what ``python docs/guides.py`` writes, every optax loss and every
  loss of ``torch.nn.functional``, ``torchvision.ops`` and ``keras.losses`` (as listed when the
  vectors were made) has a row or is listed as missing, and a name listed as missing that
  jaxloss now has fails, asking for its row.

The calls run under jax's default ("standard") dtype promotion, as in a user's session: they
are user code, and ``tests/conftest.py``'s strict promotion is for the library.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

optax = pytest.importorskip("optax")

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def _load_guides():
  spec = importlib.util.spec_from_file_location("guides", ROOT / "docs" / "guides.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules.setdefault("guides", module)
  spec.loader.exec_module(module)
  return module


guides = _load_guides()
TORCH = json.loads((DATA / "torch_reduced.json").read_text())
KERAS = json.loads((DATA / "keras_reference.json").read_text())


def _jnp(value: np.ndarray) -> jax.Array:
  return jnp.asarray(value, jnp.float32 if value.dtype.kind == "f" else jnp.int32)


def _stored(inputs: dict) -> dict[str, np.ndarray]:
  return {k: np.asarray(v["data"], dtype=v["dtype"]) for k, v in inputs.items()}


def _run(source: str, inputs: dict[str, np.ndarray]):
  namespace = {"jax": jax, "jnp": jnp, "optax": optax, "jaxloss": jaxloss}

  # The guide's own source text, under one jit (one compilation instead of one per eager op),
  # with the inputs as arguments so that XLA cannot constant-fold the computation.
  def evaluate(arrays):
    return eval(source, {**namespace, **arrays})

  with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
    return jax.jit(evaluate)({k: _jnp(v) for k, v in inputs.items()})


def _assert_close(actual, expected, rtol: float, what: str) -> None:
  leaves_a, leaves_e = jax.tree.leaves(actual), jax.tree.leaves(expected)
  assert len(leaves_a) == len(leaves_e), what
  for a, e in zip(leaves_a, leaves_e, strict=True):
    a, e = np.asarray(a, np.float64), np.asarray(e, np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    atol = 1e-5 * np.max(np.abs(e), initial=0.0)  # entries near 0 carry absolute error
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.filterwarnings("ignore:The function convex_kl_divergence is deprecated")
@pytest.mark.parametrize("row", guides.OPTAX_ROWS, ids=lambda r: r.other)
def test_optax_row_gives_optax_numbers(row):
  inputs = guides.make_inputs(row.inputs)
  expected = _run(row.other, inputs)
  _assert_close(_run(row.jaxloss, inputs), expected, row.rtol, row.jaxloss)


def _stored_rows(data, rows):
  by_call = {(r["call"], r["inputs"]): r for r in data["rows"]}
  for row in rows:
    yield row, by_call.get((row.other, row.inputs))


@pytest.mark.parametrize(("data", "rows", "name"), [
    (TORCH, guides.TORCH_ROWS, "torch_reduced.json"),
    (KERAS, guides.KERAS_ROWS, "keras_reference.json")], ids=["torch", "keras"])
def test_stored_vectors_match_the_rows(data, rows, name):
  # A row edited or added without re-running the generator has no stored value.
  stale = [row.other for row, stored in _stored_rows(data, rows) if stored is None]
  assert not stale, f"rerun `python tests/data/make_torch_vectors.py` ({name}): {stale}"
  for row, _ in _stored_rows(data, rows):  # the same inputs as the generator used
    for key, value in guides.make_inputs(row.inputs).items():
      np.testing.assert_array_equal(_stored(data["inputs"][row.inputs])[key], value)


@pytest.mark.parametrize(("row", "stored"),
                         [*_stored_rows(TORCH, guides.TORCH_ROWS),
                          *_stored_rows(KERAS, guides.KERAS_ROWS)],
                         ids=lambda x: getattr(x, "other", ""))
def test_row_gives_the_stored_value(row, stored):
  if stored is None:
    pytest.fail("no stored value: see test_stored_vectors_match_the_rows")
  data = TORCH if any(row is r for r in guides.TORCH_ROWS) else KERAS
  inputs = _stored(data["inputs"][row.inputs])
  _assert_close(_run(row.jaxloss, inputs), np.asarray(stored["value"]), row.rtol,
                f"{row.jaxloss} against {row.other}")


def _called(rows, prefix: str) -> set[str]:
  names = set()
  for row in rows:
    start = 0
    while (i := row.other.find(prefix, start)) >= 0:
      j = i + len(prefix)
      k = row.other.index("(", j)
      names.add(row.other[j:k])
      start = k
  return names


def _optax_losses() -> set[str]:
  return {n for n in dir(optax.losses) if not n.startswith("_") and callable(getattr(optax.losses,
                                                                                   n))}


@pytest.mark.parametrize(("listed", "called", "missing", "what"), [
    (_optax_losses(), _called(guides.OPTAX_ROWS, "optax.losses."), guides.OPTAX_MISSING,
     "optax.losses"),
    (set(TORCH["functional_losses"]), _called(guides.TORCH_ROWS, "F."), guides.TORCH_MISSING,
     "torch.nn.functional"),
    (set(TORCH["torchvision_losses"]), _called(guides.TORCH_ROWS, "torchvision.ops."), {},
     "torchvision.ops"),
    (set(KERAS["losses"]), _called(guides.KERAS_ROWS, "keras.losses."), guides.KERAS_MISSING,
     "keras.losses"),
], ids=["optax", "torch", "torchvision", "keras"])
def test_every_loss_has_a_row_or_is_listed_missing(listed, called, missing, what):
  assert not listed - called - set(missing), f"{what} losses without a guide row"
  assert not set(missing) & called, f"{what}: listed missing but has a row"
  # A missing name that jaxloss has gained needs its row (docs/guides.py).
  gained = {n for n in missing if n in jaxloss.__all__}
  assert not gained, f"jaxloss now has {gained}: add the rows to docs/guides.py"


@pytest.mark.parametrize("name", sorted(guides.PAGES))
def test_committed_page_is_generated_from_the_rows(name):
  committed = (ROOT / "docs" / name).read_text()
  assert committed == guides.PAGES[name](), f"run `python docs/guides.py` (docs/{name})"


def test_every_jaxloss_name_in_a_row_exists():
  for row in [*guides.OPTAX_ROWS, *guides.TORCH_ROWS, *guides.KERAS_ROWS]:
    for name in _called([guides.Row(row.jaxloss, "", "")], "jaxloss."):
      assert name in jaxloss.__all__, f"{row.jaxloss}: jaxloss.{name} is not public"
