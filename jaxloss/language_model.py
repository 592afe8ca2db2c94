"""Language-model quantities: per-token log-probabilities and entropies, per-sequence sums.

These are the inputs of the post-training losses (``jaxloss.preference``): a policy's
log-probability of each sampled token, its entropy, and a sequence's total or length-averaged
log-probability with padding masked out.

Two closed-form derivatives (``jax.custom_jvp``, contract 3) carry the module:

* ``_label_log_softmax``: u_y − lse(u) for u = x / T, whose tangent is dx_y − Σ_j p_j dx_j
  over T (and a temperature term). The forward pass gathers x_y and reduces the logits to
  their logsumexp: the (…, V) log-softmax is never built, nor the label's one-hot (the
  tangent gathers dx_y).
* ``_entropy``: H = −Σ_j p_j log p_j, whose tangent is −Σ_j p_j (log p_j + H) dx_j / T, with
  0·log 0 = 0 so that −inf (masked) logits contribute exactly 0 to the value and gradient.

The temperature enters as (x − max x) / T, the shift before the scaling: x / T − max(x / T)
would be computed by XLA as a fused multiply-add of the unrounded product x·(1/T) against the
rounded maximum, an error of half an ulp of x / T, which is e^(1e23) = inf at logits of 1e30.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

_POSITIVE = _numerics.Range(low=0.0, low_open=True)


def _softmax_parts(x: jax.Array, t: jax.Array, axis: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(s, log z, p, finite) for u = x / t: the shifted scaled logits s = (x − max x) / t,
  log z = log Σ exp(s) (keepdims; so log softmax(u) = s − log z), the softmax, and where
  x > −inf.

  A row whose logits are all −inf has log z = −inf and p = 0 (no class to put mass on).
  """
  top = jnp.max(x, axis, keepdims=True)
  top = jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))
  shifted = (x - top) / t
  e = jnp.exp(shifted)
  z = jnp.sum(e, axis, keepdims=True)
  empty = z == 0
  log_z = jnp.where(empty, -jnp.inf, jnp.log(jnp.where(empty, jnp.ones_like(z), z)))
  p = e / jnp.where(empty, jnp.ones_like(z), z)
  return shifted, log_z, p, x > -jnp.inf


def _scaled_tangent(grad_u: jax.Array, shifted: jax.Array, finite: jax.Array, dx: jax.Array,
                    dt: Any, t: jax.Array, axis: int) -> jax.Array:
  """Σ_j G_j (dx_j − u_j dt) / t for G = dV/du, u = x / t; by shift invariance (Σ_j G_j = 0)
  u_j may be the shifted s_j, which is finite wherever G_j can be nonzero."""
  s0 = jnp.where(finite, shifted, jnp.zeros_like(shifted))
  tangent = jnp.sum(grad_u * dx, axis, keepdims=True)
  if _numerics.nonzero(dt):
    tangent = tangent - dt * jnp.sum(grad_u * s0, axis, keepdims=True)
  return tangent / t


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _label_log_softmax(axis: int, x: jax.Array, t: jax.Array, index: jax.Array) -> jax.Array:
  """log softmax(x / t)_y, keepdims along ``axis``; ``index`` holds y (in range)."""
  shifted, log_z, _, _ = _softmax_parts(x, t, axis)
  return jnp.take_along_axis(shifted, index, axis) - log_z


@functools.partial(_label_log_softmax.defjvp, symbolic_zeros=True)
def _label_log_softmax_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
                           ) -> tuple[jax.Array, jax.Array]:
  x, t, index = primals
  dx, dt, _ = tangents
  shifted, log_z, p, finite = _softmax_parts(x, t, axis)
  value = jnp.take_along_axis(shifted, index, axis) - log_z
  # d/du_j = [j = y] − p_j: the gathered tangent minus the softmax-weighted one.
  dx = jnp.zeros_like(x) if not _numerics.nonzero(dx) else dx
  s0 = jnp.where(finite, shifted, jnp.zeros_like(shifted))
  tangent = jnp.take_along_axis(dx, index, axis) - jnp.sum(p * dx, axis, keepdims=True)
  if _numerics.nonzero(dt):
    tangent = tangent - dt * (jnp.take_along_axis(s0, index, axis)
                              - jnp.sum(p * s0, axis, keepdims=True))
  return value, tangent / t


