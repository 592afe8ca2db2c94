"""Fenchel–Young losses: binary and multiclass sparsemax losses, and a loss from any max function.

A Fenchel–Young loss (Blondel et al. 2020) of a regulariser Ω is
L(θ, y) = Ω*(θ) + Ω(y) − ⟨θ, y⟩ >= 0, zero exactly when the regularised prediction
∇Ω*(θ) equals y, with gradient ∇Ω*(θ) − y. Ω = Gini entropy gives the sparsemax loss (Martins &
Astudillo 2016), whose prediction, sparsemax, is the Euclidean projection onto the simplex and
can put exactly zero probability on classes; Ω = Shannon entropy gives softmax cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


def _sparse_plus(x: jax.Array) -> jax.Array:
  """0 for x <= −1, (x + 1)²/4 for −1 < x < 1, x for x >= 1; C¹, derivative sparse_sigmoid."""
  zero = jnp.zeros((), x.dtype)
  return jnp.where(x <= -1.0, zero, jnp.where(x >= 1.0, x, jnp.square(x + 1.0) / 4.0))


@_numerics.loss_jit()
def sparsemax_loss(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Binary sparsemax loss: the Fenchel–Young loss of the two-class sparsemax (optax's numbers).

  .. math::
    \\ell(s, y) = \\operatorname{sparse\\_plus}\\big((1 - 2y)\\,s\\big), \\qquad
    \\operatorname{sparse\\_plus}(x) = \\begin{cases} 0 & x \\le -1 \\\\
      (x + 1)^2/4 & -1 < x < 1 \\\\ x & x \\ge 1 \\end{cases}

  Zero exactly when ``jax.nn.sparse_sigmoid(logits) == labels`` (s >= 1 for y = 1,
  s <= −1 for y = 0).

  Args:
    logits: floating scores of any shape ``S``.
    labels: 0 or 1, of shape ``S`` or a scalar; bool, integer or floating.

  Returns:
    The loss, shape ``S``, in the promoted dtype of the floating inputs.

  Derivative: ∂ℓ/∂s = sparse_sigmoid(s) − y, sparse_sigmoid(s) = clip((s + 1)/2, 0, 1). The
  loss is continuously differentiable (no sub-gradient choice is needed); its second
  derivative jumps at s = ±1 (1/2 inside, 0 outside, and 0 at the two points).

  Edge cases:
    A label other than 0 or 1 gives NaN with a zero gradient for that example and fails
    ``checkify`` naming it (optax treats every nonzero label as 1). Large logits of either
    sign are exact (the linear piece), never inf from the square. NaN logits propagate.

  References:
    M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young Losses", JMLR 2020
    (Sec. 4.4); optax ``optax.losses.sparsemax_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(jaxloss.sparsemax_loss(jnp.array([2.0, 0.0, -3.0]), jnp.array([1, 1, 1])))
    [0.   0.25 3.  ]
  """
  fn = "sparsemax_loss"
  s = _numerics.check_floating(fn, "logits", logits)
  y = jnp.asarray(labels)
  if not (jnp.issubdtype(y.dtype, jnp.floating) or jnp.issubdtype(y.dtype, jnp.integer)
          or y.dtype == jnp.bool_):
    raise TypeError(f"{fn}: `labels` must be 0/1 labels (bool, integer or floating), got "
                    f"{y.dtype}")
  _numerics.check_same_shape(fn, "logits", s, "labels", y)
  if y.dtype == jnp.bool_:
    y = y.astype(jnp.int32)
  out_dtype = _numerics.result_dtype(s, y)
  valid = (y == 0) | (y == 1)
  _numerics.debug_check_labels(fn, "labels", y, valid, "0 or 1")
  _, (s,) = _numerics.upcast(s)
  positive = y == 1  # an invalid label is computed as 0, then replaced by NaN
  loss = _sparse_plus(jnp.where(positive, -s, s))
  return _numerics.nan_where_invalid(loss, valid).astype(out_dtype)


