"""Reduction of per-example losses: the one place where the batch is summed or averaged."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxloss import _numerics

_REDUCTIONS = ("none", "mean", "sum")


@functools.partial(jax.jit, static_argnames=("reduction",))
def _reduce(losses: jax.Array, reduction: str, where: jax.Array | None,
            weights: jax.Array | None) -> jax.Array:
  dtype = _numerics.compute_dtype(losses)
  w = jnp.ones((), dtype) if weights is None else weights.astype(dtype)
  if where is not None:
    # Double where: a NaN or inf in a masked entry must not reach the sum or its gradient.
    w = jnp.where(where, w, jnp.zeros((), dtype))
    values = jnp.where(where, losses.astype(dtype), jnp.zeros((), dtype))
  else:
    values = losses.astype(dtype)
  weighted = values * w
  if reduction == "none":
    return weighted.astype(losses.dtype)
  total = jnp.sum(weighted)
  if reduction == "sum":
    return total.astype(losses.dtype)
  denom = jnp.sum(jnp.broadcast_to(w, losses.shape))
  # An empty or fully masked batch: 0 / 0 -> 0, with a zero gradient (denominator kept at 1).
  mean = total / jnp.where(denom == 0, jnp.ones((), dtype), denom)
  return mean.astype(losses.dtype)


def reduce(losses: jax.typing.ArrayLike, reduction: str = "mean", *,
           where: jax.typing.ArrayLike | None = None,
           weights: jax.typing.ArrayLike | None = None) -> jax.Array:
  """Reduces per-example losses to a scalar (or weights them, for ``"none"``).

  .. math::
    \\text{mean} = \\frac{\\sum_i m_i w_i \\ell_i}{\\sum_i m_i w_i}, \\qquad
    \\text{sum} = \\sum_i m_i w_i \\ell_i

  with ``m`` the boolean mask ``where`` and ``w`` the ``weights`` (1 when omitted).

  Args:
    losses: per-example losses, any shape ``S``.
    reduction: ``"none"`` (returns ``m·w·ℓ`` of shape ``S``), ``"mean"`` or ``"sum"``.
    where: optional boolean mask of shape ``S`` (or broadcastable to it); masked entries
      contribute exactly 0 to the value and the gradient, even when they hold NaN or inf.
    weights: optional non-negative weights, shape ``S`` or broadcastable to it.

  Returns:
    A scalar for ``"mean"``/``"sum"``, an array of shape ``S`` for ``"none"``, in the dtype of
    ``losses`` (accumulated in float32 or wider).

  Edge cases:
    An empty or fully masked batch (or all weights 0) has mean 0 and sum 0, with zero gradient.
    A NaN in an unmasked entry propagates to the result.
  """
  fn = "reduce"
  if reduction not in _REDUCTIONS:
    raise ValueError(f"{fn}: unknown reduction={reduction!r}; expected one of {_REDUCTIONS}")
  losses = _numerics.check_floating(fn, "losses", losses)
  for name, arr in (("where", where), ("weights", weights)):
    if arr is not None:
      shape = jnp.shape(arr)
      try:
        broadcast = jnp.broadcast_shapes(shape, losses.shape) == losses.shape
      except ValueError:
        broadcast = False
      if not broadcast or len(shape) not in (0, losses.ndim):
        raise ValueError(f"{fn}: `{name}` must have the shape of `losses` (or broadcast to it "
                         f"at the same rank), got losses.shape={losses.shape} and "
                         f"{name}.shape={shape}")
  if where is not None:
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
      raise TypeError(f"{fn}: `where` must be a boolean mask, got {where.dtype}")
  if weights is not None:
    weights = _numerics.check_numeric(fn, "weights", weights)
  return _reduce(losses, reduction, where, weights)
