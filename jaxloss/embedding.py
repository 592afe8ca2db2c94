"""Embedding losses: center loss and its center update; triplet and contrastive losses.

These losses act on feature vectors (embeddings) along a feature axis and return one loss per
example (the inputs' shape without that axis). bf16/fp16 features are computed in float32 and
returned in their dtype.
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


def _norm(x: jax.Array, p: jax.Array, axis: int) -> jax.Array:
  """‖x‖_p along ``axis``, without overflow, with gradient 0 at x = 0.

  Scaled by the largest |x_i| (held constant in the derivative, which is exact because the
  norm is homogeneous of degree 1), so entries up to float32's maximum do not overflow the
  sum of powers. At x = 0 the norm's sub-differential is the dual unit ball, which contains
  0: the gradient there is 0 (contract 4), where the plain formula gives 0/0 = NaN.
  """
  a = _numerics.abs0(x)
  scale = jax.lax.stop_gradient(jnp.max(a, axis=axis, keepdims=True))
  nonzero = scale != 0  # true for NaN too, so NaN propagates
  u = a / jnp.where(nonzero, scale, jnp.ones((), a.dtype))
  # u**p with gradient 0 at u = 0 (finite also for p < 1): double where (jax #1052).
  positive = u > 0
  powers = jnp.where(positive, jnp.where(positive, u, jnp.ones((), u.dtype)) ** p,
                     jnp.zeros((), u.dtype))
  total = jnp.sum(powers, axis=axis, keepdims=True)
  # total >= 1 wherever x != 0 (the largest entry contributes 1): its root is safe there; the
  # root of the all-zero case is taken at 1 instead (its gradient at 0 would be infinite).
  root = jnp.where(nonzero, total, jnp.ones((), u.dtype)) ** (1.0 / p)
  norm = jnp.where(nonzero, scale * root, jnp.zeros((), a.dtype))
  # An infinite entry: the norm is inf (inf/inf above would make it NaN).
  norm = jnp.where(jnp.isposinf(scale), scale, norm)
  return jnp.squeeze(norm, axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _euclidean(a: jax.Array, b: jax.Array, eps: jax.Array, axis: int) -> jax.Array:
  """‖a − b + eps‖₂ along ``axis``: one fused pass when no row can over- or underflow.

  The plain sqrt(Σ x²) is exact to rounding whenever every row's sum of squares lies in
  [tiny/ε, max] of the dtype (no square overflowed, and squares lost to underflow are below
  ε relative). Only if some row falls outside (|x| ~ 1e19 or ~1e-16 in float32, inf, NaN) is
  the batch recomputed by the scaled :func:`_norm`, under ``lax.cond`` (under ``jax.vmap``
  both run). The derivative is u = x/‖x‖ (0 at x = 0, the sub-gradient of contract 4).
  """
  ss = jnp.sum(jnp.square(a - b + eps), axis=axis)
  info = jnp.finfo(ss.dtype)
  safe = jnp.all((ss >= info.tiny / info.eps) & (ss <= info.max))  # False for NaN
  return lax.cond(safe, lambda ss, *_: jnp.sqrt(ss),
                  lambda _, a, b, eps: _norm(a - b + eps, jnp.asarray(2.0, a.dtype), axis),
                  ss, a, b, eps)


@_euclidean.defjvp
def _euclidean_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
        ) -> tuple[jax.Array, jax.Array]:
  a, b, eps = primals
  da, db, deps = tangents
  d = _euclidean(a, b, eps, axis)
  # x/d, not x·(1/d): |x|/d <= 1, so no product overflows even at float32's maximum.
  u = (a - b + eps) / jnp.expand_dims(jnp.where(d > 0, d, jnp.ones((), d.dtype)), axis)
  return d, jnp.sum(u * (da - db + deps), axis=axis)


def _distance(a: jax.Array, b: jax.Array, eps: jax.Array, q: jax.Array, axis: int) -> jax.Array:
  """‖a − b + eps‖_q along ``axis`` (PyTorch's ``pairwise_distance``); q traced.

  q = 2 takes the one-pass Euclidean form, any other q the scaled power sum, chosen at run
  time by ``lax.cond`` (one branch runs unless q itself is batched by ``vmap``).
  """
  return lax.cond(q == 2, lambda: _euclidean(a, b, eps, axis),
                  lambda: _norm(a - b + eps, q, axis))


@_numerics.loss_jit(static=("axis", "swap"),
                    bounds={"eps": _numerics.Range(low=0.0),
                            "norm_degree": _numerics.Range(low=0.0, low_open=True)})
def triplet_margin_loss(anchors: ArrayLike, positives: ArrayLike, negatives: ArrayLike,
                        axis: int = -1, norm_degree: ArrayLike = 2, margin: ArrayLike = 1.0,
                        eps: ArrayLike = 1e-6, *, swap: bool = False) -> jax.Array:
  """Triplet margin loss with optax's signature and PyTorch's numbers.

  .. math::
    \\ell = \\max\\big(0,\\; \\text{margin} + d(a, p) - d(a, n)\\big), \\qquad
    d(x, y) = \\lVert x - y + \\varepsilon \\rVert_q

  with ``q = norm_degree`` (PyTorch's ``pairwise_distance``). With ``swap`` (Balntas et al.,
  "distance swap") the negative distance is min(d(a, n), d(p, n)).

  Args:
    anchors: floating embeddings, any shape ``S`` with the feature axis ``axis``.
    positives: same shape as ``anchors`` (similar to them).
    negatives: same shape as ``anchors`` (dissimilar).
    axis: static; the feature axis.
    norm_degree: traced ``q`` > 0 (a norm for q >= 1), PyTorch's ``p``; a Python number or
      an array, as optax (a new value does not re-compile).
    margin: traced float.
    eps: traced float >= 0, added to the difference before the norm (PyTorch's ``eps``).
    swap: static; use the distance swap.

  Returns:
    The loss, ``S`` without ``axis``, in the anchors' dtype.

  Sub-gradient: the distances' gradients where the loss is positive, and 0 at its kink
  (margin + d(a, p) = d(a, n), contract 4). A distance whose vector is exactly 0 (a − p = −ε)
  has gradient 0 there (its sub-differential contains 0), never NaN. With ``swap``, a tie
  d(p, n) = d(a, n) uses d(a, n).

  Edge cases:
    optax 0.2.8 computes (Σ(a − p)^q + ε)^{1/q}: for odd ``q`` a negative difference makes it
    wrong (negative powers), and its ε sits inside the root; it agrees with this function at
    q = 2 up to O(ε) (exactly when ε = 0). Distances do not overflow below float32's maximum
    nor lose precision to underflow: a batch with such a row is recomputed scaled by each row's
    largest entry (q = 2; other q always are). NaN inputs propagate.

  References:
    V. Balntas, E. Riba, D. Ponsa, K. Mikolajczyk, "Learning local feature descriptors with
    triplets and shallow convolutional neural networks", BMVC 2016; F. Schroff, D. Kalenichenko,
    J. Philbin, "FaceNet", CVPR 2015; optax ``optax.losses.triplet_margin_loss``; PyTorch
    ``torch.nn.functional.triplet_margin_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a, p, n = jnp.zeros((1, 2)), jnp.array([[3.0, 4.0]]), jnp.array([[1.0, 0.0]])
    >>> print(jnp.round(jaxloss.triplet_margin_loss(a, p, n), 4))  # 1 + 5 - 1
    [5.]
  """
  fn = "triplet_margin_loss"
  out, (a, p, n) = _numerics.floating_inputs(fn, ("anchors", "positives", "negatives"),
                                             (anchors, positives, negatives))
  axis = _numerics.canonical_axis(fn, axis, a.ndim, name="anchors")
  eps = jnp.asarray(eps, a.dtype)
  q = jnp.asarray(norm_degree, a.dtype)
  return _triplet(lambda x, y: _distance(x, y, eps, q, axis), a, p, n, margin, swap).astype(out)


def _triplet(distance: Callable[[jax.Array, jax.Array], jax.Array], a: jax.Array, p: jax.Array,
             n: jax.Array, margin: ArrayLike, swap: bool) -> jax.Array:
  """max(0, margin + d(a, p) − d(a, n)), d(a, n) replaced by d(p, n) when smaller and ``swap``."""
  d_pos = distance(a, p)
  d_neg = distance(a, n)
  if swap:
    d_swap = distance(p, n)
    d_neg = jnp.where(d_swap < d_neg, d_swap, d_neg)  # a tie keeps d(a, n), where min splits
  return _numerics.relu(jnp.asarray(margin, d_pos.dtype) + (d_pos - d_neg))  # relu'(0) = 0


@_numerics.loss_jit(static=("distance_fn", "swap"))
def triplet_margin_with_distance_loss(
    anchors: ArrayLike, positives: ArrayLike, negatives: ArrayLike, *,
    distance_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    margin: ArrayLike = 1.0, swap: bool = False) -> jax.Array:
  """Triplet loss with a distance of the caller's choice (PyTorch's
  ``triplet_margin_with_distance_loss``).

  .. math::
    \\ell = \\max(0, \\text{margin} + d(a, p) - d(a, n))

  Args:
    anchors: floating embeddings, shape ``S + (D,)`` (features last).
    positives: same shape as ``anchors``.
    negatives: same shape as ``anchors``.
    distance_fn: static; a function of two ``S + (D,)`` arrays returning their ``S``-shaped
      distances, pure and jit-compatible (hashable: a module-level function, or a
      ``functools.partial`` of one). ``None`` is PyTorch's default, the pairwise Euclidean
      distance ‖x − y + 1e-6‖₂ (:func:`triplet_margin_loss`'s distance).
    margin: traced float.
    swap: static; the distance swap of Balntas et al. (d(a, n) replaced by d(p, n) when
      smaller).

  Returns:
    The loss, shape ``S``, in the result dtype of the inputs (as ``distance_fn`` returns it).

  Sub-gradient: the gradient of d(a, p) − d(a, n) where the hinge is active, 0 at the kink;
  a tie in the swap keeps d(a, n).

  Edge cases:
    The default distance has gradient 0 at coinciding vectors (its sub-gradient); a custom
    ``distance_fn`` brings its own derivative. NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.triplet_margin_with_distance_loss``; V. Balntas et al.,
    BMVC 2016.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a, p, n = jnp.zeros((1, 2)), jnp.array([[6.0, 8.0]]), jnp.array([[3.0, 4.0]])
    >>> print(jnp.round(jaxloss.triplet_margin_with_distance_loss(a, p, n), 4))  # 1 + 10 − 5
    [6.]
    >>> def cosine_distance(x, y):
    ...   return 1 - jnp.sum(x * y, -1) / jnp.sqrt(jnp.sum(x * x, -1) * jnp.sum(y * y, -1))
    >>> a, p, n = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]]), jnp.array([[0.0, 1.0]])
    >>> loss = jaxloss.triplet_margin_with_distance_loss(a, p, n, distance_fn=cosine_distance)
    >>> print(jnp.round(loss, 4))  # 1 + (1 − 1/√2) − 1
    [0.2929]
  """
  fn = "triplet_margin_with_distance_loss"
  out, (a, p, n) = _numerics.floating_inputs(fn, ("anchors", "positives", "negatives"),
                                             (anchors, positives, negatives))
  if distance_fn is None:
    eps = jnp.asarray(1e-6, a.dtype)
    two = jnp.asarray(2.0, a.dtype)
    distance_fn = lambda x, y: _distance(x, y, eps, two, x.ndim - 1)  # noqa: E731
  elif not callable(distance_fn):
    raise TypeError(f"{fn}(distance_fn=...) must be a callable of two arrays or None, got "
                    f"{distance_fn!r}")
  return _triplet(distance_fn, a, p, n, margin, swap).astype(out)


@_numerics.loss_jit(static=("axis",), bounds={"margin": _numerics.Range(low=0.0)})
def contrastive_loss(x1: ArrayLike, x2: ArrayLike, same: ArrayLike, *, margin: ArrayLike = 1.0,
                     axis: int = -1) -> jax.Array:
  """Contrastive loss of Hadsell, Chopra and LeCun (2006).

  .. math::
    \\ell = s\\,\\tfrac12 d^2 + (1 - s)\\,\\tfrac12 \\max(0, \\text{margin} - d)^2, \\qquad
    d = \\lVert x_1 - x_2 \\rVert_2

  Similar pairs (``s = 1``) are pulled together; dissimilar ones (``s = 0``) are pushed apart
  until they are ``margin`` apart.

  Args:
    x1: floating embeddings, any shape ``S`` with the feature axis ``axis``.
    x2: same shape as ``x1``.
    same: 1 for a similar pair, 0 for a dissimilar one (bool, integer or floating; a value in
      between weighs the two terms), of shape ``S`` without ``axis``, or a scalar.
    margin: traced float >= 0.
    axis: static; the feature axis.

  Returns:
    The loss, ``S`` without ``axis``, in ``x1``'s dtype.

  Derivative: d/dx1 = s·(x1 − x2) − (1 − s)·max(0, margin − d)·(x1 − x2)/d. At d = margin
  the push term is 0 (contract 4). When the two vectors coincide (d = 0) the push direction is
  undefined; the gradient is 0 there (0 is in the Clarke sub-differential), finite, where
  the plain formula gives 0/0 = NaN.

  Edge cases:
    A ``same`` outside [0, 1] gives NaN for that pair and fails ``checkify`` naming it.
    Distances do not overflow below float32's maximum: a batch with such a row is
    recomputed scaled by each row's largest entry. NaN inputs propagate.

  References:
    R. Hadsell, S. Chopra, Y. LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006, Eq. 4 (with Y = 1 − same).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x1, x2 = jnp.zeros((2, 2)), jnp.array([[0.3, 0.4], [0.3, 0.4]])
    >>> print(jnp.round(jaxloss.contrastive_loss(x1, x2, jnp.array([1, 0])), 4))
    [0.125 0.125]
  """
  fn = "contrastive_loss"
  arrays = (_numerics.check_floating(fn, "x1", x1), _numerics.check_floating(fn, "x2", x2))
  _numerics.check_same_shape(fn, "x1", arrays[0], "x2", arrays[1], allow_scalar=False)
  axis = _numerics.canonical_axis(fn, axis, arrays[0].ndim, name="x1")
  s = jnp.asarray(same)
  if s.dtype != jnp.bool_:
    s = _numerics.check_numeric(fn, "same", s)
  pair_shape = arrays[0].shape[:axis] + arrays[0].shape[axis + 1:]
  if s.shape != pair_shape and s.ndim != 0:
    raise ValueError(f"{fn}: `same` must have the shape of `x1` without axis {axis} (or be a "
                     f"scalar), got x1.shape={arrays[0].shape} and same.shape={s.shape}")
  _, (a, b) = _numerics.upcast(*arrays)
  s = s.astype(a.dtype)
  valid = (s >= 0) & (s <= 1)
  _numerics.debug_check_labels(fn, "same", s, valid, "in [0, 1]")
  s = jnp.where(valid, s, jnp.ones((), s.dtype))  # NaN below, with a zero gradient
  d = _euclidean(a, b, jnp.zeros((), a.dtype), axis)
  push = _numerics.relu(jnp.asarray(margin, a.dtype) - d)
  # A term whose weight is 0 is left out, not multiplied by 0: ½d² may be inf (|x| ~ 1e30);
  # xmul keeps the derivative in `same` (½d² − ½push²) at same ∈ {0, 1}.
  loss = 0.5 * (_numerics.xmul(s, d * d) + _numerics.xmul(1.0 - s, push * push))
  return _numerics.nan_where_invalid(loss, valid).astype(arrays[0].dtype)


def _center_inputs(fn: str, features: ArrayLike, labels: ArrayLike, centers: ArrayLike
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Checks the center-loss triple; returns ``(x, y, c, valid)``, bad labels replaced by 0."""
  x = _numerics.check_floating(fn, "features", features)
  c = _numerics.check_floating(fn, "centers", centers)
  y = _numerics.wide_labels(_numerics.check_integer(fn, "labels", labels))
  if x.ndim < 1 or c.ndim != 2 or c.shape[1] != x.shape[-1]:
    raise ValueError(f"{fn}: `centers` must have shape (num_classes, D) with D the last axis of "
                     f"`features`, got features.shape={x.shape} and centers.shape={c.shape}")
  if y.shape != x.shape[:-1]:
    raise ValueError(f"{fn}: `labels` must have the shape of `features` without its last axis, "
                     f"got features.shape={x.shape} and labels.shape={y.shape}")
  valid = _numerics.class_labels_valid(fn, "labels", y, c.shape[0])
  return x, jnp.where(valid, y, 0), c, valid