def _sparsemax(z: jax.Array) -> jax.Array:
  """sparsemax along the last axis: the Euclidean projection of ``z`` onto the simplex.

  p = max(z − τ, 0) with τ from the sorted scores z_(1) >= ... >= z_(K):
  k = max{j : 1 + j z_(j) > Σ_{i<=j} z_(i)}, τ = (Σ_{i<=k} z_(i) − 1)/k (Martins & Astudillo
  2016, Alg. 1). Scores are shifted by their maximum first (sparsemax is shift-invariant).
  """
  z = z - jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))
  z_sorted = -jnp.sort(-z, axis=-1)
  cumsum = jnp.cumsum(z_sorted, axis=-1)
  k = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype).reshape((1,) * (z.ndim - 1) + (-1,))
  support = 1.0 + k * z_sorted > cumsum
  size = jnp.sum(support, axis=-1, keepdims=True)  # >= 1: the largest score is always in
  tau = (jnp.take_along_axis(cumsum, size - 1, axis=-1) - 1.0) / size.astype(z.dtype)
  return _numerics.relu(z - tau)


@jax.custom_jvp
def _multiclass_sparsemax(scores: jax.Array, labels: jax.Array) -> jax.Array:
  """⟨p, θ − θ_y⟩ + ½(1 − ‖p‖²), p = sparsemax(θ), clipped at 0 against rounding."""
  p = _sparsemax(scores)
  target = jnp.take_along_axis(scores, labels[..., None], axis=-1)
  loss = jnp.sum(p * (scores - target), axis=-1) + 0.5 * (1.0 - jnp.sum(p * p, axis=-1))
  return jnp.maximum(loss, 0.0)


@_multiclass_sparsemax.defjvp
def _multiclass_sparsemax_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
                              ) -> tuple[jax.Array, jax.Array]:
  scores, labels = primals
  d_scores, _ = tangents
  # ∇_θ L = sparsemax(θ) − e_y (Blondel et al. 2020, Prop. 2); the rule is differentiable
  # again (through the sort), so the Hessian is sparsemax's Jacobian.
  grad = _sparsemax(scores) - jax.nn.one_hot(labels, scores.shape[-1], dtype=scores.dtype)
  return _multiclass_sparsemax(scores, labels), jnp.sum(grad * d_scores, axis=-1)


