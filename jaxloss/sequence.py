"""Sequence losses: connectionist temporal classification (CTC, Graves et al. 2006).

``ctc_loss`` and ``ctc_loss_with_forward_probs`` take optax's signature and give optax's numbers
(its lattice of blank and label states, its ``log_epsilon`` as the log of an impossible
transition, its padding conventions), with a hand-written forward–backward gradient: the
forward recursion (α) runs once, and the backward pass is the adjoint of that recursion (the
β recursion written in probability space, ∂ log p / ∂ log α), not automatic differentiation
through ``lax.scan``. So these two functions are reverse-mode only (``jax.grad``,
``jax.vjp``; Hessians via ``jax.jacrev(jax.grad(...))`` are not available either):
``jax.jvp`` raises.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple, overload

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


# --------------------------------------------------------------------------------------------
# Log-space primitives. Each log-add-exp of the recursion has the weights σ(x − y) and
# σ(y − x) as its partial derivatives; the backward pass evaluates them from the stored α.
# --------------------------------------------------------------------------------------------

def _lae(x: jax.Array, y: jax.Array) -> jax.Array:
  """log(eˣ + eʸ) = max + log1p(exp(−|x − y|)); −inf when both are −inf, NaN propagates."""
  d = -jnp.abs(x - y)
  d = jnp.where(jnp.isnan(d), -jnp.inf, d)  # x = y = ±inf: the max alone is the answer
  return jnp.maximum(x, y) + jnp.log1p(jnp.exp(d))


def _weights(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(∂/∂x, ∂/∂y) of log(eˣ + eʸ): (σ(x − y), σ(y − x)), each exact to rounding.

  Both −inf (a state no path reaches) gives (½, ½): any finite split is right there, because
  the adjoint that multiplies it is 0.
  """
  d = x - y
  d = jnp.where(jnp.isnan(d), jnp.zeros((), d.dtype), d)
  return jax.nn.sigmoid(d), jax.nn.sigmoid(-d)


# --------------------------------------------------------------------------------------------
# The recursion. States for B sequences of at most N labels (optax's lattice):
#   P[:, n], n = 0..N: "n labels emitted, in (or ready for) a blank";
#   E[:, n], n = 0..N-1: "emitting label n".
# One frame t with label log-probabilities le (B, N), blank log-probability lb (B,):
#   P1[n+1] = lae(P[n+1], E[n] + ε·r[n])          (the end of label n, no frame consumed;
#                                                  ε·r blocks it before a repeated label)
#   E'[n]   = le[n] + lae(P1[n], E[n])             (start label n, or stay on it)
#   P'[0]   = lb + P1[0]
#   P'[n+1] = lb + lae(P1[n+1], E[n] + ε·(1 − r[n]))   (a blank after label n)
# with ε = log_epsilon and r[n] = [labels[n] == labels[n+1]]. A padded frame keeps the state.
# After the last frame, P[n+1] ← lae(P[n+1], E[n]) and the loss is −P[L].
# --------------------------------------------------------------------------------------------

# (P, E): the blank and the label states, (B, N+1) and (B, N) (stacked over time: (T, B, ...)).
_States = tuple[jax.Array, jax.Array]


def _p1(P: jax.Array, E: jax.Array, eps_r: jax.Array) -> jax.Array:
  return jnp.concatenate([P[:, :1], _lae(P[:, 1:], E + eps_r)], axis=1)


def _step(P: jax.Array, E: jax.Array, le: jax.Array, lb: jax.Array, pad: jax.Array,
          eps_r: jax.Array, eps_nr: jax.Array) -> _States:
  P1 = _p1(P, E, eps_r)
  E_next = le + _lae(P1[:, :-1], E)
  P_next = lb[:, None] + jnp.concatenate([P1[:, :1], _lae(P1[:, 1:], E + eps_nr)], axis=1)
  return jnp.where(pad[:, None], P, P_next), jnp.where(pad[:, None], E, E_next)


def _finish(P: jax.Array, E: jax.Array) -> jax.Array:
  return jnp.concatenate([P[:, :1], _lae(P[:, 1:], E)], axis=1)


def _init(batch: int, n: int, eps: jax.Array, dtype: Any) -> _States:
  P = jnp.full((batch, n + 1), eps, dtype).at[:, 0].set(0.0)
  return P, jnp.full((batch, n), eps, dtype)


def _forward(lp_emit: jax.Array, lp_blank: jax.Array, pad: jax.Array, eps: jax.Array,
             repeat: jax.Array, keep: bool) -> tuple[_States, _States | None]:
  """The α recursion over time. Inputs time-major: lp_emit (T, B, N), lp_blank (T, B),
  pad (T, B) bool. Returns (P_T, E_T) and, if ``keep``, the stacked states (T, B, N+1),
  (T, B, N) after every frame."""
  _, batch, n = lp_emit.shape
  dtype = lp_emit.dtype
  eps_r, eps_nr = eps * repeat, eps * (1.0 - repeat)

  def body(carry: _States, x: tuple[jax.Array, jax.Array, jax.Array]
           ) -> tuple[_States, _States | None]:
    P, E = _step(*carry, *x, eps_r, eps_nr)
    return (P, E), ((P, E) if keep else None)

  (P, E), states = lax.scan(body, _init(batch, n, eps, dtype), (lp_emit, lp_blank, pad))
  return (P, E), states


def _gather_emit(logprobs: jax.Array, labels: jax.Array) -> jax.Array:
  """log p(labels[b, n] at frame t), (B, T, N), by a gather on the class axis."""
  return jnp.take_along_axis(logprobs, labels[:, None, :], axis=2)