def _center_dtype(x: jax.Array, c: jax.Array) -> jnp.dtype:
  """The wider of the two compute dtypes: bf16 features with float32 centers (the usual mix)
  compute in float32, without relying on implicit promotion between them."""
  return max(_numerics.compute_dtype(x), _numerics.compute_dtype(c), key=lambda d: d.itemsize)


@_numerics.loss_jit()
def center_loss(features: ArrayLike, labels: ArrayLike, centers: ArrayLike) -> jax.Array:
  """Center loss of Wen et al. (2016): ``½‖x_i − c_{y_i}‖²`` per example.

  Pulls each feature vector toward its class center; used beside a softmax cross-entropy to
  make deep features discriminative. Keep ``centers`` in the training state and move them
  with :func:`update_centers` (the paper's Eq. 4), not with the loss's gradient.

  Args:
    features: floating features of shape ``S + (D,)``.
    labels: integer classes in [0, num_classes), shape ``S``.
    centers: floating class centers, shape ``(num_classes, D)``.

  Returns:
    The loss, shape ``S``, in the features' dtype (computed in float32 or wider).

  Derivative: d/dx_i = x_i − c_{y_i} (the paper's Eq. 3); with respect to the centers,
  −Σ_{i: y_i=j} (x_i − c_j).

  Edge cases:
    A label outside [0, num_classes) gives NaN for that example and fails
    ``checkify`` naming it. NaN inputs propagate.

  References:
    Y. Wen, K. Zhang, Z. Li, Y. Qiao, "A Discriminative Feature Learning Approach for Deep
    Face Recognition", ECCV 2016, Eq. 2.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> centers = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> jaxloss.center_loss(jnp.array([[1.0, 0.0], [1.0, 2.0]]), jnp.array([0, 1]), centers)
    Array([0.5, 0.5], dtype=float32)
  """
  x, y, c, valid = _center_inputs("center_loss", features, labels, centers)
  dtype = _center_dtype(x, c)
  x32, c32 = x.astype(dtype), c.astype(dtype)
  diff = x32 - c32[y]
  loss = 0.5 * jnp.sum(diff * diff, axis=-1)
  return _numerics.nan_where_invalid(loss, valid).astype(x.dtype)