@_numerics.loss_jit()
def multiclass_sparsemax_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Multiclass sparsemax loss (Martins & Astudillo 2016), optax's numbers at any batch shape.

  .. math::
    \\ell(\\theta, y) = \\langle p, \\theta \\rangle - \\theta_y
      + \\tfrac12\\big(1 - \\lVert p \\rVert^2\\big), \\qquad
    p = \\operatorname{sparsemax}(\\theta) = \\arg\\min_{q \\in \\Delta} \\lVert q - \\theta
      \\rVert^2

  the Fenchel–Young loss of the Gini entropy: >= 0, and 0 exactly when sparsemax(θ) is the
  one-hot vector of y (θ_y at least 1 above every other score).

  Args:
    scores: floating array of shape (..., K), classes on the last axis (any batch shape;
      optax's accepts only (N, K)).
    labels: integer class indices in [0, K), of shape (...).

  Returns:
    The loss, of shape (...), in the scores' dtype.

  Derivative: ∇_θ ℓ = sparsemax(θ) − onehot(y) (a ``custom_jvp``). It is continuous;
  sparsemax is piecewise linear, so the Hessian, diag(s) − s sᵀ/|s| on the support s, jumps
  where the support changes. Ties in the scores do not matter (the projection is unique).

  Edge cases:
    An out-of-range label (negative included) gives NaN with a zero gradient and fails
    ``checkify`` naming it. Scores are shifted by their maximum before the projection, so
    1e5-sized scores are exact; the value is clipped at 0 against rounding (the gradient
    is unchanged). NaN scores propagate.

  References:
    A. F. T. Martins, R. F. Astudillo, "From Softmax to Sparsemax: A Sparse Model of
    Attention and Multi-Label Classification", ICML 2016 (Eq. 15 and Alg. 1); M. Blondel,
    A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young Losses", JMLR 2020; optax
    ``optax.losses.multiclass_sparsemax_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> scores = jnp.array([[3.0, 1.0, 0.0], [0.5, 0.4, 0.0]])
    >>> print(jnp.round(jaxloss.multiclass_sparsemax_loss(scores, jnp.array([0, 0])), 4))
    [0.     0.2033]
  """
  fn = "multiclass_sparsemax_loss"
  x = _numerics.check_floating(fn, "scores", scores)
  y = _numerics.check_integer(fn, "labels", labels)
  if x.ndim < 1 or y.shape != x.shape[:-1]:
    raise ValueError(f"{fn}: `labels` must have the shape of `scores` without its last "
                     f"(class) axis, got scores.shape={x.shape} and labels.shape={y.shape}")
  out_dtype = x.dtype
  num_classes = x.shape[-1]
  valid = _numerics.class_labels_valid(fn, "labels", y, num_classes)
  _, (x,) = _numerics.upcast(x)
  safe = jnp.clip(y, 0, num_classes - 1).astype(jnp.int32)
  loss = _multiclass_sparsemax(x, safe)
  return _numerics.nan_where_invalid(loss, valid).astype(out_dtype)


class MaxFun(Protocol):
  """A max function: a (smoothed) maximum of a score vector (a 1-D array) to a scalar."""

  def __call__(self, scores: jax.Array, *args: Any, **kwargs: Any) -> ArrayLike:
    ...


def make_fenchel_young_loss(max_fun: MaxFun) -> Callable[..., jax.Array]:
  """A Fenchel–Young loss from a max function (optax's construction).

  .. math::
    \\ell(\\theta, y) = \\operatorname{max\\_fun}(\\theta) - \\langle y, \\theta \\rangle

  on the last axis: with max_fun = Ω* the conjugate of a regulariser Ω this is the
  Fenchel–Young loss up to the constant Ω(y) (``logsumexp`` gives softmax cross-entropy with
  one-hot targets, up to the targets' entropy for soft ones).

  Args:
    max_fun: a function of a 1-D score vector (and optional extra arguments) to a scalar, e.g.
      ``jax.scipy.special.logsumexp``.

  Returns:
    ``fenchel_young_loss(scores, targets, *args, **kwargs)``: ``scores`` and ``targets`` of
    shape (..., K), the loss of shape (...), in the promoted floating dtype (bf16/fp16
    computed in float32); ``max_fun`` is applied to every vector on the last axis
    (``jnp.vectorize``), with extra keyword arguments passed through (positional ones are
    refused by ``jnp.vectorize``'s signature, as in optax). Without extra arguments
    the loss runs under ``jax.jit``; with them it is traced where it is called (wrap it in
    ``jax.jit``, marking any static argument).

  Derivative: ∇_θ ℓ = ∇max_fun(θ) − y (for logsumexp: softmax(θ) − y), by automatic
  differentiation of ``max_fun``; the loss is as smooth as ``max_fun``.

  Edge cases:
    ``scores`` and ``targets`` must have the same shape (``ValueError`` otherwise; optax
    broadcasts them). The loss accepts any number of leading axes (the jaxopt version instead
    flattened the input into one vector).

  References:
    M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young Losses", JMLR
    2020; optax ``optax.losses.make_fenchel_young_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> from jax.scipy.special import logsumexp
    >>> fy_loss = jaxloss.make_fenchel_young_loss(logsumexp)
    >>> scores = jnp.array([[1.0, 2.0, 0.5]])
    >>> print(jnp.round(fy_loss(scores, jnp.array([[0.0, 1.0, 0.0]])), 4))
    [0.4644]
  """
  fn = "fenchel_young_loss"
  max_last = jnp.vectorize(max_fun, signature="(n)->()")

  def compute(scores: ArrayLike, targets: ArrayLike, *args: Any, **kwargs: Any) -> jax.Array:
    s = _numerics.check_floating(fn, "scores", scores)
    t = _numerics.check_numeric(fn, "targets", targets)
    if s.shape != t.shape or s.ndim < 1:
      raise ValueError(f"{fn}: `scores` and `targets` must have the same shape (..., K), got "
                       f"scores.shape={s.shape} and targets.shape={t.shape}")
    out_dtype = _numerics.result_dtype(s, t)
    _, (s, t) = _numerics.upcast(s, t)
    value = jnp.asarray(max_last(s, *args, **kwargs), s.dtype) - jnp.sum(t * s, axis=-1)
    return value.astype(out_dtype)

  jitted = jax.jit(compute)

  def fenchel_young_loss(scores: ArrayLike, targets: ArrayLike, *args: Any,
                         **kwargs: Any) -> jax.Array:
    if args or kwargs:
      return compute(scores, targets, *args, **kwargs)
    return jitted(scores, targets)

  name = getattr(max_fun, "__name__", "max_fun")
  fenchel_young_loss.__doc__ = (f"Fenchel–Young loss of ``{name}``: max_fun(scores) − "
                                f"⟨targets, scores⟩ on the last axis.")
  return fenchel_young_loss
