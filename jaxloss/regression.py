"""Regression losses: L1, L2, smooth L1, Huber, log-cosh, quantile, Poisson and Gaussian NLL.

Every loss is elementwise: ``predictions`` and ``targets`` have the same shape (a scalar target
is allowed, ``targets=None`` means zeros as in optax) and the result has that shape. bf16/fp16
inputs are computed in float32 and returned in the predictions' dtype.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


@_numerics.loss_jit()
def l1_loss(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
  """Absolute error (least absolute deviations), ``|p − t|``.

  Args:
    predictions: floating array of any shape ``S``.
    targets: array of shape ``S`` or a scalar; ``None`` means 0.

  Returns:
    The elementwise loss, shape ``S``, in the predictions' dtype.

  Sub-gradient: d/dp = sign(p − t), and 0 at p = t (contract 4: 0 is a sub-gradient there).

  Edge cases:
    Robust to outliers (the gradient is bounded by 1) but not differentiable at 0, where the
    sub-gradient 0 is returned. NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.l1_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.l1_loss(jnp.array([1.0, -2.0, 0.5]), jnp.array([0.0, 0.0, 1.0]))
    Array([1. , 2. , 0.5], dtype=float32)
  """
  dtype, p, t = _numerics.elementwise_inputs("l1_loss", predictions, targets)
  return _numerics.abs0(p - t).astype(dtype)


@_numerics.loss_jit()
def squared_error(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
  """Squared error, ``(p − t)²`` (optax's ``squared_error``, PyTorch's ``mse_loss``).

  Args:
    predictions: floating array of any shape ``S``.
    targets: array of shape ``S`` or a scalar; ``None`` means 0.

  Returns:
    The elementwise loss, shape ``S``, in the predictions' dtype; d/dp = 2(p − t).

  Edge cases:
    Overflows to inf for |p − t| above ~1.8e19 in float32 (the true value exceeds the float32
    maximum). NaN inputs propagate.

  References:
    Gauss/Legendre least squares; optax ``optax.losses.squared_error``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.squared_error(jnp.array([1.0, -2.0, 0.5]), jnp.array([0.0, 0.0, 1.0]))
    Array([1.  , 4.  , 0.25], dtype=float32)
  """
  dtype, p, t = _numerics.elementwise_inputs("squared_error", predictions, targets)
  return jnp.square(p - t).astype(dtype)


@_numerics.loss_jit()
def l2_loss(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
  """Half squared error, ``½ (p − t)²`` (optax's ``l2_loss``).

  Args:
    predictions: floating array of any shape ``S``.
    targets: array of shape ``S`` or a scalar; ``None`` means 0.

  Returns:
    The elementwise loss, shape ``S``, in the predictions' dtype; d/dp = p − t.

  Edge cases:
    As :func:`squared_error`. NaN inputs propagate.

  References:
    optax ``optax.losses.l2_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.l2_loss(jnp.array([1.0, -2.0, 0.5]), jnp.array([0.0, 0.0, 1.0]))
    Array([0.5  , 2.   , 0.125], dtype=float32)
  """
  dtype, p, t = _numerics.elementwise_inputs("l2_loss", predictions, targets)
  # 0.5·square(e), not 0.5·e·e: the latter keeps 0.5·e as a second residual for the backward
  # pass (two extra (N,) buffers on CPU, measured 2× slower forward+backward in bench/NOTES.md).
  return (0.5 * jnp.square(p - t)).astype(dtype)


@jax.custom_jvp
def _smooth_l1(x: jax.Array, beta: jax.Array) -> jax.Array:
  """½x·(x/β) where |x| < β, |x| − ½β elsewhere; β = 0 is |x|.

  x·(x/β), not x²/β: x/β is at most 1 inside, so nothing overflows below float32's maximum
  (β = 1e20 included) and nothing underflows before the division.
  """
  a = jnp.abs(x)
  safe_beta = jnp.where(beta > 0, beta, jnp.ones_like(beta))
  return jnp.where(a < beta, 0.5 * x * (x / safe_beta), a - 0.5 * beta)


@_smooth_l1.defjvp
def _smooth_l1_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
        ) -> tuple[jax.Array, jax.Array]:
  (x, beta), (dx, dbeta) = primals, tangents
  # d/dx: x/β inside (so the second derivative at x = 0 is 1/β), sign(x) outside, 0 at x = 0
  # when β = 0 (the L1 sub-gradient); d/dβ: −½(x/β)² inside, −½ outside. Written directly:
  # the chain rule through min(|x|, β) cancels (1 + (q/β − 1)·q' rounds to 0 for tiny x).
  inside = jnp.abs(x) < beta
  safe_beta = jnp.where(beta > 0, beta, jnp.ones_like(beta))
  ratio = jnp.where(inside, x / safe_beta, jnp.zeros_like(x))
  d_x = jnp.where(inside, ratio, jnp.sign(x))
  d_beta = jnp.where(inside, -0.5 * ratio * ratio, jnp.full_like(x, -0.5))
  return _smooth_l1(x, beta), d_x * dx + d_beta * dbeta


@_numerics.loss_jit(bounds={"beta": _numerics.Range(low=0.0)})
def smooth_l1_loss(predictions: ArrayLike, targets: ArrayLike | None = None, *,
                   beta: ArrayLike = 1.0) -> jax.Array:
  """Smooth L1 loss (Girshick 2015, Fast R-CNN), with PyTorch's ``beta``.

  .. math::
    \\ell(x) = \\begin{cases} \\tfrac12 x^2/\\beta & |x| < \\beta \\\\
                              |x| - \\tfrac12\\beta & \\text{otherwise} \\end{cases},
    \\qquad x = p - t

  Args:
    predictions: floating array of any shape ``S``.
    targets: array of shape ``S`` or a scalar; ``None`` means 0.
    beta: the transition point, ``>= 0`` (traced: a new value does not re-compile).

  Returns:
    The elementwise loss, shape ``S``, in the predictions' dtype.

  Derivative: x/β inside, sign(x) outside; at |x| = β both sides give sign(x) (the loss is C¹).
  ``beta = 0`` is exactly :func:`l1_loss`, with the sub-gradient 0 at x = 0 and no 0/0 anywhere.

  Edge cases:
    ``beta < 0`` raises ``ValueError`` (a Python number) or fails ``checkify`` (traced).
    NaN inputs propagate.

  References:
    R. Girshick, "Fast R-CNN", ICCV 2015, Eq. 3; PyTorch ``smooth_l1_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.smooth_l1_loss(jnp.array([0.2, -2.0, 0.5]), beta=1.0)
    Array([0.02 , 1.5  , 0.125], dtype=float32)
  """
  fn = "smooth_l1_loss"
  dtype, p, t = _numerics.elementwise_inputs(fn, predictions, targets)
  return _smooth_l1(p - t, jnp.asarray(beta, p.dtype)).astype(dtype)


@jax.custom_jvp
def _huber(x: jax.Array, delta: jax.Array) -> jax.Array:
  """Huber's ρ_δ(x) as ½q² + δ(|x| − q), q = min(|x|, δ), the form that runs when nothing
  differentiates the loss: it has no select, so XLA:CPU fuses it into a following sum (a
  select is materialised first; bench/NOTES.md). It equals the rule's select form for every
  x and δ (½x² for |x| ≤ δ, δ(|x| − ½δ) beyond, inf at ±inf, NaN at NaN), so unlike the
  softmax CE and KL fast paths it needs no fallback: δ is capped at float max (a scalar), so
  that δ = inf gives ½x² rather than inf·0."""
  a = jnp.abs(x)
  delta = jnp.minimum(delta, jnp.finfo(x.dtype).max)
  q = jnp.minimum(a, delta)
  return 0.5 * q * q + delta * (a - q)


@functools.partial(_huber.defjvp, symbolic_zeros=True)
def _huber_jvp(primals: tuple[jax.Array, jax.Array], tangents: tuple[Any, Any]
               ) -> tuple[jax.Array, jax.Array]:
  x, delta = primals
  dx, ddelta = tangents
  a = jnp.abs(x)
  # The select form here: under value_and_grad XLA keeps one array of the input's size for
  # it, where the min form keeps two (bench/NOTES.md).
  inside = a <= delta
  value = jnp.where(inside, 0.5 * x * x, delta * (a - 0.5 * delta))
  tangent = jnp.zeros_like(value)
  if _numerics.nonzero(dx):
    tangent = tangent + jnp.clip(x, -delta, delta) * dx  # x inside, δ·sign(x) beyond; 0 at 0
  if _numerics.nonzero(ddelta):
    tangent = tangent + jnp.where(inside, jnp.zeros_like(a), a - delta) * ddelta
  return value, tangent


@_numerics.loss_jit(bounds={"delta": _numerics.Range(low=0.0, low_open=True)})
def huber_loss(predictions: ArrayLike, targets: ArrayLike | None = None, *,
               delta: ArrayLike = 1.0) -> jax.Array:
  """Huber loss (Huber 1964), with optax's and PyTorch's ``delta``.

  .. math::
    \\ell(x) = \\begin{cases} \\tfrac12 x^2 & |x| \\le \\delta \\\\
                              \\delta(|x| - \\tfrac12\\delta) & \\text{otherwise} \\end{cases},
    \\qquad x = p - t

  Args:
    predictions: floating array of any shape ``S``.
    targets: array of shape ``S`` or a scalar; ``None`` means 0.
    delta: the transition point, ``> 0`` (traced).

  Returns:
    The elementwise loss, shape ``S``, in the predictions' dtype.

  Derivative: x for |x| <= δ, δ·sign(x) beyond; at |x| = δ both sides give δ·sign(x) = x.
  Equals ``δ · smooth_l1_loss(beta=δ)``.

  Edge cases:
    ``delta <= 0`` raises ``ValueError`` (Python number) or fails ``checkify`` (traced).
    Unlike optax 0.2.8, a (N,) prediction against (N, 1) targets raises instead of
    broadcasting to (N, N). NaN inputs propagate.

  References:
    P. J. Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 1964;
    optax ``optax.losses.huber_loss``; PyTorch ``huber_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.huber_loss(jnp.array([0.5, -2.0, 3.0]), delta=1.0)  # ½x² inside, δ(|x| − ½δ) out
    Array([0.125, 1.5  , 2.5  ], dtype=float32)
  """
  fn = "huber_loss"
  dtype, p, t = _numerics.elementwise_inputs(fn, predictions, targets)
  delta = jnp.asarray(delta, p.dtype)
  x = p - t
  return _huber(x, delta).astype(dtype)


# log cosh x in float32 (and narrower) with one exp per element and no log1p: XLA's CPU log1p,
# expm1 and select-heavy fusions cost several times its exp (bench/NOTES.md, issue 20). Below
# |x| = 3/4 it is x²·P(x²); above, |x| − log 2 + e·R(e) with e = e^{−2|x|} ≤ e^{−3/2}, R
# standing for log1p(e)/e. Both are float64 least-squares fits on Chebyshev nodes
# (tests/test_regression.py refits them): relative error 4e-9 and, on the value, 2e-8, below
# float32's rounding. float64 inputs take the exact forms instead (:func:`_log_cosh_exact`).
_LOG_COSH_SMALL = 0.75
_LOG_COSH_P = (0.499999998, -0.0833330496, 0.0222161932, -0.00669859852, 0.00201399983,
               -0.000429627298)
_LOG1P_R = (0.999999889, -0.499974711, 0.33239888, -0.237662911, 0.130051997)


def _horner(coefficients: tuple[float, ...], s: jax.Array) -> jax.Array:
  out = jnp.full_like(s, coefficients[-1])
  for c in reversed(coefficients[:-1]):
    out = out * s + c
  return out


def _log_cosh_exact(a: jax.Array) -> jax.Array:
  """log cosh a for a = |x| without cancellation: log1p(m²/(2(1 + m))), m = expm1(a), below
  3/4 (cosh a − 1 = m²/(2e^a)), and a − log 2 + log1p(e^{−2a}) above."""
  m = jnp.expm1(jnp.minimum(a, _LOG_COSH_SMALL))
  return jnp.where(a < _LOG_COSH_SMALL, jnp.log1p(m * m / (2.0 * (1.0 + m))),
                   a - math.log(2.0) + jnp.log1p(jnp.exp(-2.0 * a)))


@jax.custom_jvp
def _log_cosh(x: jax.Array) -> jax.Array:
  a = jnp.abs(x)
  if x.dtype == jnp.float64:
    return _log_cosh_exact(a)
  # No double where: a custom_jvp's primal is never differentiated, and the branch not taken
  # may be inf or NaN (x² overflowing, R far outside its interval) without reaching the result.
  s = x * x
  e = jnp.exp(-2.0 * a)
  return jnp.where(a < _LOG_COSH_SMALL, s * _horner(_LOG_COSH_P, s),
                   (a - math.log(2.0)) + e * _horner(_LOG1P_R, e))


@jax.custom_jvp
def _tanh(x: jax.Array) -> jax.Array:
  """``jnp.tanh`` whose derivative sech² x = 4e/(1 + e)², e = e^{−2|x|}, keeps its relative
  accuracy for large |x| (jax's 1 − tanh² x rounds to 0 there)."""
  return jnp.tanh(x)


@_tanh.defjvp
def _tanh_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
              ) -> tuple[jax.Array, jax.Array]:
  (x,), (dx,) = primals, tangents
  e = jnp.exp(-2.0 * jnp.abs(x))
  return _tanh(x), 4.0 * e / jnp.square(1.0 + e) * dx


@_log_cosh.defjvp
def _log_cosh_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
        ) -> tuple[jax.Array, jax.Array]:
  (x,), (dx,) = primals, tangents
  # d/dx log cosh x = tanh x; written out so that the second derivative is sech² x, also at
  # x = 0 (differentiating |x| twice would give 0 there).
  return _log_cosh(x), _tanh(x) * dx


