"""Distillation divergences between a student's and a teacher's logits.

Each divergence takes ``student_logits`` and ``teacher_logits`` of one shape, divides both by
``temperature``, takes the softmax over ``axis`` (over the classes left by ``where``, optax's
meaning of the mask) and returns one value per row: the logits' shape without ``axis``.

Everything is computed from log-softmaxes, never from ``log(softmax(x))``: a teacher that is
one-hot to float precision (a logit gap of 200, say, where exp underflows to 0) has finite
log-probabilities, so the reverse KL and its gradient stay finite; 0·log 0 is 0 wherever a
probability is exactly 0 (a −inf logit). Each divergence is a ``jax.custom_jvp`` whose tangent
is the closed form p ⊙ (g − ⟨p, g⟩) for the softmax p of the differentiated side (g the
divergence's derivative in p), or p − q where that form would divide by p.

The temperature enters as (x − max x) / T, the shift before the scaling (x / T − max(x / T)
is fused by XLA into a multiply-add whose unrounded product differs from the rounded maximum
by half an ulp of x / T: exp of 1e23 at logits of 1e30). Its derivative is the closed form
−Σ_j G_j s_j dT / T, with G the gradient in the scaled logits and s the shifted ones.

bf16/fp16 logits are computed in float32; the result has the promoted dtype of the logits.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

_POSITIVE = _numerics.Range(low=0.0, low_open=True)
_UNIT = _numerics.Range(low=0.0, high=1.0)


# --------------------------------------------------------------------------------------------
# Inputs and the softmax of both sides.
# --------------------------------------------------------------------------------------------

def _class_mask(fn: str, where: ArrayLike | None, x: jax.Array, axis: int) -> jax.Array | None:
  """``where`` as a boolean mask of the logits' shape (a row-shaped one masks whole rows)."""
  if where is None:
    return None
  m = jnp.asarray(where)
  if m.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `where` must be a boolean mask, got {m.dtype}")
  if m.ndim == x.ndim - 1:
    m = jnp.expand_dims(m, axis)
  if m.ndim != x.ndim or jnp.broadcast_shapes(m.shape, x.shape) != x.shape:
    raise ValueError(f"{fn}: `where` must have the shape of the logits or of the logits "
                     f"without axis {axis}, got where.shape={jnp.shape(where)} and "
                     f"student_logits.shape={x.shape}")
  return jnp.broadcast_to(m, x.shape)


def _inputs(fn: str, student_logits: ArrayLike, teacher_logits: ArrayLike, temperature: ArrayLike,
            axis: int, where: ArrayLike | None
            ) -> tuple[jnp.dtype, jax.Array, jax.Array, jax.Array, int, jax.Array | None]:
  s = _numerics.check_floating(fn, "student_logits", student_logits)
  t = _numerics.check_floating(fn, "teacher_logits", teacher_logits)
  if s.shape != t.shape:
    raise ValueError(f"{fn}: `student_logits` and `teacher_logits` must have the same shape, "
                     f"got student_logits.shape={s.shape} and teacher_logits.shape={t.shape}")
  axis = _numerics.canonical_axis(fn, axis, s.ndim)
  out_dtype = jnp.result_type(s.dtype, t.dtype)
  _, (s, t) = _numerics.upcast(s, t)
  temp = jnp.asarray(temperature, s.dtype)
  return out_dtype, s, t, temp, axis, _class_mask(fn, where, s, axis)


class _Side(NamedTuple):
  """One distribution: log p, p, where p is exactly 0, and the shifted scaled logits s
  (0 where p = 0), for the temperature term of the tangent."""
  log_p: jax.Array
  p: jax.Array
  zero: jax.Array
  shifted: jax.Array


def _log_softmax(x: jax.Array, t: jax.Array, mask: jax.Array | None, axis: int) -> _Side:
  """The log-softmax of x / t over the unmasked classes (−inf at masked ones and at −inf
  logits), computed as s − log Σ exp(s) with s = (x − max x) / t.

  A row with no finite unmasked logit has p = 0 and log p = −inf everywhere (divergence 0).
  """
  if mask is not None:
    x = jnp.where(mask, x, -jnp.inf)
  top = jnp.max(x, axis, keepdims=True)
  top = jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))
  shifted = (x - top) / t
  e = jnp.exp(shifted)
  z = jnp.sum(e, axis, keepdims=True)
  empty = z == 0
  z = jnp.where(empty, jnp.ones_like(z), z)
  log_p = jnp.where(empty, -jnp.inf, shifted - jnp.log(z))
  zero = (x == -jnp.inf) | empty
  return _Side(log_p, e / z, zero, jnp.where(zero, jnp.zeros_like(x), shifted))