@_numerics.loss_jit(bounds={"alpha": _numerics.Range(low=0.0, high=1.0)})
def update_centers(centers: ArrayLike, features: ArrayLike, labels: ArrayLike, *,
                   alpha: ArrayLike = 0.5) -> jax.Array:
  """The center update of Wen et al. (2016), Eq. 4; pure: returns the new centers.

  .. math::
    \\Delta c_j = \\frac{\\sum_{i: y_i = j} (c_j - x_i)}{1 + n_j}, \\qquad
    c_j \\leftarrow c_j - \\alpha\\,\\Delta c_j

  with n_j the number of examples of class j in the batch (the 1 keeps the step bounded, and
  makes classes absent from the batch keep their centers). Computed with
  ``jax.ops.segment_sum``.

  Args:
    centers: floating centers, shape ``(num_classes, D)``; keep them in the caller's state.
    features: floating features of shape ``S + (D,)``; treated as constants (no gradient).
    labels: integer classes in [0, num_classes), shape ``S``.
    alpha: traced learning rate of the centers, in [0, 1].

  Returns:
    The updated centers, shape ``(num_classes, D)``, in the centers' dtype.

  Edge cases:
    An example with a label outside [0, num_classes) is left out of the update (it has no
    center) and fails ``checkify`` naming the label; its :func:`center_loss` is NaN, so a
    training step sees it. NaN features make their class's center NaN.

  References:
    Y. Wen, K. Zhang, Z. Li, Y. Qiao, "A Discriminative Feature Learning Approach for Deep
    Face Recognition", ECCV 2016, Eq. 4 and Algorithm 1.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> centers = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    >>> features = jnp.array([[1.0, 0.0], [2.0, 3.0]])  # both of class 0
    >>> jaxloss.update_centers(centers, features, jnp.array([0, 0]), alpha=0.5)
    Array([[0.5, 0.5],
           [1. , 1. ]], dtype=float32)
  """
  fn = "update_centers"
  x, y, c, valid = _center_inputs(fn, features, labels, centers)
  dtype = _center_dtype(x, c)
  x32, c32 = jax.lax.stop_gradient(x).astype(dtype), c.astype(dtype)
  num_classes = c.shape[0]
  x32 = x32.reshape(-1, x32.shape[-1])
  segments = jnp.where(valid, y, num_classes).reshape(-1)  # out of range: dropped by segment_sum
  sums = jax.ops.segment_sum(x32, segments, num_segments=num_classes)
  counts = jax.ops.segment_sum(jnp.ones(segments.shape, dtype), segments,
                               num_segments=num_classes)[:, None]
  delta = (counts * c32 - sums) / (1.0 + counts)
  return (c32 - jnp.asarray(alpha, dtype) * delta).astype(c.dtype)


