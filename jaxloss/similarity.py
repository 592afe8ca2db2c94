"""Similarity losses: cosine similarity and distance; NT-Xent (SimCLR's contrastive loss).

``cosine_similarity`` and ``cosine_distance`` reduce over a feature axis (an int, a tuple of
ints, or ``None`` for all axes, as optax) and return the inputs' shape without those axes.
``ntxent`` returns a scalar, as optax's does (an optax drop-in name that optax returns reduced:
one of the documented exceptions to "losses never reduce"). bf16/fp16 inputs are computed in
float32 and returned in the promoted dtype of the floating inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

Axis = int | Sequence[int] | None


def _axes(fn: str, axis: Axis, ndim: int) -> tuple[int, ...]:
  """``axis`` (an int, a sequence of ints, or ``None`` for all) as sorted non-negative ints."""
  if axis is None:
    return tuple(range(ndim))
  if not isinstance(axis, (int, tuple, list)):
    raise TypeError(f"{fn}: `axis` must be an int, a tuple of ints or None, got {axis!r}")
  items = (axis,) if isinstance(axis, int) else tuple(axis)
  out = []
  for a in items:
    if not isinstance(a, int) or isinstance(a, bool):
      raise TypeError(f"{fn}: `axis` must be an int, a tuple of ints or None, got {axis!r}")
    if not -ndim <= a < ndim:
      raise ValueError(f"{fn}: axis={axis!r} is out of range for inputs of rank {ndim}")
    out.append(a % ndim)
  if len(set(out)) != len(out):
    raise ValueError(f"{fn}: axis={axis!r} repeats an axis")
  return tuple(sorted(out))


def _clipped(n2: jax.Array, eps: jax.Array) -> jax.Array:
  """max(n2, eps), with derivative 0 in ``n2`` at a tie (contract 4)."""
  return jnp.where(n2 > eps, n2, eps)


def _scaled_eps(eps: jax.Array, s: jax.Array) -> jax.Array:
  """ε/s², and exactly 0 for ε = 0 (s² underflows for tiny entries: 0/0)."""
  return jnp.where(eps > 0, eps / jnp.square(s), jnp.zeros((), s.dtype))


class _Parts(NamedTuple):
  """The cosine and what its derivative needs, each of the batch shape."""
  cos: jax.Array  # unclipped
  na: jax.Array  # sqrt(max(‖a‖², ε)), 1 where it is 0
  nb: jax.Array
  a_free: jax.Array  # ‖a‖² > ε: the norm moves with a (else it is held at sqrt(ε))
  b_free: jax.Array
  zero: jax.Array  # a clipped norm is 0 (a zero vector with ε = 0): value and gradient 0


def _parts_from(dot: jax.Array, na2: jax.Array, nb2: jax.Array, eps_a: jax.Array,
                eps_b: jax.Array, sa: Any = 1.0, sb: Any = 1.0) -> _Parts:
  """The parts from the sums of (a/sa)·(b/sb), (a/sa)², (b/sb)² and ε/sa², ε/sb²."""
  a_free, b_free = na2 > eps_a, nb2 > eps_b
  ca, cb = jnp.where(a_free, na2, eps_a), jnp.where(b_free, nb2, eps_b)
  zero = (ca == 0) | (cb == 0)
  one = jnp.ones((), ca.dtype)
  # sqrt(ca)·sqrt(cb), not sqrt(ca·cb): the product of two large squared norms can overflow.
  ra, rb = jnp.sqrt(jnp.where(zero, one, ca)), jnp.sqrt(jnp.where(zero, one, cb))
  cos = jnp.where(zero, jnp.zeros((), dot.dtype), dot / (ra * rb))
  return _Parts(cos, ra * sa, rb * sb, a_free, b_free, zero)


def _parts(a: jax.Array, b: jax.Array, eps: jax.Array, axes: tuple[int, ...]) -> _Parts:
  """One fused pass (three sums) when every squared norm is within [tiny/ε_mach, max] of the
  dtype, which makes the plain formula exact to rounding; otherwise (a zero vector, a vector
  with an entry near 1e19 or 1e-19 in float32, inf, NaN) the batch is recomputed with each
  vector scaled by its largest entry (the cosine is invariant to the scale once ε is scaled
  with it), under ``lax.cond``."""
  dot = jnp.sum(a * b, axis=axes)
  na2 = jnp.sum(a * a, axis=axes)
  nb2 = jnp.sum(b * b, axis=axes)
  info = jnp.finfo(a.dtype)

  def in_range(n2: jax.Array) -> jax.Array:
    # A squared norm of 0 is not in range: it is a zero vector or tiny entries whose squares
    # underflowed, which only the scaled recomputation tells apart.
    return (n2 >= info.tiny / info.eps) & (n2 <= info.max)

  safe = jnp.all(in_range(na2) & in_range(nb2))  # False for NaN: NaN propagates

  def fast(dot: jax.Array, na2: jax.Array, nb2: jax.Array, a: jax.Array, b: jax.Array,
           eps: jax.Array) -> _Parts:
    return _parts_from(dot, na2, nb2, eps, eps)

  def scaled(dot: jax.Array, na2: jax.Array, nb2: jax.Array, a: jax.Array, b: jax.Array,
             eps: jax.Array) -> _Parts:
    del dot, na2, nb2

    def unit(x: jax.Array) -> tuple[jax.Array, jax.Array]:
      s = jnp.max(jnp.abs(x), axis=axes, keepdims=True)
      s = jnp.where((s > 0) & jnp.isfinite(s), s, jnp.ones((), s.dtype))
      return x / s, jnp.squeeze(s, axes)

    u, sa = unit(a)
    v, sb = unit(b)
    return _parts_from(jnp.sum(u * v, axis=axes), jnp.sum(u * u, axis=axes),
                       jnp.sum(v * v, axis=axes), _scaled_eps(eps, sa), _scaled_eps(eps, sb),
                       sa, sb)

  return lax.cond(safe, fast, scaled, dot, na2, nb2, a, b, eps)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _cosine(a: jax.Array, b: jax.Array, eps: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """The cosine of ``a`` and ``b`` along ``axes`` (optax's ε on the squared norms), clipped to
  [−1, 1] against rounding (the derivative is the unclipped one's)."""
  return jnp.clip(_parts(a, b, eps, axes).cos, -1.0, 1.0)


@_cosine.defjvp
def _cosine_jvp(axes: tuple[int, ...], primals: tuple[jax.Array, ...],
                tangents: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
  a, b, eps = primals
  da, db, deps = tangents
  p = _parts(a, b, eps, axes)
  zero = jnp.zeros((), p.cos.dtype)

  def expand(x: jax.Array) -> jax.Array:
    return jnp.expand_dims(x, axes)

  # ∂cos/∂a = (b̂ − cos·â·[‖a‖² > ε]) / n_a with â = a/n_a, b̂ = b/n_b (divided, not squared:
  # no overflow or underflow); 0 at a zero vector with ε = 0 (the documented sub-gradient).
  na, nb, cos = expand(p.na), expand(p.nb), expand(p.cos)
  a_hat, b_hat = a / na, b / nb
  ga = (b_hat - jnp.where(expand(p.a_free), cos * a_hat, zero)) / na
  gb = (a_hat - jnp.where(expand(p.b_free), cos * b_hat, zero)) / nb
  tangent = jnp.sum(ga * da + gb * db, axis=axes)
  # A clipped norm is sqrt(ε): ∂cos/∂ε = −cos/(2ε) for each side held there.
  held = (~p.a_free).astype(cos.dtype) + (~p.b_free).astype(cos.dtype)
  safe_eps = jnp.where(eps > 0, eps, jnp.ones((), eps.dtype))
  tangent = tangent + jnp.where(eps > 0, -p.cos * held / (2 * safe_eps), zero) * deps
  tangent = jnp.where(p.zero, zero, tangent)
  return jnp.clip(p.cos, -1.0, 1.0), tangent


def _cosine_inputs(fn: str, predictions: ArrayLike, targets: ArrayLike, axis: Axis,
                   where: ArrayLike | None) -> tuple[jnp.dtype, jax.Array, jax.Array,
                                                     tuple[int, ...]]:
  p = _numerics.check_floating(fn, "predictions", predictions)
  t = _numerics.check_floating(fn, "targets", targets)
  if p.shape != t.shape:
    raise ValueError(f"{fn}: `predictions` and `targets` must have the same shape, got "
                     f"predictions.shape={p.shape} and targets.shape={t.shape}")
  axes = _axes(fn, axis, p.ndim)
  out_dtype = _numerics.result_dtype(p, t)
  _, (p, t) = _numerics.upcast(p, t)
  if where is not None:
    w = jnp.asarray(where)
    if w.dtype != jnp.bool_:
      raise TypeError(f"{fn}: `where` must be a boolean mask, got {w.dtype}")
    try:
      w = jnp.broadcast_to(w, p.shape)
    except ValueError:
      raise ValueError(f"{fn}: `where` of shape {w.shape} does not broadcast to the inputs' "
                       f"shape {p.shape}") from None
    # Masked entries are replaced by 0 before anything is computed, so a NaN or inf there
    # reaches neither the value nor the gradient.
    zero = jnp.zeros((), p.dtype)
    p, t = jnp.where(w, p, zero), jnp.where(w, t, zero)
  return out_dtype, p, t, axes


_EPSILON = {"epsilon": _numerics.Range(low=0.0)}


@_numerics.loss_jit(static=("axis",), bounds=_EPSILON)
def cosine_similarity(predictions: ArrayLike, targets: ArrayLike, *, epsilon: ArrayLike = 0.0,
                      axis: Axis = -1, where: ArrayLike | None = None) -> jax.Array:
  """Cosine similarity between predictions and targets along ``axis`` (optax's numbers).

  .. math::
    \\cos(a, b) = \\frac{\\langle a, b \\rangle}
      {\\sqrt{\\max(\\lVert a \\rVert^2, \\epsilon)}\\,\\sqrt{\\max(\\lVert b \\rVert^2,
      \\epsilon)}}

  As in optax, ``epsilon`` bounds the *squared* norms from below.

  Args:
    predictions: floating array of any shape ``S``.
    targets: floating array of shape ``S`` (no broadcasting; contract 2).
    epsilon: traced float >= 0, the lower bound of each squared norm.
    axis: static; the feature axis, a tuple of axes, or ``None`` for all axes.
    where: optional boolean mask broadcastable to ``S``; masked entries are left out of the
      dot product and both norms (and receive a zero gradient).

  Returns:
    The cosine, in [−1, 1], of shape ``S`` without ``axis``, in the promoted dtype of
    ``predictions`` and ``targets``.

  Derivative: with n_a = sqrt(max(‖a‖², ε)), ∂cos/∂a = b/(n_a n_b) − cos·a/n_a² where
  ‖a‖² > ε, and b/(n_a n_b) where ‖a‖² <= ε (the norm is held at sqrt(ε); at the tie the
  derivative of the clip is 0).

  Sub-gradient at a zero vector: with ε > 0 the function is smooth there and the gradient is
  the formula above (b/(sqrt(ε) n_b)). With ε = 0 the cosine is undefined at a = 0 and
  unbounded in its neighbourhood; the value there is 0 and the gradient is 0 in both
  arguments (optax gives NaN).

  Edge cases:
    A zero vector gives 0. Masked-out entries never reach the result, NaN or inf ones
    included; a vector masked out entirely is a zero vector. Rounding never takes the value
    outside [−1, 1] (the clip does not change the derivative). Vectors with entries near
    float32's maximum or tiny ones (whose squared norm over- or underflows) are recomputed
    with each vector scaled by its largest entry, so their cosine is exact where optax's is
    NaN or 0. Shapes that differ raise ``ValueError`` (optax broadcasts them).

  References:
    `Cosine similarity <https://en.wikipedia.org/wiki/Cosine_similarity>`_; optax
    ``optax.losses.cosine_similarity``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    >>> b = jnp.array([[0.0, 1.0], [2.0, 2.0]])
    >>> print(jnp.round(jaxloss.cosine_similarity(a, b), 4))
    [0. 1.]
    >>> print(jaxloss.cosine_similarity(jnp.zeros(2), jnp.ones(2)))
    0.0
  """
  fn = "cosine_similarity"
  out_dtype, p, t, axes = _cosine_inputs(fn, predictions, targets, axis, where)
  return _cosine(p, t, jnp.asarray(epsilon, p.dtype), axes).astype(out_dtype)


@_numerics.loss_jit(static=("axis",), bounds=_EPSILON)
def cosine_distance(predictions: ArrayLike, targets: ArrayLike, *, epsilon: ArrayLike = 0.0,
                    axis: Axis = -1, where: ArrayLike | None = None) -> jax.Array:
  """Cosine distance, 1 − :func:`cosine_similarity` (optax's numbers).

  .. math::
    d(a, b) = 1 - \\cos(a, b)

  Args:
    predictions: floating array of any shape ``S``.
    targets: floating array of shape ``S``.
    epsilon: traced float >= 0, the lower bound of each squared norm (as optax).
    axis: static; the feature axis, a tuple of axes, or ``None`` for all axes.
    where: optional boolean mask broadcastable to ``S``.

  Returns:
    The distance, in [0, 2], of shape ``S`` without ``axis``, in the promoted dtype of the
    inputs.

  Derivative and sub-gradient: minus those of :func:`cosine_similarity`; at a zero vector
  with ε = 0 the value is 1 and the gradient 0.

  Edge cases:
    As :func:`cosine_similarity`; the value is never negative (rounding of the cosine above
    1 is clipped).

  References:
    `Cosine distance <https://en.wikipedia.org/wiki/Cosine_similarity#Cosine_distance>`_;
    optax ``optax.losses.cosine_distance``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a = jnp.array([[1.0, 0.0], [1.0, 1.0]])
    >>> b = jnp.array([[0.0, 1.0], [-2.0, -2.0]])
    >>> print(jnp.round(jaxloss.cosine_distance(a, b), 4))
    [1. 2.]
  """
  fn = "cosine_distance"
  out_dtype, p, t, axes = _cosine_inputs(fn, predictions, targets, axis, where)
  cos = _cosine(p, t, jnp.asarray(epsilon, p.dtype), axes)
  return (1.0 - cos).astype(out_dtype)


def _unit_rows(x: jax.Array, eps: jax.Array) -> jax.Array:
  """x / sqrt(max(‖x‖², ε)) row by row, scaled first by the row's largest entry (held
  constant in the derivative, exact by homogeneity), so no squared norm over- or underflows."""
  s = lax.stop_gradient(jnp.max(jnp.abs(x), axis=-1, keepdims=True))
  s = jnp.where((s > 0) & jnp.isfinite(s), s, jnp.ones((), s.dtype))
  u = x / s
  return u / jnp.sqrt(_clipped(jnp.sum(u * u, axis=-1, keepdims=True), _scaled_eps(eps, s)))


@_numerics.loss_jit(bounds={"temperature": _numerics.Range(low=0.0, low_open=True)})
def ntxent(embeddings: ArrayLike, labels: ArrayLike, temperature: ArrayLike = 0.07
           ) -> jax.Array:
  """Normalized temperature-scaled cross-entropy (NT-Xent, SimCLR), optax's numbers.

  With s_ij = cos(e_i, e_j)/τ (the cosine with optax's ε = machine epsilon on the squared
  norms), P the ordered positive pairs (i ≠ j, same label) and N(i) the negatives of i
  (different label):

  .. math::
    \\ell = \\frac{1}{|P|} \\sum_{(i, j) \\in P}
      -\\log \\frac{e^{s_{ij}}}{e^{s_{ij}} + \\sum_{k \\in N(i)} e^{s_{ik}}}
      = \\frac{1}{|P|} \\sum_{(i, j) \\in P}
      \\operatorname{softplus}\\Big(\\operatorname{LSE}_{k \\in N(i)} s_{ik} - s_{ij}\\Big)

  (each positive is contrasted with the negatives only, not with the other positives, as in
  optax). Computed in the second, log-sum-exp form, which is finite for any temperature.

  Args:
    embeddings: floating array of shape (B, D).
    labels: shape (B,), any dtype comparable with ``==`` (integers in practice); equal labels
      mark positive pairs.
    temperature: traced float > 0.

  Returns:
    A scalar, the mean over positive pairs, in the embeddings' dtype (optax reduces: this
    drop-in name keeps optax's default).

  Derivative: ∂ℓ/∂s_ij = (1/|P|)·(−σ(L_i − s_ij)) for a positive pair and
  (1/|P|)·Σ_{j∈P(i)} σ(L_i − s_ij)·softmax_{N(i)}(s_i)_k for a negative k, where L_i is the
  log-sum-exp over N(i); then through the cosine (whose gradient at a zero embedding is
  e_j/(sqrt(ε)‖e_j‖τ), finite, as optax's).

  Edge cases:
    No positive pair in the batch gives 0 with a zero gradient (optax: NaN). A row without
    negatives contributes 0 for each of its positives. Duplicated embeddings (cosine 1) and
    small temperatures (0.01, 0.001) stay finite in value and gradient (optax's gradient is
    non-finite at τ = 0.001 with duplicates). A zero embedding has cosine 0 with everything.

  References:
    T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations", ICML 2020 (Eq. 1); optax ``optax.losses.ntxent``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> e = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> print(f"{jaxloss.ntxent(e, jnp.array([0, 0, 1, 1]), 0.5):.4f}")
    0.2965
  """
  fn = "ntxent"
  x = _numerics.check_floating(fn, "embeddings", embeddings)
  y = jnp.asarray(labels)
  if x.ndim != 2:
    raise ValueError(f"{fn}: `embeddings` must have shape (batch, features), got {x.shape}")
  if y.shape != x.shape[:1]:
    raise ValueError(f"{fn}: `labels` must have shape (batch,) = {x.shape[:1]}, got "
                     f"labels.shape={y.shape}")
  out_dtype = x.dtype
  dtype, (x,) = _numerics.upcast(x)
  u = _unit_rows(x, jnp.asarray(jnp.finfo(out_dtype).eps, dtype))
  s = (u @ u.T) / jnp.asarray(temperature, dtype)
  same = y[:, None] == y[None, :]
  positive = same & ~jnp.eye(x.shape[0], dtype=bool)
  negative = ~same
  # L_i = log Σ_{k∈N(i)} exp(s_ik), with the max held constant; entries outside N(i) are
  # replaced before the exp (double where, jax #1052), and a row without negatives gets −inf.
  has_negative = jnp.any(negative, axis=1, keepdims=True)
  m = lax.stop_gradient(jnp.max(jnp.where(negative, s, -jnp.inf), axis=1, keepdims=True))
  m = jnp.where(has_negative, m, jnp.zeros((), dtype))
  total = jnp.sum(jnp.exp(jnp.where(negative, s - m, -jnp.inf)), axis=1, keepdims=True)
  lse = jnp.where(has_negative, m + jnp.log(jnp.where(has_negative, total, 1.0)), -jnp.inf)
  # softplus(L_i − s_ij); softplus(−inf) = 0 with derivative 0 (no negatives).
  per_pair = jnp.where(positive, jax.nn.softplus(jnp.where(positive, lse - s, 0.0)), 0.0)
  count = jnp.sum(positive)
  loss = jnp.sum(per_pair) / jnp.maximum(count, 1).astype(dtype)
  return loss.astype(out_dtype)