def _times(p: jax.Array, v: jax.Array, zero: jax.Array) -> jax.Array:
  """p·v with 0 where p is exactly 0 (v may be ±inf or NaN there: 0·log 0 = 0)."""
  return jnp.where(zero, jnp.zeros_like(v), p * v)


def _through_softmax(side: _Side, g: jax.Array, axis: int) -> jax.Array:
  """p ⊙ (g − ⟨p, g⟩): the gradient in the (scaled) logits of V with dV/dp = g."""
  pg = _times(side.p, g, side.zero)
  return pg - _times(side.p, jnp.sum(pg, axis, keepdims=True), side.zero)


def _tangent(axis: int, t: jax.Array, dt: Any,
             parts: tuple[tuple[jax.Array, _Side, Any], ...]) -> jax.Array:
  """Σ over ``parts`` = ((G, side, dx), ...) of Σ_j G_j (dx_j − s_j dt) / t: the logits
  enter as u = x / t, and by shift invariance (Σ_j G_j = 0) u may be the shifted s."""
  tangent = jnp.zeros((), t.dtype)
  for grad_u, side, dx in parts:
    if _numerics.nonzero(dx):
      tangent = tangent + jnp.sum(grad_u * dx, axis)
    if _numerics.nonzero(dt):
      tangent = tangent - dt * jnp.sum(grad_u * side.shifted, axis)
  return tangent / t


# --------------------------------------------------------------------------------------------
# The divergences (custom_jvp cores on the raw logits and the temperature).
# --------------------------------------------------------------------------------------------

def _kl_value(axis: int, a: _Side, b: _Side) -> tuple[jax.Array, jax.Array]:
  """KL(a ‖ b) = Σ a (log a − log b), 0 where a = 0; also returns log a − log b."""
  diff = a.log_p - b.log_p
  return jnp.sum(_times(a.p, diff, a.zero), axis), diff


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _reverse_kl(axis: int, x: jax.Array, y: jax.Array, t: jax.Array,
                mask: jax.Array | None) -> jax.Array:
  """KL(softmax(x / t) ‖ softmax(y / t)), x the student's logits."""
  return _kl_value(axis, _log_softmax(x, t, mask, axis), _log_softmax(y, t, mask, axis))[0]