def _entropy_terms(x: jax.Array, t: jax.Array, axis: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
  """(H, p, −log p with 0 where the logit is −inf, s, finite): H = Σ p·(−log p).

  Written with −log p = log z − s so that a one-hot row gives +0, not −0.
  """
  shifted, log_z, p, finite = _softmax_parts(x, t, axis)
  surprisal = jnp.where(finite, log_z - shifted, jnp.zeros_like(x))
  return jnp.sum(p * surprisal, axis, keepdims=True), p, surprisal, shifted, finite


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _entropy(axis: int, x: jax.Array, t: jax.Array) -> jax.Array:
  """The Shannon entropy of softmax(x / t) over ``axis``, keepdims."""
  return _entropy_terms(x, t, axis)[0]


@functools.partial(_entropy.defjvp, symbolic_zeros=True)
def _entropy_jvp(axis: int, primals: tuple[Any, ...], tangents: tuple[Any, ...]
                 ) -> tuple[jax.Array, jax.Array]:
  x, t = primals
  dx, dt = tangents
  h, p, surprisal, shifted, finite = _entropy_terms(x, t, axis)
  # dH/du_j = −p_j (log p_j + H) = p_j (−log p_j − H); 0 where p_j = 0.
  grad_u = p * (surprisal - h)
  dx = jnp.zeros_like(x) if not _numerics.nonzero(dx) else dx
  return h, _scaled_tangent(grad_u, shifted, finite, dx, dt, t, axis)


def _logits_input(fn: str, logits: ArrayLike, axis: int, temperature: ArrayLike
                  ) -> tuple[jnp.dtype, jax.Array, jax.Array, int]:
  x = _numerics.check_floating(fn, "logits", logits)
  axis = _numerics.canonical_axis(fn, axis, x.ndim)
  out_dtype = x.dtype
  _, (x,) = _numerics.upcast(x)
  return out_dtype, x, jnp.asarray(temperature, x.dtype), axis


@_numerics.loss_jit(static=("axis", "ignore_index"), bounds={"temperature": _POSITIVE})
def token_log_probs(logits: ArrayLike, labels: ArrayLike, *, axis: int = -1,
                    temperature: ArrayLike = 1.0,
                    ignore_index: int | None = None) -> jax.Array:
  """Log-probability of each label token, ``log softmax(logits / T)_y``.

  .. math::
    \\log p_\\theta(y_t) = x_{t, y_t} / T - \\log \\sum_v \\exp(x_{t, v} / T)

  The gather of a log-softmax without building it: the forward pass reduces the logits to
  their logsumexp and gathers one logit per token, so no (…, V) log-softmax is stored.

  Args:
    logits: floating array with the vocabulary along ``axis``, shape ``S`` (e.g. (B, T, V)).
    labels: integer token ids, shape ``S`` without ``axis`` (e.g. (B, T)).
    axis: the vocabulary axis (static int).
    temperature: T > 0 (traced); the logits are divided by it, as a sampler with that
      temperature does.
    ignore_index: optional static int (PyTorch's and TRL's padding label is −100); tokens with
      this label give 0 with zero gradient.

  Returns:
    Log-probabilities (≤ 0), ``S`` without ``axis``, in the logits' dtype (bf16/fp16
    computed in float32).

  Gradient (a ``custom_jvp``): d/dx_v = ([v = y] − softmax(x / T)_v) / T.

  Edge cases:
    Logits of magnitude 1e4 give finite values and gradients. A −inf logit elsewhere in the
    row contributes 0 probability and gets gradient 0; a −inf logit at the label gives −inf
    (the true value) with a finite gradient; a row of all −inf logits has no distribution
    and gives NaN (mask it afterwards: :func:`sequence_log_probs` selects it away). A label
    outside [0, V) other than
    ``ignore_index`` (negative ones included) gives NaN with zero gradient for that token, and
    under ``checkify.checkify(..., errors=checkify.user_checks)`` an error naming it; float
    labels raise ``TypeError``. Padding tokens that carry a valid id need no special label:
    :func:`sequence_log_probs` masks them. NaN logits propagate.

  References:
    R. J. Williams, "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", Machine Learning 1992 (the log-likelihood of sampled actions);
    TRL's ``selective_log_softmax`` (the same quantity, computed per row).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    >>> print(jnp.round(jaxloss.token_log_probs(logits, jnp.array([0, 2])), 4))
    [-0.1698 -1.0986]
  """
  fn = "token_log_probs"
  out_dtype, x, t, axis = _logits_input(fn, logits, axis, temperature)
  y = _numerics.check_integer(fn, "labels", labels)
  batch_shape = x.shape[:axis] + x.shape[axis + 1:]
  if y.shape != batch_shape:
    raise ValueError(f"{fn}: `labels` must have the shape of `logits` without axis {axis}, "
                     f"{batch_shape}, got logits.shape={x.shape} and labels.shape={y.shape}")
  ignored = jnp.zeros(y.shape, bool) if ignore_index is None else y == ignore_index
  valid = _numerics.class_labels_valid(fn, "labels", jnp.where(ignored, 0, y), x.shape[axis])
  index = jnp.expand_dims(jnp.where(valid, y, jnp.zeros_like(y)), axis)
  log_p = _label_log_softmax(axis, x, t, index).squeeze(axis)
  log_p = jnp.where(ignored, jnp.zeros_like(log_p), log_p)
  return _numerics.nan_where_invalid(log_p, valid | ignored).astype(out_dtype)


@_numerics.loss_jit(static=("axis",), bounds={"temperature": _POSITIVE})
def token_entropy(logits: ArrayLike, *, axis: int = -1,
                  temperature: ArrayLike = 1.0) -> jax.Array:
  """Entropy of each token's predictive distribution, ``H(softmax(logits / T))``.

  .. math::
    H_t = -\\sum_v p_{t,v} \\log p_{t,v}, \\qquad p_t = \\mathrm{softmax}(x_t / T)

  Args:
    logits: floating array with the vocabulary along ``axis``, shape ``S``.
    axis: the vocabulary axis (static int).
    temperature: T > 0 (traced).

  Returns:
    Entropies in nats, in [0, log V], ``S`` without ``axis``, in the logits' dtype.

  Gradient (a ``custom_jvp``): dH/dx_v = −p_v (log p_v + H) / T.

  Edge cases:
    −inf logits (a vocabulary mask) contribute exactly 0 (0·log 0 = 0) and get gradient 0; a
    row of all −inf logits has entropy 0. Logits of magnitude 1e4 give finite values and
    gradients (a one-hot distribution has H = 0). NaN logits propagate.

  References:
    C. E. Shannon, "A Mathematical Theory of Communication", 1948; used as the entropy bonus
    of policy-gradient methods (Williams & Peng 1991) and as DAPO/GRPO training diagnostics.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, -jnp.inf, -jnp.inf, -jnp.inf]])
    >>> print(jnp.round(jaxloss.token_entropy(logits), 4))
    [1.3863 0.    ]
  """
  out_dtype, x, t, axis = _logits_input("token_entropy", logits, axis, temperature)
  return _entropy(axis, x, t).squeeze(axis).astype(out_dtype)


@_numerics.loss_jit(static=("average",))
def sequence_log_probs(token_log_probs: ArrayLike, mask: ArrayLike, *,
                       average: bool = False) -> jax.Array:
  """Per-sequence log-probability: the masked sum (or mean) of token log-probabilities.

  .. math::
    \\log p(y) = \\sum_t m_t \\log p(y_t), \\qquad
    \\text{average:}\\ \\frac{\\sum_t m_t \\log p(y_t)}{\\max(1, \\sum_t m_t)}

  The sum is what DPO, KTO and the other reference-based losses take; the length-averaged
  form is what SimPO, ORPO and TRL's IPO take.

  Args:
    token_log_probs: floating per-token values, tokens along the last axis, shape (…, T).
    mask: boolean array of the same shape: ``True`` for the tokens that count (the
      completion), ``False`` for padding and prompt tokens.
    average: static bool; divide by the number of unmasked tokens.

  Returns:
    Shape (…,), in the input's dtype (accumulated in float32 for bf16/fp16).

  Gradient: m_t (or m_t / Σ m), exactly 0 at masked tokens.

  Edge cases:
    Masked tokens contribute exactly 0 to the value and the gradient even when they hold NaN
    or ±inf (a padding label turned into NaN by :func:`token_log_probs`, say): the values are
    selected away before the sum (double ``where``, jax #1052), not multiplied by the mask
    (0·NaN is NaN). An all-masked sequence gives 0 with zero gradient, for the sum and the
    mean. A non-boolean mask raises ``TypeError`` (use ``attention_mask.astype(bool)``).

  References:
    R. Rafailov et al., "Direct Preference Optimization", NeurIPS 2023 (sequence
    log-likelihoods); Y. Meng et al., "SimPO", NeurIPS 2024 (the length-averaged form).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> lp = jnp.array([[-1.0, -2.0, jnp.nan], [-0.5, -0.5, -0.5]])
    >>> mask = jnp.array([[True, True, False], [False, False, False]])
    >>> print(jaxloss.sequence_log_probs(lp, mask), jaxloss.sequence_log_probs(lp, mask,
    ...       average=True))
    [-3.  0.] [-1.5  0. ]
  """
  fn = "sequence_log_probs"
  lp = _numerics.check_floating(fn, "token_log_probs", token_log_probs)
  m = jnp.asarray(mask)
  if m.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `mask` must be a boolean array (use mask.astype(bool)), got "
                    f"{m.dtype}")
  if m.shape != lp.shape or lp.ndim == 0:
    raise ValueError(f"{fn}: `token_log_probs` and `mask` must have the same shape, with "
                     f"tokens along the last axis, got token_log_probs.shape={lp.shape} and "
                     f"mask.shape={m.shape}")
  out_dtype = lp.dtype
  _, (lp,) = _numerics.upcast(lp)
  total = jnp.sum(jnp.where(m, lp, jnp.zeros_like(lp)), -1)
  if average:
    count = jnp.sum(m, -1).astype(lp.dtype)
    total = total / jnp.maximum(count, 1.0)
  return total.astype(out_dtype)

