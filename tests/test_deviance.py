"""Tweedie deviances and the Brier score: scikit-learn's per-sample formulas written in numpy
float64 (and its documented example numbers), closed-form derivatives, domains and bad input.
scikit-learn itself is not a test dependency."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from scipy.special import xlogy

import jaxloss
from _reference import assert_close


def np_tweedie(mu, y, p):
  """scikit-learn's ``_mean_tweedie_deviance`` before the average, in float64."""
  mu, y = np.float64(mu), np.float64(y)
  if p < 0:
    return 2 * (np.power(np.maximum(y, 0), 2 - p) / ((1 - p) * (2 - p))
                - y * np.power(mu, 1 - p) / (1 - p) + np.power(mu, 2 - p) / (2 - p))
  if p == 0:
    return (y - mu) ** 2
  if p == 1:
    return 2 * (xlogy(y, y / mu) - y + mu)
  if p == 2:
    return 2 * (np.log(mu / y) + y / mu - 1)
  return 2 * (np.power(y, 2 - p) / ((1 - p) * (2 - p)) - y * np.power(mu, 1 - p) / (1 - p)
              + np.power(mu, 2 - p) / (2 - p))


POWERS = [-1.5, 0.0, 1.0, 1.3, 2.0, 3.0]


def _data(rng, p, n=40):
  mu = np.float32(rng.uniform(0.2, 5.0, n))
  if p <= 0:
    y = np.float32(rng.normal(2.0, 2.0, n))
  elif p < 2:
    y = np.float32(rng.poisson(2.0, n))  # zeros included
  else:
    y = np.float32(rng.gamma(2.0, 1.0, n) + 0.05)
  return mu, y


@pytest.mark.parametrize("power", POWERS)
def test_tweedie_against_sklearn_formula(rng, power):
  mu, y = _data(rng, power)
  assert_close(jaxloss.tweedie_deviance(mu, y, power=power), np_tweedie(mu, y, power))
  # log-link input: the same numbers from log μ.
  eta = np.float32(np.log(mu))
  assert_close(jaxloss.tweedie_deviance(eta, y, power=power, log_input=True),
               np_tweedie(np.exp(np.float64(eta)), y, power), rtol=2e-5)


def test_named_deviances_and_sklearn_documented_examples():
  y = np.float32([2, 0, 1, 4])
  mu = np.float32([0.5, 0.5, 2.0, 2.0])
  # scikit-learn's docstring examples: mean_poisson_deviance 1.4260..., mean_gamma_deviance
  # 1.0568..., mean_tweedie_deviance(power=1) 1.4260...
  assert float(jnp.mean(jaxloss.poisson_deviance(mu, y))) == pytest.approx(1.4260, abs=1e-4)
  assert float(jnp.mean(jaxloss.tweedie_deviance(mu, y, power=1))) == pytest.approx(1.4260,
                                                                                    abs=1e-4)
  y_gamma = np.float32([2, 0.5, 1, 4])
  assert float(jnp.mean(jaxloss.gamma_deviance(mu, y_gamma))) == pytest.approx(1.0568, abs=1e-4)
  np.testing.assert_array_equal(jaxloss.poisson_deviance(mu, y),
                                jaxloss.tweedie_deviance(mu, y, power=1.0))
  np.testing.assert_array_equal(jaxloss.gamma_deviance(mu, y_gamma, log_input=True),
                                jaxloss.tweedie_deviance(mu, y_gamma, power=2, log_input=True))
  np.testing.assert_array_equal(jaxloss.tweedie_deviance(mu, y, power=0),
                                jaxloss.squared_error(mu, y))


@pytest.mark.parametrize("power", POWERS)
def test_tweedie_gradient_closed_form(rng, power):
  mu, y = _data(rng, power)
  m64 = np.float64(mu)
  g = jax.jit(jax.grad(lambda m: jnp.sum(jaxloss.tweedie_deviance(m, y, power=power))))(mu)
  assert_close(g, 2 * m64 ** -power * (m64 - y), rtol=2e-5)  # ∂d/∂μ = 2 μ^{−p} (μ − y)
  eta = np.float32(np.log(mu))
  g = jax.jit(jax.grad(lambda e: jnp.sum(jaxloss.tweedie_deviance(e, y, power=power,
                                                                  log_input=True))))(eta)
  m = np.exp(np.float64(eta))
  assert_close(g, 2 * m ** (1 - power) * (m - y), rtol=2e-5)  # ∂d/∂η = 2 μ^{1−p} (μ − y)


def test_deviance_zero_at_perfect_prediction_and_nonnegative(rng):
  for power in POWERS:
    mu, y = _data(rng, power)
    if power != 0:
      y = np.maximum(y, 0.1)  # y = μ needs μ > 0
    # scikit-learn's formula cancels terms of size |y|^{2−p}/|(1−p)(2−p)| at y = μ: the float32
    # result is 0 up to a few roundings of them.
    y64 = np.float64(y)
    terms = (np.abs(y64) ** (2 - power) * (1 / abs((1 - power) * (2 - power) or 1)
                                           + 1 / abs(1 - power or 1) + 1 / abs(2 - power or 1))
             if power not in (0, 1, 2) else np.ones_like(y64))
    out = np.asarray(jaxloss.tweedie_deviance(y, y, power=power))
    assert np.all(np.abs(out) <= 8 * np.finfo(np.float32).eps * terms)
    assert np.all(np.asarray(jaxloss.tweedie_deviance(mu, y, power=power)) >= -1e-5)


