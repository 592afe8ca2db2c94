"""Relative-error regression losses with Keras's definitions: the absolute percentage error and
the squared logarithmic error.

Both are elementwise (Keras means them over the last axis; here nothing is reduced, so Keras's
value is ``jnp.mean(loss, axis=-1)``) and scale-free: they measure errors relative to the
size of the target. ``predictions`` and ``targets`` have the same shape (or a scalar target);
bf16/fp16 are computed in float32 and returned in the promoted floating dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

_POSITIVE = _numerics.Range(low=0.0, low_open=True)


@_numerics.loss_jit(bounds={"eps": _POSITIVE})
def mean_absolute_percentage_error(predictions: ArrayLike, targets: ArrayLike, *,
                                   eps: ArrayLike = 1e-7) -> jax.Array:
  r"""Absolute percentage error, elementwise (Keras's ``MeanAbsolutePercentageError`` before
  its mean over the last axis).

  .. math::
    \ell = 100 \cdot \frac{|t - p|}{\max(|t|, \varepsilon)}

  Args:
    predictions: floating, any shape ``S``.
    targets: the targets, shape ``S`` or a scalar.
    eps: ε > 0, the floor of the denominator (traced); Keras's ``backend.epsilon()`` = 1e-7.

  Returns:
    The elementwise loss in percent, shape ``S``, in the promoted floating dtype.

  Sub-gradient: d/dp = 100·sign(p − t)/max(|t|, ε), and 0 at p = t (0 is a sub-gradient).

  Edge cases:
    A target of 0 divides by ε: the loss is 1e9·|p| at the default ε, finite but huge, as in
    Keras; choose ``eps`` on the scale of the targets when zeros occur. NaN inputs propagate.

  References:
    Keras ``keras.losses.mean_absolute_percentage_error``; R. J. Hyndman & A. B. Koehler,
    "Another look at measures of forecast accuracy", 2006.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> p = jnp.array([9.0, 21.0, 0.5])
    >>> t = jnp.array([10.0, 20.0, 1.0])
    >>> print(" ".join(f"{v:.2f}" for v in jaxloss.mean_absolute_percentage_error(p, t)))
    10.00 5.00 50.00
  """
  fn = "mean_absolute_percentage_error"
  out_dtype, p, t = _numerics.elementwise_inputs(fn, predictions, targets)
  floor = jnp.maximum(jnp.abs(t), jnp.asarray(eps, p.dtype))
  return (100 * _numerics.abs0(t - p) / floor).astype(out_dtype)


@_numerics.loss_jit(bounds={"eps": _POSITIVE})
def mean_squared_logarithmic_error(predictions: ArrayLike, targets: ArrayLike, *,
                                   eps: ArrayLike = 1e-7) -> jax.Array:
  r"""Squared logarithmic error, elementwise (Keras's ``MeanSquaredLogarithmicError`` before
  its mean over the last axis).

  .. math::
    \ell = \big(\log(1 + \max(p, \varepsilon)) - \log(1 + \max(t, \varepsilon))\big)^2

  Args:
    predictions: floating, any shape ``S`` (meant to be >= 0).
    targets: the targets, shape ``S`` or a scalar (meant to be >= 0).
    eps: ε > 0 (traced): values below it are replaced by it, Keras's ``backend.epsilon()`` =
      1e-7.

  Returns:
    The elementwise loss, shape ``S``, in the promoted floating dtype.

  Derivative: d/dp = 2(log1p(p) − log1p(max(t, ε)))/(1 + p) for p > ε, and 0 for p <= ε
  (the clamp is flat there; at p = ε, 0 is a sub-gradient).

  Edge cases:
    Negative predictions or targets are clamped to ε (Keras's rule), so they never give NaN.
    Computed with log1p, exact for small values. NaN inputs propagate.

  References:
    Keras ``keras.losses.mean_squared_logarithmic_error``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> p = jnp.array([0.0, 1.0, 9.0])
    >>> t = jnp.array([0.0, 3.0, 99.0])
    >>> print(" ".join(f"{v:.4f}" for v in jaxloss.mean_squared_logarithmic_error(p, t)))
    0.0000 0.4805 5.3019
  """
  fn = "mean_squared_logarithmic_error"
  out_dtype, p, t = _numerics.elementwise_inputs(fn, predictions, targets)
  e = jnp.asarray(eps, p.dtype)
  # max(·, ε) as a select: the derivative is 0 at and below ε (jnp.maximum would give ½ at ε),
  # and a NaN fails the comparison and is kept.
  p_clamped = jnp.where(p <= e, e, p)
  t_clamped = jnp.where(t <= e, e, t)
  return jnp.square(jnp.log1p(p_clamped) - jnp.log1p(t_clamped)).astype(out_dtype)
