"""Closed-form derivative tests: the gradient written from the maths against ``jax.grad``.

Each test states the derivative, evaluates it in numpy float64 at random points and exactly at
the kinks, where the documented sub-gradient (contract 4 in DESIGN.md) must come out.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _reference import assert_close


def grad_of_sum(fn, x, *args, **kwargs):
  return jax.grad(lambda p: jnp.sum(fn(p, *args, **kwargs)))(jnp.asarray(x, jnp.float32))


def _points(rng, kinks):
  """Random residuals plus the kinks, exactly representable in float32."""
  x = rng.normal(size=64).astype(np.float32) * 3
  return np.concatenate([x, np.asarray(kinks, np.float32)])


# ------------------------------------------------------------------------------ regression

def test_l1_gradient_is_sign_and_zero_at_zero(rng):
  x = _points(rng, [0.0, -0.0])
  g = grad_of_sum(jaxloss.l1_loss, x)
  np.testing.assert_array_equal(g, np.sign(x))
  assert g[-1] == 0 and g[-2] == 0


def test_squared_error_gradient(rng):
  x = _points(rng, [0.0])
  t = np.float32(0.25)
  assert_close(grad_of_sum(jaxloss.squared_error, x, t), 2 * (np.float64(x) - t))
  assert_close(grad_of_sum(jaxloss.l2_loss, x, t), np.float64(x) - t)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_smooth_l1_gradient_and_kinks(rng, beta):
  x = _points(rng, [beta, -beta, 0.0])
  expected = np.where(np.abs(x) < beta, x / beta, np.sign(x))
  g = grad_of_sum(jaxloss.smooth_l1_loss, x, beta=beta)
  assert_close(g, expected)
  np.testing.assert_array_equal(g[-3:], [1.0, -1.0, 0.0])


def test_smooth_l1_beta_zero_is_l1_with_finite_gradient(rng):
  x = _points(rng, [0.0])
  g = grad_of_sum(jaxloss.smooth_l1_loss, x, beta=0.0)
  np.testing.assert_array_equal(g, np.sign(x))
  assert np.all(np.isfinite(g))


@pytest.mark.parametrize("delta", [0.3, 1.0, 3.0])
def test_huber_gradient_and_kinks(rng, delta):
  d = np.float32(delta)
  x = _points(rng, [d, -d, 0.0])
  expected = np.where(np.abs(x) <= d, x, d * np.sign(x))
  g = grad_of_sum(jaxloss.huber_loss, x, delta=delta)
  assert_close(g, expected)
  np.testing.assert_array_equal(g[-3:], [d, -d, 0.0])


def test_log_cosh_gradient_and_second_derivative(rng):
  x = _points(rng, [0.0, 20.0, -20.0])
  assert_close(grad_of_sum(jaxloss.log_cosh, x), np.tanh(np.float64(x)))
  second = jax.vmap(jax.grad(jax.grad(lambda p: jaxloss.log_cosh(p))))(jnp.asarray(x))
  assert_close(second, 1 / np.cosh(np.float64(x)) ** 2)
  assert second[-3] == 1.0  # sech²(0), not the 0 that |x| differentiated twice would give


@pytest.mark.parametrize("q", [0.0, 0.3, 1.0])
def test_quantile_gradient_and_kink(rng, q):
  p = _points(rng, [0.5])
  t = np.float32(0.5)
  expected = np.where(p < t, -q, np.where(p > t, 1 - q, 0.0))
  g = grad_of_sum(jaxloss.quantile_loss, p, t, quantile=q)
  assert_close(g, expected)
  assert g[-1] == 0.0


def test_poisson_nll_gradients(rng):
  x = rng.normal(size=32).astype(np.float32)
  t = rng.poisson(2.0, size=32).astype(np.float32)
  assert_close(grad_of_sum(jaxloss.poisson_nll_loss, x, t), np.exp(np.float64(x)) - t)
  r = rng.uniform(0.1, 4.0, size=32).astype(np.float32)
  g = grad_of_sum(jaxloss.poisson_nll_loss, r, t, log_input=False, eps=1e-3)
  assert_close(g, 1 - t / (np.float64(r) + 1e-3), rtol=1e-4)


def test_gaussian_nll_gradients_with_straight_through_clamp(rng):
  mu = rng.normal(size=32).astype(np.float32)
  t = rng.normal(size=32).astype(np.float32)
  var = rng.uniform(0.2, 2.0, size=32).astype(np.float32)
  var[:4] = [1e-9, 0.0, 5e-7, 1e-6]  # at or below eps = 1e-6: the clamp is active
  v = np.maximum(np.float64(var), 1e-6)
  e = np.float64(mu) - t
  f = jaxloss.gaussian_nll_loss
  g_mu = jax.grad(lambda m: jnp.sum(f(m, jnp.asarray(t), jnp.asarray(var))))(jnp.asarray(mu))
  g_var = jax.grad(lambda s: jnp.sum(f(jnp.asarray(mu), jnp.asarray(t), s)))(jnp.asarray(var))
  assert_close(g_mu, e / v, rtol=1e-4)
  # d/dσ² = ½(1/v − e²/v²) at the clamped v, passed straight through (PyTorch's behaviour).
  assert_close(g_var, 0.5 * (1 / v - e * e / v ** 2), rtol=1e-4)
  assert np.all(g_var[:4] != 0)


# Later families append their closed-form tests below, one section per module.
