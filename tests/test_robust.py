"""Barron's general robust loss and its special cases: float64 values from the paper's formula,
the closed-form derivatives in x, c and α (the α-derivative's limit at 0 and its clamp at 2),
finiteness over α in [−1e3, 1e3] and the limits, and the special cases' identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _reference import assert_close

TINY = 2.0 ** -23


@np.errstate(over="ignore")  # values past float64's range are inf, as they should be
def np_general(x, alpha, c):
  """Barron's Eq. 1 in float64 (expm1/log1p form), with its limits at 0, 2 and ±∞."""
  x, alpha, c = np.broadcast_arrays(np.float64(x), np.float64(alpha), np.float64(c))
  z = (x / c) ** 2
  out = np.empty_like(z)
  for i in np.ndindex(z.shape):
    a, zi = alpha[i], z[i]
    if a == 2:
      out[i] = zi / 2
    elif a == 0:
      out[i] = np.log1p(zi / 2)
    elif a == -np.inf:
      out[i] = -np.expm1(-zi / 2)
    elif a == np.inf:
      out[i] = np.expm1(zi / 2)
    else:
      b = abs(a - 2)
      out[i] = b / a * np.expm1(a / 2 * np.log1p(zi / b))
  return out


def np_dx(x, alpha, c):
  """Barron's ψ: ∂f/∂x = (x/c²)(z/|α−2| + 1)^{α/2−1}."""
  x, alpha, c = np.broadcast_arrays(np.float64(x), np.float64(alpha), np.float64(c))
  z = (x / c) ** 2
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    b = np.where(alpha == 2, 1.0, np.abs(alpha - 2))
    w = np.where(alpha == 2, 1.0, np.exp((alpha / 2 - 1) * np.log1p(z / b)))
    w = np.where(alpha == np.inf, np.exp(z / 2), np.where(alpha == -np.inf, np.exp(-z / 2), w))
  return x / c ** 2 * w


def np_dalpha(x, alpha, c):
  """∂f/∂α from the formula: (s/α − b/α²)E + (b/α)(1 + E)L/2 − (1 + E)s z/(2(b + z)), with
  b = |α − 2|, s = sign(α − 2), L = log1p(z/b), E = expm1(αL/2); at α = 0 its limit
  L²/4 − L/2 + z/(2(2 + z))."""
  z = (np.float64(x) / c) ** 2
  if alpha == 0:
    lg = np.log1p(z / 2)
    return lg ** 2 / 4 - lg / 2 + z / (2 * (2 + z))
  b, s = abs(alpha - 2), np.sign(alpha - 2)
  lg = np.log1p(z / b)
  e = np.expm1(alpha * lg / 2)
  return (s / alpha - b / alpha ** 2) * e + b / alpha * (1 + e) * lg / 2 \
      - (1 + e) * s * z / (2 * (b + z))


_GRADS = jax.jit(jax.grad(
    lambda x, a, c: jnp.sum(jaxloss.general_robust_loss(x, alpha=a, scale=c)), argnums=(0, 1, 2)))


def _grads(x, alpha, c):
  """Gradients in (x, α, c) of the summed loss; α and c traced: one compilation per shape."""
  return _GRADS(jnp.float32(x), jnp.float32(alpha), jnp.float32(c))


ALPHAS = [-np.inf, -1e3, -16.0, -2.0, -0.5, -1e-3, 0.0, 1e-6, 0.5, 1.0, 1.5, 2.0 - 1e-3, 2.0,
          2.0 + 1e-3, 2.5, 3.0, 4.0, 10.0, 1e3, np.inf]


def test_values_against_float64(rng):
  x = rng.normal(size=(len(ALPHAS), 16)) * 3
  a = np.float32(ALPHAS)[:, None]
  out = jaxloss.general_robust_loss(np.float32(x), alpha=a, scale=np.float32(1.7))
  ref = np_general(np.float64(np.float32(x)), np.float64(a), np.float64(np.float32(1.7)))
  for row, alpha in enumerate(ALPHAS):
    assert_close(out[row], ref[row], rtol=2e-6), alpha


