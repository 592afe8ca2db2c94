"""``jaxloss.reduce``: mean/sum/none with masks and weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _reference import assert_close


def test_mean_and_sum_against_numpy(rng):
  x = rng.normal(size=(4, 6))
  xs = jnp.asarray(x, jnp.float32)
  assert_close(jaxloss.reduce(xs), np.mean(x))
  assert_close(jaxloss.reduce(xs, "sum"), np.sum(x))
  np.testing.assert_array_equal(jaxloss.reduce(xs, "none"), xs)


def test_mask_and_weights(rng):
  x = rng.normal(size=(4, 6))
  m = rng.uniform(size=(4, 6)) < 0.6
  w = rng.uniform(0.1, 2.0, size=(4, 6))
  args = jnp.asarray(x, jnp.float32), jnp.asarray(m), jnp.asarray(w, jnp.float32)
  assert_close(jaxloss.reduce(args[0], where=args[1], weights=args[2]),
               np.sum(m * w * x) / np.sum(m * w))
  assert_close(jaxloss.reduce(args[0], "sum", where=args[1], weights=args[2]), np.sum(m * w * x))
  assert_close(jaxloss.reduce(args[0], "none", where=args[1], weights=args[2]), m * w * x)


def test_broadcast_weights_per_row(rng):
  x = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
  w = jnp.asarray([[1.0], [0.0], [2.0], [1.0]], jnp.float32)
  full = jnp.broadcast_to(w, x.shape)
  np.testing.assert_allclose(jaxloss.reduce(x, weights=w), jaxloss.reduce(x, weights=full),
                             rtol=1e-6)


def test_fully_masked_and_empty_batch_give_zero_with_zero_gradient():
  x = jnp.asarray([1.0, jnp.nan, jnp.inf], jnp.float32)
  mask = jnp.zeros((3,), bool)
  for reduction in ("mean", "sum"):
    value, grad = jax.value_and_grad(lambda v: jaxloss.reduce(v, reduction, where=mask))(x)
    assert value == 0.0
    np.testing.assert_array_equal(grad, np.zeros(3))
  empty = jnp.zeros((0, 5), jnp.float32)
  assert jaxloss.reduce(empty) == 0.0
  np.testing.assert_array_equal(jax.grad(jaxloss.reduce)(empty), np.zeros((0, 5)))


def test_zero_weights_give_zero_mean():
  x = jnp.ones((3,), jnp.float32)
  assert jaxloss.reduce(x, weights=jnp.zeros((3,), jnp.float32)) == 0.0


def test_masked_nan_is_excluded_but_unmasked_nan_propagates():
  x = jnp.asarray([1.0, jnp.nan, 3.0], jnp.float32)
  assert jaxloss.reduce(x, where=jnp.asarray([True, False, True])) == 2.0
  g = jax.grad(lambda v: jaxloss.reduce(v, where=jnp.asarray([True, False, True])))(x)
  np.testing.assert_array_equal(g, [0.5, 0.0, 0.5])
  assert np.isnan(jaxloss.reduce(x))


def test_low_precision_accumulates_in_float32():
  x = jnp.full((4096,), 0.1, jnp.bfloat16)
  out = jaxloss.reduce(x, "sum")
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(float(out), 4096 * float(jnp.bfloat16(0.1)), rtol=8e-3)


def test_bad_arguments():
  x = jnp.ones((3, 2), jnp.float32)
  with pytest.raises(ValueError, match="reduction='avg'"):
    jaxloss.reduce(x, "avg")
  with pytest.raises(ValueError, match=r"where.shape=\(3,\)"):
    jaxloss.reduce(x, where=jnp.ones((3,), bool))
  with pytest.raises(TypeError, match="boolean"):
    jaxloss.reduce(x, where=jnp.ones((3, 2), jnp.float32))