def _log_probs(logits: jax.Array, labels: jax.Array, blank_id: int
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
  logprobs = jax.nn.log_softmax(logits, axis=-1)
  lp_emit = jnp.transpose(_gather_emit(logprobs, labels), (1, 0, 2))  # (T, B, N)
  lp_blank = jnp.transpose(logprobs[:, :, blank_id], (1, 0))  # (T, B)
  return logprobs, lp_emit, lp_blank


def _pick(P: jax.Array, lengths: jax.Array) -> jax.Array:
  return jnp.take_along_axis(P, lengths[:, None], axis=1)[:, 0]


@overload
def _log_run(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
             pad: jax.Array, repeat: jax.Array, blank_id: int, keep: Literal[True]
             ) -> tuple[jax.Array, jax.Array, _States, jax.Array]: ...
@overload
def _log_run(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
             pad: jax.Array, repeat: jax.Array, blank_id: int, keep: bool
             ) -> tuple[jax.Array, jax.Array, _States | None, jax.Array]: ...
def _log_run(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
             pad: jax.Array, repeat: jax.Array, blank_id: int, keep: bool
             ) -> tuple[jax.Array, jax.Array, _States | None, jax.Array]:
  """The log-space recursion: (loss, P_final, stacked states or None, logprobs)."""
  logprobs, lp_emit, lp_blank = _log_probs(logits, labels, blank_id)
  (P, E), states = _forward(lp_emit, lp_blank, pad.T, eps, repeat, keep=keep)
  P_final = _finish(P, E)
  return -_pick(P_final, lengths), P_final, states, logprobs


def _log_backward(blank_id: int, logprobs: jax.Array, alpha_blank: jax.Array,
                  alpha_emit: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
                  pad: jax.Array, repeat: jax.Array, eps_perturbed: bool, ct_loss: jax.Array,
                  ct_blank: jax.Array | None = None, ct_emit: jax.Array | None = None
                  ) -> tuple[jax.Array, jax.Array | None]:
  """The adjoint of the log-space recursion: (∂/∂logits, per-sequence ∂/∂ε or None).

  ``alpha_blank``/``alpha_emit`` are the states after every frame (the last blank row before
  the final transition); ``ct_blank``/``ct_emit`` the cotangents of the returned α's (whose
  last blank row is after it), or ``None``.
  """
  T, batch, n = alpha_emit.shape
  dtype = alpha_emit.dtype
  eps_r, eps_nr = eps * repeat, eps * (1.0 - repeat)
  pad_t = pad.T
  # Seed: the loss is −P_final[L]; the returned α_blank[T−1] is P_final itself.
  g_final = -ct_loss[:, None] * jax.nn.one_hot(lengths, n + 1, dtype=dtype)
  if ct_blank is not None:
    g_final = g_final + ct_blank[-1]
  P_last, E_last = alpha_blank[-1], alpha_emit[-1]
  w_p, w_e = _weights(P_last[:, 1:], E_last)
  gP = jnp.concatenate([g_final[:, :1], g_final[:, 1:] * w_p], axis=1)
  gE = g_final[:, 1:] * w_e
  if ct_emit is not None:
    gE = gE + ct_emit[-1]
  P_init, E_init = _init(batch, n, eps, dtype)

  def body(carry: tuple[jax.Array, jax.Array, jax.Array], t: jax.Array
           ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    gP_next, gE_next, g_eps = carry  # adjoints of the state after frame t
    has_prev = t > 0
    prev = jnp.maximum(t - 1, 0)
    P = jnp.where(has_prev, lax.dynamic_index_in_dim(alpha_blank, prev, keepdims=False),
                  P_init)
    E = jnp.where(has_prev, lax.dynamic_index_in_dim(alpha_emit, prev, keepdims=False),
                  E_init)
    is_pad = lax.dynamic_index_in_dim(pad_t, t, keepdims=False)[:, None]
    # P1 = the states after the frame-free end-of-label transitions.
    w_pp, w_pe = _weights(P[:, 1:], E + eps_r)
    P1 = jnp.concatenate([P[:, :1], _lae(P[:, 1:], E + eps_r)], axis=1)
    w_e1, w_ee = _weights(P1[:, :-1], E)  # E'[n] = le[n] + lae(P1[n], E[n])
    w_b1, w_be = _weights(P1[:, 1:], E + eps_nr)  # P'[n+1] = lb + lae(P1[n+1], E[n] + …)
    gP1 = (jnp.concatenate([gP_next[:, :1], gP_next[:, 1:] * w_b1], axis=1)
           + jnp.pad(gE_next * w_e1, ((0, 0), (0, 1))))
    gE = gP_next[:, 1:] * w_be + gE_next * w_ee + gP1[:, 1:] * w_pe
    gP = jnp.concatenate([gP1[:, :1], gP1[:, 1:] * w_pp], axis=1)
    zero = jnp.zeros((), dtype)
    g_le = jnp.where(is_pad, zero, gE_next)
    g_lb = jnp.where(is_pad[:, 0], zero, jnp.sum(gP_next, axis=1))
    gP = jnp.where(is_pad, gP_next, gP)
    gE = jnp.where(is_pad, gE_next, gE)
    if eps_perturbed:
      step_eps = (jnp.sum(gP1[:, 1:] * w_pe * repeat, axis=1)
                  + jnp.sum(gP_next[:, 1:] * w_be * (1.0 - repeat), axis=1))
      g_eps = g_eps + jnp.where(is_pad[:, 0], zero, step_eps)
    # The cotangents of the α's returned for frame t − 1 join the adjoint of that state.
    if ct_blank is not None:
      ct = lax.dynamic_index_in_dim(ct_blank, prev, keepdims=False)
      gP = gP + jnp.where(has_prev, ct, zero)
    if ct_emit is not None:
      ct = lax.dynamic_index_in_dim(ct_emit, prev, keepdims=False)
      gE = gE + jnp.where(has_prev, ct, zero)
    return (gP, gE, g_eps), (g_le, g_lb)

  (gP0, gE0, g_eps), (g_le, g_lb) = lax.scan(
      body, (gP, gE, jnp.zeros((batch,), dtype)), jnp.arange(T), reverse=True)
  g_logits = _logit_grad(logprobs, labels, blank_id, g_le, g_lb)
  if not eps_perturbed:
    return g_logits, None
  # The initial states other than P[0] are ε itself.
  return g_logits, g_eps + jnp.sum(gP0[:, 1:], axis=1) + jnp.sum(gE0, axis=1)


def _logit_grad(logprobs: jax.Array, labels: jax.Array, blank_id: int, g_le: jax.Array,
                g_lb: jax.Array) -> jax.Array:
  """Through the log-softmax: G − softmax·ΣG, G the adjoint of the log-probabilities, given on
  the labels' classes (g_le (T, B, N)) and the blank (g_lb (T, B)): the labels go to their
  classes by a one-hot product."""
  g_le = jnp.transpose(g_le, (1, 0, 2))  # (B, T, N)
  g_lb = g_lb.T  # (B, T)
  onehot = jax.nn.one_hot(labels, logprobs.shape[-1], dtype=g_le.dtype)  # (B, N, K)
  G = jnp.einsum("btn,bnk->btk", g_le, onehot)
  G = G.at[:, :, blank_id].add(g_lb)
  total = jnp.sum(g_le, axis=2) + g_lb
  return G - jnp.exp(logprobs) * total[:, :, None]


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _ctc_alphas(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
                pad: jax.Array, repeat: jax.Array, blank_id: int
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(−log p (B,), α_blank (T, B, N+1), α_emit (T, B, N)) by the log-space recursion.

  ``logits`` (B, T, K) in the compute dtype, ``eps`` a scalar, ``labels`` (B, N) valid class
  indices, ``lengths`` (B,), ``pad`` (B, T) bool, ``repeat`` (B, N) in {0, 1}.
  """
  loss, P_final, (alpha_blank, alpha_emit), _ = _log_run(logits, eps, labels, lengths, pad,
                                                         repeat, blank_id, keep=True)
  return loss, alpha_blank.at[-1].set(P_final), alpha_emit


class _AlphasResiduals(NamedTuple):
  """What ``_ctc_alphas``'s backward pass reads: ``_log_backward``'s arguments after
  ``blank_id`` and before the cotangents."""
  logprobs: jax.Array  # (B, T, K)
  alpha_blank: jax.Array  # (T, B, N+1), the last row before the final transition
  alpha_emit: jax.Array  # (T, B, N)
  eps: jax.Array
  labels: jax.Array
  lengths: jax.Array
  pad: jax.Array
  repeat: jax.Array
  eps_perturbed: bool


def _ctc_alphas_fwd(logits_p: CustomVJPPrimal, eps_p: CustomVJPPrimal,
                    labels_p: CustomVJPPrimal, lengths_p: CustomVJPPrimal,
                    pad_p: CustomVJPPrimal, repeat_p: CustomVJPPrimal, blank_id: int
                    ) -> tuple[tuple[jax.Array, jax.Array, jax.Array], _AlphasResiduals]:
  eps_perturbed = eps_p.perturbed
  logits, eps, labels, lengths, pad, repeat = (
      x.value for x in (logits_p, eps_p, labels_p, lengths_p, pad_p, repeat_p))
  loss, P_final, (alpha_blank, alpha_emit), logprobs = _log_run(
      logits, eps, labels, lengths, pad, repeat, blank_id, keep=True)
  # The backward pass needs only the α's: the log-probabilities cancel out of its weights.
  residuals = _AlphasResiduals(logprobs, alpha_blank, alpha_emit, eps, labels, lengths, pad,
                               repeat, eps_perturbed)
  return (loss, alpha_blank.at[-1].set(P_final), alpha_emit), residuals


def _unless_zero(ct: Any) -> jax.Array | None:
  return None if isinstance(ct, SymbolicZero) else ct


def _ctc_alphas_bwd(blank_id: int, residuals: _AlphasResiduals, cotangents: tuple[Any, Any, Any]
                    ) -> tuple[jax.Array, jax.Array | None, None, None, None, None]:
  ct_loss, ct_blank, ct_emit = cotangents
  logprobs, alpha_blank, alpha_emit, eps = residuals[:4]
  if isinstance(ct_loss, SymbolicZero):
    ct_loss = jnp.zeros(alpha_emit.shape[1:2], alpha_emit.dtype)
  g_logits, g_eps = _log_backward(blank_id, *residuals, ct_loss, _unless_zero(ct_blank),
                                  _unless_zero(ct_emit))
  if g_eps is not None:
    g_eps = jnp.sum(g_eps).reshape(eps.shape).astype(eps.dtype)
  return g_logits, g_eps, None, None, None, None


_ctc_alphas.defvjp(_ctc_alphas_fwd, _ctc_alphas_bwd, symbolic_zeros=True)


# --------------------------------------------------------------------------------------------
# The same lattice in probability space, rescaled every frame: the fast path of ctc_loss.
# Interleaved as the usual 2N + 1 CTC states (s = 2n the blank state P[n], s = 2n + 1 the label
# state E[n]) and with a = e^ε, the recursion above is, in probabilities,
#   α'[s] = q_t(s)·(α[s] + w1[s] α[s − 1] + w2[s] α[s − 2]),
# q_t(s) the probability of the state's class at frame t, w1 = 1 + a into a blank state
# (P1's two ε-weighted routes from E[n − 1] add up), 1 into a label state; w2 = e^{ε r} for
# the skip E[n − 1] → E[n] (a for a repeated label), 0 into a blank state. Emission
# probabilities are divided by their largest value in the frame (m_t), and the states by
# their sum c_t after every frame, so nothing under- or overflows where the log-space
# recursion would not: log p = log(α̂_T[2L] + α̂_T[2L − 1]) + Σ_t (log c_t + m_t − LSE_t),
# and no exp or log is evaluated per state and frame. A sequence whose probability underflows
# anyway (every alignment of a frame below 1e-38 of the frame's likeliest state), or an
# impossible one (whose optax value is the finite ≈ −k·ε), comes out non-finite, and the
# batch is then recomputed in log space (the ``lax.cond`` in ctc_loss).
#
# The backward pass propagates posteriors γ_t(s), the probability that the alignment is in
# state s at frame t: γ_{t−1}(s') = α̂_{t−1}(s') Σ_s w(s' → s) γ_t(s) / A_t(s), with A_t(s) the
# state's incoming mass from the previous frame: fractions of a convex split, which cannot
# underflow where α·β/p can. ∂ log p / ∂ log q_t(s) = γ_t(s).
# --------------------------------------------------------------------------------------------

def _down(x: jax.Array, k: int) -> jax.Array:
  """x[s − k] at s (0 for s < k), along the last axis."""
  return jnp.pad(x[:, :-k], ((0, 0), (k, 0)))


def _up(x: jax.Array, k: int) -> jax.Array:
  """x[s + k] at s (0 past the end), along the last axis."""
  return jnp.pad(x[:, k:], ((0, 0), (0, k)))


def _incoming(alpha: jax.Array, w1: jax.Array, w2: jax.Array) -> jax.Array:
  return alpha + w1 * _down(alpha, 1) + w2 * _down(alpha, 2)


def _prob_forward(q: jax.Array, pad: jax.Array, alpha0: jax.Array, w1: jax.Array,
                  w2: jax.Array, keep: bool) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """Rescaled α recursion over time: q (T, B, S), pad (T, B) bool.

  Returns the final α̂ (B, S), the normalisers c (T, B) (1 on padded frames) and, with
  ``keep``, the α̂ entering every frame (T, B, S).
  """
  one = jnp.ones((), q.dtype)

  # The stacked output is (c, α̂) with ``keep``, else c: a static choice mypy cannot follow
  # to the two returns below, hence Any.
  def body(alpha: jax.Array, x: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, Any]:
    q_t, pad_t = x
    nxt = q_t * _incoming(alpha, w1, w2)
    c = jnp.where(pad_t, one, jnp.sum(nxt, axis=1))
    nxt = jnp.where(pad_t[:, None], alpha, nxt * (1.0 / c)[:, None])
    return nxt, ((c, alpha) if keep else c)

  alpha, out = lax.scan(body, alpha0, (q, pad))
  if keep:
    c, before = out
    return alpha, c, before
  return alpha, out, None


def _extended(labels: jax.Array, blank_id: int) -> jax.Array:
  """The 2N + 1 state classes: blank, y_0, blank, y_1, ..., blank."""
  batch, n = labels.shape
  blanks = jnp.full((batch, n), blank_id, labels.dtype)
  pairs = jnp.stack([blanks, labels], axis=2).reshape(batch, 2 * n)
  return jnp.concatenate([pairs, jnp.full((batch, 1), blank_id, labels.dtype)], axis=1)


def _lattice(eps: jax.Array, repeat: jax.Array, dtype: Any) -> tuple[jax.Array, ...]:
  """Per-state weights w1, w2 (B, S), their ε-derivatives times the weight (d1, d2), and the
  initial α (B, S): 1 at s = 0, a elsewhere (optax's log_epsilon initial states)."""
  batch, n = repeat.shape
  a = jnp.exp(eps)
  skip = jnp.exp(eps * repeat)  # e^{ε r_n}: the weight of E[n] → E[n + 1]
  zero = jnp.zeros((batch, n), dtype)
  # Into P[n + 1] (s = 2n + 2): w1 = 1 + a; into E[n] (s = 2n + 1): w1 = 1, w2 = skip[n − 1].
  w1 = jnp.concatenate([jnp.zeros((batch, 1), dtype), jnp.stack(
      [jnp.ones((batch, n), dtype), jnp.broadcast_to(1.0 + a, (batch, n))], axis=2
  ).reshape(batch, 2 * n)], axis=1)
  w2 = jnp.concatenate([jnp.zeros((batch, 1), dtype), jnp.stack(
      [_down(skip, 1), zero], axis=2).reshape(batch, 2 * n)], axis=1)
  s = jnp.arange(2 * n + 1)
  d1 = jnp.broadcast_to(jnp.where((s % 2 == 0) & (s > 0), a, 0.0), (batch, 2 * n + 1))
  d2 = w2 * jnp.concatenate([jnp.zeros((batch, 1), dtype), jnp.stack(
      [_down(repeat, 1), zero], axis=2).reshape(batch, 2 * n)], axis=1)
  alpha0 = jnp.full((batch, 2 * n + 1), a, dtype).at[:, 0].set(1.0)
  return w1, w2, d1.astype(dtype), d2, alpha0  # d1 = d(1 + a)/dε, d2 = d e^{εr}/dε


# A frame whose normaliser c_t falls below this has lost up to S·1e-38/c_t of its mass to
# underflow: the batch is recomputed in log space (see above).
_SMALLEST_FRAME = 1e-25


def _prob_inputs(logits: jax.Array, ext: jax.Array) -> tuple[jax.Array, jax.Array]:
  """LSE (B, T) and q (T, B, S), the probabilities of the states' classes per frame."""
  lse = jax.nn.logsumexp(logits, axis=-1)  # (B, T)
  x = jnp.take_along_axis(logits, ext[:, None, :], axis=2)  # (B, T, S)
  return lse, jnp.transpose(jnp.exp(x - lse[:, :, None]), (1, 0, 2))


def _final(alpha: jax.Array, lengths: jax.Array) -> jax.Array:
  """α̂_T[2L] + α̂_T[2L − 1] (optax's last P[L] ← lae(P[L], E[L − 1]))."""
  last = jnp.take_along_axis(alpha, 2 * lengths[:, None], axis=1)[:, 0]
  label = jnp.take_along_axis(alpha, jnp.maximum(2 * lengths - 1, 0)[:, None], axis=1)[:, 0]
  return last + jnp.where(lengths > 0, label, jnp.zeros((), label.dtype))


# What the posterior recursion reads (``_prob_backward``'s arguments from ``lse`` to
# ``picked``): LSE (B, T), w1, w2, d1, d2 (B, S), the final α̂ (B, S), the α̂ entering every
# frame (T, B, S) and the final mass (B,).
_ProbSaved = tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array,
                   jax.Array]


@overload
def _prob_run(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
              pad: jax.Array, repeat: jax.Array, blank_id: int, keep: Literal[True]
              ) -> tuple[jax.Array, _ProbSaved]: ...
@overload
def _prob_run(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
              pad: jax.Array, repeat: jax.Array, blank_id: int, keep: bool
              ) -> tuple[jax.Array, tuple[jax.Array | None, ...]]: ...
def _prob_run(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
              pad: jax.Array, repeat: jax.Array, blank_id: int, keep: bool
              ) -> tuple[jax.Array, tuple[jax.Array | None, ...]]:
  """The rescaled recursion: (loss (B,), what ``_prob_backward`` reads; α̂ entering each
  frame None without ``keep``)."""
  ext = _extended(labels, blank_id)
  lse, q = _prob_inputs(logits, ext)
  w1, w2, d1, d2, alpha0 = _lattice(eps, repeat, logits.dtype)
  alpha, c, before = _prob_forward(q, pad.T, alpha0, w1, w2, keep)
  picked = _final(alpha, lengths)
  loss = -(jnp.log(picked) + jnp.sum(jnp.log(c), axis=0))
  # inf (so that ctc_loss recomputes in log space) where a frame may have lost mass.
  loss = jnp.where(jnp.all(c >= _SMALLEST_FRAME, axis=0), loss, jnp.inf)
  return loss, (lse, w1, w2, d1, d2, alpha, before, picked)


def _prob_backward(blank_id: int, logits: jax.Array, labels: jax.Array, lengths: jax.Array,
                   pad: jax.Array, eps_perturbed: bool, lse: jax.Array, w1: jax.Array,
                   w2: jax.Array, d1: jax.Array, d2: jax.Array, alpha: jax.Array,
                   before: jax.Array, picked: jax.Array, ct_loss: jax.Array
                   ) -> tuple[jax.Array, jax.Array | None]:
  """The posterior recursion: (∂/∂logits, per-sequence ∂/∂ε or None)."""
  T, batch, S = before.shape
  dtype = before.dtype
  zero = jnp.zeros((), dtype)
  # Seed: the final mass α̂_T[2L] + α̂_T[2L − 1], shared in proportion, times −ct.
  scale = jnp.where(picked > 0, -ct_loss / jnp.where(picked > 0, picked, 1.0), zero)
  s = jnp.arange(S, dtype=lengths.dtype)[None, :]
  ends = (s == 2 * lengths[:, None]) | (s == 2 * lengths[:, None] - 1)
  gamma = jnp.where(ends, alpha * scale[:, None], zero)
  w1_up, w2_up = _up(w1, 1), _up(w2, 2)
  tiny = jnp.asarray(jnp.finfo(dtype).tiny, dtype)

  def body(carry: tuple[jax.Array, jax.Array], x: tuple[jax.Array, jax.Array]
           ) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    gamma, g_eps = carry  # −ct·γ_t: the adjoint of the frame-t state log-probabilities
    alpha_prev, pad_t = x
    # γ_t(s) = 0 wherever A_t(s) = 0 (α̂_t(s) = q·A/c), so the floor only avoids 0/0.
    r = gamma / jnp.maximum(_incoming(alpha_prev, w1, w2), tiny)
    prev = alpha_prev * (r + w1_up * _up(r, 1) + w2_up * _up(r, 2))
    out = jnp.where(pad_t[:, None], zero, gamma)
    prev = jnp.where(pad_t[:, None], gamma, prev)
    if eps_perturbed:
      step = jnp.sum(r * (d1 * _down(alpha_prev, 1) + d2 * _down(alpha_prev, 2)), axis=1)
      g_eps = g_eps + jnp.where(pad_t, zero, step)
    return (prev, g_eps), out

  (gamma0, g_eps), g = lax.scan(body, (gamma, jnp.zeros((batch,), dtype)), (before, pad.T),
                                reverse=True)
  # Label states (odd s) to their classes, blank states (even s) to the blank.
  g_logits = _logit_grad(logits - lse[:, :, None], labels, blank_id, g[:, :, 1::2],
                         jnp.sum(g[:, :, 0::2], axis=2))
  if not eps_perturbed:
    return g_logits, None
  # The initial states other than s = 0 are a = e^ε: d/dε of their log is 1.
  return g_logits, g_eps + jnp.sum(gamma0[:, 1:], axis=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7,))
def _ctc(logits: jax.Array, eps: jax.Array, labels: jax.Array, lengths: jax.Array,
         pad: jax.Array, repeat: jax.Array, tolerated: jax.Array, blank_id: int) -> jax.Array:
  """−log p(labels | logits) (B,): the rescaled recursion, or the log-space one for the batch
  if a sequence's value is not finite (unless ``tolerated``, (B,) bool: zero_infinity's
  impossible sequences, whose value is replaced anyway)."""
  operands = (logits, eps, labels, lengths, pad, repeat)
  loss = _prob_run(*operands, blank_id, keep=False)[0]

  def exact(_: jax.Array, logits: jax.Array, eps: jax.Array, labels: jax.Array,
            lengths: jax.Array, pad: jax.Array, repeat: jax.Array) -> jax.Array:
    return _log_run(logits, eps, labels, lengths, pad, repeat, blank_id, keep=False)[0]

  return lax.cond(jnp.all(jnp.isfinite(loss) | tolerated), lambda loss, *_: loss, exact, loss,
                  *operands)


class _CtcResiduals(NamedTuple):
  """``_ctc``'s residuals: the gradients of the per-sequence losses (unit cotangent)."""
  g_logits: jax.Array  # (B, T, K)
  g_eps: jax.Array | None  # (B,), None unless ``log_epsilon`` is differentiated
  eps_shape: tuple[int, ...]


def _ctc_fwd(logits_p: CustomVJPPrimal, eps_p: CustomVJPPrimal, labels_p: CustomVJPPrimal,
             lengths_p: CustomVJPPrimal, pad_p: CustomVJPPrimal, repeat_p: CustomVJPPrimal,
             tolerated: CustomVJPPrimal, blank_id: int) -> tuple[jax.Array, _CtcResiduals]:
  # The per-sequence gradient of the loss is computed here, with a unit cotangent, so that
  # the choice between the two recursions is one lax.cond with the same outputs either way
  # (∂ℓ_b/∂logits_b for each b; the backward pass scales it by the cotangent).
  eps_perturbed = eps_p.perturbed
  operands: tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array] = tuple(
      x.value for x in (logits_p, eps_p, labels_p, lengths_p, pad_p, repeat_p))
  logits, eps, labels, lengths, pad, repeat = operands
  ones = jnp.ones(lengths.shape, logits.dtype)
  loss, saved = _prob_run(*operands, blank_id, keep=True)

  def fast(loss: jax.Array, saved: _ProbSaved, *_: jax.Array
           ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    g_logits, g_eps = _prob_backward(blank_id, logits, labels, lengths, pad, eps_perturbed,
                                     *saved, ones)
    return loss, g_logits, g_eps

  def exact(_: jax.Array, __: _ProbSaved, logits: jax.Array, eps: jax.Array, labels: jax.Array,
            lengths: jax.Array, pad: jax.Array, repeat: jax.Array
            ) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    loss, _, (alpha_blank, alpha_emit), logprobs = _log_run(
        logits, eps, labels, lengths, pad, repeat, blank_id, keep=True)
    g_logits, g_eps = _log_backward(blank_id, logprobs, alpha_blank, alpha_emit, eps, labels,
                                    lengths, pad, repeat, eps_perturbed, ones)
    return loss, g_logits, g_eps

  ok = jnp.all(jnp.isfinite(loss) | tolerated.value)
  loss, g_logits, g_eps = lax.cond(ok, fast, exact, loss, saved, *operands)
  return loss, _CtcResiduals(g_logits, g_eps, eps.shape)


def _ctc_bwd(blank_id: int, residuals: _CtcResiduals, ct_loss: Any
             ) -> tuple[jax.Array | None, jax.Array | None, None, None, None, None, None]:
  g_logits, g_eps, eps_shape = residuals
  if isinstance(ct_loss, SymbolicZero):
    return None, None, None, None, None, None, None
  g_logits = g_logits * ct_loss[:, None, None]
  if g_eps is not None:
    g_eps = jnp.sum(g_eps * ct_loss).reshape(eps_shape).astype(g_logits.dtype)
  return g_logits, g_eps, None, None, None, None, None


_ctc.defvjp(_ctc_fwd, _ctc_bwd, symbolic_zeros=True)


# --------------------------------------------------------------------------------------------
# Public functions.
# --------------------------------------------------------------------------------------------

def _inputs(fn: str, logits: ArrayLike, logit_paddings: ArrayLike, labels: ArrayLike,
            label_paddings: ArrayLike, blank_id: int
            ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  x = _numerics.check_floating(fn, "logits", logits)
  y = _numerics.check_integer(fn, "labels", labels)
  x_pad = jnp.asarray(logit_paddings)
  y_pad = jnp.asarray(label_paddings)
  if x.ndim != 3:
    raise ValueError(f"{fn}: `logits` must have shape (B, T, K), got {x.shape}")
  if y.ndim != 2:
    raise ValueError(f"{fn}: `labels` must have shape (B, N), got {y.shape}")
  if y.shape[0] != x.shape[0]:
    raise ValueError(f"{fn}: `labels` must have the batch size of `logits`, got "
                     f"logits.shape={x.shape} and labels.shape={y.shape}")
  if x_pad.shape != x.shape[:2]:
    raise ValueError(f"{fn}: `logit_paddings` must have shape (B, T) = {x.shape[:2]}, got "
                     f"logits.shape={x.shape} and logit_paddings.shape={x_pad.shape}")
  if y_pad.shape != y.shape:
    raise ValueError(f"{fn}: `label_paddings` must have the shape of `labels`, got "
                     f"labels.shape={y.shape} and label_paddings.shape={y_pad.shape}")
  num_classes = x.shape[2]
  if not isinstance(blank_id, int) or isinstance(blank_id, bool) or not (
      0 <= blank_id < num_classes):
    raise ValueError(f"{fn}(blank_id=...) must be an int in [0, {num_classes}), got "
                     f"{blank_id!r}")
  return x, x_pad, y, y_pad


def _ctc_common(fn: str, logits: ArrayLike, logit_paddings: ArrayLike, labels: ArrayLike,
                label_paddings: ArrayLike, blank_id: int, log_epsilon: ArrayLike,
                zero_infinity: bool, with_alphas: bool) -> Any:
  x, x_pad, y, y_pad = _inputs(fn, logits, logit_paddings, labels, label_paddings, blank_id)
  out_dtype = x.dtype
  dtype, (x,) = _numerics.upcast(x)
  num_classes = x.shape[2]
  n = y.shape[1]
  # Padding indicators are 0 or 1 (optax's convention); anything above ½ counts as padded.
  pad = x_pad > 0.5
  label_pad = y_pad > 0.5
  lengths = n - jnp.sum(label_pad, axis=1, dtype=jnp.int32)
  in_label = jnp.arange(n, dtype=lengths.dtype)[None, :] < lengths[:, None]
  # Bad labels (contract 6): outside [0, K) or the blank, inside the sequence's length.
  label_ok = (y >= 0) & (y < num_classes) & (y != blank_id)
  _numerics.debug_check_labels(fn, "labels", y, label_ok | ~in_label,
                               f"in [0, {num_classes}) and not blank_id={blank_id}")
  valid = jnp.all(label_ok | ~in_label, axis=1)
  substitute = (blank_id + 1) % num_classes
  safe = jnp.where(label_ok, y, substitute).astype(jnp.int32)
  # r[n] = [labels[n] == labels[n+1]] on the labels as given (optax's), 0 after the last.
  repeat = jnp.pad((y[:, :-1] == y[:, 1:]).astype(dtype), ((0, 0), (0, 1)))
  eps = jnp.asarray(log_epsilon, dtype)
  frames = jnp.sum(~pad, axis=1, dtype=jnp.int32)
  repeats = jnp.sum((y[:, :-1] == y[:, 1:]) & in_label[:, 1:], axis=1, dtype=jnp.int32)
  feasible = frames >= lengths + repeats
  operands = (x, eps, safe, lengths, pad, repeat)
  if with_alphas:
    loss, *alphas = _ctc_alphas(*operands, blank_id)
  else:
    alphas = []
    loss = _ctc(*operands, zero_infinity & ~feasible, blank_id)
  # Never negative (optax #1771): rounding can put −log p a few ulps below 0; the value is
  # clipped, the gradient is the recursion's.
  loss = loss + lax.stop_gradient(jnp.maximum(loss, 0.0) - loss)
  if zero_infinity:
    # PyTorch's zero_infinity: a sequence no alignment can produce gives 0 and zero gradient:
    # fewer frames than labels plus the blanks forced between repeats, or a value at least
    # −log_epsilon (optax's lattice's stand-in for +inf: every path takes an impossible
    # transition, e.g. a label of probability 0 at every frame), or +inf.
    impossible = ~feasible | (loss >= -eps) | jnp.isposinf(loss)
    loss = jnp.where(impossible, jnp.zeros((), dtype), loss)
  loss = _numerics.nan_where_invalid(loss, valid).astype(out_dtype)
  if not with_alphas:
    return loss
  return (loss, *(a.astype(out_dtype) for a in alphas))


_BOUNDS = {"log_epsilon": _numerics.Range(high=0.0, high_open=True)}


@_numerics.loss_jit(static=("blank_id", "zero_infinity"), bounds=_BOUNDS)
def ctc_loss_with_forward_probs(logits: ArrayLike, logit_paddings: ArrayLike,
                                labels: ArrayLike, label_paddings: ArrayLike, *,
                                blank_id: int = 0, log_epsilon: ArrayLike = -1e5,
                                zero_infinity: bool = False
                                ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """CTC loss and the forward (α) log-probabilities, optax's numbers.

  For logits x (B, T, K), a label sequence y of length L and the blank φ, the loss of a
  sequence is

  .. math::
    \\ell = -\\log \\sum_{\\pi \\in \\mathcal{B}^{-1}(y)} \\prod_{t} p_t(\\pi_t), \\qquad
    p_t = \\operatorname{softmax}(x_t)

  over the alignments π of length T (the unpadded frames) that collapse to y once repeats are
  merged and blanks removed (Graves et al. 2006). It is computed by the forward recursion on
  optax's lattice of blank states P[n] (n labels emitted, n = 0..N) and label states E[n]
  (emitting label n), in log space, where ``log_epsilon`` stands for log 0 (an impossible
  transition, e.g. between two equal labels without a blank):

  .. math::
    P_1[n{+}1] &= \\operatorname{lae}(P[n{+}1],\\, E[n] + \\varepsilon r_n), \\quad
    E'[n] = \\log p_t(y_n) + \\operatorname{lae}(P_1[n], E[n]), \\\\
    P'[n{+}1] &= \\log p_t(\\phi) + \\operatorname{lae}(P_1[n{+}1],\\,
      E[n] + \\varepsilon (1 - r_n)), \\quad P'[0] = \\log p_t(\\phi) + P[0]

  with lae = log-add-exp and r_n = [y_n = y_{n+1}]; padded frames keep the state; after the
  last frame P[n+1] ← lae(P[n+1], E[n]) and ℓ = −P[L].

  Args:
    logits: floating (B, T, K); class ``blank_id`` is the blank.
    logit_paddings: (B, T), 1 (or True) at padded frames, 0 elsewhere.
    labels: integer (B, N), right-padded label sequences.
    label_paddings: (B, N), 1 at padded labels; each row zeros then ones.
    blank_id: static int in [0, K), the blank class.
    log_epsilon: traced float < 0, the stand-in for log 0 (optax's −1e5).
    zero_infinity: static; PyTorch's option: a sequence that no alignment can produce (fewer
      unpadded frames than L plus the number of adjacent repeats in y, or every path of
      probability 0) gives loss 0 and a zero gradient instead of its huge value
      (≈ −k·log_epsilon, k the number of impossible transitions, or inf).

  Returns:
    ``(loss, logalpha_blank, logalpha_emit)``: the loss (B,), and the α's (T, B, N+1) and
    (T, B, N) after every frame (the last blank row after the final transition), all in the
    logits' dtype (bf16/fp16 computed in float32).

  Gradient: hand-written (a ``custom_vjp``): ∂ℓ/∂x_{t,k} = p_t(k)·Γ_t − γ_t(k), with γ_t(k)
  the posterior probability that frame t emits k and Γ_t = Σ_k γ_t(k) (1 on unpadded
  frames, 0 on padded ones), from the adjoint of the forward recursion run backwards over
  time (the β recursion in probability space, each log-add-exp contributing its weights
  σ(a − b), σ(b − a)); cotangents of the returned α's and of ``log_epsilon`` are supported.
  Reverse mode only: ``jax.jvp`` and forward-over-reverse raise; the loss is smooth in the
  logits (no kink), but a Hessian needs ``jax.jacrev`` of ``jax.grad``, which is not
  available either (the backward pass is itself not differentiable).

  Edge cases:
    The loss is never negative: rounding can put −log p a few ulps below 0 in float32
    (optax #1771 gives −8e-8, then NaN downstream); the value is clipped at 0, the gradient
    is unchanged. A label outside [0, K), or equal to ``blank_id``, inside a sequence's
    length gives NaN for that sequence with a zero gradient and fails ``checkify`` naming it
    (labels at padded positions are ignored). An impossible sequence without
    ``zero_infinity`` gives optax's finite value ≈ 1e5·k. A padded frame contributes nothing
    to the value or the gradient. −inf logits are allowed (probability 0).

  References:
    A. Graves, S. Fernández, F. Gomez, J. Schmidhuber, "Connectionist Temporal
    Classification: Labelling Unsegmented Sequence Data with Recurrent Neural Networks", ICML
    2006; optax ``optax.losses.ctc_loss_with_forward_probs``; PyTorch
    ``torch.nn.functional.ctc_loss`` (``zero_infinity``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.zeros((1, 3, 3))  # 3 frames, uniform over {blank, 1, 2}
    >>> loss, alpha_blank, alpha_emit = jaxloss.ctc_loss_with_forward_probs(
    ...     logits, jnp.zeros((1, 3)), jnp.array([[1, 2]]), jnp.zeros((1, 2)))
    >>> print(f"{loss[0]:.4f}")  # 5 of the 27 alignments give [1, 2]
    1.6864
    >>> alpha_blank.shape, alpha_emit.shape
    ((3, 1, 3), (3, 1, 2))
  """
  return _ctc_common("ctc_loss_with_forward_probs", logits, logit_paddings, labels,
                     label_paddings, blank_id, log_epsilon, zero_infinity, True)


@_numerics.loss_jit(static=("blank_id", "zero_infinity"), bounds=_BOUNDS)
def ctc_loss(logits: ArrayLike, logit_paddings: ArrayLike, labels: ArrayLike,
             label_paddings: ArrayLike, *, blank_id: int = 0, log_epsilon: ArrayLike = -1e5,
             zero_infinity: bool = False) -> jax.Array:
  """CTC loss per sequence (Graves et al. 2006), optax's numbers.

  .. math::
    \\ell = -\\log \\sum_{\\pi \\in \\mathcal{B}^{-1}(y)} \\prod_{t} p_t(\\pi_t)

  The recursion, arguments, gradient and edge cases are those of
  :func:`ctc_loss_with_forward_probs`; without differentiation the α's are not stacked.

  Args:
    logits: floating (B, T, K); class ``blank_id`` is the blank.
    logit_paddings: (B, T), 1 at padded frames.
    labels: integer (B, N), right-padded.
    label_paddings: (B, N), 1 at padded labels.
    blank_id: static int in [0, K).
    log_epsilon: traced float < 0, the stand-in for log 0.
    zero_infinity: static; an impossible sequence gives 0 and a zero gradient (PyTorch's).

  Returns:
    The loss (B,), in the logits' dtype. Never negative.

  Gradient: the hand-written forward–backward (α·β) gradient p_t(k) − γ_t(k) on unpadded
  frames; reverse mode only (``jax.jvp`` raises).

  Edge cases:
    As :func:`ctc_loss_with_forward_probs`.

  References:
    A. Graves, S. Fernández, F. Gomez, J. Schmidhuber, "Connectionist Temporal
    Classification", ICML 2006; optax ``optax.losses.ctc_loss``; PyTorch
    ``torch.nn.functional.ctc_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.zeros((2, 3, 3))
    >>> labels = jnp.array([[1, 2], [1, 1]])
    >>> loss = jaxloss.ctc_loss(logits, jnp.zeros((2, 3)), labels, jnp.zeros((2, 2)))
    >>> print(jnp.round(loss, 4))  # −log 5/27, −log 1/27 (only 1, blank, 1)
    [1.6864 3.2958]
  """
  return _ctc_common("ctc_loss", logits, logit_paddings, labels, label_paddings, blank_id,
                     log_epsilon, zero_infinity, False)
