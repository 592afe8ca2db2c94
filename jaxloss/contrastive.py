"""Representation-learning losses: margin softmax, supervised and self-supervised contrastive
losses, CLIP and SigLIP, and their sharded forms on a device mesh.

Margin softmax (ArcFace, CosFace, SphereFace, sub-center ArcFace and the combined margin that
holds them all) normalises the embeddings and the class weights itself: its logits are cosines
by definition. The contrastive losses (SupCon, InfoNCE, CLIP, SigLIP) take their similarities
as the dot products of the embeddings they are given, as the reference implementations do
(big_vision and open_clip normalise inside the model, not the loss): pass L2-normalised
embeddings for cosine similarities.

Every loss returns per-example values (per anchor, per image, per pair) whose mean is the
paper's scalar; reduce them with :func:`jaxloss.reduce`. bf16/fp16 inputs are computed in
float32 and the result returned in the widest floating dtype of the embeddings.

The sharded forms split the batch over one axis of a ``jax.sharding.Mesh`` with
``jax.shard_map``. CLIP and SupCon all-gather the embeddings (each device keeps its own rows
of the B_local × B similarity matrix); SigLIP passes the text block around the ring with
``ppermute`` so that a device never holds more than B_local × B_local similarities, forward
and backward (a ``jax.custom_vjp``: reverse mode only, DESIGN contract 3's exception).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike
_F = TypeVar("_F", bound=Callable[..., Any])

# CLIP (Radford et al. 2021, section 2.5): the learnable temperature is "clipped to prevent
# scaling the logits by more than 100".
CLIP_MAX_LOGIT_SCALE = 100.0

_FALLBACKS = ("sphereface", "arcface", "easy")
_POSITIVE = _numerics.Range(low=0.0, low_open=True)
_NONNEGATIVE = _numerics.Range(low=0.0)


# --------------------------------------------------------------------------------------------
# Shared helpers: dtypes, normalisation.
# --------------------------------------------------------------------------------------------

def _compute_dtype(*arrays: jax.Array) -> jnp.dtype:
  """The widest compute dtype of the floating arrays (float32 at least), chosen without
  implicit promotion between them (bf16 embeddings with float32 weights compute in float32)."""
  return max((_numerics.compute_dtype(a) for a in arrays), key=lambda d: d.itemsize)


def _out_dtype(*arrays: jax.Array) -> jnp.dtype:
  """The dtype of the result: the floating inputs' common dtype (bf16 with float32 gives
  float32, as ``jnp.result_type`` would; two different 16-bit dtypes give float32)."""
  dtypes = {jnp.dtype(a.dtype) for a in arrays}
  if len(dtypes) == 1:
    return dtypes.pop()
  return _compute_dtype(*arrays)


def _normalize(x: jax.Array) -> jax.Array:
  """x / ‖x‖₂ along the last axis, computed on x / max|x| (no overflow or underflow).

  Normalisation is invariant to the scale, so holding max|x| constant in the derivative is
  exact. A zero vector has no direction: it gives 0, with gradient 0 (PyTorch's
  ``F.normalize`` gives x / 1e-12 there). NaN propagates.
  """
  m = lax.stop_gradient(jnp.max(jnp.abs(x), axis=-1, keepdims=True))
  nonzero = m != 0  # true for NaN, so NaN propagates
  u = jnp.where(nonzero, x / jnp.where(nonzero, m, jnp.ones((), x.dtype)), jnp.zeros((), x.dtype))
  ss = jnp.sum(u * u, axis=-1, keepdims=True)  # >= 1 wherever x != 0: its sqrt is safe
  return u / jnp.sqrt(jnp.where(nonzero, ss, jnp.ones((), x.dtype)))


def _clamp_unit(c: jax.Array) -> jax.Array:
  """c clamped to [−1, 1] (insightface's ``logits.clamp(-1, 1)``): rounding can put a cosine
  one ulp outside. Derivative 1 on [−1, 1], 0 outside."""
  one = jnp.ones((), c.dtype)
  return jnp.where(c > 1, one, jnp.where(c < -1, -one, c))


def _logsumexp(x: jax.Array, axis: int) -> jax.Array:
  """log Σ exp(x) along ``axis``, finite wherever its value is.

  As ``jax.nn.logsumexp``, but a difference x − max that rounds above 0 counts as 0 (value only;
  its derivative stays 1): XLA may recompute x in the fused exp with a different rounding than
  in the max, and at |x| ~ 1e31 one ulp is ~1e24, whose exp is inf.
  """
  m = lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True, initial=-jnp.inf))
  m = jnp.where(jnp.isfinite(m), m, jnp.zeros((), x.dtype))
  d = x - m
  d = d - lax.stop_gradient(jnp.where(d > 0, d, jnp.zeros((), d.dtype)))
  return jnp.squeeze(m, axis) + jnp.log(jnp.sum(jnp.exp(d), axis=axis))


def _sin_and_angle(c: jax.Array) -> tuple[jax.Array, jax.Array]:
  """sin θ = √((1 − c)(1 + c)) (exact near ±1, where 1 − c² cancels) and θ = atan2(sin θ, c)."""
  s = jnp.sqrt((1 - c) * (1 + c))
  return s, jnp.arctan2(s, c)


# --------------------------------------------------------------------------------------------
# Margin softmax: the target logit ψ(cos θ) of the combined margin, as a custom_jvp.
# --------------------------------------------------------------------------------------------

def _extension(theta: jax.Array, m1: jax.Array, m2: jax.Array
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """SphereFace's monotone extension of cos(m1·θ + m2) past π, and (−1)^k, φ."""
  phi = m1 * theta + m2
  k = jnp.floor(phi / math.pi)
  sign = 1 - 2 * jnp.mod(k, 2)  # (−1)^k
  return sign * jnp.cos(phi) - 2 * k, sign, phi


def _primary(fallback: str, c: jax.Array, phi: jax.Array) -> jax.Array:
  """Where the angular form holds (True) and where the fallback replaces it."""
  if fallback == "arcface":
    return phi < math.pi
  if fallback == "easy":
    return c > 0
  return jnp.ones(c.shape, jnp.bool_)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _target_logit(c: jax.Array, m1: jax.Array, m2: jax.Array, m3: jax.Array,
                  fallback: str) -> jax.Array:
  """ψ(c) for the combined margin; see :func:`margin_softmax_loss` for the formula."""
  _, theta = _sin_and_angle(c)
  ext, _, phi = _extension(theta, m1, m2)
  primary = _primary(fallback, c, phi)
  if fallback == "arcface":
    ext = jnp.where(primary, ext, c - m2 * jnp.sin(m2))
  elif fallback == "easy":
    ext = jnp.where(primary, ext, c)
  return ext - m3


@_target_logit.defjvp
def _target_logit_jvp(fallback: str, primals: tuple[jax.Array, ...], tangents: tuple[jax.Array, ...]
                      ) -> tuple[jax.Array, jax.Array]:
  c, m1, m2, m3 = primals
  dc, dm1, dm2, dm3 = tangents
  value = _target_logit(c, m1, m2, m3, fallback)
  _, theta = _sin_and_angle(c)
  _, sign, phi = _extension(theta, m1, m2)
  # dψ/dc = (−1)^k m1 sin φ / sin θ is unbounded at c = ±1 (sin θ = 0) unless sin φ = 0 there:
  # it is evaluated at the cosine clamped one float inside (−1, 1), which leaves every other
  # cosine's derivative exact and makes the one at ±1 that of its neighbour (finite).
  one = jnp.ones((), c.dtype)
  inside = one - jnp.finfo(c.dtype).epsneg
  c_in = jnp.where(c > inside, inside, jnp.where(c < -inside, -inside, c))
  s_in, theta_in = _sin_and_angle(c_in)
  _, sign_in, phi_in = _extension(theta_in, m1, m2)
  d_c = sign_in * m1 * jnp.sin(phi_in) / s_in
  d_m1 = -sign * theta * jnp.sin(phi)
  d_m2 = -sign * jnp.sin(phi)
  primary = _primary(fallback, c, phi)
  if fallback == "arcface":  # ψ = c − m2·sin m2 − m3 there
    d_c, d_m1 = jnp.where(primary, d_c, one), jnp.where(primary, d_m1, 0.0)
    d_m2 = jnp.where(primary, d_m2, -(jnp.sin(m2) + m2 * jnp.cos(m2)))
  elif fallback == "easy":  # ψ = c − m3 there
    d_c, d_m1 = jnp.where(primary, d_c, one), jnp.where(primary, d_m1, 0.0)
    d_m2 = jnp.where(primary, d_m2, 0.0)
  return value, d_c * dc + d_m1 * dm1 + d_m2 * dm2 - dm3


def _margin_inputs(fn: str, embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike,
                   num_subcenters: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  x = _numerics.check_floating(fn, "embeddings", embeddings)
  w = _numerics.check_floating(fn, "class_weights", class_weights)
  y = _numerics.wide_labels(_numerics.check_integer(fn, "labels", labels))
  if x.ndim < 1 or w.ndim != 2 or w.shape[1] != x.shape[-1]:
    rows = "num_classes · num_subcenters" if num_subcenters > 1 else "num_classes"
    raise ValueError(f"{fn}: `class_weights` must have shape ({rows}, D) with D the last axis "
                     f"of `embeddings`, got embeddings.shape={x.shape} and "
                     f"class_weights.shape={w.shape}")
  if y.shape != x.shape[:-1]:
    raise ValueError(f"{fn}: `labels` must have the shape of `embeddings` without its last "
                     f"axis, got embeddings.shape={x.shape} and labels.shape={y.shape}")
  if w.shape[0] % num_subcenters:
    raise ValueError(f"{fn}: class_weights.shape[0]={w.shape[0]} is not divisible by "
                     f"num_subcenters={num_subcenters}")
  return x, w, y


def _margin_softmax(fn: str, embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike,
                    scale: ArrayLike, m1: ArrayLike, m2: ArrayLike, m3: ArrayLike, *,
                    fallback: str, angular: bool = True, num_subcenters: int = 1) -> jax.Array:
  """ℓ = logsumexp_j(s·z_j) − s·z_y with z_j = cos θ_j (j ≠ y) and z_y = ψ(cos θ_y)."""
  if fallback not in _FALLBACKS:
    raise ValueError(f"{fn}(fallback=...) must be one of {_FALLBACKS}, got {fallback!r}")
  if not isinstance(num_subcenters, int) or isinstance(num_subcenters, bool) or \
      num_subcenters < 1:
    raise ValueError(f"{fn}(num_subcenters=...) must be a Python int >= 1 (static), got "
                     f"{num_subcenters!r}")
  x, w, y = _margin_inputs(fn, embeddings, class_weights, labels, num_subcenters)
  out = _out_dtype(x, w)
  dtype = _compute_dtype(x, w)
  cos = jnp.einsum("...d,cd->...c", _normalize(x.astype(dtype)), _normalize(w.astype(dtype)))
  if num_subcenters > 1:
    # Deng et al. 2020: each class's cosine is that of its nearest sub-center (row j·K + k is
    # sub-center k of class j). A tie goes to the lowest sub-center (argmax), which alone
    # receives the gradient (contract 4).
    cos = cos.reshape(*cos.shape[:-1], w.shape[0] // num_subcenters, num_subcenters)
    nearest = jnp.argmax(cos, axis=-1)
    cos = jnp.take_along_axis(cos, nearest[..., None], axis=-1)[..., 0]
  cos = _clamp_unit(cos)
  num_classes = cos.shape[-1]
  valid = _numerics.class_labels_valid(fn, "labels", y, num_classes)
  y_safe = jnp.where(valid, y, jnp.zeros((), y.dtype))
  c_y = jnp.take_along_axis(cos, y_safe[..., None], axis=-1)[..., 0]
  s = jnp.asarray(scale, dtype)
  m3 = jnp.asarray(m3, dtype)
  if angular:
    z_y = _target_logit(c_y, jnp.asarray(m1, dtype), jnp.asarray(m2, dtype), m3, fallback)
  else:
    z_y = c_y - m3
  classes = jnp.arange(num_classes, dtype=y_safe.dtype).reshape((1,) * y.ndim + (num_classes,))
  target = y_safe[..., None] == classes
  logits = s * jnp.where(target, z_y[..., None], cos)
  loss = _logsumexp(logits, -1) - s * z_y
  return _numerics.nan_where_invalid(loss, valid).astype(out)


_MARGIN_EDGE_CASES = """  Edge cases:
    Cosines are clamped to [−1, 1] (insightface), with derivative 0 outside, where only
    rounding puts them. At a cosine of exactly ±1 the derivative of the target logit in the
    cosine, unbounded there (arccos and sin θ = √(1 − cos²θ) both blow up), is taken at the
    neighbouring float ±(1 − ε⁻), ε⁻ = ``finfo.epsneg``: finite, and exact everywhere else.
    The cosine's own gradient in an embedding, (ŵ − cos θ·x̂)/‖x‖, vanishes at ±1, so the
    embedding's gradient stays bounded. A zero embedding (or class weight) has cosine 0 with
    everything and gradient 0. A label outside [0, num_classes) gives NaN with zero gradient
    for that example and fails ``checkify`` naming it. NaN inputs propagate. Large ``scale``
    (64) is stable: the softmax runs through ``logsumexp``.
"""


def _margin_doc(fn: _F) -> _F:
  fn.__doc__ = (fn.__doc__ or "").replace("  Edge cases: (margin)\n", _MARGIN_EDGE_CASES)
  return fn


@_margin_doc
@_numerics.loss_jit(static=("fallback",),
                    bounds={"scale": _POSITIVE, "m1": _POSITIVE,
                            "m2": _numerics.Range(0.0, math.pi), "m3": _NONNEGATIVE})
def margin_softmax_loss(embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike, *,
                        scale: ArrayLike = 64.0, m1: ArrayLike = 1.0, m2: ArrayLike = 0.0,
                        m3: ArrayLike = 0.0, fallback: str = "sphereface") -> jax.Array:
  """Margin softmax with the combined margin cos(m1·θ + m2) − m3 (insightface).

  With x̂ and ŵ_j the L2-normalised embedding and class weights, cos θ_j = x̂·ŵ_j, and

  .. math::
    \\ell = -\\log \\frac{e^{s\\,\\psi(\\theta_y)}}{e^{s\\,\\psi(\\theta_y)}
            + \\sum_{j \\ne y} e^{s \\cos\\theta_j}}, \\qquad
    \\psi(\\theta) = (-1)^k \\cos(m_1\\theta + m_2) - 2k - m_3, \\;
    k = \\lfloor (m_1\\theta + m_2)/\\pi \\rfloor

  ψ is cos(m1·θ + m2) − m3 while m1·θ + m2 < π and SphereFace's monotone extension beyond
  (``fallback="sphereface"``, continuous). ``fallback="arcface"`` instead uses insightface's
  published ArcFace rule cos θ − m2·sin m2 − m3 where m1·θ + m2 >= π; ``fallback="easy"``
  uses cos θ − m3 wherever cos θ <= 0 (insightface's ``easy_margin``). Each named loss is a
  special case: ArcFace (m1 = 1, m2 = m, ``"arcface"``), CosFace (m1 = 1, m2 = 0, m3 = m) and
  SphereFace (m1 = m); any other triple combines them.

  Args:
    embeddings: floating embeddings of shape ``S + (D,)`` (normalised here).
    class_weights: floating class weights ``(num_classes, D)`` (normalised here).
    labels: integer classes in [0, num_classes), shape ``S``.
    scale: s > 0, the radius of the hypersphere (traced).
    m1: multiplicative angular margin > 0 (SphereFace; traced).
    m2: additive angular margin in [0, π] (ArcFace; traced).
    m3: additive cosine margin >= 0 (CosFace; traced).
    fallback: static, ``"sphereface"``, ``"arcface"`` or ``"easy"`` (see above).

  Returns:
    The per-example loss, shape ``S``, in the embeddings' and weights' floating dtype.

  Derivatives: dψ/dcos θ = (−1)^k m1 sin(m1θ + m2)/sin θ (1 on a fallback branch); the
  gradient reaches the embeddings, the class weights and the four hyper-parameters. ψ is
  continuous with ``"sphereface"``; insightface's ArcFace fallback jumps at m1·θ + m2 = π
  (by 1 − cos m2 − m2·sin m2 when m1 = 1: −0.117 at m2 = 0.5), and ``"easy"`` at cos θ = 0;
  at a jump the derivative is the fallback's, 1.

  Edge cases: (margin)

  References:
    J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition", CVPR 2019 (the combined margin); W. Liu et al., "SphereFace", CVPR
    2017; H. Wang et al., "CosFace", CVPR 2018; insightface ``CombinedMarginLoss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([[1.0, 0.2], [0.1, 1.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> y = jnp.array([0, 1])
    >>> print(jnp.round(jaxloss.margin_softmax_loss(x, w, y, scale=8.0, m1=1.0, m2=0.3,
    ...                                             m3=0.2), 4))
    [0.0208 0.0083]
  """
  return _margin_softmax("margin_softmax_loss", embeddings, class_weights, labels, scale, m1, m2,
                         m3, fallback=fallback)


@_margin_doc
@_numerics.loss_jit(static=("easy_margin",),
                    bounds={"scale": _POSITIVE, "margin": _numerics.Range(0.0, math.pi)})
def arcface_loss(embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike, *,
                 scale: ArrayLike = 64.0, margin: ArrayLike = 0.5,
                 easy_margin: bool = False) -> jax.Array:
  """ArcFace (additive angular margin) loss of Deng et al. (2019).

  .. math::
    \\ell = -\\log \\frac{e^{s\\,\\psi(\\theta_y)}}{e^{s\\,\\psi(\\theta_y)}
            + \\sum_{j \\ne y} e^{s \\cos\\theta_j}}, \\qquad
    \\psi(\\theta) = \\begin{cases} \\cos(\\theta + m) & \\theta + m < \\pi \\\\
                      \\cos\\theta - m \\sin m & \\text{otherwise} \\end{cases}

  with cos θ_j = x̂·ŵ_j of the L2-normalised embedding and class weights and
  cos(θ + m) = cos θ cos m − sin θ sin m. Past θ = π − m, where cos(θ + m) would rise again,
  the published code (insightface) falls back to the CosFace-like cos θ − m·sin m;
  ``easy_margin`` instead keeps cos θ wherever cos θ <= 0. Equal to
  ``margin_softmax_loss(m1=1, m2=margin, fallback="arcface" or "easy")``.

  Args:
    embeddings: floating embeddings of shape ``S + (D,)`` (normalised here).
    class_weights: floating class weights ``(num_classes, D)`` (normalised here).
    labels: integer classes in [0, num_classes), shape ``S``.
    scale: s > 0 (traced).
    margin: m in [0, π] (traced).
    easy_margin: static; the margin only where cos θ > 0.

  Returns:
    The per-example loss, shape ``S``, in the embeddings' and weights' floating dtype.

  Derivatives: dψ/dcos θ = cos m + cos θ·sin m / sin θ (the cos-addition formula's) where the
  margin applies, 1 on the fallback branch. The published fallback is not continuous: the
  target logit jumps by 1 − cos m − m·sin m at θ = π − m (−0.117 at m = 0.5), and the
  derivative there is the fallback's.

  Edge cases: (margin)

  References:
    J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face
    Recognition", CVPR 2019, Eq. 3; insightface ``recognition/arcface_torch/losses.py``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([[1.0, 0.2], [0.1, 1.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> y = jnp.array([0, 1])
    >>> print(jnp.round(jaxloss.arcface_loss(x, w, y, scale=8.0, margin=0.5), 4))
    [0.0104 0.0036]
  """
  return _margin_softmax("arcface_loss", embeddings, class_weights, labels, scale, 1.0, margin,
                         0.0, fallback="easy" if easy_margin else "arcface")


@_margin_doc
@_numerics.loss_jit(bounds={"scale": _POSITIVE, "margin": _NONNEGATIVE})
def cosface_loss(embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike, *,
                 scale: ArrayLike = 64.0, margin: ArrayLike = 0.35) -> jax.Array:
  """CosFace (large margin cosine, AM-softmax) loss of Wang et al. (2018).

  .. math::
    \\ell = -\\log \\frac{e^{s(\\cos\\theta_y - m)}}{e^{s(\\cos\\theta_y - m)}
            + \\sum_{j \\ne y} e^{s \\cos\\theta_j}}

  with cos θ_j = x̂·ŵ_j of the L2-normalised embedding and class weights. Equal to
  ``margin_softmax_loss(m1=1, m2=0, m3=margin)``.

  Args:
    embeddings: floating embeddings of shape ``S + (D,)`` (normalised here).
    class_weights: floating class weights ``(num_classes, D)`` (normalised here).
    labels: integer classes in [0, num_classes), shape ``S``.
    scale: s > 0 (traced).
    margin: m >= 0 (traced).

  Returns:
    The per-example loss, shape ``S``, in the embeddings' and weights' floating dtype.

  Derivatives: the softmax's, s·(p_j − [j = y]) in each cosine; no arccos is involved, so the
  derivative is bounded everywhere, ±1 included.

  Edge cases: (margin)

  References:
    H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu, "CosFace: Large Margin
    Cosine Loss for Deep Face Recognition", CVPR 2018; F. Wang et al., "Additive Margin
    Softmax for Face Verification", 2018.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([[1.0, 0.2], [0.1, 1.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> y = jnp.array([0, 1])
    >>> print(jnp.round(jaxloss.cosface_loss(x, w, y, scale=8.0, margin=0.35), 4))
    [0.0305 0.0152]
  """
  return _margin_softmax("cosface_loss", embeddings, class_weights, labels, scale, 1.0, 0.0,
                         margin, fallback="sphereface", angular=False)


@_margin_doc
@_numerics.loss_jit(bounds={"scale": _POSITIVE, "margin": _numerics.Range(low=1.0)})
def sphereface_loss(embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike, *,
                    scale: ArrayLike = 64.0, margin: ArrayLike = 1.35) -> jax.Array:
  """SphereFace (A-softmax, multiplicative angular margin) loss of Liu et al. (2017).

  .. math::
    \\ell = -\\log \\frac{e^{s\\,\\psi(\\theta_y)}}{e^{s\\,\\psi(\\theta_y)}
            + \\sum_{j \\ne y} e^{s \\cos\\theta_j}}, \\qquad
    \\psi(\\theta) = (-1)^k \\cos(m\\theta) - 2k, \\;
    \\theta \\in \\big[\\tfrac{k\\pi}{m}, \\tfrac{(k+1)\\pi}{m}\\big]

  with cos θ_j = x̂·ŵ_j of the L2-normalised embedding and class weights (the normalised-
  weight, fixed-scale form used by insightface's combined margin, m1 = m; the paper's m is an
  integer and its feature norm free). ψ is continuous and decreasing on [0, π] for any
  m >= 1. Equal to ``margin_softmax_loss(m1=margin)``.

  Args:
    embeddings: floating embeddings of shape ``S + (D,)`` (normalised here).
    class_weights: floating class weights ``(num_classes, D)`` (normalised here).
    labels: integer classes in [0, num_classes), shape ``S``.
    scale: s > 0 (traced).
    margin: m >= 1 (traced; need not be an integer).

  Returns:
    The per-example loss, shape ``S``, in the embeddings' and weights' floating dtype.

  Derivatives: dψ/dcos θ = (−1)^k m sin(mθ)/sin θ, bounded at cos θ = 1 (its limit is m²)
  and unbounded at cos θ = −1 for a non-integer m (see Edge cases).

  Edge cases: (margin)

  References:
    W. Liu, Y. Wen, Z. Yu, M. Li, B. Raj, L. Song, "SphereFace: Deep Hypersphere Embedding for
    Face Recognition", CVPR 2017, Eq. 7 (ψ); W. Liu et al., "SphereFace Revived: Unifying
    Hyperspherical Face Recognition", TPAMI 2022 (non-integer m).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([[1.0, 0.2], [0.1, 1.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> y = jnp.array([0, 1])
    >>> print(jnp.round(jaxloss.sphereface_loss(x, w, y, scale=8.0, margin=1.35), 4))
    [0.0021 0.001 ]
  """
  return _margin_softmax("sphereface_loss", embeddings, class_weights, labels, scale, margin,
                         0.0, 0.0, fallback="sphereface")


@_margin_doc
@_numerics.loss_jit(static=("num_subcenters", "easy_margin"),
                    bounds={"scale": _POSITIVE, "margin": _numerics.Range(0.0, math.pi)})
def subcenter_arcface_loss(embeddings: ArrayLike, class_weights: ArrayLike, labels: ArrayLike,
                           *, num_subcenters: int = 3, scale: ArrayLike = 64.0,
                           margin: ArrayLike = 0.5, easy_margin: bool = False) -> jax.Array:
  """Sub-center ArcFace loss of Deng et al. (2020).

  Each class has K sub-centers; its cosine is that of the nearest one,
  cos θ_j = max_k x̂·ŵ_{j,k}, and the loss is :func:`arcface_loss` on these cosines (the
  published fallback included). Noisy examples gather around non-dominant sub-centers
  instead of pulling the dominant one.

  Args:
    embeddings: floating embeddings of shape ``S + (D,)`` (normalised here).
    class_weights: floating ``(num_classes · K, D)``; row j·K + k is sub-center k of class j
      (the layout of ``weight.view(-1, num_classes, K)``-style implementations).
    labels: integer classes in [0, num_classes), shape ``S``.
    num_subcenters: K, a static int >= 1 dividing ``class_weights.shape[0]``.
    scale: s > 0 (traced).
    margin: m in [0, π] (traced).
    easy_margin: static; as in :func:`arcface_loss`.

  Returns:
    The per-example loss, shape ``S``, in the embeddings' and weights' floating dtype.

  Sub-gradient: the max over sub-centers sends the gradient to the nearest sub-center only; a
  tie goes to the lowest k (contract 4). Otherwise as :func:`arcface_loss`.

  Edge cases: (margin)

  References:
    J. Deng, J. Guo, T. Liu, M. Gong, S. Zafeiriou, "Sub-center ArcFace: Boosting Face
    Recognition by Large-scale Noisy Web Faces", ECCV 2020.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([[1.0, 0.2], [0.1, 1.0]])
    >>> w = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> y = jnp.array([0, 1])
    >>> print(jnp.round(jaxloss.subcenter_arcface_loss(x, w, y, num_subcenters=2, scale=8.0),
    ...                 4))
    [0.6117 0.2653]
  """
  return _margin_softmax("subcenter_arcface_loss", embeddings, class_weights, labels, scale, 1.0,
                         margin, 0.0, fallback="easy" if easy_margin else "arcface",
                         num_subcenters=num_subcenters)


# --------------------------------------------------------------------------------------------
# Contrastive losses: row-wise kernels shared by the unsharded and sharded forms.
# --------------------------------------------------------------------------------------------

def _pair_inputs(fn: str, name_a: str, a: ArrayLike, name_b: str, b: ArrayLike
                 ) -> tuple[jnp.dtype, jax.Array, jax.Array]:
  a = _numerics.check_floating(fn, name_a, a)
  b = _numerics.check_floating(fn, name_b, b)
  if a.ndim != 2 or b.shape != a.shape:
    raise ValueError(f"{fn}: `{name_a}` and `{name_b}` must both have shape (B, D), got "
                     f"{name_a}.shape={a.shape} and {name_b}.shape={b.shape}")
  dtype = _compute_dtype(a, b)
  return _out_dtype(a, b), a.astype(dtype), b.astype(dtype)


def _batch_mask(fn: str, where: ArrayLike | None, n: int) -> jax.Array | None:
  if where is None:
    return None
  m = jnp.asarray(where)
  if m.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `where` must be a boolean mask, got {m.dtype}")
  if m.shape != (n,):
    raise ValueError(f"{fn}: `where` must have shape ({n},), one entry per example, got "
                     f"where.shape={m.shape}")
  return m


def _scalar(fn: str, name: str, value: ArrayLike, dtype: jnp.dtype) -> jax.Array:
  v = jnp.asarray(value)
  if not (jnp.issubdtype(v.dtype, jnp.floating) or jnp.issubdtype(v.dtype, jnp.integer)):
    raise TypeError(f"{fn}: `{name}` must be a real number, got {v.dtype}")
  if v.size != 1 or v.ndim > 1:
    raise ValueError(f"{fn}: `{name}` must be a scalar (or of shape (1,)), got shape {v.shape}")
  return v.reshape(()).astype(dtype)


def _zero_masked(x: jax.Array, keep: jax.Array | None) -> jax.Array:
  """Masked rows replaced by 0 before any product: their NaN/inf cannot reach a gradient."""
  return x if keep is None else jnp.where(keep[:, None], x, jnp.zeros((), x.dtype))


def _row_cross_entropy(logits: jax.Array, target: jax.Array, keep_rows: jax.Array | None,
                       keep_cols: jax.Array | None) -> jax.Array:
  """−log softmax(logits_i)[target_i] over the kept columns; 0 for dropped rows.

  Every kept row keeps its own target column, so its log-sum-exp is finite; a dropped row is
  replaced by zeros first (finite, and its gradient is 0 through the final ``where``).
  """
  if keep_cols is not None:
    logits = jnp.where(keep_cols[None, :], logits, -jnp.inf)
  if keep_rows is not None:
    logits = jnp.where(keep_rows[:, None], logits, jnp.zeros((), logits.dtype))
  picked = jnp.take_along_axis(logits, target[:, None], axis=1)[:, 0]
  loss = _logsumexp(logits, 1) - picked
  return loss if keep_rows is None else jnp.where(keep_rows, loss, jnp.zeros((), loss.dtype))


def _masked_logsumexp(logits: jax.Array, axis: int, keep: jax.Array | None) -> jax.Array:
  """The (B, B) matrix's log-sum-exp along ``axis`` over the kept entries; a dropped line
  across it is replaced by zeros first (finite, and zeroed by the caller)."""
  if keep is None:
    return _logsumexp(logits, axis)
  x = jnp.where(jnp.expand_dims(keep, 1 - axis), logits, -jnp.inf)
  return _logsumexp(jnp.where(jnp.expand_dims(keep, axis), x, jnp.zeros((), x.dtype)), axis)


def _clip_scale(scale: jax.Array) -> jax.Array:
  """min(t, 100) with derivative 1 up to 100 (included) and 0 beyond."""
  return jnp.where(scale > CLIP_MAX_LOGIT_SCALE, jnp.asarray(CLIP_MAX_LOGIT_SCALE, scale.dtype),
                   scale)


def _clip_rows(logits_img: jax.Array, logits_txt: jax.Array, target: jax.Array,
               keep: jax.Array | None, keep_all: jax.Array | None) -> jax.Array:
  """Per local pair i: ½(CE of image i over all texts + CE of text i over all images), from
  the local images' (B_local, B) and the local texts' (B_local, B) logits."""
  return 0.5 * (_row_cross_entropy(logits_img, target, keep, keep_all)
                + _row_cross_entropy(logits_txt, target, keep, keep_all))


def _scaled_dot(scale: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  """scale · a bᵀ, the scale applied to an operand of the product, not to its result: XLA:CPU
  contracts scale·dot − max (in a log-sum-exp) into a fused multiply-add, whose unrounded
  product differs from the rounded max by ~1e23 at logits of 1e31 (e^{−1e23} = 0: log 0)."""
  return (scale * a) @ b.T


def _supcon_rows(logits: jax.Array, labels: jax.Array, labels_all: jax.Array, index: jax.Array,
                 keep: jax.Array | None, keep_all: jax.Array | None, ratio: jax.Array) -> jax.Array:
  """L_out of Khosla et al. for the anchors of ``logits``' rows against every column.

  A(i) = columns other than the anchor itself (and kept); P(i) = those of the anchor's class.
  ℓ_i = −(τ/τ_base)·(1/|P(i)|)·Σ_{p∈P(i)} (logit_ip − logsumexp_{a∈A(i)} logit_ia), and 0
  when P(i) is empty or the anchor is dropped.
  """
  cols = jnp.arange(logits.shape[1], dtype=index.dtype)
  others = cols[None, :] != index[:, None]
  if keep_all is not None:
    others = others & keep_all[None, :]
  positive = others & (labels[:, None] == labels_all[None, :])
  n_pos = jnp.sum(positive, axis=1)
  has = n_pos > 0
  if keep is not None:
    has = has & keep
  zero = jnp.zeros((), logits.dtype)
  # A row with no positive is replaced by zeros (finite log-sum-exp) and gives 0 at the end.
  safe = jnp.where(has[:, None], logits, zero)
  lse = _logsumexp(jnp.where(others, safe, -jnp.inf), 1)
  lse = jnp.where(has, lse, zero)
  pos_sum = jnp.sum(jnp.where(positive, safe, zero), axis=1)
  mean_log_prob = pos_sum / jnp.where(has, n_pos, 1).astype(logits.dtype) - lse
  return jnp.where(has, -ratio * mean_log_prob, zero)


def _siglip_block(img: jax.Array, txt: jax.Array, scale: jax.Array, bias: jax.Array,
                  diagonal: bool) -> jax.Array:
  """Σ_j −log σ(z_ij·(t·x_i·y_j + b)) over one block of texts; z = +1 on the diagonal when the
  block is the images' own (``diagonal``), −1 elsewhere."""
  logits = scale * (img @ txt.T) + bias
  sign = _siglip_sign(logits.shape, diagonal, logits.dtype)
  return jnp.sum(jax.nn.softplus(-sign * logits), axis=1)  # −log σ(x) = softplus(−x)


def _siglip_sign(shape: tuple[int, ...], diagonal: bool, dtype: jnp.dtype) -> jax.Array:
  if not diagonal:
    return -jnp.ones((), dtype)
  eye = jnp.arange(shape[0])[:, None] == jnp.arange(shape[1])[None, :]
  return jnp.where(eye, jnp.ones((), dtype), -jnp.ones((), dtype))


# --------------------------------------------------------------------------------------------
# Public contrastive losses.
# --------------------------------------------------------------------------------------------

def _supcon_inputs(fn: str, embeddings: ArrayLike, labels: ArrayLike, where: ArrayLike | None
                   ) -> tuple[jnp.dtype, jax.Array, jax.Array, jax.Array | None]:
  z = _numerics.check_floating(fn, "embeddings", embeddings)
  y = _numerics.wide_labels(_numerics.check_integer(fn, "labels", labels))
  if z.ndim != 2:
    raise ValueError(f"{fn}: `embeddings` must have shape (N, D) (stack the views along N, "
                     f"labels repeated), got embeddings.shape={z.shape}")
  if y.shape != z.shape[:1]:
    raise ValueError(f"{fn}: `labels` must have shape (N,) with N = embeddings.shape[0], got "
                     f"embeddings.shape={z.shape} and labels.shape={y.shape}")
  keep = _batch_mask(fn, where, z.shape[0])
  dtype = _compute_dtype(z)
  return z.dtype, _zero_masked(z.astype(dtype), keep), y, keep


_SUPCON_BOUNDS = {"temperature": _POSITIVE, "base_temperature": _POSITIVE}


@_numerics.loss_jit(bounds=_SUPCON_BOUNDS)
def supervised_contrastive_loss(embeddings: ArrayLike, labels: ArrayLike, *,
                                temperature: ArrayLike = 0.1, base_temperature: ArrayLike = 0.07,
                                where: ArrayLike | None = None) -> jax.Array:
  """Supervised contrastive loss (SupCon, the L_out form) of Khosla et al. (2020).

  .. math::
    \\ell_i = -\\frac{\\tau}{\\tau_{\\text{base}}} \\frac{1}{|P(i)|} \\sum_{p \\in P(i)}
      \\log \\frac{\\exp(z_i \\cdot z_p / \\tau)}{\\sum_{a \\in A(i)} \\exp(z_i \\cdot z_a / \\tau)}

  with A(i) every other (unmasked) example and P(i) those of the anchor's class. Every example
  is an anchor (the reference's ``contrast_mode="all"``); stack the views of a batch along N
  with their labels repeated. The mean over anchors is the reference's scalar.

  Args:
    embeddings: floating (N, D), normally L2-normalised (the paper's projection output); the
      similarities are their dot products.
    labels: integer (N,) classes (any integers; only equality matters).
    temperature: τ > 0 (traced).
    base_temperature: τ_base > 0 (traced); the loss is scaled by τ/τ_base as in the
      reference code.
    where: optional boolean (N,) mask; a masked example is neither an anchor (loss 0) nor a
      contrast for the others, and gets zero gradient.

  Returns:
    The per-anchor loss (N,), in the embeddings' dtype.

  Derivative: dℓ_i/d(z_i·z_a/τ) = (τ/τ_base)·(softmax over A(i) − [a ∈ P(i)]/|P(i)|).

  Edge cases:
    An anchor without a positive (the only one of its class in the batch) gives 0 with zero
    gradient (the reference gives 0/0 = NaN); so do masked anchors and a batch of one. Stable at
    τ = 0.01 with similarities of ±1 (``logsumexp``); the reference's ``log(Σ + 1e-9)`` is
    computed exactly. NaN in an unmasked embedding propagates.

  References:
    P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020, Eq. 2 (L_out);
    the authors' ``SupContrast/losses.py``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> z = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = jnp.array([0, 0, 1, 1])
    >>> print(jnp.round(jaxloss.supervised_contrastive_loss(z, y, temperature=0.5,
    ...                                                     base_temperature=0.5), 4))
    [0.2333 0.6271 0.6271 0.2333]
  """
  fn = "supervised_contrastive_loss"
  out, z, y, keep = _supcon_inputs(fn, embeddings, labels, where)
  tau = jnp.asarray(temperature, z.dtype)
  ratio = tau / jnp.asarray(base_temperature, z.dtype)
  logits = _scaled_dot(1 / tau, z, z)
  index = jnp.arange(z.shape[0], dtype=jnp.int32)
  return _supcon_rows(logits, y, y, index, keep, keep, ratio).astype(out)


@_numerics.loss_jit(bounds={"temperature": _POSITIVE})
def info_nce_loss(queries: ArrayLike, keys: ArrayLike, *, temperature: ArrayLike = 0.1,
                  negatives: ArrayLike | None = None) -> jax.Array:
  """InfoNCE loss of van den Oord et al. (2018): one positive key per query.

  .. math::
    \\ell_i = -\\log \\frac{\\exp(q_i \\cdot k_i / \\tau)}
      {\\exp(q_i \\cdot k_i / \\tau) + \\sum_{n \\in N(i)} \\exp(q_i \\cdot n / \\tau)}

  Without ``negatives`` the other keys of the batch are the negatives (N(i) = {k_j, j ≠ i}:
  a cross-entropy of q Kᵀ/τ with the positives on the diagonal). With ``negatives`` of shape
  (M, D) every query is contrasted with all of them (and not with the other keys), with shape
  (N, M, D) each query with its own M (info-nce-pytorch's ``"unpaired"`` and ``"paired"``).

  Args:
    queries: floating (N, D).
    keys: floating (N, D); key i is query i's positive.
    temperature: τ > 0 (traced).
    negatives: optional floating (M, D) or (N, M, D) explicit negatives.

  Returns:
    The per-query loss (N,), in the inputs' floating dtype.

  Derivative: dℓ_i/d(logit) = softmax − onehot(positive), logits = similarities/τ.

  Edge cases:
    Similarities are plain dot products: L2-normalise the inputs for cosine similarity (as
    info-nce-pytorch does inside). Stable at τ = 0.01 with similarities of ±1. NaN propagates.

  References:
    A. van den Oord, Y. Li, O. Vinyals, "Representation Learning with Contrastive Predictive
    Coding", 2018, Eq. 4; K. He et al., "Momentum Contrast", CVPR 2020 (explicit negatives).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> k = jnp.array([[0.8, 0.6], [0.6, 0.8]])
    >>> print(jnp.round(jaxloss.info_nce_loss(q, k, temperature=0.5), 4))
    [0.513 0.513]
  """
  fn = "info_nce_loss"
  out, q, k = _pair_inputs(fn, "queries", queries, "keys", keys)
  tau = jnp.asarray(temperature, q.dtype)
  n, d = q.shape
  if negatives is None:
    logits = _scaled_dot(1 / tau, q, k)
    return _row_cross_entropy(logits, jnp.arange(n), None, None).astype(out)
  neg = _numerics.check_floating(fn, "negatives", negatives)
  if not ((neg.ndim == 2 and neg.shape[1] == d) or (neg.ndim == 3 and neg.shape[0] == n
                                                     and neg.shape[2] == d)):
    raise ValueError(f"{fn}: `negatives` must have shape (M, D) or (N, M, D), got "
                     f"queries.shape={q.shape} and negatives.shape={neg.shape}")
  dtype = _compute_dtype(q, neg)
  out = _out_dtype(jnp.zeros((), out), neg)
  q, k, neg = q.astype(dtype), k.astype(dtype), neg.astype(dtype)
  q = q / tau  # the scale in an operand of the products (see _scaled_dot)
  positive = jnp.sum(q * k, axis=1, keepdims=True)
  negative = q @ neg.T if neg.ndim == 2 else jnp.einsum("nd,nmd->nm", q, neg)
  logits = jnp.concatenate([positive, negative], axis=1)
  return _row_cross_entropy(logits, jnp.zeros((n,), jnp.int32), None, None).astype(out)


@_numerics.loss_jit(bounds={"logit_scale": _NONNEGATIVE})
def clip_loss(image_embeddings: ArrayLike, text_embeddings: ArrayLike, *, logit_scale: ArrayLike,
              where: ArrayLike | None = None) -> jax.Array:
  """CLIP's symmetric contrastive loss (Radford et al. 2021), per image–text pair.

  .. math::
    L = t\\, X Y^\\top, \\qquad
    \\ell_i = \\tfrac12 \\Big(\\big(\\log \\textstyle\\sum_j e^{L_{ij}} - L_{ii}\\big)
                           + \\big(\\log \\textstyle\\sum_j e^{L_{ji}} - L_{ii}\\big)\\Big)

  the mean of the image→text and text→image cross-entropies with the matching pairs on the
  diagonal; the mean over i is CLIP's (and open_clip ``ClipLoss``'s) scalar.

  Args:
    image_embeddings: floating (B, D), normally L2-normalised.
    text_embeddings: floating (B, D); text i belongs to image i.
    logit_scale: t >= 0, the multiplier of the similarities (traced, learnable): pass
      ``exp(param)`` as open_clip and big_vision do. It is clamped to 100 (CLIP: "clipped to
      prevent scaling the logits by more than 100"): beyond 100 the value uses 100 and the
      gradient in t is 0; at 100 and below it is the plain derivative.
    where: optional boolean (B,) mask of the real pairs (padding of a global batch): a masked
      pair is in no softmax, its loss is 0 and its gradient zero.

  Returns:
    The per-pair loss (B,), in the embeddings' floating dtype.

  Derivative: with P = softmax(L) along rows and Q along columns, dℓ/dL (summed over i) =
  ½(P − I) + ½(Q − I); the embeddings' gradients follow through L = t·X Yᵀ.

  Edge cases:
    Stable at t = 100 with similarities of ±1 (``logsumexp``). A fully masked batch gives
    zeros with zero gradient. NaN in an unmasked embedding propagates; NaN in a masked one does
    not reach anything.

  References:
    A. Radford et al., "Learning Transferable Visual Models From Natural Language Supervision",
    ICML 2021, Figure 3 and section 2.5; open_clip ``ClipLoss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> y = jnp.array([[0.8, 0.6], [0.6, 0.8]])
    >>> print(jnp.round(jaxloss.clip_loss(x, y, logit_scale=2.0), 4))
    [0.513 0.513]
  """
  fn = "clip_loss"
  out, img, txt = _pair_inputs(fn, "image_embeddings", image_embeddings, "text_embeddings",
                               text_embeddings)
  keep = _batch_mask(fn, where, img.shape[0])
  img, txt = _zero_masked(img, keep), _zero_masked(txt, keep)
  logits = _scaled_dot(_clip_scale(_scalar(fn, "logit_scale", logit_scale, img.dtype)), img, txt)
  # Both directions from one matrix: log-sum-exp along its rows and along its columns (no
  # transposed copy), minus the diagonal.
  diagonal = jnp.diagonal(logits)
  loss = 0.5 * ((_masked_logsumexp(logits, 1, keep) - diagonal)
                + (_masked_logsumexp(logits, 0, keep) - diagonal))
  return (loss if keep is None else jnp.where(keep, loss, jnp.zeros((), loss.dtype))).astype(out)


@_numerics.loss_jit(bounds={"logit_scale": _NONNEGATIVE})
def siglip_loss(image_embeddings: ArrayLike, text_embeddings: ArrayLike, *, logit_scale: ArrayLike,
                logit_bias: ArrayLike) -> jax.Array:
  """SigLIP's pairwise sigmoid loss (Zhai et al. 2023), summed per image.

  .. math::
    \\ell_i = -\\sum_{j=1}^{B} \\log \\sigma\\big(z_{ij} (t\\, x_i \\cdot y_j + b)\\big),
    \\qquad z_{ij} = \\begin{cases} 1 & i = j \\\\ -1 & i \\ne j \\end{cases}

  The paper's loss, −(1/|B|) Σ_i Σ_j log σ(...), is the mean of ℓ over the images (big_vision
  normalises by the one positive per row and averages the rows).

  Args:
    image_embeddings: floating (B, D), normally L2-normalised.
    text_embeddings: floating (B, D); text i belongs to image i.
    logit_scale: t >= 0, the multiplier (traced, learnable: pass ``exp(t')`` as big_vision's
      model does; the paper initialises t' = log 10).
    logit_bias: b (traced, learnable; the paper initialises −10).

  Returns:
    The per-image loss (B,), in the embeddings' floating dtype.

  Derivative: dℓ_i/dL_ij = −z_ij·σ(−z_ij·L_ij) with L_ij = t·x_i·y_j + b.

  Edge cases:
    −log σ(x) is computed as softplus(−x): stable at t = 100 with similarities of ±1 and any
    bias. NaN propagates.

  References:
    X. Zhai, B. Mustafa, A. Kolesnikov, L. Beyer, "Sigmoid Loss for Language Image
    Pre-Training", ICCV 2023, Eq. 1 and Algorithm 1; big_vision
    ``trainers/proj/image_text/siglip.py``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> y = jnp.array([[0.8, 0.6], [0.6, 0.8]])
    >>> print(jnp.round(jaxloss.siglip_loss(x, y, logit_scale=10.0, logit_bias=-5.0), 4))
    [1.3618 1.3618]
  """
  fn = "siglip_loss"
  out, img, txt = _pair_inputs(fn, "image_embeddings", image_embeddings, "text_embeddings",
                               text_embeddings)
  t = _scalar(fn, "logit_scale", logit_scale, img.dtype)
  b = _scalar(fn, "logit_bias", logit_bias, img.dtype)
  return _siglip_block(img, txt, t, b, True).astype(out)


# --------------------------------------------------------------------------------------------
# Sharded forms.
# --------------------------------------------------------------------------------------------

def _shards(fn: str, mesh: Mesh, batch_axis: str, n: int) -> int:
  if not isinstance(mesh, Mesh):
    raise TypeError(f"{fn}(mesh=...) must be a jax.sharding.Mesh, got {type(mesh).__name__}")
  if batch_axis not in mesh.axis_names:
    raise ValueError(f"{fn}: batch_axis={batch_axis!r} is not an axis of the mesh "
                     f"{tuple(mesh.axis_names)}")
  shards = mesh.shape[batch_axis]
  if n % shards:
    raise ValueError(f"{fn}: the batch size B={n} is not divisible by the {shards} shards of "
                     f"mesh axis {batch_axis!r}")
  return shards


def _varying(*arrays: jax.Array) -> frozenset[str]:
  """The shard_map mesh axes over which any of ``arrays`` varies (empty outside shard_map)."""
  return frozenset().union(*(jax.typeof(a).manual_axis_type.varying for a in arrays))


def _sum_to(ct: jax.Array, primal: jax.Array) -> jax.Array:
  """A cotangent summed over the mesh axes along which its primal is replicated."""
  extra = _varying(ct) - _varying(primal)
  return lax.psum(ct, tuple(sorted(extra))) if extra else ct


def _gather(x: jax.Array, axis: str) -> jax.Array:
  return lax.all_gather(x, axis, tiled=True)


@_numerics.loss_jit(static=("mesh", "batch_axis"), bounds={"logit_scale": _NONNEGATIVE})
def sharded_clip_loss(image_embeddings: ArrayLike, text_embeddings: ArrayLike, *,
                      logit_scale: ArrayLike, where: ArrayLike | None = None, mesh: Mesh,
                      batch_axis: str = "data") -> jax.Array:
  """:func:`clip_loss` with the batch split over ``batch_axis`` of ``mesh`` (``shard_map``).

  Each device all-gathers both sides' embeddings and computes only its own rows: its images
  against every text and its texts against every image (B_local × B similarities each). The
  backward pass of the all-gather is a reduce-scatter, so the gradients are the unsharded
  loss's.

  Args:
    image_embeddings, text_embeddings: floating (B, D), B divisible by the size of
      ``batch_axis``.
    logit_scale, where: as in :func:`clip_loss` (``where`` sharded like the batch).
    mesh: a ``jax.sharding.Mesh`` (static); other axes replicate the computation.
    batch_axis: the mesh axis that splits the batch (static).

  Returns:
    The per-pair loss (B,), sharded over ``batch_axis``: the numbers of :func:`clip_loss`.

  Derivative: as :func:`clip_loss` (ordinary autodiff through ``shard_map``: forward and
  reverse mode).

  Edge cases:
    As :func:`clip_loss`. A batch not divisible by the number of shards, or an axis the mesh
    lacks, raises ``ValueError``.

  References:
    A. Radford et al., CLIP, ICML 2021; open_clip ``ClipLoss(local_loss=True,
    gather_with_grad=True)``, the same computation with torch.distributed.

  Examples:
    >>> import jax, numpy as np, jax.numpy as jnp, jaxloss
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> y = jnp.array([[0.8, 0.6], [0.6, 0.8]])
    >>> print(jnp.round(jaxloss.sharded_clip_loss(x, y, logit_scale=2.0, mesh=mesh), 4))
    [0.513 0.513]
  """
  fn = "sharded_clip_loss"
  out, img, txt = _pair_inputs(fn, "image_embeddings", image_embeddings, "text_embeddings",
                               text_embeddings)
  n = img.shape[0]
  _shards(fn, mesh, batch_axis, n)
  keep = _batch_mask(fn, where, n)
  img, txt = _zero_masked(img, keep), _zero_masked(txt, keep)
  t = _clip_scale(_scalar(fn, "logit_scale", logit_scale, img.dtype))
  if n == 0:  # nothing to shard (an all-gather of no rows does not lower)
    return jnp.zeros((0,), out)
  keep = jnp.ones((n,), jnp.bool_) if keep is None else keep

  def local(img: jax.Array, txt: jax.Array, keep: jax.Array, t: jax.Array) -> jax.Array:
    b = img.shape[0]
    target = lax.axis_index(batch_axis) * b + jnp.arange(b, dtype=jnp.int32)
    logits_img = _scaled_dot(t, img, _gather(txt, batch_axis))
    logits_txt = _scaled_dot(t, txt, _gather(img, batch_axis))
    return _clip_rows(logits_img, logits_txt, target, keep, _gather(keep, batch_axis))

  rows = P(batch_axis)
  loss = jax.shard_map(local, mesh=mesh, in_specs=(P(batch_axis, None), P(batch_axis, None),
                                                    rows, P()),
                       out_specs=rows)(img, txt, keep, t)
  return loss.astype(out)


@_numerics.loss_jit(static=("mesh", "batch_axis"), bounds=_SUPCON_BOUNDS)
def sharded_supervised_contrastive_loss(embeddings: ArrayLike, labels: ArrayLike, *,
                                        temperature: ArrayLike = 0.1,
                                        base_temperature: ArrayLike = 0.07,
                                        where: ArrayLike | None = None, mesh: Mesh,
                                        batch_axis: str = "data") -> jax.Array:
  """:func:`supervised_contrastive_loss` with the batch split over ``batch_axis`` of ``mesh``.

  Each device all-gathers the embeddings, labels and mask and computes its own anchors'
  rows (B_local × B similarities); the all-gather's transpose (a reduce-scatter) gives the
  unsharded gradients.

  Args:
    embeddings: floating (N, D), N divisible by the size of ``batch_axis``.
    labels, temperature, base_temperature, where: as in :func:`supervised_contrastive_loss`.
    mesh: a ``jax.sharding.Mesh`` (static).
    batch_axis: the mesh axis that splits the batch (static).

  Returns:
    The per-anchor loss (N,), sharded over ``batch_axis``: the numbers of
    :func:`supervised_contrastive_loss`.

  Derivative: as :func:`supervised_contrastive_loss` (ordinary autodiff through ``shard_map``).

  Edge cases:
    As :func:`supervised_contrastive_loss`; a batch not divisible by the number of shards, or
    an axis the mesh lacks, raises ``ValueError``.

  References:
    P. Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.

  Examples:
    >>> import jax, numpy as np, jax.numpy as jnp, jaxloss
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> z = jnp.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> y = jnp.array([0, 0, 1, 1])
    >>> print(jnp.round(jaxloss.sharded_supervised_contrastive_loss(
    ...     z, y, temperature=0.5, base_temperature=0.5, mesh=mesh), 4))
    [0.2333 0.6271 0.6271 0.2333]
  """
  fn = "sharded_supervised_contrastive_loss"
  out, z, y, keep = _supcon_inputs(fn, embeddings, labels, where)
  n = z.shape[0]
  _shards(fn, mesh, batch_axis, n)
  tau = jnp.asarray(temperature, z.dtype)
  ratio = tau / jnp.asarray(base_temperature, z.dtype)
  if n == 0:  # nothing to shard (an all-gather of no rows does not lower)
    return jnp.zeros((0,), out)
  keep = jnp.ones((n,), jnp.bool_) if keep is None else keep

  def local(z: jax.Array, y: jax.Array, keep: jax.Array, tau: jax.Array,
            ratio: jax.Array) -> jax.Array:
    b = z.shape[0]
    index = lax.axis_index(batch_axis) * b + jnp.arange(b, dtype=jnp.int32)
    logits = _scaled_dot(1 / tau, z, _gather(z, batch_axis))
    return _supcon_rows(logits, y, _gather(y, batch_axis), index, keep,
                        _gather(keep, batch_axis), ratio)

  rows = P(batch_axis)
  loss = jax.shard_map(local, mesh=mesh,
                       in_specs=(P(batch_axis, None), rows, rows, P(), P()),
                       out_specs=rows)(z, y, keep, tau, ratio)
  return loss.astype(out)


def _ring_perm(n: int) -> list[tuple[int, int]]:
  """Each device sends its block to the previous one: after r steps device d holds the block
  that started on device (d + r) mod n."""
  return [(j, (j - 1) % n) for j in range(n)]


def _ring_forward(img: jax.Array, txt: jax.Array, scale: jax.Array, bias: jax.Array, axis: str,
                  n: int) -> jax.Array:
  loss = _siglip_block(img, txt, scale, bias, True)

  def body(_: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
    block, loss = carry
    block = lax.ppermute(block, axis, _ring_perm(n))
    return block, loss + _siglip_block(img, block, scale, bias, False)

  _, loss = lax.fori_loop(0, n - 1, body, (txt, loss))
  return loss


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _ring_siglip(img: jax.Array, txt: jax.Array, scale: jax.Array, bias: jax.Array, axis: str,
                 n: int) -> jax.Array:
  """Per local image: the SigLIP loss against every text of the ring, one block at a time."""
  return _ring_forward(img, txt, scale, bias, axis, n)


def _ring_siglip_fwd(img: jax.Array, txt: jax.Array, scale: jax.Array, bias: jax.Array, axis: str,
                     n: int) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  return _ring_forward(img, txt, scale, bias, axis, n), (img, txt, scale, bias)


def _ring_siglip_bwd(axis: str, n: int, residuals: tuple[jax.Array, ...], g: jax.Array
                     ) -> tuple[jax.Array, ...]:
  img, txt, scale, bias = residuals

  def grads(block: jax.Array, diagonal: bool) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    # Recomputed block: L = t·XYᵀ + b; d softplus(−zL)/dL = −z·σ(−zL).
    dots = img @ block.T
    logits = scale * dots + bias
    sign = _siglip_sign(logits.shape, diagonal, logits.dtype)
    d_logits = g[:, None] * (-sign) * jax.nn.sigmoid(-sign * logits)
    return (scale * (d_logits @ block), scale * (d_logits.T @ img),
            jnp.sum(d_logits * dots), jnp.sum(d_logits))

  d_img, d_txt, d_scale, d_bias = grads(txt, True)

  def body(_: jax.Array, carry: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
    # A text block travels with the gradient accumulated for it so far.
    block, d_block, d_img, d_scale, d_bias = carry
    block, d_block = lax.ppermute((block, d_block), axis, _ring_perm(n))
    gi, gb, gs, gbias = grads(block, False)
    return block, d_block + gb, d_img + gi, d_scale + gs, d_bias + gbias

  _, d_txt, d_img, d_scale, d_bias = lax.fori_loop(
      0, n - 1, body, (txt, d_txt, d_img, d_scale, d_bias))
  # After n − 1 steps block j (with every device's contribution) sits on device j + 1: one
  # more step takes it home.
  d_txt = lax.ppermute(d_txt, axis, _ring_perm(n))
  cts = (d_img, d_txt, d_scale, d_bias)
  return tuple(_sum_to(ct, x) for ct, x in zip(cts, (img, txt, scale, bias), strict=True))


_ring_siglip.defvjp(_ring_siglip_fwd, _ring_siglip_bwd)


@_numerics.loss_jit(static=("mesh", "batch_axis"), bounds={"logit_scale": _NONNEGATIVE})
def sharded_siglip_loss(image_embeddings: ArrayLike, text_embeddings: ArrayLike, *,
                        logit_scale: ArrayLike, logit_bias: ArrayLike, mesh: Mesh,
                        batch_axis: str = "data") -> jax.Array:
  """:func:`siglip_loss` with the batch split over ``batch_axis`` of ``mesh``: the ring form.

  Each device keeps its images and passes text blocks around the ring (``ppermute`` to the
  previous device, n − 1 steps), adding each block's B_local × B_local sigmoid terms to its
  images' losses (the "chunked" implementation Zhai et al. 2023 describe). The backward
  pass runs the ring again, recomputing each block's logits; the gradient of a text block
  travels with it and reaches its owner after one more step. Per-device temporary memory is
  O(B_local² + B_local·D), never B_local × B, forward and backward.

  Args:
    image_embeddings, text_embeddings: floating (B, D), B divisible by the size of
      ``batch_axis``.
    logit_scale, logit_bias: as in :func:`siglip_loss`.
    mesh: a ``jax.sharding.Mesh`` (static).
    batch_axis: the mesh axis that splits the batch (static).

  Returns:
    The per-image loss (B,), sharded over ``batch_axis``: the numbers of :func:`siglip_loss`
    (summed in another order, so equal to rounding).

  Derivatives: reverse mode only (a ``jax.custom_vjp`` whose backward pass is its own ring,
  DESIGN contract 3's exception); gradients reach both embeddings, ``logit_scale`` and
  ``logit_bias``. Second derivatives through ``jax.jacrev(jax.grad(...))``.

  Edge cases:
    As :func:`siglip_loss`. A batch not divisible by the number of shards, or an axis the mesh
    lacks, raises ``ValueError``.

  References:
    X. Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023 (the efficient
    "chunked" implementation); H. Liu, M. Zaharia, P. Abbeel, "Ring Attention
    with Blockwise Transformers", 2023 (the backward ring).

  Examples:
    >>> import jax, numpy as np, jax.numpy as jnp, jaxloss
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> y = jnp.array([[0.8, 0.6], [0.6, 0.8]])
    >>> print(jnp.round(jaxloss.sharded_siglip_loss(x, y, logit_scale=10.0, logit_bias=-5.0,
    ...                                             mesh=mesh), 4))
    [1.3618 1.3618]
  """
  fn = "sharded_siglip_loss"
  out, img, txt = _pair_inputs(fn, "image_embeddings", image_embeddings, "text_embeddings",
                               text_embeddings)
  shards = _shards(fn, mesh, batch_axis, img.shape[0])
  t = _scalar(fn, "logit_scale", logit_scale, img.dtype)
  b = _scalar(fn, "logit_bias", logit_bias, img.dtype)

  def local(img: jax.Array, txt: jax.Array, t: jax.Array, b: jax.Array) -> jax.Array:
    return _ring_siglip(img, txt, t, b, batch_axis, shards)

  loss = jax.shard_map(local, mesh=mesh,
                       in_specs=(P(batch_axis, None), P(batch_axis, None), P(), P()),
                       out_specs=P(batch_axis))(img, txt, t, b)
  return loss.astype(out)


# --------------------------------------------------------------------------------------------
# Pair-weighting metric losses (Circle, Multi-Similarity): cosine similarities of every pair.
# --------------------------------------------------------------------------------------------

def _cosine_pairs(z: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """S_ij = ẑ_i·ẑ_j of the L2-normalised rows, and the (N, N) positive (same class, j ≠ i) and
  negative (other class) masks."""
  u = _normalize(z)
  same = y[:, None] == y[None, :]
  eye = jnp.arange(z.shape[0])[:, None] == jnp.arange(z.shape[0])[None, :]
  return u @ u.T, same & ~eye, ~same


def _pair_logsumexp(logit_p: jax.Array, logit_n: jax.Array, positive: jax.Array,
                    negative: jax.Array) -> tuple[jax.Array, jax.Array]:
  """log Σ exp over each row's positives and over its negatives, stacked (2, N), and whether
  the row has any (2, N): one log-sum-exp over both (N, N) blocks.

  A row with no entry is replaced by zeros over all its columns first (a finite log-sum-exp
  that the caller discards with ``where``; the double-where keeps its gradient out, jax #1052).
  """
  logits, mask = jnp.stack([logit_p, logit_n]), jnp.stack([positive, negative])
  has = jnp.any(mask, axis=2)
  safe = jnp.where(has[..., None], logits, jnp.zeros((), logits.dtype))
  return _logsumexp(jnp.where(mask | ~has[..., None], safe, -jnp.inf), 2), has


@_numerics.loss_jit(bounds={"margin": _NONNEGATIVE, "gamma": _POSITIVE})
def circle_loss(embeddings: ArrayLike, labels: ArrayLike, *, margin: ArrayLike = 0.25,
                gamma: ArrayLike = 256.0) -> jax.Array:
  """Circle loss of Sun et al. (2020), the pair-wise form, per anchor.

  Every example is an anchor; with s the cosine similarities of the L2-normalised embeddings,
  its positives s_p (the other examples of its class) and its negatives s_n (every example of
  another class),

  .. math::
    \\ell_i = \\log\\Big[1 + \\sum_{n} e^{\\gamma \\alpha_n (s_n - \\Delta_n)}
                        \\sum_{p} e^{-\\gamma \\alpha_p (s_p - \\Delta_p)}\\Big]
           = \\operatorname{softplus}\\Big(\\operatorname{LSE}_n\\, \\gamma \\alpha_n (s_n - m)
             + \\operatorname{LSE}_p\\, {-\\gamma} \\alpha_p (s_p - 1 + m)\\Big)

  with the self-paced weights α_p = [1 + m − s_p]_+ and α_n = [s_n + m]_+ (optima
  O_p = 1 + m, O_n = −m) and the margins Δ_p = 1 − m, Δ_n = m: the decision boundary is the
  circle (s_n − 0)² + (s_p − 1)² = 2m². The mean over anchors is the batch's scalar.

  Args:
    embeddings: floating (N, D), normalised here: the similarities are cosines.
    labels: integer (N,) classes (any integers; only equality matters).
    margin: the relaxation m >= 0 (traced; the paper uses 0.25 for faces, 0.4 for
      fine-grained retrieval).
    gamma: the scale γ > 0 (traced; 256 for faces, 80 for fine-grained retrieval).

  Returns:
    The per-anchor loss (N,), in the embeddings' floating dtype.

  Derivative: the weights α are held constant (``stop_gradient``), as the reference
  implementations do (pytorch-metric-learning documents it): with σ = sigmoid of the
  softplus argument, dℓ_i/ds_n = σ·softmax_n·γα_n and dℓ_i/ds_p = −σ·softmax_p·γα_p, the
  softmaxes over the anchor's negatives and positives. So ``jax.grad`` is not the derivative
  of the value in s (which would add γ(s_n − m) and −γ(s_p − 1 + m) terms where α > 0): a
  deliberate choice, the gradient the reference implementations train with. At the kink of
  [·]_+ (s_n = −m) the pair's gradient is 0, from either side. The cosine's gradient in an
  embedding is (ẑ_j − s_ij ẑ_i)/‖z_i‖. Forward mode works (``jax.jvp``).

  Edge cases:
    An anchor without a positive or without a negative has an empty sum inside the log: its
    loss is log(1 + 0) = 0, with zero gradient (pytorch-metric-learning instead drops it from
    the mean; ``jaxloss.reduce(..., where=...)`` does the same). Stable at γ = 256 with
    cosines of exactly ±1 (an identical negative has logit γ(1 + m)(1 − m) = 240, exp of
    which overflows float32): both sums run through ``logsumexp`` and the log through
    ``softplus``. A zero embedding has cosine 0 with every other and gradient 0. Labels are
    class ids: no value is invalid. NaN in an embedding reaches every row (the batch is
    coupled).

  References:
    Y. Sun, C. Cheng, Y. Zhang, C. Zhang, L. Zheng, Z. Wang, Y. Wei, "Circle Loss: A Unified
    Perspective of Pair Similarity Optimization", CVPR 2020, Eq. 4-6;
    pytorch-metric-learning ``losses.CircleLoss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> z = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0]])
    >>> y = jnp.array([0, 0, 1, 1])
    >>> print([f"{v:.4f}" for v in jaxloss.circle_loss(z, y, margin=0.25, gamma=16.0)])
    ['10.8001', '15.3166', '15.3166', '10.8001']
  """
  fn = "circle_loss"
  out, z, y, _ = _supcon_inputs(fn, embeddings, labels, None)
  m = jnp.asarray(margin, z.dtype)
  g = jnp.asarray(gamma, z.dtype)
  s, positive, negative = _cosine_pairs(z, y)
  fixed = lax.stop_gradient(s)
  zero = jnp.zeros((), z.dtype)
  alpha_p = jnp.maximum(1 + m - fixed, zero)  # held constant: see Derivative
  alpha_n = jnp.maximum(fixed + m, zero)
  lse, has = _pair_logsumexp(-g * alpha_p * (s - (1 - m)), g * alpha_n * (s - m), positive,
                             negative)
  both = has[0] & has[1]
  loss = jax.nn.softplus(jnp.where(both, lse[0] + lse[1], zero))
  return jnp.where(both, loss, zero).astype(out)


@_numerics.loss_jit(bounds={"alpha": _POSITIVE, "beta": _POSITIVE, "epsilon": _NONNEGATIVE})
def multi_similarity_loss(embeddings: ArrayLike, labels: ArrayLike, *, alpha: ArrayLike = 2.0,
                          beta: ArrayLike = 50.0, base: ArrayLike = 0.5,
                          epsilon: ArrayLike | None = None) -> jax.Array:
  """Multi-Similarity loss of Wang et al. (2019), per anchor.

  Every example is an anchor i; with S the cosine similarities of the L2-normalised
  embeddings, P_i its positives (the other examples of its class) and N_i its negatives,

  .. math::
    \\ell_i = \\frac{1}{\\alpha}
             \\log\\Big[1 + \\sum_{k \\in P_i} e^{-\\alpha (S_{ik} - \\lambda)}\\Big]
           + \\frac{1}{\\beta}
             \\log\\Big[1 + \\sum_{k \\in N_i} e^{\\beta (S_{ik} - \\lambda)}\\Big]

  each log(1 + Σ e^x) computed as the log-sum-exp of the x and one 0. The paper's scalar is the
  mean over anchors.

  By default (``epsilon=None``) P_i and N_i are *all* the anchor's pairs: the paper's pair
  mining is a separate, optional step (as pytorch-metric-learning separates its
  ``MultiSimilarityMiner``). With ``epsilon`` = ε, the paper's mining (Eq. 6-7) keeps the
  negatives with S_ik > min_{k' ∈ P_i} S_ik' − ε and the positives with
  S_ik < max_{k' ∈ N_i} S_ik' + ε (strict inequalities; the authors use ε = 0.1). The
  selection is computed from ``stop_gradient`` similarities: it is a set, not a function the
  gradient flows through.

  Args:
    embeddings: floating (N, D), normalised here: the similarities are cosines.
    labels: integer (N,) classes (any integers; only equality matters).
    alpha: α > 0, the positive pairs' scale (traced).
    beta: β > 0, the negative pairs' scale (traced).
    base: the similarity margin λ (traced, any real; 0.5 as in the authors' code and
      pytorch-metric-learning, which notes the paper's λ = 1).
    epsilon: None (no mining, static) or ε >= 0, the mining margin (traced).

  Returns:
    The per-anchor loss (N,), in the embeddings' floating dtype.

  Derivative: dℓ_i/dS_ik = −e^{−α(S_ik − λ)}/(1 + Σ_P e^{−α(S − λ)}) on (kept) positives and
  e^{β(S_ik − λ)}/(1 + Σ_N e^{β(S − λ)}) on (kept) negatives: the paper's pair weights
  w⁺ and w⁻ (Eq. 8-9); mining changes the sets, never the gradient of a kept pair. The
  cosine's gradient in an embedding is (ẑ_k − S_ik ẑ_i)/‖z_i‖.

  Edge cases:
    Without mining, an anchor without positives (or negatives) has an empty sum: that term is
    log(1 + 0) = 0 with zero gradient, and the other term stays. With mining, an anchor
    keeps a positive exactly when it keeps a negative (both conditions read
    max_N S > min_P S − ε; one set empty empties the other), and one without mined pairs gives
    0 with zero gradient, as the authors' code skips it. The anchor is excluded from its
    positives by index; the authors' code drops every positive with S >= 1 − 1e-5 instead
    (its way of removing the anchor), so there an exact duplicate positive does not count,
    here it does. Stable at β = 50 with cosines of exactly ±1 (each log(1 + Σ e^x) is one
    log-sum-exp). A zero embedding has cosine 0 with every other and gradient 0. Labels are
    class ids: no value is invalid. NaN in an embedding reaches every row (the batch is
    coupled).

  References:
    X. Wang, X. Han, W. Huang, D. Dong, M. R. Scott, "Multi-Similarity Loss with General Pair
    Weighting for Deep Metric Learning", CVPR 2019, Eq. 6-10; the authors'
    ``research-ms-loss``; pytorch-metric-learning ``losses.MultiSimilarityLoss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> z = jnp.array([[1.0, 0.0], [0.6, 0.8], [1.0, 0.1], [0.8, 0.6]])
    >>> y = jnp.array([0, 0, 0, 1])
    >>> print([f"{v:.4f}" for v in jaxloss.multi_similarity_loss(z, y)])
    ['0.6920', '0.9224', '0.7205', '0.4601']
    >>> print([f"{v:.4f}" for v in jaxloss.multi_similarity_loss(z, y, epsilon=0.1)])
    ['0.5991', '0.9224', '0.6218', '0.0000']
  """
  fn = "multi_similarity_loss"
  out, z, y, _ = _supcon_inputs(fn, embeddings, labels, None)
  a = jnp.asarray(alpha, z.dtype)
  b = jnp.asarray(beta, z.dtype)
  lam = jnp.asarray(base, z.dtype)
  s, positive, negative = _cosine_pairs(z, y)
  if epsilon is not None:
    eps = jnp.asarray(epsilon, z.dtype)
    fixed = lax.stop_gradient(s)
    hardest_p = jnp.min(fixed, axis=1, where=positive, initial=jnp.inf)
    hardest_n = jnp.max(fixed, axis=1, where=negative, initial=-jnp.inf)
    negative = negative & (fixed > (hardest_p - eps)[:, None])
    positive = positive & (fixed < (hardest_n + eps)[:, None])
  # log(1 + Σ_k e^{x_k}) is the log-sum-exp of the row with one more entry, 0: finite, and
  # exactly 0 with zero gradient for an empty set (no double-where needed).
  logits = jnp.where(jnp.stack([positive, negative]), jnp.stack([-a * (s - lam), b * (s - lam)]),
                     -jnp.inf)
  one = jnp.zeros(logits.shape[:-1] + (1,), logits.dtype)
  terms = _logsumexp(jnp.concatenate([logits, one], axis=-1), -1)
  loss = terms[0] / a + terms[1] / b
  if epsilon is not None:  # the authors' code skips an anchor missing either mined set
    loss = jnp.where(jnp.any(positive, 1) & jnp.any(negative, 1), loss, jnp.zeros((), z.dtype))
  return loss.astype(out)
