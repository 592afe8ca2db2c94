"""Divergence family: the Kullback–Leibler divergence against probability and log-probability
targets, and the generalized KL divergence of unnormalised measures.

Both take log-predictions and same-shaped targets with the classes along ``axis`` and return
their shape without that axis, in ``jnp.result_type`` of the two (bf16/fp16 computed in
float32).
One closed-form derivative (``jax.custom_jvp``, forward and reverse mode), ``_kl``, carries
both: it stores one array of the inputs' size, a = log t − log q, which the gradient
overwrites in place, and holds every t = 0 term at exactly 0 (0·log 0 = 0). The generalized
divergence adds the mass difference Σ (q − t) inside one more ``custom_jvp``, ``_gkl``.

``axis`` is an int, a tuple of ints or ``None`` (every axis), as optax types it.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


def _clean_masked(lp: jax.Array, u: jax.Array, mask: jax.Array | None, log_targets: bool
                  ) -> tuple[jax.Array, jax.Array]:
  """Masked entries replaced by log q = 0 and a zero target before the divergence (the outer
  half of a double ``where``, jax #1052): ±inf or 1e30 there then meets a zero cotangent as a
  constant, so the gradient at masked entries is exactly 0."""
  if mask is None:
    return lp, u
  empty = -jnp.inf if log_targets else 0.0
  return (jnp.where(mask, lp, jnp.zeros_like(lp)),
          jnp.where(mask, u, jnp.full_like(u, empty)))


def _masked_sum(values: jax.Array, mask: jax.Array | None, axis: int) -> jax.Array:
  if mask is not None:
    values = jnp.where(mask, values, jnp.zeros_like(values))
  return jnp.sum(values, axis)


class _KLTerms(NamedTuple):
  zero: jax.Array  # t = 0
  a: jax.Array     # log t − log q, 0 where t = 0
  w: jax.Array     # t (exp(log t) with log targets): Σ w·a is the divergence


def _kl_terms(log_targets: bool, lp: jax.Array, u: jax.Array) -> _KLTerms:
  """The terms from u = t, or u = log t if ``log_targets``."""
  zero = u == (-jnp.inf if log_targets else 0.0)
  log_t = u if log_targets else jnp.log(jnp.where(zero, jnp.ones_like(u), u))
  # 0 at t = 0 (also where log q = −inf), but NaN where log q is NaN: NaN inputs propagate.
  a = jnp.where(zero & ~jnp.isnan(lp), jnp.zeros_like(lp), log_t - lp)
  # exp(−inf) = 0 and a = 0 there: w·a is 0 at t = 0 without a select, so XLA's CPU reduction
  # fusion computes it inside the sum, from the one stored array a.
  return _KLTerms(zero, a, jnp.exp(u) if log_targets else u)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 4))
def _kl(log_targets: bool, lp: jax.Array, u: jax.Array, mask: jax.Array | None,
        axis: int) -> jax.Array:
  """Σ over ``axis`` of t·(log t − log q), exactly 0 where t = 0 and at masked entries; u is
  t, or log t if ``log_targets``.

  Undifferentiated, unmasked and with log targets, the plain Σ exp(log t)·(log t − log q)
  runs first (:func:`_numerics.fused_or_exact`): the select that holds a t = 0 term at 0
  keeps XLA:CPU from fusing the sum into one pass, and a log target of −inf (the only input
  it matters for, besides a NaN) makes the plain form NaN (0·(−inf)).
  """
  def exact() -> jax.Array:
    terms = _kl_terms(log_targets, lp, u)
    return _masked_sum(terms.w * terms.a, mask, axis)

  if mask is not None or not log_targets:
    return exact()  # probability targets are often exactly 0: the fast form would be NaN
  return _numerics.fused_or_exact(lambda: jnp.sum(jnp.exp(u) * (u - lp), axis), exact)


@functools.partial(_kl.defjvp, symbolic_zeros=True)
def _kl_jvp(log_targets: bool, axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
            ) -> tuple[jax.Array, jax.Array]:
  lp, u, mask = primals
  dlp, du, _ = tangents
  zero, a, w = _kl_terms(log_targets, lp, u)
  tangent = jnp.zeros_like(a)
  if _numerics.nonzero(dlp):
    # d/d(log q) = −t, +0 where t = 0 (read from a, which is 0 there: the gradient is written
    # over a). With log targets t is exp(log t with −inf replaced by 0), not the forward's w:
    # a separate exp keeps XLA from storing exp(log t) for the sum and the gradient to share.
    t = jnp.exp(jnp.where(zero, jnp.zeros_like(u), u)) if log_targets else u
    tangent = tangent + jnp.where(zero, a, -t) * dlp
  if _numerics.nonzero(du):
    # d/dt = log t − log q + 1; d/d(log t) = t·(log t − log q + 1); 0 where t = 0.
    coeff = w * (a + 1.0) if log_targets else a + 1.0
    tangent = tangent + jnp.where(zero, jnp.zeros_like(a), coeff) * du
  return _masked_sum(w * a, mask, axis), _masked_sum(tangent, mask, axis)


@_numerics.loss_jit(static=("axis",))
def kl_divergence(log_predictions: ArrayLike, targets: ArrayLike,
                  axis: _numerics.AxisLike = -1, where: ArrayLike | None = None) -> jax.Array:
  """Kullback–Leibler divergence KL(t ‖ q) = Σ_c t_c (log t_c − log q_c) (optax's).

  Args:
    log_predictions: floating log-probabilities log q, classes along ``axis``, shape ``S``.
    targets: floating probabilities t, shape ``S``.
    axis: the axis summed over (static): an int, a tuple of ints, or ``None`` (every axis).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``); masked entries
      contribute exactly 0 to the value and the gradient.

  Returns:
    The divergence, ``S`` without ``axis``, in ``jnp.result_type`` of both inputs.

  Gradient (a ``custom_jvp``): d/d(log q_c) = −t_c, finite everywhere;
  d/dt_c = log t_c + 1 − log q_c.

  Edge cases:
    0·log 0 = 0: a zero target contributes 0, also where log q = −inf, and the gradient with
    respect to the log-predictions stays finite there (the ``jnp.where`` trap of optax PR
    #1786: xlogy's gradient is NaN at 0). The derivative with respect to a zero target is −∞
    mathematically; here it is returned as 0 (the term is held at 0 where t = 0), so do not
    differentiate with respect to targets that can be 0. NaN inputs propagate, a NaN
    log-prediction at a zero target included. Entries masked by ``where`` may hold anything
    (±1e30, ±inf): value and gradient there are exactly 0.

  References:
    S. Kullback, R. A. Leibler, "On Information and Sufficiency", 1951;
    optax ``optax.losses.kl_divergence``; PyTorch ``kl_div`` (elementwise).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> log_q, t = jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([[0.25, 0.75]])
    >>> print(jnp.round(jaxloss.kl_divergence(log_q, t), 4))  # ¼ log ½ + ¾ log (3/2)
    [0.1308]
  """
  dtype, lp, t, axis, mask = _numerics.probability_inputs(
      "kl_divergence", log_predictions, targets, axis, where, x_name="log_predictions",
      y_name="targets")
  lp, t = _clean_masked(lp, t, mask, False)
  return _kl(False, lp, t, mask, axis).astype(dtype)


@_numerics.loss_jit(static=("axis",))
def kl_divergence_with_log_targets(log_predictions: ArrayLike, log_targets: ArrayLike,
                                   axis: _numerics.AxisLike = -1,
                                   where: ArrayLike | None = None) -> jax.Array:
  """KL divergence with log-space targets, Σ_c exp(log t_c)(log t_c − log q_c) (optax's).

  Args:
    log_predictions: floating log-probabilities log q, classes along ``axis``, shape ``S``.
    log_targets: floating log-probabilities log t, shape ``S``.
    axis: the axis summed over (static): an int, a tuple of ints, or ``None`` (every axis).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``).

  Returns:
    The divergence, ``S`` without ``axis``, in ``jnp.result_type`` of both inputs.

  Gradient (a ``custom_jvp``): d/d(log q_c) = −t_c; d/d(log t_c) = t_c (log t_c − log q_c + 1).

  Edge cases:
    A target of log t = −inf contributes exactly 0 with zero gradients (optax gives NaN:
    0·(−inf)). NaN inputs propagate. Entries masked by ``where`` may hold anything (±1e30,
    ±inf): value and gradient there are exactly 0.

  References:
    optax ``optax.losses.kl_divergence_with_log_targets``; PyTorch ``kl_div(log_target=True)``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> log_q, log_t = jnp.log(jnp.array([[0.5, 0.5]])), jnp.log(jnp.array([[0.25, 0.75]]))
    >>> print(jnp.round(jaxloss.kl_divergence_with_log_targets(log_q, log_t), 4))
    [0.1308]
  """
  dtype, lp, lt, axis, mask = _numerics.probability_inputs(
      "kl_divergence_with_log_targets", log_predictions, log_targets, axis, where,
      x_name="log_predictions", y_name="log_targets")
  lp, lt = _clean_masked(lp, lt, mask, True)
  return _kl(True, lp, lt, mask, axis).astype(dtype)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _gkl(lp: jax.Array, t: jax.Array, mask: jax.Array | None, axis: int) -> jax.Array:
  """Σ over ``axis`` of t·(log t − log q) + (q − t), q = exp(log q); the first term exactly 0
  where t = 0, every term 0 at masked entries (cleaned to log q = 0, t = 0 beforehand)."""
  terms = _kl_terms(False, lp, t)
  return _masked_sum(terms.w * terms.a + (jnp.exp(lp) - t), mask, axis)


@functools.partial(_gkl.defjvp, symbolic_zeros=True)
def _gkl_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
             ) -> tuple[jax.Array, jax.Array]:
  lp, t, mask = primals
  dlp, dt, _ = tangents
  _, a, w = _kl_terms(False, lp, t)
  q = jnp.exp(lp)
  tangent = jnp.zeros_like(a)
  if _numerics.nonzero(dlp):
    # d/d(log q) = q − t: finite wherever q is, q at t = 0 (also 0 where log q = −inf).
    tangent = tangent + (q - t) * dlp
  if _numerics.nonzero(dt):
    # d/dt = (log t − log q + 1) − 1 = log t − log q, held at 0 where t = 0 (a is 0 there).
    tangent = tangent + a * dt
  return _masked_sum(w * a + (q - t), mask, axis), _masked_sum(tangent, mask, axis)


@_numerics.loss_jit(static=("axis",))
def generalized_kl_divergence(log_predictions: ArrayLike, targets: ArrayLike,
                              axis: _numerics.AxisLike = -1,
                              where: ArrayLike | None = None) -> jax.Array:
  """Generalized Kullback–Leibler divergence of unnormalised measures (optax's).

  .. math::
    D(t \\| q) = \\sum_c t_c (\\log t_c - \\log q_c) + \\sum_c (q_c - t_c),
    \\qquad q = \\exp(\\log q)

  the Bregman divergence of f(u) = u log u − u; it is :func:`kl_divergence` when q and t both
  sum to 1, and non-negative (0 only at q = t) for any non-negative t and q.

  Args:
    log_predictions: floating log q (any real values: q need not sum to 1), classes along
      ``axis``, shape ``S``.
    targets: floating non-negative t, shape ``S``.
    axis: the axis summed over (static): an int, a tuple of ints, or ``None`` (every axis).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``); masked entries
      contribute exactly 0 to the value and the gradient.

  Returns:
    The divergence, ``S`` without ``axis``, in ``jnp.result_type`` of both inputs.

  Gradient (a ``custom_jvp``): d/d(log q_c) = q_c − t_c, finite everywhere q is;
  d/dt_c = log t_c − log q_c.

  Edge cases:
    0·log 0 = 0: a zero target contributes q_c, also where log q = −inf (then 0), and the
    gradient in the log-predictions stays finite there, q_c (optax's is NaN where a zero
    target meets log q = −inf). The derivative in a zero target is −∞ mathematically; it is
    returned as 0, as in :func:`kl_divergence`. exp(log q) overflows above log q ≈ 88.7:
    the true value is then above float32's maximum (inf). NaN inputs propagate. Entries
    masked by ``where`` may hold anything (±1e30, ±inf): value and gradient there are 0.

  References:
    L. M. Bregman, "The relaxation method of finding the common point of convex sets and its
    application to the solution of problems in convex programming", 1967; S. Boyd,
    L. Vandenberghe, "Convex Optimization", 2004, p. 90; optax
    ``optax.losses.generalized_kl_divergence``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> # q = (1, 1), t = (1/2, 1/2): ½ log ½ · 2 + (2 − 1) = 1 − log 2.
    >>> loss = jaxloss.generalized_kl_divergence(jnp.zeros((1, 2)), jnp.full((1, 2), 0.5))
    >>> print(jnp.round(loss, 4))
    [0.3069]
  """
  dtype, lp, t, axis, mask = _numerics.probability_inputs(
      "generalized_kl_divergence", log_predictions, targets, axis, where,
      x_name="log_predictions", y_name="targets")
  lp, t = _clean_masked(lp, t, mask, False)
  return _gkl(lp, t, mask, axis).astype(dtype)


def convex_kl_divergence(log_predictions: ArrayLike, targets: ArrayLike,
                         axis: _numerics.AxisLike = -1,
                         where: ArrayLike | None = None) -> jax.Array:
  """Deprecated alias of :func:`generalized_kl_divergence` (as in optax, which deprecated the
  name): the same arguments and numbers, and a ``DeprecationWarning`` at every call.

  Edge cases:
    Those of :func:`generalized_kl_divergence`: zero targets give finite values and gradients,
    NaN propagates.

  Examples:
    >>> import warnings, jax.numpy as jnp, jaxloss
    >>> with warnings.catch_warnings(record=True) as caught:
    ...   warnings.simplefilter("always")
    ...   loss = jaxloss.convex_kl_divergence(jnp.zeros(2), jnp.full(2, 0.5))
    >>> print(caught[0].category.__name__, jnp.round(loss, 4))
    DeprecationWarning 0.3069
  """
  warnings.warn("The function convex_kl_divergence is deprecated. Please use "
                "generalized_kl_divergence instead.", DeprecationWarning, stacklevel=2)
  return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