def test_domains_give_nan_with_zero_gradient_and_checkify_errors():
  mu = np.float32([1.0, -1.0, 2.0, 0.0])
  y = np.float32([1.0, 1.0, -3.0, 1.0])
  out = np.asarray(jaxloss.poisson_deviance(mu, y))
  assert np.isfinite(out[0]) and np.all(np.isnan(out[1:]))
  g = jax.grad(lambda m: jnp.sum(jnp.where(jnp.arange(4) == 0, jaxloss.poisson_deviance(m, y),
                                           0.0)))(mu)
  np.testing.assert_array_equal(g[1:], 0.0)
  assert np.isnan(jaxloss.gamma_deviance(np.float32([1.0]), np.float32([0.0]))).all()
  # power <= 0 takes any target; power = 0 any mean.
  assert np.isfinite(jaxloss.tweedie_deviance(np.float32([-2.0]), np.float32([-1.0]),
                                              power=0)).all()
  assert np.isfinite(jaxloss.tweedie_deviance(np.float32([2.0]), np.float32([-1.0]),
                                              power=-1)).all()
  checked = checkify.checkify(lambda m: jaxloss.poisson_deviance(m, y),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(mu)
  with pytest.raises(checkify.JaxRuntimeError, match="predictions"):
    err.throw()
  checked = checkify.checkify(lambda t: jaxloss.tweedie_deviance(np.float32([1.0]), t, power=1.5),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(np.float32([-1.0]))
  with pytest.raises(checkify.JaxRuntimeError, match="targets"):
    err.throw()


def test_power_validation_and_dtypes(rng):
  mu, y = _data(rng, 1.0, 8)
  with pytest.raises(ValueError, match="power"):
    jaxloss.tweedie_deviance(mu, y, power=0.5)
  with pytest.raises(TypeError, match="static"):
    jaxloss.tweedie_deviance(mu, y, power=jnp.float32(1.5))
  with pytest.raises(TypeError, match="power"):
    jaxloss.tweedie_deviance(mu, y, power=float("inf"))
  with pytest.raises(ValueError, match="same shape"):
    jaxloss.poisson_deviance(mu, y[:4])
  assert jaxloss.poisson_deviance(jnp.asarray(mu, jnp.bfloat16), np.int32(y)).dtype == jnp.bfloat16
  assert jaxloss.poisson_deviance(jnp.asarray(mu, jnp.bfloat16), y).dtype == jnp.float32
  assert_close(jaxloss.poisson_deviance(mu, np.int32(y)), np_tweedie(mu, y, 1))
  assert_close(jax.vmap(lambda m, t: jaxloss.tweedie_deviance(m, t, power=1.3))(mu, y),
               np_tweedie(mu, y, 1.3))


# --------------------------------------------------------------------------------------------
# Brier score.
# --------------------------------------------------------------------------------------------

def test_brier_binary_and_sklearn_documented_example(rng):
  # scikit-learn's docstring example: brier_score_loss([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3])
  # = 0.037...
  p = np.float32([0.1, 0.9, 0.8, 0.3])
  y = np.int32([0, 1, 1, 0])
  assert float(jnp.mean(jaxloss.brier_score(p, y))) == pytest.approx(0.0375, abs=1e-7)
  probs = np.float32(rng.random((3, 5)))
  labels = rng.random((3, 5)) < 0.5
  assert_close(jaxloss.brier_score(probs, labels), (np.float64(probs) - labels) ** 2)
  g = jax.grad(lambda q: jnp.sum(jaxloss.brier_score(q, labels)))(probs)
  assert_close(g, 2 * (np.float64(probs) - labels))


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_brier_multiclass(rng, n_classes):
  logits = rng.normal(size=(4, 6, n_classes))
  probs = np.float32(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
  y = rng.integers(0, n_classes, size=(4, 6))
  onehot = np.eye(n_classes)[y]
  scale = 0.5 if n_classes == 2 else 1.0  # scikit-learn's scale_by_half="auto"
  ref = scale * ((np.float64(probs) - onehot) ** 2).sum(-1)
  assert_close(jaxloss.brier_score(probs, y), ref)
  g = jax.grad(lambda q: jnp.sum(jaxloss.brier_score(q, y)))(probs)
  assert_close(g, 2 * scale * (np.float64(probs) - onehot))
  moved = np.moveaxis(probs, -1, 1)
  assert_close(jaxloss.brier_score(moved, y, axis=1), ref)
  if n_classes == 2:  # two columns = the binary form on the positive column
    assert_close(jaxloss.brier_score(probs, y), jaxloss.brier_score(probs[..., 1], y))


def test_brier_bad_labels():
  probs = np.float32([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
  y = np.int32([1, 3])
  out = np.asarray(jaxloss.brier_score(probs, y))
  assert np.isfinite(out[0]) and np.isnan(out[1])
  g = jax.grad(lambda q: jnp.sum(jnp.where(jnp.arange(2) == 0, jaxloss.brier_score(q, y),
                                           0.0)))(probs)
  np.testing.assert_array_equal(g[1], 0.0)
  checked = checkify.checkify(lambda q: jaxloss.brier_score(q, y), errors=checkify.user_checks)
  err, _ = jax.jit(checked)(probs)
  with pytest.raises(checkify.JaxRuntimeError, match=r"in \[0, 3\)"):
    err.throw()
  with pytest.raises(TypeError, match="integer"):
    jaxloss.brier_score(probs, np.float32([1, 2]))
  assert jaxloss.brier_score(jnp.asarray(probs, jnp.bfloat16), y).dtype == jnp.bfloat16


def test_docstring_examples():
  import doctest

  import jaxloss.deviance as module
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