@functools.partial(_reverse_kl.defjvp, symbolic_zeros=True)
def _reverse_kl_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
                    ) -> tuple[jax.Array, jax.Array]:
  x, y, t, mask = primals
  dx, dy, dt, _ = tangents
  p, q = _log_softmax(x, t, mask, axis), _log_softmax(y, t, mask, axis)
  value, a = _kl_value(axis, p, q)
  # Student: p ⊙ (a − KL) (the softmax form with g = a + 1); teacher: q − p.
  return value, _tangent(axis, t, dt, ((_through_softmax(p, a, axis), p, dx),
                                       (q.p - p.p, q, dy)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _forward_kl(axis: int, x: jax.Array, y: jax.Array, t: jax.Array,
                mask: jax.Array | None) -> jax.Array:
  """KL(softmax(y / t) ‖ softmax(x / t)): the teacher's distribution against the student's."""
  return _kl_value(axis, _log_softmax(y, t, mask, axis), _log_softmax(x, t, mask, axis))[0]


@functools.partial(_forward_kl.defjvp, symbolic_zeros=True)
def _forward_kl_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
                    ) -> tuple[jax.Array, jax.Array]:
  x, y, t, mask = primals
  dx, dy, dt, _ = tangents
  p, q = _log_softmax(x, t, mask, axis), _log_softmax(y, t, mask, axis)
  value, b = _kl_value(axis, q, p)
  # Student: p − q (cross-entropy's gradient; the softmax form would divide by p); teacher:
  # q ⊙ (b − KL).
  return value, _tangent(axis, t, dt, ((p.p - q.p, p, dx),
                                       (_through_softmax(q, b, axis), q, dy)))


def _jsd_parts(axis: int, x: jax.Array, y: jax.Array, t: jax.Array, mask: jax.Array | None,
               beta: jax.Array
               ) -> tuple[_Side, _Side, jax.Array, jax.Array, jax.Array, jax.Array]:
  p, q = _log_softmax(x, t, mask, axis), _log_softmax(y, t, mask, axis)
  # log m = log((1 − β) p + β q), a logaddexp of the two log-probabilities (TRL's logsumexp).
  m = _Side(jnp.logaddexp(p.log_p + jnp.log1p(-beta), q.log_p + jnp.log(beta)), p.p, p.zero,
            p.shifted)  # only log_p of m is used
  kl_q, a_q = _kl_value(axis, q, m)  # KL(q ‖ m)
  kl_p, a_p = _kl_value(axis, p, m)  # KL(p ‖ m)
  return p, q, kl_q, a_q, kl_p, a_p


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _mixture_jsd(axis: int, x: jax.Array, y: jax.Array, t: jax.Array, mask: jax.Array | None,
                 beta: jax.Array) -> jax.Array:
  """β KL(q ‖ m) + (1 − β) KL(p ‖ m), m = (1 − β) p + β q, for 0 < β < 1."""
  _, _, kl_q, _, kl_p, _ = _jsd_parts(axis, x, y, t, mask, beta)
  return beta * kl_q + (1.0 - beta) * kl_p


@functools.partial(_mixture_jsd.defjvp, symbolic_zeros=True)
def _mixture_jsd_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
                     ) -> tuple[jax.Array, jax.Array]:
  x, y, t, mask, beta = primals
  dx, dy, dt, _, dbeta = tangents
  p, q, kl_q, a_q, kl_p, a_p = _jsd_parts(axis, x, y, t, mask, beta)
  # dJ/dp = (1 − β)(log p − log m) and dJ/dq = β(log q − log m): the terms through m cancel
  # (Σ_c m_c ∂log m_c/∂p_j = 1 − β, a constant the softmax's centring removes);
  # dJ/dβ = KL(q ‖ m) − KL(p ‖ m) for the same reason.
  tangent = _tangent(axis, t, dt, ((_through_softmax(p, (1.0 - beta) * a_p, axis), p, dx),
                                   (_through_softmax(q, beta * a_q, axis), q, dy)))
  if _numerics.nonzero(dbeta):
    tangent = tangent + (kl_q - kl_p) * dbeta
  return beta * kl_q + (1.0 - beta) * kl_p, tangent


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _total_variation(axis: int, x: jax.Array, y: jax.Array, t: jax.Array,
                     mask: jax.Array | None) -> jax.Array:
  """½ Σ |softmax(x / t) − softmax(y / t)|."""
  p, q = _log_softmax(x, t, mask, axis), _log_softmax(y, t, mask, axis)
  return 0.5 * jnp.sum(jnp.abs(p.p - q.p), axis)


@functools.partial(_total_variation.defjvp, symbolic_zeros=True)
def _total_variation_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
                         ) -> tuple[jax.Array, jax.Array]:
  x, y, t, mask = primals
  dx, dy, dt, _ = tangents
  p, q = _log_softmax(x, t, mask, axis), _log_softmax(y, t, mask, axis)
  # dV/dp = ½ sign(p − q), with sign(0) = 0 at the kink p_j = q_j (a sub-gradient).
  g = 0.5 * jnp.sign(p.p - q.p)
  return 0.5 * jnp.sum(jnp.abs(p.p - q.p), axis), _tangent(
      axis, t, dt, ((_through_softmax(p, g, axis), p, dx), (_through_softmax(q, -g, axis), q,
                                                            dy)))


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------

