"""scikit-learn's deviance metrics as per-sample losses: the Tweedie deviances (normal,
Poisson, gamma, compound Poisson–gamma, inverse Gaussian, ...) and the Brier score.

Each loss is the per-sample term of the scikit-learn metric of the same family, so the mean of
ours is theirs: ``jnp.mean(tweedie_deviance(mu, y, power=p)) == mean_tweedie_deviance(y, mu,
power=p)``, ``jnp.mean(brier_score(p, y)) == brier_score_loss(y, p)``. Arguments follow
jaxloss's order (predictions first). Values outside a deviance's domain (a negative count for
the Poisson deviance, a non-positive mean) give NaN with a zero gradient for that element,
where scikit-learn raises, and a ``checkify`` error names the first bad value.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


def _check_power(fn: str, power: float) -> float:
  if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power):
    raise TypeError(f"{fn}(power=...) must be a finite Python number (it selects the "
                    f"distribution: static), got {power!r}")
  if 0 < power < 1:
    raise ValueError(f"{fn}(power=...) must be <= 0 or >= 1 (the Tweedie deviance is not "
                     f"defined for 0 < power < 1), got {power}")
  return float(power)


def _debug_check(fn: str, name: str, values: jax.Array, ok: jax.Array, expected: str) -> None:
  if values.size == 0:
    return
  ok = jnp.broadcast_to(ok, values.shape)
  first_bad = values.reshape(-1)[jnp.argmax(~ok.reshape(-1))]
  checkify.debug_check(jnp.all(ok), f"{fn}: every value of `{name}` must be {expected}, "
                       f"got {{}}", first_bad)


def _power0(x: jax.Array, exponent: float) -> jax.Array:
  """x**exponent for x >= 0 and exponent > 0, 0 at x = 0 with a zero derivative there (the
  plain power's derivative at 0 is infinite for exponent < 1, jax #1052)."""
  positive = x > 0
  return jnp.where(positive, jnp.power(jnp.where(positive, x, jnp.ones_like(x)), exponent),
                   jnp.zeros_like(x))


def _tweedie(fn: str, predictions: ArrayLike, targets: ArrayLike, power: float,
             log_input: bool) -> jax.Array:
  p = _check_power(fn, power)
  out_dtype, m, y = _numerics.elementwise_inputs(fn, predictions, targets)
  y = jnp.broadcast_to(y, m.shape)
  one = jnp.ones((), m.dtype)
  # Domains (scikit-learn's mean_tweedie_deviance): the mean > 0 unless p = 0; the target any
  # real for p <= 0, >= 0 for 1 <= p < 2, > 0 for p >= 2.
  mean_ok = jnp.ones(m.shape, bool) if (p == 0 or log_input) else m > 0
  if p <= 0:
    target_ok = jnp.ones(y.shape, bool)
  elif p < 2:
    target_ok = y >= 0
  else:
    target_ok = y > 0
  if not (p == 0 or log_input):
    _debug_check(fn, "predictions", m, mean_ok, "> 0")
  if p > 0:
    _debug_check(fn, "targets", y, target_ok, ">= 0" if p < 2 else "> 0")
  valid = mean_ok & target_ok
  m = jnp.where(valid, m, one)
  y = jnp.where(valid, y, one)
  mu = jnp.exp(m) if log_input else m
  if p == 0:
    loss = jnp.square(y - mu)
  elif p == 1:
    # 2 (y log(y/μ) − y + μ), with 0·log 0 = 0.
    log_ratio_term = (_numerics.xlogy(y, y) - y * m if log_input
                      else _numerics.xlogy(y, y / mu))
    loss = 2 * (log_ratio_term - y + mu)
  elif p == 2:
    # 2 (log(μ/y) + y/μ − 1).
    if log_input:
      loss = 2 * (m - jnp.log(y) + y * jnp.exp(-m) - 1)
    else:
      loss = 2 * (jnp.log(mu / y) + y / mu - 1)
  else:
    # 2 (y₊^{2−p}/((1−p)(2−p)) − y μ^{1−p}/(1−p) + μ^{2−p}/(2−p)), y₊ = max(y, 0) for p < 0.
    y_term = _power0(jnp.maximum(y, 0), 2 - p) / ((1 - p) * (2 - p))
    # y·μ^{1−p} is 0 at y = 0 also where μ^{1−p} overflows (a log-link η of −1e4), with the
    # double where so that its derivative is not 0·inf.
    no_y = y == 0
    if log_input:
      mu_1 = jnp.exp((1 - p) * jnp.where(no_y, jnp.zeros_like(m), m))
      mu_2 = jnp.exp((2 - p) * m)
    else:
      mu_1, mu_2 = jnp.power(mu, 1 - p), jnp.power(mu, 2 - p)
    cross = jnp.where(no_y, jnp.zeros_like(y), y * mu_1)
    loss = 2 * (y_term - cross / (1 - p) + mu_2 / (2 - p))
  return _numerics.nan_where_invalid(loss, valid).astype(out_dtype)


@_numerics.loss_jit(static=("power", "log_input"))
def tweedie_deviance(predictions: ArrayLike, targets: ArrayLike, *, power: float = 0.0,
                     log_input: bool = False) -> jax.Array:
  r"""Unit Tweedie deviance, per sample (scikit-learn's ``mean_tweedie_deviance`` before the
  mean).

  .. math::
    d_p(y, \mu) = 2\left(\frac{\max(y, 0)^{2-p}}{(1-p)(2-p)} - \frac{y\,\mu^{1-p}}{1-p}
    + \frac{\mu^{2-p}}{2-p}\right)

  with its limits p = 0: (y − μ)² (normal), p = 1: 2(y log(y/μ) − y + μ) (Poisson),
  p = 2: 2(log(μ/y) + y/μ − 1) (gamma); 1 < p < 2 is the compound Poisson–gamma, p = 3 the
  inverse Gaussian. It is twice the log-likelihood ratio of the saturated model, and
  d_p(y, μ) = 2∫_μ^y (y − t)/t^p dt.

  Args:
    predictions: floating, the predicted means μ (> 0 unless ``power == 0``), or log μ with
      ``log_input=True`` (a log-link model's linear predictor: any real).
    targets: the observed values y, the predictions' shape (or a scalar); any real for
      ``power <= 0``, y >= 0 for 1 <= power < 2, y > 0 for power >= 2.
    power: the Tweedie power p, <= 0 or >= 1 (static: it selects the distribution and the
      formula, as in scikit-learn; a new value compiles anew).
    log_input: whether ``predictions`` are log μ (static); the formula is then evaluated with
      μ^{a} = exp(a·η), so exp never overflows before the loss does.

  Returns:
    The elementwise deviance, the predictions' shape, in the promoted floating dtype.

  Derivative: ∂d/∂μ = 2 μ^{−p} (μ − y); with ``log_input``, ∂d/∂η = 2 μ^{1−p} (μ − y).

  Edge cases:
    An element outside the domain (μ <= 0, or y outside the range above) is NaN with a zero
    gradient (scikit-learn raises for the whole array); under ``checkify`` an error names the
    first bad value. 0 < power < 1 raises ``ValueError``. y = 0 is exact for 1 <= p < 2
    (0·log 0 = 0, 0^{2−p} = 0). NaN inputs propagate.

  References:
    B. Jørgensen, "The Theory of Dispersion Models", 1997, ch. 4; scikit-learn
    ``sklearn.metrics.mean_tweedie_deviance``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> y = jnp.array([2.0, 0.0, 1.0, 4.0])
    >>> mu = jnp.array([0.5, 0.5, 2.0, 2.0])
    >>> print(f"{jaxloss.tweedie_deviance(mu, y, power=1).mean():.4f}")  # scikit-learn's 1.4260
    1.4260
    >>> eta = jnp.log(mu)  # a log-link model's output
    >>> print(f"{jaxloss.tweedie_deviance(eta, y, power=1.5, log_input=True).mean():.4f}")
    1.7782
  """
  return _tweedie("tweedie_deviance", predictions, targets, power, log_input)


@_numerics.loss_jit(static=("log_input",))
def poisson_deviance(predictions: ArrayLike, targets: ArrayLike, *,
                     log_input: bool = False) -> jax.Array:
  r"""Unit Poisson deviance, per sample (scikit-learn's ``mean_poisson_deviance`` before the
  mean): :func:`tweedie_deviance` at power 1.

  .. math::
    d(y, \mu) = 2\left(y \log\frac{y}{\mu} - y + \mu\right), \quad 0 \log 0 = 0

  Args:
    predictions: floating predicted means μ > 0, or log μ with ``log_input=True``.
    targets: counts (or rates) y >= 0, the predictions' shape.
    log_input: whether ``predictions`` are log μ (static); then d = 2(y log y − yη − y + e^η).

  Returns:
    The elementwise deviance, in the promoted floating dtype.

  Derivative: ∂d/∂μ = 2(1 − y/μ); ∂d/∂η = 2(e^η − y). It differs from
  :func:`jaxloss.poisson_nll_loss` by a term in y only (2·(y log y − y) − 2·log y!).

  Edge cases:
    μ <= 0 or y < 0 give NaN with a zero gradient (and a ``checkify`` error).

  References:
    scikit-learn ``sklearn.metrics.mean_poisson_deviance``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> y = jnp.array([2.0, 0.0, 1.0, 4.0])
    >>> mu = jnp.array([0.5, 0.5, 2.0, 2.0])
    >>> print(f"{jaxloss.poisson_deviance(mu, y).mean():.4f}")  # scikit-learn's 1.4260
    1.4260
  """
  return _tweedie("poisson_deviance", predictions, targets, 1.0, log_input)


@_numerics.loss_jit(static=("log_input",))
def gamma_deviance(predictions: ArrayLike, targets: ArrayLike, *,
                   log_input: bool = False) -> jax.Array:
  r"""Unit gamma deviance, per sample (scikit-learn's ``mean_gamma_deviance`` before the mean):
  :func:`tweedie_deviance` at power 2.

  .. math::
    d(y, \mu) = 2\left(\log\frac{\mu}{y} + \frac{y}{\mu} - 1\right)

  Scale invariant: d(cy, cμ) = d(y, μ), a loss on relative errors.

  Args:
    predictions: floating predicted means μ > 0, or log μ with ``log_input=True``.
    targets: y > 0, the predictions' shape.
    log_input: whether ``predictions`` are log μ (static); then d = 2(η − log y + y e^{−η} − 1).

  Returns:
    The elementwise deviance, in the promoted floating dtype.

  Derivative: ∂d/∂μ = 2(μ − y)/μ²; ∂d/∂η = 2(1 − y e^{−η}).

  Edge cases:
    μ <= 0 or y <= 0 give NaN with a zero gradient (and a ``checkify`` error).

  References:
    scikit-learn ``sklearn.metrics.mean_gamma_deviance``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> y = jnp.array([2.0, 0.5, 1.0, 4.0])
    >>> mu = jnp.array([0.5, 0.5, 2.0, 2.0])
    >>> print(f"{jaxloss.gamma_deviance(mu, y).mean():.4f}")  # scikit-learn's 1.05685...
    1.0569
  """
  return _tweedie("gamma_deviance", predictions, targets, 2.0, log_input)


@_numerics.loss_jit(static=("axis",))
def brier_score(probs: ArrayLike, labels: ArrayLike, *, axis: int = -1) -> jax.Array:
  r"""Brier score per sample (scikit-learn's ``brier_score_loss`` before the mean), binary or
  multiclass.

  Binary (``labels`` of the probabilities' shape; ``probs`` = P(positive)):

  .. math::
    \ell = (p - y)^2

  Multiclass (integer ``labels`` of the probabilities' shape without ``axis``, C classes
  along ``axis``):

  .. math::
    \ell = s_C \sum_c (p_c - [y = c])^2, \qquad s_2 = \tfrac12,\; s_{C>2} = 1

  scikit-learn's ``scale_by_half="auto"``: two classes are a binary problem, scaled to [0, 1]
  (the same number as the binary form on p_1), more classes keep the range [0, 2].

  Args:
    probs: floating probabilities: of the positive class (binary) or of each class along
      ``axis`` (multiclass).
    labels: binary outcomes of ``probs``' shape (0/1, boolean, or soft in [0, 1]; not
      checked), or integer class indices of ``probs``' shape without ``axis``.
    axis: the class axis of the multiclass form (static).

  Returns:
    One value per sample: ``probs``' shape (binary) or without ``axis`` (multiclass), in the
    promoted floating dtype.

  Derivative: 2(p − y) (binary); 2 s_C (p_c − [y = c]) (multiclass). A strictly proper
  scoring rule: its expectation is minimised by the true probabilities.

  Edge cases:
    An integer label outside [0, C) is NaN with a zero gradient (and a ``checkify`` error);
    one-hot or soft class targets of ``probs``' shape are read as the binary form element by
    element (sum over ``axis`` for the multiclass score without the ½). Probabilities are not
    checked to lie in [0, 1] or to sum to 1.

  References:
    G. W. Brier, "Verification of forecasts expressed in terms of probability", Monthly Weather
    Review 1950; scikit-learn ``sklearn.metrics.brier_score_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> p = jnp.array([0.1, 0.9, 0.8, 0.3])
    >>> y = jnp.array([0, 1, 1, 0])
    >>> print(f"{jaxloss.brier_score(p, y).mean():.4f}")  # scikit-learn's 0.0375
    0.0375
    >>> p3 = jnp.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]])
    >>> print(" ".join(f"{v:.2f}" for v in jaxloss.brier_score(p3, jnp.array([0, 2]))))
    0.14 1.46
  """
  fn = "brier_score"
  p = _numerics.check_floating(fn, "probs", probs)
  y = jnp.asarray(labels)
  _numerics.canonical_axis(fn, axis, max(p.ndim, 1), name="probs")
  if y.shape != p.shape and y.ndim != p.ndim - 1:
    raise ValueError(f"{fn}: binary `labels` must have the shape of `probs` (integer class "
                     f"labels: its shape without axis {axis}), got probs.shape={p.shape} and "
                     f"labels.shape={y.shape}")
  if y.shape == p.shape:
    if y.dtype == jnp.bool_:
      y = y.astype(jnp.int32)
    y = _numerics.check_numeric(fn, "labels", y)
    out_dtype = _numerics.result_dtype(p, y)
    dtype = _numerics.compute_dtype(p, y)
    return jnp.square(p.astype(dtype) - y.astype(dtype)).astype(out_dtype)
  inputs = _numerics.class_inputs(fn, p, axis, name="probs")
  checked = _numerics.class_labels(fn, y, inputs.x, inputs.axis, x_name="probs")
  x = inputs.x
  classes = jax.lax.broadcasted_iota(jnp.int32, x.shape, inputs.axis)
  onehot = (classes == checked.index).astype(x.dtype)
  scale = 0.5 if x.shape[inputs.axis] == 2 else 1.0
  loss = scale * jnp.sum(jnp.square(x - onehot), axis=inputs.axis)
  return checked.finish(loss).astype(inputs.dtype)