def test_special_cases_equal_the_general_loss(rng):
  x = np.float32(rng.normal(size=64) * 4)
  c = np.float32(0.8)
  pairs = [(jaxloss.cauchy_loss, 0.0), (jaxloss.geman_mcclure_loss, -2.0),
           (jaxloss.welsch_loss, -np.inf)]
  for fn, alpha in pairs:
    special = fn(x, scale=c)
    assert_close(special, jaxloss.general_robust_loss(x, alpha=alpha, scale=c), rtol=2e-6)
    assert_close(special, np_general(x, alpha, c), rtol=2e-6)
  u2 = (np.float64(x) / c) ** 2
  assert_close(jaxloss.cauchy_loss(x, scale=c), np.log(0.5 * u2 + 1))
  assert_close(jaxloss.geman_mcclure_loss(x, scale=c), 2 * u2 / (u2 + 4))
  assert_close(jaxloss.welsch_loss(x, scale=c), 1 - np.exp(-0.5 * u2))
  assert_close(jaxloss.general_robust_loss(x, alpha=1.0, scale=c), np.sqrt(u2 + 1) - 1)
  assert_close(jaxloss.general_robust_loss(x, alpha=2.0, scale=c), 0.5 * u2)


@pytest.mark.parametrize("alpha", [-np.inf, -4.0, -0.7, 0.0, 0.3, 1.0, 1.9, 2.0, 2.2, 3.7, np.inf])
def test_derivatives_in_x_and_scale(rng, alpha):
  x = rng.normal(size=32) * 2
  c = 1.3
  gx, _, gc = _grads(x, alpha, c)
  x32 = np.float64(np.float32(x))
  assert_close(gx, np_dx(x32, alpha, np.float32(c)), rtol=2e-5)
  assert_close(gc, np.sum(-(x32 / np.float32(c)) * np_dx(x32, alpha, np.float32(c))), rtol=2e-5)


@pytest.mark.parametrize("alpha", [-8.0, -1.0, -1e-4, 0.0, 1e-4, 0.6, 1.4, 1.999, 2.001, 2.6, 6.0])
def test_derivative_in_alpha(rng, alpha):
  x = np.float32(rng.normal(size=32) * 2)
  _, ga, _ = _grads(x, alpha, 1.0)
  ref = np.sum(np_dalpha(np.float64(x), np.float64(np.float32(alpha)), 1.0))
  assert_close(ga, ref, rtol=5e-5)


def test_derivative_in_alpha_at_the_limits():
  x = np.float32([0.3, 1.0, 4.0])
  # α = 2: the derivative is +∞ (f − z/2 ~ −¼ z δ log|δ|); the clamp |α − 2| >= 2⁻²³ gives
  # ((2⁻²³ + z)·log1p(z/2⁻²³) − z)/4.
  _, ga, _ = _grads(x, 2.0, 1.0)
  z = np.float64(x) ** 2
  assert_close(ga, np.sum(((TINY + z) * np.log1p(z / TINY) - z) / 4), rtol=1e-5)
  assert float(ga) > 0
  for alpha in (np.inf, -np.inf):
    gx, ga, gc = _grads(x, alpha, 1.0)
    assert float(ga) == 0.0 and np.all(np.isfinite(gx)) and np.isfinite(gc)


def test_second_derivative_at_zero_is_one_over_c_squared():
  # Every member is ½(x/c)² near 0.
  c = 0.7
  hess = jax.jit(jax.vmap(jax.grad(jax.grad(
      lambda x, a: jaxloss.general_robust_loss(x, alpha=a, scale=c)))), static_argnums=())
  alphas = np.float32([-np.inf, -5.0, 0.0, 1.0, 2.0, 3.0, 50.0, np.inf])
  out = hess(jnp.zeros(len(alphas), jnp.float32), alphas)
  assert_close(out, np.full(len(alphas), 1 / np.float32(c) ** 2), rtol=1e-5)