@_numerics.loss_jit(static=("axis",), bounds={"beta": _UNIT, "temperature": _POSITIVE})
def generalized_jsd(student_logits: ArrayLike, teacher_logits: ArrayLike, *,
                    beta: ArrayLike = 0.5, temperature: ArrayLike = 1.0, axis: int = -1,
                    where: ArrayLike | None = None) -> jax.Array:
  """Generalized Jensen–Shannon divergence of GKD, with forward and reverse KL at β = 0, 1.

  With p = softmax(student / T), q = softmax(teacher / T) and the mixture
  m = (1 − β) p + β q:

  .. math::
    \\mathrm{JSD}_\\beta = \\beta\\,\\mathrm{KL}(q \\,\\|\\, m)
                         + (1 - \\beta)\\,\\mathrm{KL}(p \\,\\|\\, m) \\quad (0 < \\beta < 1),
    \\qquad \\mathrm{KL}(q \\,\\|\\, p) \\ (\\beta = 0), \\qquad
    \\mathrm{KL}(p \\,\\|\\, q) \\ (\\beta = 1)

  This is TRL's ``GKDTrainer.generalized_jsd_loss`` (the revision with ``labels`` and
  ``reduction`` arguments; the endpoint convention is the same in every revision read) before
  its reduction,
  and Agarwal et al.'s Eq. 1 with P = teacher, Q = student. At the endpoints TRL (and Liger's
  ``LigerFusedLinearJSD``) switch to the KL divergences, as here: β = 0 is the forward KL
  (mass-covering, :func:`jaxloss.kl_divergence` of the student's log-softmax against the
  teacher's probabilities) and β = 1 the reverse KL (mode-seeking,
  :func:`reverse_kl_divergence`). Note the mixture form itself tends to 0 at both endpoints
  (JSD_β = β·KL(q ‖ p) + O(β²)), so the function jumps there by design; JSD_β / (β(1 − β))
  is the continuous interpolation if one is wanted. No T² factor is applied (TRL applies
  none). The branch is chosen with ``lax.switch`` on the traced β, so only one is computed.

  Args:
    student_logits: floating logits, classes along ``axis``, shape ``S``.
    teacher_logits: floating logits of shape ``S`` (wrap in ``jax.lax.stop_gradient`` if the
      teacher is frozen; the gradient with respect to them is returned otherwise).
    beta: β in [0, 1] (traced).
    temperature: T > 0 (traced), dividing both logits.
    axis: the class axis (static int).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``, masking rows):
      masked classes are left out of both softmaxes and the sum (optax's meaning).

  Returns:
    The divergence per row, ``S`` without ``axis``, in the promoted dtype of the logits;
    0 <= JSD_β <= −β log β − (1 − β) log(1 − β) for 0 < β < 1.

  Gradient (a ``custom_jvp``): d/dx_j = p_j (g_j − ⟨p, g⟩) / T with
  g = (1 − β)(log p − log m); teacher likewise with β(log q − log m); dJ/dβ =
  KL(q ‖ m) − KL(p ‖ m). At β = 0: (p − q)/T; at β = 1: p ⊙ (log p − log q − KL) / T.

  Edge cases:
    Finite values and gradients at one-hot teachers (exactly-zero teacher probabilities from
    a −inf logit or an underflowing gap), at −inf logits masked by ``where`` (their gradient
    is exactly 0), and at logit gaps of 1e4; JSD_β for 0 < β < 1 is bounded. At β = 1 (reverse
    KL) an unmasked teacher probability of exactly 0 where the student has mass gives +inf,
    the true value. A row with no unmasked class gives 0. NaN logits propagate.

  References:
    R. Agarwal et al., "On-Policy Distillation of Language Models: Learning from
    Self-Generated Mistakes" (GKD), ICLR 2024 (Eq. 1); J. Lin, "Divergence measures based on
    the Shannon entropy", IEEE Trans. Inf. Theory 1991; TRL ``GKDTrainer``; Liger-Kernel
    ``LigerFusedLinearJSDLoss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> s, t = jnp.array([[1.0, 0.0, -1.0]]), jnp.array([[0.0, 2.0, -jnp.inf]])
    >>> for b in (0.0, 0.5, 1.0):
    ...   print(b, jnp.round(jaxloss.generalized_jsd(s, t, beta=b), 4))
    0.0 [0.9231]
    0.5 [0.2313]
    1.0 [inf]
    >>> m = jnp.array([[True, True, False]])
    >>> print(f"{jaxloss.generalized_jsd(s, t, beta=1.0, where=m)[0]:.4f}")
    1.0068
  """
  out_dtype, x, y, t, axis, mask = _inputs("generalized_jsd", student_logits,
                                           teacher_logits, temperature, axis, where)
  b = jnp.asarray(beta, x.dtype)
  branch = jnp.where(b == 0, 0, jnp.where(b == 1, 1, 2))
  # The mixture branch never sees β = 0 or 1 (log β = −inf there, and its β-derivative).
  b_mix = jnp.where((b == 0) | (b == 1), jnp.asarray(0.5, x.dtype), b)
  value = lax.switch(branch, [
      lambda: _forward_kl(axis, x, y, t, mask),
      lambda: _reverse_kl(axis, x, y, t, mask),
      lambda: _mixture_jsd(axis, x, y, t, mask, b_mix),
  ])
  return value.astype(out_dtype)