def _scaled_for_cosine(x: jax.Array, root_eps: jax.Array, axis: int
                       ) -> tuple[jax.Array, jax.Array]:
  """``(x/t, sqrt(‖x/t‖² + ε/t²))`` with t = max(max_i |x_i|, sqrt(ε)) per vector.

  The cosine x·y / (sqrt(‖x‖² + ε) sqrt(‖y‖² + ε)) is the same function of x/t and ε/t² for
  every fixed t > 0, so t is held constant in the derivative (``stop_gradient``) and the
  derivative is still exact. Scaled, |x/t| <= 1 and ε/t² <= 1: no square overflows (|x| up
  to float32's maximum) and the root is >= 1 (no underflow to 0), except for x = 0 with
  ε = 0, where t is taken as 1 and the root is 0 (with a zero gradient: double where).
  """
  t = jax.lax.stop_gradient(
      jnp.maximum(jnp.max(jnp.abs(x), axis=axis, keepdims=True), root_eps))
  t = jnp.where(t > 0, t, jnp.ones((), t.dtype))  # false for NaN too: NaN x propagates
  u = x / t
  ss = jnp.sum(u * u, axis=axis) + jnp.squeeze(jnp.square(root_eps / t), axis)
  zero = ss == 0  # not `ss > 0`: a NaN must reach the root
  return u, jnp.where(zero, 0.0, jnp.sqrt(jnp.where(zero, 1.0, ss)))


