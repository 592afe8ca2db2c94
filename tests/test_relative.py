"""Keras's relative-error losses, elementwise: values from Keras's documented formulas in numpy
float64, closed-form derivatives (with the kink and clamp sub-gradients), dtypes and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _reference import assert_close

EPS = 1e-7  # keras.backend.epsilon()


def np_mape(p, t, eps=EPS):
  """Keras: 100 · |(t − p) / max(|t|, ε)| (before its mean over the last axis)."""
  p, t = np.float64(p), np.float64(t)
  return 100 * np.abs((t - p) / np.maximum(np.abs(t), eps))


def np_msle(p, t, eps=EPS):
  """Keras: (log(max(p, ε) + 1) − log(max(t, ε) + 1))²."""
  p, t = np.float64(p), np.float64(t)
  return (np.log(np.maximum(p, eps) + 1) - np.log(np.maximum(t, eps) + 1)) ** 2


def _grad(fn, p, t, **kwargs):
  return jax.jit(jax.grad(lambda q: jnp.sum(fn(q, t, **kwargs))))(p)


def test_mape_values_and_keras_mean(rng):
  p = np.float32(rng.normal(size=(6, 5)) * 3)
  t = np.float32(rng.normal(size=(6, 5)) * 3)
  t[0, 0] = 0.0  # divides by ε
  out = jaxloss.mean_absolute_percentage_error(p, t)
  assert out.shape == (6, 5)
  assert_close(out, np_mape(p, t))
  # Keras's value is the mean over the last axis.
  assert_close(jnp.mean(out, axis=-1), np_mape(p, t).mean(-1))
  assert_close(jaxloss.mean_absolute_percentage_error(p, t, eps=0.5), np_mape(p, t, 0.5))


def test_mape_gradient_closed_form_and_kink(rng):
  p = np.float32(rng.normal(size=20) * 3)
  t = np.float32(rng.normal(size=20) * 3)
  p[:3] = t[:3]  # the kink p = t: sub-gradient 0
  g = _grad(jaxloss.mean_absolute_percentage_error, p, t)
  ref = 100 * np.sign(np.float64(p) - t) / np.maximum(np.abs(np.float64(t)), EPS)
  assert_close(g, ref)
  np.testing.assert_array_equal(g[:3], 0.0)


def test_msle_values_gradient_and_clamp(rng):
  p = np.float32(rng.uniform(-1, 5, size=30))
  t = np.float32(rng.uniform(-1, 5, size=30))
  p[0] = EPS
  assert_close(jaxloss.mean_squared_logarithmic_error(p, t), np_msle(p, t))
  g = _grad(jaxloss.mean_squared_logarithmic_error, p, t)
  p64 = np.float64(p)
  inside = p64 > np.float32(EPS)
  ref = np.where(inside, 2 * (np.log1p(p64) - np.log1p(np.maximum(t, EPS))) / (1 + p64), 0.0)
  assert_close(g, ref)
  np.testing.assert_array_equal(np.asarray(g)[~inside], 0.0)  # flat at and below ε


def test_msle_is_accurate_for_small_values():
  p = np.float32([1e-6, 3e-5])
  t = np.float32([2e-6, 1e-5])
  assert_close(jaxloss.mean_squared_logarithmic_error(p, t),
               (np.log1p(np.float64(p)) - np.log1p(np.float64(t))) ** 2, rtol=1e-5)


def test_dtypes_shapes_and_bad_input(rng):
  p = np.float32(rng.random((3, 4)) + 0.5)
  t = np.float32(rng.random((3, 4)) + 0.5)
  for fn in (jaxloss.mean_absolute_percentage_error, jaxloss.mean_squared_logarithmic_error):
    assert fn(jnp.asarray(p, jnp.bfloat16), jnp.asarray(t, jnp.bfloat16)).dtype == jnp.bfloat16
    assert fn(jnp.asarray(p, jnp.bfloat16), t).dtype == jnp.float32
    assert fn(p, np.int32([[1, 2, 3, 4]] * 3)).dtype == jnp.float32
    np.testing.assert_array_equal(fn(p, 2.0), fn(p, np.full_like(p, 2.0)))
    with pytest.raises(ValueError, match="same shape"):
      fn(p, t[:, :2])
    with pytest.raises(ValueError, match="eps"):
      fn(p, t, eps=0.0)
    with pytest.raises(TypeError, match="floating"):
      fn(np.int32(p), t)
    assert np.isnan(fn(np.float32([np.nan]), np.float32([1.0]))).all()
    assert_close(jax.vmap(fn)(p, t), fn(p, t))


def test_docstring_examples():
  import doctest

  import jaxloss.relative as module
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