@_numerics.loss_jit(static=("axis",), bounds={"temperature": _POSITIVE})
def reverse_kl_divergence(student_logits: ArrayLike, teacher_logits: ArrayLike, *,
                          temperature: ArrayLike = 1.0, axis: int = -1,
                          where: ArrayLike | None = None) -> jax.Array:
  """Reverse KL divergence KL(student ‖ teacher) between softmaxes of logits (mode-seeking).

  .. math::
    \\mathrm{KL}(p \\,\\|\\, q) = \\sum_c p_c (\\log p_c - \\log q_c), \\qquad
    p = \\mathrm{softmax}(s / T),\\ q = \\mathrm{softmax}(t / T)

  The divergence on-policy distillation minimises (MiniLLM; GKD and TRL at β = 1, which
  :func:`generalized_jsd` equals there).

  Args:
    student_logits: floating logits, classes along ``axis``, shape ``S``.
    teacher_logits: floating logits of shape ``S``.
    temperature: T > 0 (traced).
    axis: the class axis (static int).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``): masked classes
      are left out of both softmaxes.

  Returns:
    The divergence (>= 0) per row, ``S`` without ``axis``, in the promoted dtype of the logits.

  Gradient (a ``custom_jvp``): student d/dx_j = p_j (log p_j − log q_j − KL) / T; teacher
  d/dy_j = (q_j − p_j) / T.

  Edge cases:
    A teacher that is one-hot to float precision (a logit gap of 100 or 1e4) gives a finite
    value and gradient: the log-probabilities come from a log-softmax, never from
    ``log(softmax)``, whose log 0 = −inf gives inf or NaN. A teacher probability of exactly
    0 (an unmasked −inf logit) where the student has mass gives +inf, the true value, and a
    NaN gradient for that row (inf − inf), even if the row is dropped afterwards: mask such
    classes with ``where``, after which the value is finite and the gradient exactly 0 there.
    Student probabilities of exactly 0 contribute 0 (0·log 0 = 0). NaN logits propagate.

  References:
    S. Kullback, R. A. Leibler, "On Information and Sufficiency", 1951; Y. Gu et al.,
    "MiniLLM: Knowledge Distillation of Large Language Models", ICLR 2024; R. Agarwal et al.,
    GKD, ICLR 2024.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> s, t = jnp.array([[1.0, 0.0, -1.0]]), jnp.array([[0.0, 0.0, 1e4]])
    >>> print(jnp.round(jaxloss.reverse_kl_divergence(s, t), 1))
    [9098.9]
  """
  out_dtype, x, y, t, axis, mask = _inputs("reverse_kl_divergence", student_logits,
                                           teacher_logits, temperature, axis, where)
  return _reverse_kl(axis, x, y, t, mask).astype(out_dtype)


@_numerics.loss_jit(static=("axis",), bounds={"temperature": _POSITIVE})
def total_variation_distance(student_logits: ArrayLike, teacher_logits: ArrayLike, *,
                             temperature: ArrayLike = 1.0, axis: int = -1,
                             where: ArrayLike | None = None) -> jax.Array:
  """Total variation distance ½ Σ |p − q| between the softmaxes of two sets of logits.

  .. math::
    \\mathrm{TV}(p, q) = \\tfrac12 \\sum_c |p_c - q_c|, \\qquad
    p = \\mathrm{softmax}(s / T),\\ q = \\mathrm{softmax}(t / T)

  Symmetric, bounded in [0, 1], and finite for any pair of distributions (Liger-Kernel's
  ``LigerTVDLoss`` on probabilities; this takes logits).

  Args:
    student_logits: floating logits, classes along ``axis``, shape ``S``.
    teacher_logits: floating logits of shape ``S``.
    temperature: T > 0 (traced).
    axis: the class axis (static int).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``): masked classes
      are left out of both softmaxes.

  Returns:
    The distance per row, in [0, 1], ``S`` without ``axis``, in the promoted dtype of the
    logits.

  Gradient (a ``custom_jvp``): d/dx_j = p_j (g_j − ⟨p, g⟩) / T with g = ½ sign(p − q); at
  the kink p_j = q_j, sign(0) = 0 is the sub-gradient taken (contract 4).

  Edge cases:
    Finite values and gradients at one-hot teachers, −inf logits (masked or not: a zero
    probability gets gradient 0) and logit gaps of 1e4. A row with no unmasked class gives 0.
    NaN logits propagate.

  References:
    A. L. Gibbs, F. E. Su, "On Choosing and Bounding Probability Metrics", 2002; Liger-Kernel
    ``LigerTVDLoss``; J. Wen et al., "f-Divergence Minimization for Sequence-Level Knowledge
    Distillation", ACL 2023 (TVD for distillation).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> s, t = jnp.array([[0.0, 0.0]]), jnp.array([[0.0, -jnp.inf]])
    >>> print(jaxloss.total_variation_distance(s, t))
    [0.5]
  """
  out_dtype, x, y, t, axis, mask = _inputs("total_variation_distance", student_logits,
                                           teacher_logits, temperature, axis, where)
  return _total_variation(axis, x, y, t, mask).astype(out_dtype)
