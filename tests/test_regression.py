"""Regression losses: values against numpy float64, PyTorch vectors, optax, and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from _reference import assert_close, torch_cases

SHAPE = (5, 7)


def _pair(rng, scale=2.0):
  p = rng.normal(size=SHAPE) * scale
  t = rng.normal(size=SHAPE) * scale
  return p, t


def np_smooth_l1(x, beta):
  a = np.abs(x)
  return np.where(a < beta, 0.5 * x * x / max(beta, 1e-300), a - 0.5 * beta)


def np_huber(x, delta):
  a = np.abs(x)
  return np.where(a <= delta, 0.5 * x * x, delta * (a - 0.5 * delta))


NUMPY_REFERENCES = [
    ("l1_loss", {}, lambda p, t: np.abs(p - t)),
    ("squared_error", {}, lambda p, t: (p - t) ** 2),
    ("l2_loss", {}, lambda p, t: 0.5 * (p - t) ** 2),
    ("smooth_l1_loss", {"beta": 0.7}, lambda p, t: np_smooth_l1(p - t, 0.7)),
    ("smooth_l1_loss", {"beta": 0.0}, lambda p, t: np.abs(p - t)),
    ("huber_loss", {"delta": 1.3}, lambda p, t: np_huber(p - t, 1.3)),
    ("log_cosh", {}, lambda p, t: np.log(np.cosh(p - t))),
    ("quantile_loss", {"quantile": 0.2},
     lambda p, t: np.maximum(0.2 * (t - p), (0.2 - 1) * (t - p))),
]


@pytest.mark.parametrize("name,kwargs,reference", NUMPY_REFERENCES,
                         ids=[f"{n}-{k}" for n, k, _ in NUMPY_REFERENCES])
def test_values_against_numpy(rng, name, kwargs, reference):
  p, t = _pair(rng)
  out = getattr(jaxloss, name)(jnp.asarray(p, jnp.float32), jnp.asarray(t, jnp.float32), **kwargs)
  assert out.shape == SHAPE and out.dtype == jnp.float32
  assert_close(out, reference(p.astype(np.float32).astype(np.float64),
                              t.astype(np.float32).astype(np.float64)))


@pytest.mark.parametrize("name", ["l1_loss", "squared_error", "l2_loss", "smooth_l1_loss",
                                  "huber_loss", "log_cosh"])
def test_targets_none_means_zero(rng, name):
  p = jnp.asarray(rng.normal(size=SHAPE), jnp.float32)
  fn = getattr(jaxloss, name)
  np.testing.assert_array_equal(fn(p), fn(p, jnp.zeros(SHAPE, jnp.float32)))


def test_scalar_target_allowed(rng):
  p = jnp.asarray(rng.normal(size=SHAPE), jnp.float32)
  np.testing.assert_array_equal(jaxloss.huber_loss(p, 0.5),
                                jaxloss.huber_loss(p, jnp.full(SHAPE, 0.5, jnp.float32)))


def test_log_cosh_large_residuals_finite():
  x = jnp.asarray([-1e4, -100.0, 100.0, 1e4, 1e30], jnp.float32)
  ref = np.abs(np.float64(x)) - math.log(2.0)
  assert_close(jaxloss.log_cosh(x), ref)


def test_poisson_nll_log_input_against_numpy(rng):
  x = rng.normal(size=SHAPE)
  t = rng.poisson(3.0, size=SHAPE).astype(np.float64)
  for full in (False, True):
    ref = np.exp(x) - t * x
    if full:
      safe = np.where(t > 1, t, 1.0)
      ref = ref + np.where(t > 1, safe * np.log(safe) - safe + 0.5 * np.log(2 * np.pi * safe), 0)
    out = jaxloss.poisson_nll_loss(jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32),
                                   full=full)
    assert_close(out, ref)


def test_poisson_nll_rate_input_against_numpy(rng):
  x = rng.uniform(0.1, 5.0, size=SHAPE)
  t = rng.poisson(3.0, size=SHAPE).astype(np.float64)
  out = jaxloss.poisson_nll_loss(jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32),
                                 log_input=False, eps=1e-3)
  assert_close(out, x - t * np.log(x + 1e-3))


def test_gaussian_nll_against_numpy(rng):
  mu, t = _pair(rng)
  var = rng.uniform(1e-3, 2.0, size=SHAPE)
  var[0, 0] = 1e-9  # below eps: clamped
  for full in (False, True):
    v = np.maximum(var, 1e-6)
    ref = 0.5 * (np.log(v) + (mu - t) ** 2 / v) + (0.5 * np.log(2 * np.pi) if full else 0.0)
    out = jaxloss.gaussian_nll_loss(*(jnp.asarray(a, jnp.float32) for a in (mu, t, var)),
                                    full=full)
    assert_close(out, ref, rtol=2e-5)


def test_gaussian_nll_variance_shapes(rng):
  mu, t = (jnp.asarray(a, jnp.float32) for a in _pair(rng))
  var = jnp.asarray(rng.uniform(0.5, 2.0, size=SHAPE[:-1]), jnp.float32)
  full_var = jnp.broadcast_to(var[:, None], SHAPE)
  expected = jaxloss.gaussian_nll_loss(mu, t, full_var)
  np.testing.assert_allclose(jaxloss.gaussian_nll_loss(mu, t, var), expected, rtol=1e-6)
  np.testing.assert_allclose(jaxloss.gaussian_nll_loss(mu, t, var[:, None]), expected, rtol=1e-6)
  with pytest.raises(ValueError, match=r"variance.shape=\(3,\)"):
    jaxloss.gaussian_nll_loss(mu, t, jnp.ones((3,), jnp.float32))


def test_gaussian_nll_negative_variance_is_nan_and_checkified():
  mu = jnp.zeros((3,), jnp.float32)
  var = jnp.asarray([1.0, -1.0, 2.0], jnp.float32)
  out = jaxloss.gaussian_nll_loss(mu, 0.0, var)
  assert np.isnan(out[1]) and np.all(np.isfinite(np.asarray(out)[[0, 2]]))
  err, _ = checkify.checkify(jaxloss.gaussian_nll_loss, errors=checkify.user_checks)(mu, 0.0, var)
  with pytest.raises(checkify.JaxRuntimeError, match="variance"):
    err.throw()


TORCH_NAMES = {"l1_loss": "l1_loss", "mse_loss": "squared_error",
               "smooth_l1_loss": "smooth_l1_loss", "huber_loss": "huber_loss",
               "poisson_nll_loss": "poisson_nll_loss", "gaussian_nll_loss": "gaussian_nll_loss"}
TORCH = [c for f in TORCH_NAMES for c in torch_cases(f)]


@pytest.mark.parametrize("case", TORCH, ids=[c["name"] for c in TORCH])
def test_against_pytorch_vectors(case):
  fn = getattr(jaxloss, TORCH_NAMES[case["torch_function"]])
  inputs = [jnp.asarray(np.asarray(a), jnp.float32) for a in case["inputs"]]
  kwargs = dict(case["kwargs"])
  value, grad = jax.value_and_grad(lambda x: jnp.sum(fn(x, *inputs[1:], **kwargs)))(inputs[0])
  assert_close(fn(*inputs, **kwargs), np.asarray(case["loss"]), rtol=1e-5)
  assert_close(grad, np.asarray(case["grad"]), rtol=1e-4)
  assert np.isfinite(value)


OPTAX = [("squared_error", {}, {}), ("l2_loss", {}, {}), ("huber_loss", {"delta": 0.8},
                                                           {"delta": 0.8}), ("log_cosh", {}, {})]


@pytest.mark.parametrize("name,ours,theirs", OPTAX, ids=[o[0] for o in OPTAX])
def test_optax_agreement(rng, name, ours, theirs):
  p, t = (jnp.asarray(a, jnp.float32) for a in _pair(rng))
  mine = lambda x: jnp.sum(getattr(jaxloss, name)(x, t, **ours))
  ref = lambda x: jnp.sum(getattr(optax.losses, name)(x, t, **theirs))
  np.testing.assert_allclose(getattr(jaxloss, name)(p, t, **ours),
                             getattr(optax.losses, name)(p, t, **theirs), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.grad(mine)(p), jax.grad(ref)(p), rtol=1e-5, atol=1e-6)


ELEMENTWISE = ["l1_loss", "squared_error", "l2_loss", "smooth_l1_loss", "huber_loss", "log_cosh",
               "quantile_loss", "poisson_nll_loss"]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_shape_mismatch_names_both_shapes(name):
  # optax 0.2.8's huber_loss broadcasts (N,) against (N, 1) into an (N, N) loss.
  p = jnp.zeros((4,), jnp.float32)
  t = jnp.zeros((4, 1), jnp.float32)
  with pytest.raises(ValueError, match=r"\(4,\).*\(4, 1\)"):
    getattr(jaxloss, name)(p, t)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_integer_predictions_raise_type_error(name):
  with pytest.raises(TypeError, match="floating"):
    getattr(jaxloss, name)(jnp.arange(3), jnp.zeros((3,), jnp.float32))


@pytest.mark.parametrize("name,kwarg,value", [
    ("huber_loss", "delta", -1.0), ("huber_loss", "delta", 0.0), ("smooth_l1_loss", "beta", -0.5),
    ("quantile_loss", "quantile", 1.5), ("quantile_loss", "quantile", -0.1),
    ("gaussian_nll_loss", "eps", 0.0)])
def test_bad_hyperparameter_raises_naming_it(name, kwarg, value):
  args = [jnp.ones((3,), jnp.float32)] * (3 if name == "gaussian_nll_loss" else 2)
  with pytest.raises(ValueError, match=rf"{name}\({kwarg}=\.\.\.\)"):
    getattr(jaxloss, name)(*args, **{kwarg: value})


def test_traced_bad_hyperparameter_caught_by_checkify():
  x = jnp.ones((3,), jnp.float32)
  f = checkify.checkify(lambda d: jaxloss.huber_loss(x, delta=d), errors=checkify.user_checks)
  err, _ = jax.jit(f)(jnp.float32(-2.0))
  with pytest.raises(checkify.JaxRuntimeError, match=r"huber_loss\(delta=\.\.\.\)"):
    err.throw()
  err, _ = jax.jit(f)(jnp.float32(2.0))
  assert err.get() is None


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_computes_in_float32_returns_input_dtype(rng, dtype):
  p, t = _pair(rng)
  lo = jnp.asarray(p, dtype), jnp.asarray(t, dtype)
  for name in ELEMENTWISE:
    out = getattr(jaxloss, name)(*lo)
    assert out.dtype == dtype, name
    ref = getattr(jaxloss, name)(*(a.astype(jnp.float32) for a in lo))
    # One rounding of the float32 result to the input dtype (plus f16's exp range for Poisson).
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(np.float32(out), ref, rtol=2 * eps, atol=2 * eps, err_msg=name)


# Accuracy and overflow (the adversarial sweep of the accuracy issue): float64 references.

def _log_cosh_reference(x):
  # log cosh x = log1p(cosh x − 1), cosh x − 1 = 2 sinh²(x/2): no cancellation (x in float64
  # or long double); |x| − log 2 + log1p(e^{−2|x|}) where sinh would overflow.
  a = np.abs(x)
  with np.errstate(over="ignore"):
    return np.where(a < 1, np.log1p(2 * np.sinh(a / 2) ** 2),
                    a - np.log(x.dtype.type(2)) + np.log1p(np.exp(-2 * a)))


LOG_COSH_GRID = np.concatenate([np.geomspace(1e-18, 90, 20001), np.linspace(0.7, 0.8, 2001),
                                -np.geomspace(1e-3, 30, 1001),
                                [1e-7, 1e-4, 3e-4, 0.0235556, 0.5, 0.999, 1.0, 3.0, 50.0]])


def test_log_cosh_keeps_relative_accuracy_near_zero():
  x = LOG_COSH_GRID.astype(np.float32)
  truth = _log_cosh_reference(x.astype(np.float64))
  out = np.asarray(jaxloss.log_cosh(jnp.asarray(x)), np.float64)
  # Two float32 ulps of the value at every magnitude (½x² down to 5e-37).
  np.testing.assert_allclose(out, truth, rtol=2 * 2.0**-23)


def test_log_cosh_is_exact_in_float64():
  with jax.enable_x64(True):
    x = jnp.asarray(LOG_COSH_GRID, jnp.float64)
    out = np.asarray(jaxloss.log_cosh(x), np.longdouble)
    grad = np.asarray(jax.vmap(jax.grad(jaxloss.log_cosh))(x), np.longdouble)
  x = LOG_COSH_GRID.astype(np.longdouble)
  np.testing.assert_allclose(out, _log_cosh_reference(x), rtol=8 * 2.0**-52)
  np.testing.assert_allclose(grad, np.tanh(x), rtol=8 * 2.0**-52)


def test_log_cosh_derivatives_keep_relative_accuracy():
  x = jnp.asarray(LOG_COSH_GRID[LOG_COSH_GRID < 40], jnp.float32)
  x64 = np.asarray(x, np.float64)
  grad = jax.vmap(jax.grad(jaxloss.log_cosh))(x)
  second = jax.vmap(jax.grad(jax.grad(jaxloss.log_cosh)))(x)
  np.testing.assert_allclose(np.asarray(grad, np.float64), np.tanh(x64), rtol=3 * 2.0**-23)
  # sech² x = 4e/(1 + e)², e = e^{−2|x|}: relative accuracy at x = 20 too, where 1 − tanh² x
  # would round to 0.
  np.testing.assert_allclose(np.asarray(second, np.float64), 1 / np.cosh(x64) ** 2,
                             rtol=4 * 2.0**-23)


def test_log_cosh_coefficients_are_the_float64_fits():
  def chebyshev_nodes(hi, n=4000):
    return hi / 2 * (1 - np.cos(np.pi * (np.arange(n) + 0.5) / n))

  def fit(u, y, degree):
    return np.linalg.lstsq(np.stack([u**j for j in range(degree)], 1), y, rcond=None)[0]

  from jaxloss import regression
  s = chebyshev_nodes(regression._LOG_COSH_SMALL ** 2)
  e = chebyshev_nodes(math.exp(-2 * regression._LOG_COSH_SMALL))
  np.testing.assert_allclose(regression._LOG_COSH_P,
                             fit(s, _log_cosh_reference(np.sqrt(s)) / s, 6), rtol=1e-8)
  np.testing.assert_allclose(regression._LOG1P_R, fit(e, np.log1p(e) / e, 5), rtol=1e-8)


def test_smooth_l1_gradient_does_not_cancel_for_tiny_residuals():
  for beta, x in ((0.9, 1.2e-11), (3.6e4, -0.0315), (2.0, 3e-30)):
    g = jax.grad(lambda p, b=beta: jaxloss.smooth_l1_loss(p, beta=b))(jnp.float32(x))
    x32 = float(np.float32(x))
    np.testing.assert_allclose(float(g), x32 / np.float64(np.float32(beta)), rtol=1e-6)


def test_smooth_l1_hessian_at_zero_residual_is_one_over_beta():
  for beta in (0.5, 1.0, 3.0):
    h = jax.hessian(lambda p, b=beta: jaxloss.smooth_l1_loss(p, beta=b))(jnp.float32(0.0))
    np.testing.assert_allclose(float(h), 1.0 / beta, rtol=1e-6)


def test_smooth_l1_huge_beta_does_not_overflow():
  out = jaxloss.smooth_l1_loss(jnp.float32([1e21, 5e19, -3e20]), beta=1e20)
  x = np.array([1e21, 5e19, -3e20])
  assert_close(out, np_smooth_l1(x, 1e20))
  assert np.all(np.isfinite(np.asarray(out)))


def test_smooth_l1_derivative_in_beta_matches_closed_form(rng):
  x = rng.normal(size=8) * 2
  beta = 1.3
  g = jax.grad(lambda b: jnp.sum(jaxloss.smooth_l1_loss(jnp.asarray(x, jnp.float32), beta=b)))(
      jnp.float32(beta))
  x32 = x.astype(np.float32).astype(np.float64)
  inside = np.abs(x32) < beta
  truth = np.sum(np.where(inside, -0.5 * (x32 / beta) ** 2, -0.5))
  np.testing.assert_allclose(float(g), truth, rtol=1e-5)


def test_gaussian_nll_does_not_overflow_where_the_loss_is_finite():
  mu, var = 1e20, 1e10
  out = jaxloss.gaussian_nll_loss(jnp.float32(mu), 0.0, jnp.float32(var))
  np.testing.assert_allclose(float(out), 0.5 * (math.log(var) + mu * mu / var), rtol=1e-6)
  # d/dσ² = ½(1/v − (μ − t)²/v²), finite at variances above 1.8e19 where v² overflows.
  for mu, var in ((1e20, 1e20), (3.0, 4e19), (1e-3, 1e25)):
    g = jax.grad(lambda v, m=mu: jaxloss.gaussian_nll_loss(jnp.float32(m), 0.0, v))(
        jnp.float32(var))
    m32, v32 = float(np.float32(mu)), float(np.float32(var))
    np.testing.assert_allclose(float(g), 0.5 * (1 / v32 - (m32 / v32) ** 2 * 1.0), rtol=1e-5,
                               atol=1e-30)
