"""The benchmark machinery (``python -m bench``) on one loss at a tiny size: it must write the
Markdown table and the PNG chart. Timing values are not asserted (the CPU is shared)."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from bench import large_vocab, registry, runner, specs, suite


def test_bench_writes_table_and_chart(tmp_path: pathlib.Path):
  tiny = {"l2_loss": specs.Spec("l2_loss", "elementwise", registry.pair,
                                {"quick": {"shape": (1024,)}})}
  run = suite.benchmark(["l2_loss"], quick=True, out=tmp_path, partial=True, spec_table=tiny,
                        repeats=2, large_vocab=False)
  (result,) = run.results
  assert result.error is None, result.error
  assert result.repeats == 2
  assert ("fb", "optax") in result.ratios  # optax's l2_loss was found and timed
  assert result.notes == []  # jaxloss and optax agree on the value
  mds, pngs = list(tmp_path.glob("*.md")), list(tmp_path.glob("*.png"))
  assert [p.name for p in mds] == [f"{jax.default_backend()}-" + mds[0].name.split("-", 1)[1]]
  assert mds[0].name.endswith("-quick-partial.md") and pngs[0].stem == mds[0].stem
  text = mds[0].read_text()
  assert "| `l2_loss` | 1024 float32, 1024 float32 |" in text
  assert f"jax {jax.__version__}" in text
  assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_optax_references_agree_with_jaxloss_at_the_test_size():
  # The bench compares like with like: each optax reference gives jaxloss's mean (the runner
  # notes a disagreement beyond VALUE_RTOL; here it fails). Which names are timed is the
  # registry's (tests/test_registry.py checks every public name has an entry).
  import optax

  for name, spec in specs.SPECS.items():
    label, reference = spec.optax or ("optax", getattr(optax.losses, name, None))
    if reference is None:
      continue
    args = spec.build(jax.random.key(1), "test")
    kwargs = spec.keywords(bench=True)
    ours = float(jnp.mean(getattr(jaxloss, name)(*args, **kwargs)))
    # optax is written for numpy's implicit rank promotion (its multiclass generalized dice
    # multiplies (B, C) by (C,)); the suite's strict mode is for jaxloss's own code.
    with jax.numpy_rank_promotion("allow"):
      theirs = float(jnp.mean(reference(*args, **kwargs)))
    assert abs(ours - theirs) <= runner.VALUE_RTOL * max(1.0, abs(ours)), (name, label, ours,
                                                                          theirs)


def test_large_vocab_floor_runs_the_products_it_claims():
  """``bench.large_vocab.three_products`` (the time floor's yardstick) computes, chunk by chunk,
  dh = (h W) Wᵀ and dW = hᵀ (h W), checked in float64 numpy."""
  rng = np.random.default_rng(0)
  h, w = rng.normal(size=(64, 8)), rng.normal(size=(8, 8192)) / 3  # two chunks of 4096
  dh, dw = large_vocab.three_products(jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32),
                                      None)
  z = h @ w
  np.testing.assert_allclose(dh, z @ w.T, rtol=1e-4, atol=1e-4 * np.abs(z @ w.T).max())
  np.testing.assert_allclose(dw, h.T @ z, rtol=1e-4, atol=1e-4 * np.abs(h.T @ z).max())