@_numerics.loss_jit()
def log_cosh(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
  """Log-cosh loss, ``log(cosh(p − t))`` (optax's ``log_cosh``).

  Behaves like ½x² near 0 and like |x| − log 2 for large |x|.

  Args:
    predictions: floating array of any shape ``S``.
    targets: array of shape ``S`` or a scalar; ``None`` means 0.

  Returns:
    The elementwise loss, shape ``S``, in the predictions' dtype.

  Derivative: tanh(x); second derivative sech²(x) = 4e/(1 + e)², e = e^{−2|x|} (``custom_jvp``
  rules, so forward mode and Hessians are exact, also at x = 0, and keep their relative
  accuracy for large |x|).

  Edge cases:
    Finite for every finite input, and within two ulps of the true value at every magnitude,
    ½x² included: in float32 (and narrower inputs, computed in float32) x²·P(x²) below
    |x| = 3/4 and |x| − log 2 + log1p(e^{−2|x|}) above, with fitted polynomials for P and for
    log1p, so that one ``exp`` is the only transcendental; in float64 the exact ``expm1`` and
    ``log1p`` forms. NaN propagates.

  References:
    Chen et al., "Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder", 2019;
    optax ``optax.losses.log_cosh``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> loss = jaxloss.log_cosh(jnp.array([1e-3, 1.0, 10.0]))  # x²/2 near 0, |x| − log 2 far
    >>> print([f"{v:.5g}" for v in loss.tolist()])
    ['5e-07', '0.43378', '9.3069']
  """
  dtype, p, t = _numerics.elementwise_inputs("log_cosh", predictions, targets)
  return _log_cosh(p - t).astype(dtype)


@_numerics.loss_jit(bounds={"quantile": _numerics.Range(low=0.0, high=1.0)})
def quantile_loss(predictions: ArrayLike, targets: ArrayLike, *,
                  quantile: ArrayLike = 0.5) -> jax.Array:
  """Quantile (pinball) loss (Koenker & Bassett 1978).

  .. math::
    \\ell = \\max(q\\,e, (q - 1)\\,e) = q\\,\\max(e, 0) + (1 - q)\\max(-e, 0),
    \\qquad e = t - p

  Its minimiser over ``p`` is the ``q``-quantile of the target distribution; ``q = 0.5`` gives
  half the absolute error.

  Args:
    predictions: floating array of any shape ``S``.
    targets: array of shape ``S`` or a scalar.
    quantile: ``q`` in [0, 1] (traced).

  Returns:
    The elementwise loss, shape ``S``, in the predictions' dtype.

  Sub-gradient: d/dp = −q for p < t, 1 − q for p > t, and 0 at p = t (contract 4).

  Edge cases:
    ``q = 0`` and ``q = 1`` are one-sided L1 losses. ``q`` outside [0, 1] raises
    ``ValueError`` (Python number) or fails ``checkify`` (traced). NaN inputs propagate.

  References:
    R. Koenker, G. Bassett, "Regression Quantiles", Econometrica 1978.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.quantile_loss(jnp.array([1.0, 3.0]), jnp.array([2.0, 2.0]), quantile=0.75)
    Array([0.75, 0.25], dtype=float32)
  """
  fn = "quantile_loss"
  dtype, p, t = _numerics.elementwise_inputs(fn, predictions, targets)
  q = jnp.asarray(quantile, p.dtype)
  e = t - p
  # relu'(0) = 0, so both terms give the sub-gradient 0 at e = 0.
  return (q * _numerics.relu(e) + (1.0 - q) * _numerics.relu(-e)).astype(dtype)


@_numerics.loss_jit(static=("log_input", "full"), bounds={"eps": _numerics.Range(low=0.0)})
def poisson_nll_loss(input: ArrayLike, targets: ArrayLike, *, log_input: bool = True,  # noqa: A002
                     full: bool = False, eps: ArrayLike = 1e-8) -> jax.Array:
  """Negative log-likelihood of a Poisson target, with PyTorch's ``poisson_nll_loss`` semantics.

  .. math::
    \\ell = \\begin{cases} e^{x} - t\\,x & \\text{log\\_input} \\\\
                           x - t\\log(x + \\varepsilon) & \\text{otherwise} \\end{cases}
    \\; [+\\; t\\log t - t + \\tfrac12\\log(2\\pi t) \\text{ if full and } t > 1]

  (the constant log t! of the likelihood is dropped, or approximated by Stirling's formula when
  ``full``; PyTorch adds it only for t > 1).

  Args:
    input: floating array of shape ``S``: the log-rate (``log_input=True``) or the rate.
    targets: non-negative counts, shape ``S`` or a scalar.
    log_input: static; whether ``input`` is a log-rate.
    full: static; add the Stirling term.
    eps: added to the rate inside the log when ``log_input=False`` (PyTorch's definition).

  Returns:
    The elementwise loss, shape ``S``, in the input's dtype.

  Derivative: e^x − t (log-rate); 1 − t/(x + ε) (rate).

  Edge cases:
    With a log-rate x above ~88.7 the loss overflows to inf in float32 (e^x does: the true
    value exceeds the float32 maximum). With ``log_input=False`` and x = 0, t > 0, the loss is
    −t·log ε, large but finite. NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.poisson_nll_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> log_rate, counts = jnp.log(jnp.array([2.0, 0.5])), jnp.array([3.0, 0.0])
    >>> print(jnp.round(jaxloss.poisson_nll_loss(log_rate, counts), 4))
    [-0.0794  0.5   ]
  """
  fn = "poisson_nll_loss"
  dtype, x, t = _numerics.elementwise_inputs(fn, input, targets, "input", "targets")
  if log_input:
    loss = jnp.exp(x) - t * x
  else:
    loss = x - t * jnp.log(x + jnp.asarray(eps, x.dtype))
  if full:
    # Stirling: log t! ≈ t log t − t + ½ log(2π t), used for t > 1 only (PyTorch).
    stirling = _numerics.safe_where(
        t > 1, lambda s: s * jnp.log(s) - s + 0.5 * jnp.log(2.0 * math.pi * s), t,
        jnp.zeros_like(t))
    loss = loss + stirling
  return loss.astype(dtype)


def _gaussian_variance(fn: str, mean: jax.Array, variance: jax.Array) -> jax.Array:
  """PyTorch's variance shapes: ``S``, ``S`` without its last axis, or last axis 1."""
  if variance.shape == mean.shape or variance.ndim == 0:
    return variance
  if variance.shape == mean.shape[:-1]:
    return variance[..., None]
  if variance.shape == mean.shape[:-1] + (1,):
    return variance
  raise ValueError(f"{fn}: `variance` must have the shape of `mean`, that shape without its "
                   f"last axis, or last axis 1; got mean.shape={mean.shape} and "
                   f"variance.shape={variance.shape}")


@_numerics.loss_jit(static=("full",), bounds={"eps": _numerics.Range(low=0.0, low_open=True),
                                              "variance": _numerics.Range(low=0.0)})
def gaussian_nll_loss(mean: ArrayLike, targets: ArrayLike, variance: ArrayLike, *,
                      full: bool = False, eps: ArrayLike = 1e-6) -> jax.Array:
  """Negative log-likelihood of a Gaussian target, with PyTorch's ``gaussian_nll_loss`` semantics.

  .. math::
    \\ell = \\tfrac12\\left(\\log v + \\frac{(\\mu - t)^2}{v}\\right)
    \\; [+\\; \\tfrac12\\log 2\\pi \\text{ if full}], \\qquad v = \\max(\\sigma^2, \\varepsilon)

  Args:
    mean: floating predicted mean μ, shape ``S``.
    targets: shape ``S`` or a scalar.
    variance: predicted variance σ² ≥ 0, of shape ``S``, ``S`` without its last axis, ``S``
      with last axis 1 (homoscedastic), or a scalar.
    full: static; add the constant ½ log 2π.
    eps: the variance clamp, ``> 0``.

  Returns:
    The elementwise loss, shape ``S``, in the mean's dtype.

  The variance clamp: the value uses v = max(σ², ε), but the gradient with respect to σ² is
  passed straight through the clamp, d/dσ² = ½(1/v − (μ − t)²/v²), evaluated at the clamped
  v, also where σ² < ε. This is what PyTorch does (it clamps in place under ``no_grad``), and
  it means a variance that falls below ε keeps receiving a gradient instead of being silently
  frozen there. d/dμ = (μ − t)/v.

  Edge cases:
    A negative variance is invalid: that element's loss is NaN, and under ``checkify`` an
    error names it (PyTorch raises). NaN inputs propagate.

  References:
    D. A. Nix, A. S. Weigend, "Estimating the mean and variance of the target probability
    distribution", ICNN 1994; PyTorch ``torch.nn.functional.gaussian_nll_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> mean, target, var = jnp.array([0.0, 1.0]), jnp.array([1.0, 1.0]), jnp.array([1.0, 0.25])
    >>> print(jnp.round(jaxloss.gaussian_nll_loss(mean, target, var), 4))
    [ 0.5    -0.6931]
  """
  fn = "gaussian_nll_loss"
  dtype, mu, t = _numerics.elementwise_inputs(fn, mean, targets, "mean", "targets")
  var = _numerics.check_floating(fn, "variance", variance)
  var = _gaussian_variance(fn, mu, var).astype(mu.dtype)
  # Straight-through clamp: the value of max(σ², ε), the gradient of σ².
  v = var + jax.lax.stop_gradient(jnp.maximum(var, jnp.asarray(eps, var.dtype)) - var)
  # (μ − t)/σ first, then squared: (μ − t)² would overflow (and its derivative in σ², 1/v²,
  # underflow) long before the loss, which is finite up to r² = float32's maximum.
  r = (mu - t) / jnp.sqrt(v)
  loss = 0.5 * (jnp.log(v) + r * r)
  if full:
    loss = loss + 0.5 * math.log(2.0 * math.pi)
  loss = jnp.where(var < 0, jnp.nan, loss)
  return loss.astype(dtype)
