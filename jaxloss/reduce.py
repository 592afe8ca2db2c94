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
    where: optional boolean mask of shape ``S`` (or broadcastable to it at the same rank);
      masked entries contribute exactly 0 to the value and to the gradient with respect to
      ``losses``, even when they hold NaN or inf.
    weights: optional non-negative weights, shape ``S`` or broadcastable to it.

  Returns:
    A scalar for ``"mean"``/``"sum"``, an array of shape ``S`` for ``"none"``, in the dtype of
    ``losses`` (accumulated in float32 or wider).

  What a mask can and cannot guarantee:
    The gradient reaching a masked entry's loss is exactly 0, so the parameters see nothing of
    it, provided the loss's own derivative there is finite. Every jaxloss loss keeps that for
    bad labels (NaN value, zero gradient) and for ``ignore_index`` (0, zero gradient). It cannot
    hold for NaN or inf *inputs* (a NaN in the logits of a padded row): the loss's derivative
    is NaN there, and 0·NaN is NaN (jax #1052). Mask such inputs before the loss, e.g.
    ``logits = jnp.where(keep[:, None], logits, 0.0)``.

  Edge cases:
    An empty or fully masked batch (or all weights 0) has mean 0 and sum 0, with zero gradient.
    A NaN in an unmasked entry propagates to the result.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.3, 0.2, 0.1]])
    >>> labels = jnp.array([0, -100])  # PyTorch's padding label
    >>> loss = lambda x: jaxloss.reduce(
    ...     jaxloss.softmax_cross_entropy_with_integer_labels(x, labels), where=labels != -100)
    >>> print(f"{loss(logits):.4f}")
    0.2413
    >>> print(jnp.abs(jax.grad(loss)(logits)[1]))  # the padded row gets no gradient
    [0. 0. 0.]

  PyTorch's reductions (the "Coming from PyTorch" guide has one row per loss):
    ``reduction="mean"`` with ``ignore_index`` and a class ``weight``: the mean divides by the
    summed weight of the kept labels, so pass the labels' weights to ``reduce`` and keep the
    loss unweighted. ``reduce(loss)`` alone would count the ignored rows in the denominator.

    >>> logits = jnp.array([[2.0, 0.5, -1.0], [0.3, 0.2, 0.1], [0.0, 1.0, 3.0],
    ...                     [1.0, 1.0, 1.0]])
    >>> labels = jnp.array([0, -100, 1, 2])
    >>> w = jnp.array([1.0, 2.0, 0.5])  # F.cross_entropy(logits, labels, weight=w)
    >>> ce = jaxloss.softmax_cross_entropy_with_integer_labels(logits, labels, ignore_index=-100)
    >>> print(f"{jaxloss.reduce(ce, where=labels != -100, weights=w[labels]):.4f}")
    1.4658
    >>> print(f"{jaxloss.reduce(ce):.4f}")  # not PyTorch's mean: the ignored row counts
    0.8774

    ``reduction="sum"`` (with ``weight``: ``class_weights=`` on the loss, as PyTorch's
    ``"none"`` weights each row):

    >>> weighted = jaxloss.softmax_cross_entropy_with_integer_labels(
    ...     logits, labels, ignore_index=-100, class_weights=w)
    >>> print(f"{jaxloss.reduce(weighted, 'sum'):.4f}")
    5.1303

    ``kl_div(..., reduction="batchmean")``: ``kl_divergence`` sums over the classes and the mean
    over the rows is ``reduce``'s default.

    >>> log_q = jax.nn.log_softmax(logits)
    >>> p = jax.nn.softmax(jnp.flip(logits, axis=-1))
    >>> print(f"{jaxloss.reduce(jaxloss.kl_divergence(log_q, p)):.4f}")
    1.1645
  """
  fn = "reduce"
  if reduction not in _REDUCTIONS:
    raise ValueError(f"{fn}: unknown reduction={reduction!r}; expected one of {_REDUCTIONS}")
  losses = _numerics.check_floating(fn, "losses", losses)
  where, weights = _numerics.check_reduce_masks(fn, losses, where, weights)
  return _reduce(losses, reduction, where, weights)