@_numerics.loss_jit(static=("axis",), bounds={"eps": _numerics.Range(low=0.0)})
def cosine_embedding_loss(x1: ArrayLike, x2: ArrayLike, labels: ArrayLike, *,
                          margin: ArrayLike = 0.0, axis: int = -1,
                          eps: ArrayLike = 1e-8) -> jax.Array:
  """Cosine embedding loss (PyTorch's ``cosine_embedding_loss``).

  .. math::
    \\ell = \\begin{cases} 1 - \\cos(x_1, x_2) & y = 1 \\\\
                          \\max(0, \\cos(x_1, x_2) - \\text{margin}) & y = -1 \\end{cases},
    \\qquad \\cos = \\frac{x_1 \\cdot x_2}{\\sqrt{(\\lVert x_1\\rVert^2 + \\varepsilon)
                                               (\\lVert x_2\\rVert^2 + \\varepsilon)}}

  Args:
    x1: floating embeddings, shape ``S`` with the feature axis ``axis``.
    x2: same shape as ``x1``.
    labels: +1 (similar) or −1 (dissimilar), integer, floating or boolean (True is +1), of
      ``x1``'s shape without ``axis``, or a scalar.
    margin: traced float, in [−1, 1] to be meaningful (PyTorch suggests 0 to 0.5).
    axis: static; the feature axis.
    eps: traced float >= 0 added to each squared norm, so that a zero vector has cosine 0
      with a finite gradient. PyTorch adds a fixed 1e-12; pass ``eps=1e-12`` for its numbers
      (the default differs from it by under 1e-7 relative at unit norms).

  Returns:
    The loss, ``S`` without ``axis``, in the result dtype of the floating inputs.

  Sub-gradient: −∇cos for y = 1; ∇cos for y = −1 where cos > margin, and 0 at cos = margin.

  Edge cases:
    A label that is neither −1 nor +1 gives NaN for that pair with a zero gradient and fails
    ``checkify`` naming it; labels of another shape raise ``ValueError`` naming both shapes.
    Each vector is scaled by max(max_i |x_i|, sqrt(eps)) before its norm (an exact rewrite of
    the formula, its derivative too), so entries up to float32's maximum neither overflow the
    squared norms nor underflow them. A zero vector with ``eps=0`` has no
    direction: its cosine is taken as 0, with gradient 0. NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.cosine_embedding_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x1 = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    >>> x2 = jnp.array([[1.0, 1.0], [1.0, 1.0]])
    >>> print(jnp.round(jaxloss.cosine_embedding_loss(x1, x2, jnp.array([1, -1])), 4))
    [0.2929 0.7071]
  """
  fn = "cosine_embedding_loss"
  out, (a, b) = _numerics.floating_inputs(fn, ("x1", "x2"), (x1, x2))
  axis = _numerics.canonical_axis(fn, axis, a.ndim, name="x1")
  pair_shape = a.shape[:axis] + a.shape[axis + 1:]
  if jnp.shape(labels) not in ((), pair_shape):
    raise ValueError(f"{fn}: `labels` must have the shape of `x1` without axis {axis}, "
                     f"{pair_shape}, or be a scalar, got x1.shape={a.shape} and "
                     f"labels.shape={jnp.shape(labels)}")
  root_eps = jnp.sqrt(jnp.asarray(eps, a.dtype))
  u, norm_a = _scaled_for_cosine(a, root_eps, axis)
  v, norm_b = _scaled_for_cosine(b, root_eps, axis)
  den = norm_a * norm_b  # each norm is >= 1 unless its vector is 0 and eps = 0
  zero = den == 0
  cos = jnp.where(zero, 0.0, jnp.sum(u * v, axis) / jnp.where(zero, 1.0, den))
  _, cos, y, valid = _numerics.pm1_inputs(fn, cos, labels, "x1", "labels")
  loss = jnp.where(y == 1, 1.0 - cos, _numerics.relu(cos - jnp.asarray(margin, cos.dtype)))
  return _numerics.nan_where_invalid(loss, valid).astype(out)