def test_finite_over_alpha_range_and_huge_residuals():
  alphas = np.concatenate([np.linspace(-1e3, 1e3, 41), [-np.inf, np.inf, 0.0, 2.0, -2.0, 1.0,
                                                         2.0 - 1e-7, 2.0 + 1e-7, 1e-7]])
  xs = np.float32([0.0, 1e-3, -1.0, 30.0, -1e3, 9e16, -2e17, 1e20, 3e37])
  scales = np.float32([0.1, 1.0, 10.0])
  a, x, c = (v.reshape(-1) for v in np.meshgrid(np.float32(alphas), xs, scales, indexing="ij"))
  value = np.asarray(jaxloss.general_robust_loss(x, alpha=a, scale=c))
  ref = np_general(np.float64(x), np.float64(a), np.float64(c))
  representable = ref < 3e38
  assert np.all(np.isfinite(value[representable]))
  np.testing.assert_allclose(value[representable], ref[representable], rtol=5e-5, atol=1e-6)
  assert np.all(np.isinf(value[ref > 4e38]))
  # Gradients are finite wherever the value is comfortably finite.
  moderate = ref < 1e30
  gx, ga, gc = (np.asarray(g) for g in jax.vmap(_GRADS)(x, a, c))
  for g in (gx, ga, gc):
    assert np.all(np.isfinite(g[moderate]))


def test_special_cases_at_huge_residuals():
  x = np.float32([1e18, -1e20, 3e38])
  assert_close(jaxloss.cauchy_loss(x), 2 * np.log(np.abs(np.float64(x))) - np.log(2))
  np.testing.assert_array_equal(jaxloss.geman_mcclure_loss(x), 2.0)
  np.testing.assert_array_equal(jaxloss.welsch_loss(x), 1.0)
  for fn in (jaxloss.cauchy_loss, jaxloss.geman_mcclure_loss, jaxloss.welsch_loss):
    g = jax.jit(jax.grad(lambda v: jnp.sum(fn(v))))(x)
    assert np.all(np.isfinite(g))


def test_per_dimension_hyper_parameters_dtypes_and_bad_input(rng):
  x = np.float32(rng.normal(size=(5, 3)))
  a = np.float32([-1.0, 0.5, 2.0])
  c = np.float32([0.5, 1.0, 2.0])
  out = jaxloss.general_robust_loss(x, alpha=a, scale=c)
  assert out.shape == (5, 3)
  assert_close(out, np_general(x, a[None], c[None]), rtol=2e-6)
  assert jaxloss.general_robust_loss(jnp.asarray(x, jnp.bfloat16), alpha=1.0,
                                     scale=1.0).dtype == jnp.bfloat16
  assert jaxloss.general_robust_loss(jnp.asarray(x, jnp.bfloat16), alpha=a,
                                     scale=1.0).dtype == jnp.float32
  assert jaxloss.welsch_loss(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match="scale"):
    jaxloss.general_robust_loss(x, alpha=1.0, scale=0.0)
  with pytest.raises(ValueError, match="scale"):
    jaxloss.cauchy_loss(x, scale=-1.0)
  with pytest.raises(ValueError, match="broadcast"):
    jaxloss.general_robust_loss(x, alpha=np.zeros(5, np.float32), scale=1.0)
  with pytest.raises(TypeError):
    jaxloss.general_robust_loss(x, scale=1.0)  # alpha is required
  assert np.isnan(jaxloss.general_robust_loss(x, alpha=np.nan, scale=1.0)).all()
  assert np.isnan(jaxloss.general_robust_loss(np.float32([np.nan]), alpha=1.0, scale=1.0)).all()


def test_vmap_and_traced_alpha(rng):
  x = np.float32(rng.normal(size=(4, 6)))
  a = np.float32([-3.0, 0.0, 1.0, 2.0])
  per_row = jax.vmap(lambda xi, ai: jaxloss.general_robust_loss(xi, alpha=ai, scale=1.0))(x, a)
  assert_close(per_row, jaxloss.general_robust_loss(x, alpha=a[:, None], scale=1.0))


def test_docstring_examples():
  import doctest

  import jaxloss.robust as module
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
