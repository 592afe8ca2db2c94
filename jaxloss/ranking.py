"""Listwise ranking losses.

A ranking loss scores a list of items (the last axis; the leading axes are lists of a batch)
against relevance labels. ``ranking_softmax_loss`` is an optax drop-in name that optax returns
reduced (``reduce_fn=jnp.mean`` by default): it keeps optax's default, one of the documented
exceptions to "losses never reduce"; ``reduce_fn=None`` gives the per-list values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


def _broadcast(fn: str, name: str, value: ArrayLike | None, shape: tuple[int, ...]
               ) -> jax.Array | None:
  if value is None:
    return None
  value = jnp.asarray(value)
  try:
    return jnp.broadcast_to(value, shape)
  except ValueError:
    raise ValueError(f"{fn}: `{name}` of shape {value.shape} does not broadcast to the "
                     f"logits' shape {shape}") from None


def _shift_and_log_total(s: jax.Array) -> tuple[jax.Array, jax.Array]:
  """m = the largest logit (0 if not finite) and log Σ_j exp(s_j − m), keepdims."""
  m = jnp.max(s, axis=-1, keepdims=True)
  m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), s.dtype))
  return m, jnp.log(jnp.sum(jnp.exp(s - m), axis=-1, keepdims=True))


@jax.custom_jvp
def _all_kept(s: jax.Array, yw: jax.Array) -> jax.Array:
  """The per-list loss with every item kept, its derivative in closed form."""
  m, log_total = _shift_and_log_total(s)
  # A zero label contributes exactly 0, even at a −inf logit (optax: 0·inf = NaN).
  terms = jnp.where(yw == 0, jnp.zeros((), s.dtype), yw * ((m - s) + log_total))
  return jnp.sum(terms, axis=-1)


@functools.partial(_all_kept.defjvp, symbolic_zeros=True)
def _all_kept_jvp(primals: tuple[jax.Array, jax.Array], tangents: tuple[Any, Any]
                  ) -> tuple[jax.Array, jax.Array]:
  s, yw = primals
  ds, dyw = tangents
  m, log_total = _shift_and_log_total(s)
  zero = jnp.zeros((), s.dtype)
  nll = (m - s) + log_total  # −log softmax(s)
  loss = jnp.sum(jnp.where(yw == 0, zero, yw * nll), axis=-1)
  tangent = jnp.zeros_like(loss)
  if _numerics.nonzero(ds):
    # ∂ℓ/∂s = (Σ_j yw_j)·softmax(s) − yw.
    softmax = jnp.exp(-nll)
    total = jnp.sum(yw, axis=-1, keepdims=True)
    tangent = tangent + jnp.sum((total * softmax - yw) * ds, axis=-1)
  if _numerics.nonzero(dyw):
    tangent = tangent + jnp.sum(nll * dyw, axis=-1)  # ∂ℓ/∂yw = −log softmax(s)
  return loss, tangent


def _per_list(s: jax.Array, yw: jax.Array, keep: jax.Array | None) -> jax.Array:
  """Σ_i yw_i·(−log softmax(s)_i) over the kept items (all when ``keep`` is None).

  −log softmax(s)_i = (m − s_i) + log Σ_j exp(s_j − m), m the largest kept logit (held
  constant): m − s_i is exact for close logits of any size (1e37 included), where
  LSE(s) − s_i would lose log Σ's digits to the rounding of LSE. A list with no kept item gets
  m = 0 and log Σ = 0.
  """
  if keep is None:
    return _all_kept(s, yw)
  zero = jnp.zeros((), s.dtype)
  any_kept = jnp.any(keep, axis=-1, keepdims=True)
  m = lax.stop_gradient(jnp.max(jnp.where(keep, s, -jnp.inf), axis=-1, keepdims=True))
  m = jnp.where(any_kept & jnp.isfinite(m), m, zero)
  total = jnp.sum(jnp.where(keep, jnp.exp(jnp.where(keep, s - m, zero)), zero), axis=-1,
                  keepdims=True)
  log_total = jnp.log(jnp.where(any_kept, total, 1.0))
  # A zero label contributes exactly 0, even at a −inf logit (optax: 0·inf = NaN).
  return jnp.sum(jnp.where(yw == 0, zero, yw * ((m - s) + log_total)), axis=-1)


@_numerics.loss_jit(static=("reduce_fn",))
def ranking_softmax_loss(logits: ArrayLike, labels: ArrayLike, *,
                         where: ArrayLike | None = None, weights: ArrayLike | None = None,
                         reduce_fn: Callable[..., ArrayLike] | None = jnp.mean) -> jax.Array:
  """Ranking softmax loss (listwise softmax cross-entropy), optax's numbers.

  .. math::
    \\ell(s, y) = -\\sum_{i} w_i y_i \\log \\frac{e^{s_i}}{\\sum_{j} e^{s_j}}
      = \\Big(\\sum_i w_i y_i\\Big) \\operatorname{LSE}(s) - \\sum_i w_i y_i s_i

  with the sums over the items that ``where`` keeps.

  Args:
    logits: floating scores of shape (..., L), the items of each list on the last axis.
    labels: relevance labels of the logits' shape (bool, integer or floating; graded
      relevance is allowed).
    where: optional boolean mask broadcastable to the logits' shape; masked items are left
      out of the softmax and the sum.
    weights: optional per-item weights broadcastable to the logits' shape (they multiply the
      labels, as optax).
    reduce_fn: static; ``jnp.mean`` (default, optax's), ``jnp.sum``, any function called as
      ``reduce_fn(losses, where=list_mask)`` (``list_mask`` is ``None`` without ``where``), or
      ``None`` for the per-list values.

  Returns:
    With ``reduce_fn=None``, the per-list loss of shape (...); otherwise ``reduce_fn`` of it
    (a scalar for the mean and sum), in the promoted dtype of the floating inputs.

  Derivative: ∂ℓ/∂s_i = (Σ_j w_j y_j)·softmax(s)_i − w_i y_i over the kept items, 0 for the
  masked ones (the closed form is what the tests check).

  Edge cases:
    A list whose items are all masked has loss 0 and a zero gradient, and is left out of the
    mean (optax's rule); a mean over no list at all is 0 (not NaN) with a zero gradient,
    unless a per-list value is itself NaN. All-zero labels give 0. Masked items never reach
    the value or gradient, NaN or ±inf logits there included. Extreme logits (1e37) are exact
    (log-sum-exp with the maximum held out); a label on an item whose logit is −inf gives inf.

  References:
    Z. Cao, T. Qin, T.-Y. Liu, M.-F. Tsai, H. Li, "Learning to Rank: From Pairwise Approach
    to Listwise Approach", ICML 2007; S. Bruch, X. Wang, M. Bendersky, M. Najork, "An Analysis
    of the Softmax Cross Entropy Loss for Learning-to-Rank with Binary Relevance", ICTIR
    2019; optax ``optax.losses.ranking_softmax_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> scores = jnp.array([[2.0, 1.0, 3.0], [1.0, 0.5, 1.5]])
    >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> print(f"{jaxloss.ranking_softmax_loss(scores, labels):.4f}")
    1.0439
    >>> print(jnp.round(jaxloss.ranking_softmax_loss(scores, labels, reduce_fn=None), 4))
    [1.4076 0.6803]
  """
  fn = "ranking_softmax_loss"
  s = _numerics.check_floating(fn, "logits", logits)
  y = jnp.asarray(labels)
  if s.ndim < 1:
    raise ValueError(f"{fn}: `logits` must have a list axis (shape (..., L)), got a scalar")
  if y.shape != s.shape:
    raise ValueError(f"{fn}: `logits` and `labels` must have the same shape, got "
                     f"logits.shape={s.shape} and labels.shape={y.shape}")
  if not (jnp.issubdtype(y.dtype, jnp.number) or y.dtype == jnp.bool_):
    raise TypeError(f"{fn}: `labels` must be numeric or boolean, got {y.dtype}")
  mask = _broadcast(fn, "where", where, s.shape)
  if mask is not None and mask.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `where` must be a boolean mask, got {mask.dtype}")
  w = _broadcast(fn, "weights", weights, s.shape)
  out_dtype = _numerics.result_dtype(*(a for a in (s, y, w) if a is not None))
  dtype = _numerics.compute_dtype(*(a for a in (s, y, w) if a is not None))
  s = s.astype(dtype)
  yw = y.astype(dtype) if w is None else y.astype(dtype) * w.astype(dtype)
  zero = jnp.zeros((), dtype)
  if mask is not None:
    # Masked items are replaced before anything is computed (double where, jax #1052).
    yw = jnp.where(mask, yw, zero)
    s = jnp.where(mask, s, zero)
  loss = _per_list(s, yw, mask)
  list_mask = None if mask is None else jnp.any(mask, axis=-1)
  if reduce_fn is None:
    return loss.astype(out_dtype)
  if reduce_fn is jnp.mean and list_mask is not None:
    # optax's rule: the mean over the lists with a kept item, 0 if there is none.
    count = jnp.maximum(jnp.sum(list_mask), 1).astype(dtype)
    return (jnp.sum(jnp.where(list_mask, loss, zero)) / count).astype(out_dtype)
  return jnp.asarray(reduce_fn(loss, where=list_mask)).astype(out_dtype)
