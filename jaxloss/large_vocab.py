"""Large-vocabulary cross-entropy: the output layer's loss without the (N, V) logits.

``linear_softmax_cross_entropy(hidden, weight, labels)`` is the cross-entropy of the logits
``hidden @ weight (+ bias)`` computed one vocabulary chunk at a time, forward and backward, so
that its temporary memory is O(N·chunk + N·D) instead of O(N·V) (Wijmans et al. 2024, "Cut Your
Losses in Large-Vocabulary Language Models"; Liger-Kernel's fused linear cross-entropy).
``vocab_parallel_linear_softmax_cross_entropy`` is the same loss with the weight sharded over the
vocabulary on a device mesh (Shoeybi et al. 2019, Megatron-LM, section 3).

Both are ``jax.custom_vjp`` functions, the one exception to the library's ``custom_jvp`` rule
(DESIGN contract 3): the backward pass recomputes each chunk's logits from the saved log-sum-exp,
which a forward-mode rule cannot express. They are reverse-mode only; Hessians go through
``jax.jacrev(jax.grad(...))``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

# chunk_size=None: a target of the widest power of two in [_MIN_CHUNK, _MAX_CHUNK] whose float32
# (N, chunk) logits fit _CHUNK_BYTES, then the largest divisor of V in [target/2, target] if there
# is one (no shifted last chunk). Tuned with bench/large_vocab.py on CPU: at N=2048, V=32000
# chunk 4000 ran forward + backward 1.10-1.16x the naive time (its four products alone 1.07-1.08x),
# 3200-8000 the same within noise, 2000 and 16000 ~1.17x, 1000 ~1.4x.
_CHUNK_BYTES = 32 * 2**20
_MIN_CHUNK = 256
_MAX_CHUNK = 4096

_BOUNDS = {"z_loss": _numerics.Range(low=0.0), "label_smoothing": _numerics.Range(0.0, 1.0),
           "logit_soft_cap": _numerics.Range(low=0.0, low_open=True)}


def _default_chunk(n: int, v: int) -> int:
  target = _MAX_CHUNK
  while target > _MIN_CHUNK and n * target * 4 > _CHUNK_BYTES:
    target //= 2
  if v <= target:
    return v
  divisors = [c for c in range(target, target // 2 - 1, -1) if v % c == 0]
  return divisors[0] if divisors else target


# --------------------------------------------------------------------------------------------
# The chunked kernel: per-token log-sum-exp, target logit and sum of logits, as a custom_vjp.
# --------------------------------------------------------------------------------------------

def _chunk(v: int, chunk: int, k: jax.Array) -> tuple[jax.Array, jax.Array | None]:
  """Start column of chunk ``k`` and which of its columns are new (None: all of them).

  The last chunk of a vocabulary that ``chunk`` does not divide is shifted left to end at V
  (no padded copy of the weight); the columns it shares with the previous chunk are masked
  out (logit −inf, gradient 0).
  """
  start = k * chunk
  if v % chunk == 0:
    return start, None
  shifted = jnp.minimum(start, v - chunk)
  return shifted, (shifted + jnp.arange(chunk)) >= start


def _varying_axes(*arrays: jax.Array | None) -> frozenset[str]:
  """The shard_map mesh axes over which any of ``arrays`` varies (empty outside shard_map)."""
  return frozenset().union(*(jax.typeof(a).manual_axis_type.varying for a in arrays
                             if a is not None))


def _zeros(shape, dtype, axes: frozenset[str]) -> jax.Array:
  """Zeros typed as varying over ``axes``, as a loop carry inside shard_map must be."""
  z = jnp.zeros(shape, dtype)
  return lax.pcast(z, tuple(sorted(axes)), to="varying") if axes else z


def _sum_to(ct: jax.Array, primal: jax.Array) -> jax.Array:
  """A cotangent summed over the mesh axes along which its primal is replicated.

  Inside shard_map the weight's gradient varies over the batch axis and the hidden states'
  over the vocabulary axis; their primals do not, so these are all-reduced here (Megatron).
  """
  extra = _varying_axes(ct) - _varying_axes(primal)
  return lax.psum(ct, tuple(sorted(extra))) if extra else ct


def _logits(h, w, b, cap, start, chunk):
  """The chunk's float32 logits (soft-capped), and tanh(raw/cap) and raw/cap with a cap."""
  w_c = lax.dynamic_slice_in_dim(w, start, chunk, axis=1)
  # Operands in the input dtype (bf16 on the MXU / tensor cores), float32 accumulation.
  z = lax.dot_general(h, w_c, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  if b is not None:
    z = z + lax.dynamic_slice_in_dim(b, start, chunk).astype(jnp.float32)[None, :]
  if cap is None:
    return z, None, None
  u = z / cap
  t = jnp.tanh(u)  # Gemma 2's soft cap: cap·tanh(z/cap)
  return cap * t, t, u


def _stats_fwd_loop(h, w, b, labels, cap, chunk):
  n, v = h.shape[0], w.shape[1]
  f32 = jnp.float32

  def body(k, carry):
    # The weight rides in the carry behind an optimization barrier: otherwise XLA's CPU backend
    # hoists the bf16 -> float32 conversion of the *whole* weight out of the loop (DESIGN.md).
    w_k, m, s, zy, zsum = carry
    w_k = lax.optimization_barrier(w_k)
    start, fresh = _chunk(v, chunk, k)
    z, _, _ = _logits(h, w_k, b, cap, start, chunk)
    # The target logit is picked from the same z that enters the log-sum-exp (so lse >= z_y
    # holds exactly) by an (N,) gather: a one-hot select over the (N, chunk) logits would cost
    # two more passes over them (~8% of the forward time at N=2048, V=32000 on CPU).
    owned = (labels >= k * chunk) & (labels < start + chunk)  # fresh columns only
    picked = jnp.take_along_axis(z, jnp.clip(labels - start, 0, chunk - 1)[:, None], axis=1)
    zy = zy + jnp.where(owned, picked[:, 0], 0.0)
    if fresh is not None:
      z = jnp.where(fresh[None, :], z, -jnp.inf)
    m_new = jnp.maximum(m, jnp.max(z, axis=1))
    # Online log-sum-exp (Milakov & Gimelshein 2018): rescale the running sum to the new max.
    s = s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(z - m_new[:, None]), axis=1)
    zsum = zsum + jnp.sum(z if fresh is None else jnp.where(fresh[None, :], z, 0.0), axis=1)
    return w_k, m_new, s, zy, zsum

  axes = _varying_axes(h, w, b, labels, cap)
  init = (w, _zeros((n,), f32, axes) - jnp.inf, _zeros((n,), f32, axes), _zeros((n,), f32, axes),
          _zeros((n,), f32, axes))
  _, m, s, zy, zsum = lax.fori_loop(0, -(-v // chunk), body, init)
  return m + jnp.log(s), zy, zsum


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _stats(chunk, h, w, b, labels, cap):
  """Per token: log-sum-exp, target logit and sum of the (capped) logits, each (N,) float32.

  A label outside [0, V) matches no column (target logit 0): the vocabulary-parallel form
  passes every shard the labels shifted by its offset.
  """
  return _stats_fwd_loop(h, w, b, labels, cap, chunk)


def _stats_fwd(chunk, h, w, b, labels, cap):
  lse, zy, zsum = _stats_fwd_loop(h, w, b, labels, cap, chunk)
  return (lse, zy, zsum), (h, w, b, labels, cap, lse)  # only lse beyond the inputs


def _stats_bwd(chunk, residuals, cotangents):
  h, w, b, labels, cap, lse = residuals
  g_lse, g_zy, g_sum = cotangents
  v = w.shape[1]
  n_chunks = -(-v // chunk)
  f32 = jnp.float32

  def body(k, carry):
    w_k, dh, dw, db, dcap = carry
    w_k = lax.optimization_barrier(w_k)  # as in the forward loop
    # Last chunk first: the columns a shifted last chunk repeats get gradient 0 here and are
    # overwritten by their own chunk later, so no write needs to read the buffer (reading it
    # makes XLA's CPU backend widen the whole bf16 buffer to float32 and copy it).
    start, fresh = _chunk(v, chunk, n_chunks - 1 - k)
    z, t, u = _logits(h, w_k, b, cap, start, chunk)  # recomputed, never stored
    hit = (start + jnp.arange(chunk))[None, :] == labels[:, None]
    # d/dz of g_lse·lse + g_zy·z_y + g_sum·Σz = g_lse·softmax + g_zy·onehot + g_sum.
    # z − lse <= 0, but the recomputed z may round one ulp above the forward pass's: at
    # |z| ~ 1e10 an ulp is ~1000 and exp overflows, so a positive z − lse is taken as 0.
    d = z - lse[:, None]
    g = (g_lse[:, None] * jnp.exp(jnp.where(d > 0, jnp.zeros_like(d), d))
         + jnp.where(hit, g_zy[:, None], 0.0) + g_sum[:, None])
    if fresh is not None:
      g = jnp.where(fresh[None, :], g, 0.0)
    if cap is not None:
      # d(cap·tanh(r/cap))/dr = 1 − t², d/dcap = t − (r/cap)(1 − t²).
      dcap = dcap + jnp.sum(g * (t - u * (1 - t * t)))
      g = g * (1 - t * t)
    g_lo = g.astype(h.dtype)
    w_c = lax.dynamic_slice_in_dim(w_k, start, chunk, axis=1)
    dh = dh + lax.dot_general(g_lo, w_c, (((1,), (1,)), ((), ())), preferred_element_type=f32)
    # The weight's gradient is written chunk by chunk into its final (D, V) layout (stacking
    # the chunks and transposing would cost another (D, V) buffer).
    dw_c = lax.dot_general(h, g_lo, (((0,), (0,)), ((), ())), preferred_element_type=f32)
    dw = lax.dynamic_update_slice_in_dim(dw, dw_c.astype(dw.dtype), start, axis=1)
    if db is not None:
      db = lax.dynamic_update_slice_in_dim(db, jnp.sum(g, axis=0).astype(db.dtype), start, axis=0)
    return w_k, dh, dw, db, dcap

  axes = _varying_axes(h, w, b, labels, cap, lse, g_lse, g_zy, g_sum)
  init = (w, _zeros(h.shape, f32, axes), _zeros(w.shape, w.dtype, axes),
          None if b is None else _zeros(b.shape, b.dtype, axes),
          None if cap is None else _zeros((), f32, axes))
  _, dh, dw, db, dcap = lax.fori_loop(0, n_chunks, body, init)
  cts = (dh.astype(h.dtype), dw, db, None, None if cap is None else dcap.astype(cap.dtype))
  return tuple(None if ct is None else _sum_to(ct, x) for ct, x in zip(cts, (h, w, b, labels, cap)))


_stats.defvjp(_stats_fwd, _stats_bwd)


# --------------------------------------------------------------------------------------------
# Input checks and the per-token loss from the kernel's statistics (shared by both losses).
# --------------------------------------------------------------------------------------------

def _inputs(fn, hidden, weight, labels, bias, where):
  """Checked arrays; hidden and weight in their common floating dtype."""
  h = _numerics.check_floating(fn, "hidden", hidden)
  w = _numerics.check_floating(fn, "weight", weight)
  labels = _numerics.check_integer(fn, "labels", labels)
  if h.ndim != 2:
    raise ValueError(f"{fn}: `hidden` must have shape (N, D) (jax.vmap or reshape to (B·T, D) "
                     f"for more axes), got hidden.shape={h.shape}")
  if w.ndim != 2 or w.shape[0] != h.shape[1]:
    raise ValueError(f"{fn}: `hidden` (N, D) and `weight` (D, V) must share D, got "
                     f"hidden.shape={h.shape} and weight.shape={w.shape}")
  if labels.shape != h.shape[:1]:
    raise ValueError(f"{fn}: `labels` must have shape (N,) for `hidden` of shape (N, D), got "
                     f"hidden.shape={h.shape} and labels.shape={labels.shape}")
  if bias is not None:
    bias = _numerics.check_floating(fn, "bias", bias)
    if bias.shape != w.shape[1:]:
      raise ValueError(f"{fn}: `bias` must have shape (V,) for `weight` of shape (D, V), got "
                       f"weight.shape={w.shape} and bias.shape={bias.shape}")
  if where is not None:
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
      raise TypeError(f"{fn}: `where` must be a boolean mask, got {where.dtype}")
    if where.shape != labels.shape:
      raise ValueError(f"{fn}: `where` must have the shape of `labels` (N,), got "
                       f"labels.shape={labels.shape} and where.shape={where.shape}")
  dtype = jnp.promote_types(h.dtype, w.dtype)
  return h.astype(dtype), w.astype(dtype), bias, labels, where


def _chunk_size(fn: str, chunk_size: int | None, n: int, v: int) -> int:
  if chunk_size is None:
    return _default_chunk(n, v)
  if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
    raise ValueError(f"{fn}(chunk_size=...) must be a positive int or None, got {chunk_size!r}")
  return min(int(chunk_size), v)


def _hyperparameters(z_loss, label_smoothing, logit_soft_cap):
  cap = None if logit_soft_cap is None else jnp.asarray(logit_soft_cap, jnp.float32)
  return jnp.asarray(z_loss, jnp.float32), jnp.asarray(label_smoothing, jnp.float32), cap


def _kept(labels, where, ignore_index):
  """The tokens that count (None: all), from ``where`` and ``ignore_index``."""
  kept = where
  if ignore_index is not None:
    kept = labels != ignore_index if kept is None else kept & (labels != ignore_index)
  return kept


def _masked_hidden(h, kept):
  # Dropped tokens' rows are zeroed so that a NaN there cannot reach the weight's gradient
  # (0·NaN = NaN in hidden.T @ dlogits); their gradient is 0 through this where.
  return h if kept is None else jnp.where(kept[:, None], h, jnp.zeros((), h.dtype))


def _bad_labels(fn, labels, kept, v):
  """The kept tokens whose label is outside [0, V); ``checkify`` names the first.

  Called before any shard_map: checkify (jax 0.10.2) turns the errors raised before a shard_map
  into per-device ones, and ``err.get()`` crashes on a mix of those with one raised after it.
  """
  bad = (labels < 0) | (labels >= v)
  if kept is not None:
    bad = bad & kept
  _numerics.debug_check_labels(fn, "labels", labels, ~bad, f"in [0, {v}) (or equal ignore_index)")
  return bad


def _token_loss(stats, bad, kept, v, z_loss, label_smoothing):
  """lse − (1 − ε)·z_y − (ε/V)·Σ_j z_j + z·lse², NaN for bad labels, 0 for dropped tokens."""
  lse, zy, zsum = stats
  loss = lse - (1 - label_smoothing) * zy - (label_smoothing / v) * zsum + z_loss * lse * lse
  loss = jnp.where(bad, jnp.nan, loss)
  return loss if kept is None else jnp.where(kept, loss, 0.0)


# --------------------------------------------------------------------------------------------
# Public losses.
# --------------------------------------------------------------------------------------------

@_numerics.loss_jit(static=("chunk_size", "ignore_index"), bounds=_BOUNDS)
def linear_softmax_cross_entropy(hidden: ArrayLike, weight: ArrayLike, labels: ArrayLike, *,
                                 bias: ArrayLike | None = None, where: ArrayLike | None = None,
                                 chunk_size: int | None = None, z_loss: ArrayLike = 0.0,
                                 label_smoothing: ArrayLike = 0.0,
                                 logit_soft_cap: ArrayLike | None = None,
                                 ignore_index: int | None = None) -> jax.Array:
  """Softmax cross-entropy of ``hidden @ weight (+ bias)`` without the (N, V) logits.

  With logits z = s(h W + b), s the optional soft cap c·tanh(·/c) (Gemma 2), and Z = Σ_j e^{z_j},

  .. math::
    \\ell = \\log Z - (1 - \\varepsilon) z_y - \\frac{\\varepsilon}{V} \\sum_j z_j
            + z_{\\text{loss}} \\log^2 Z

  The forward pass loops over vocabulary chunks keeping a running log-sum-exp (online softmax),
  the target logit and the sum of logits; only log Z (N,) is saved. The backward pass
  recomputes each chunk's logits, forms d\\ell/dz = (1 + 2 z_loss log Z)·softmax −
  (1 − ε)·onehot − ε/V in float32, casts it to the input dtype and runs both matrix products
  with float32 accumulation, writing the weight's gradient chunk by chunk in place. Temporary
  memory is O(N·chunk + N·D); no (N, V) array exists. A vocabulary that ``chunk_size`` does not
  divide is handled by shifting the last chunk to end at V and masking the columns it repeats
  with −inf (no padded copy of the weight).

  Args:
    hidden: (N, D) floating hidden states (bf16 products run in bf16, accumulated in float32).
    weight: (D, V) floating output projection.
    labels: (N,) integer target classes in [0, V).
    bias: optional (V,) logit bias.
    where: optional (N,) boolean mask of the tokens that count; dropped tokens give loss 0 and
      no gradient.
    chunk_size: vocabulary columns per step (static); ``None`` picks the widest power of two
      from 256 to 4096 whose float32 (N, chunk) logits fit 32 MiB, then the largest divisor of
      V between half of it and it, if there is one.
    z_loss: coefficient z >= 0 of the auxiliary z·log²Z term (traced).
    label_smoothing: ε in [0, 1]; the target is (1 − ε)·onehot + ε/V (traced).
    logit_soft_cap: c > 0: logits become c·tanh(logit/c) before everything else; ``None`` off.
    ignore_index: a label value (static int) whose tokens are dropped, as in PyTorch.

  Returns:
    The per-token loss, shape (N,), float32 (float64 for float64 inputs); reduce it with
    :func:`jaxloss.reduce`. For (B, T, D) hidden states use ``jax.vmap`` over B (weight
    unmapped) or reshape to (B·T, D).

  Derivatives: reverse mode only (a ``jax.custom_vjp``, DESIGN contract 3's exception); gradients
  flow to ``hidden``, ``weight``, ``bias`` and ``logit_soft_cap``, and, by ordinary autodiff, to
  ``z_loss`` and ``label_smoothing``. The loss is smooth, so there are no kinks.

  Edge cases:
    A label outside [0, V) (other than ``ignore_index``) gives NaN for that token, and under
    ``checkify.checkify(..., errors=checkify.user_checks)`` an error naming the label. Tokens
    dropped by ``where``/``ignore_index`` give exactly 0 and zero gradient even if their hidden
    state holds NaN or inf. Large logits (1e4) stay finite (running max subtraction). NaN in a
    kept token's hidden state or in the weight propagates.

  References:
    E. Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", 2024 (Cut
    Cross-Entropy); Liger-Kernel ``LigerFusedLinearCrossEntropyLoss``; M. Milakov and
    N. Gimelshein, "Online normalizer calculation for softmax", 2018; Chowdhery et al., PaLM,
    2022 (z-loss); Gemma Team, Gemma 2, 2024 (logit soft-capping); optax
    ``softmax_cross_entropy_with_integer_labels`` and PyTorch ``cross_entropy`` for the value.
  """
  fn = "linear_softmax_cross_entropy"
  h, w, b, labels, where = _inputs(fn, hidden, weight, labels, bias, where)
  (n, _), v = h.shape, w.shape[1]
  chunk = _chunk_size(fn, chunk_size, n, v)
  z_loss, label_smoothing, cap = _hyperparameters(z_loss, label_smoothing, logit_soft_cap)
  kept = _kept(labels, where, ignore_index)
  bad = _bad_labels(fn, labels, kept, v)
  stats = _stats(chunk, _masked_hidden(h, kept), w, b, labels, cap)
  return _token_loss(stats, bad, kept, v, z_loss, label_smoothing)


@_numerics.loss_jit(static=("mesh", "vocab_axis", "batch_axis", "chunk_size",
                                     "ignore_index"), bounds=_BOUNDS)
def vocab_parallel_linear_softmax_cross_entropy(
    hidden: ArrayLike, weight: ArrayLike, labels: ArrayLike, *, mesh: Mesh,
    vocab_axis: str = "model", batch_axis: str = "data", bias: ArrayLike | None = None,
    where: ArrayLike | None = None, chunk_size: int | None = None, z_loss: ArrayLike = 0.0,
    label_smoothing: ArrayLike = 0.0, logit_soft_cap: ArrayLike | None = None,
    ignore_index: int | None = None) -> jax.Array:
  """:func:`linear_softmax_cross_entropy` with the weight sharded over the vocabulary.

  Megatron-LM's vocabulary-parallel cross-entropy under ``jax.shard_map``: the weight (and bias)
  is split over ``vocab_axis`` of ``mesh``, the hidden states, labels and mask over
  ``batch_axis``. Each device runs the chunked kernel on its V/n_vocab columns, giving a local
  log-sum-exp, target logit (0 unless it owns the label) and sum of logits; then

  .. math::
    \\log Z = m + \\log \\sum_{\\text{shards}} e^{\\log Z_s - m}, \\quad
    m = \\max_{\\text{shards}} \\log Z_s

  (all-reduce max, then sum) and the target logit and sum are all-reduced by sum: only (N,)
  vectors cross devices in the forward pass. In the backward pass shard_map's transpose sums
  the hidden states' gradient over ``vocab_axis`` and the weight's over ``batch_axis``.

  Args:
    hidden: (N, D) floating hidden states, N divisible by the size of ``batch_axis``.
    weight: (D, V) floating projection, V divisible by the size of ``vocab_axis``.
    labels: (N,) integer target classes in [0, V).
    mesh: a ``jax.sharding.Mesh`` (static) holding both axes.
    vocab_axis: the mesh axis that splits the vocabulary.
    batch_axis: the mesh axis that splits the tokens.
    bias, where, chunk_size, z_loss, label_smoothing, logit_soft_cap, ignore_index: as in
      :func:`linear_softmax_cross_entropy` (bias sharded like the weight's columns;
      ``chunk_size=None`` is chosen for the per-device shapes).

  Returns:
    The per-token loss, shape (N,), float32, sharded over ``batch_axis``: the same numbers as
    :func:`linear_softmax_cross_entropy`.

  Derivatives: as :func:`linear_softmax_cross_entropy` (reverse mode only).

  Edge cases:
    As :func:`linear_softmax_cross_entropy`: a label outside [0, V) gives NaN for that token
    and, under ``checkify``, an error naming it (one per device of the mesh); tokens dropped by
    ``where``/``ignore_index`` give 0 with zero gradients, an empty batch (N = 0) an empty
    loss; logits of 1e4 stay finite. A vocabulary (or token count) not divisible by the number
    of shards raises ``ValueError`` naming both numbers. NaN in a kept token propagates.

  References:
    M. Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models Using
    Model Parallelism", 2019, section 3 (vocabulary-parallel cross-entropy).
  """
  fn = "vocab_parallel_linear_softmax_cross_entropy"
  h, w, b, labels, where = _inputs(fn, hidden, weight, labels, bias, where)
  (n, _), v = h.shape, w.shape[1]
  n_vocab, n_batch = mesh.shape[vocab_axis], mesh.shape[batch_axis]
  if v % n_vocab:
    raise ValueError(f"{fn}: the vocabulary size V={v} (weight.shape[1]) is not divisible by the "
                     f"{n_vocab} shards of mesh axis {vocab_axis!r}")
  if n % n_batch:
    raise ValueError(f"{fn}: the token count N={n} (hidden.shape[0]) is not divisible by the "
                     f"{n_batch} shards of mesh axis {batch_axis!r}")
  v_local = v // n_vocab
  chunk = _chunk_size(fn, chunk_size, n // n_batch, v_local)
  z_loss, label_smoothing, cap = _hyperparameters(z_loss, label_smoothing, logit_soft_cap)
  kept = _kept(labels, where, ignore_index)
  bad = _bad_labels(fn, labels, kept, v)

  def local(h, w, b, labels, cap):
    # Labels outside this shard's columns match nothing: the owner alone adds the target logit.
    offset = lax.axis_index(vocab_axis) * v_local
    lse, zy, zsum = _stats(chunk, h, w, b, labels - offset, cap)
    m = lax.pmax(lax.stop_gradient(lse), vocab_axis)
    lse = m + jnp.log(lax.psum(jnp.exp(lse - m), vocab_axis))
    return lse, lax.psum(zy, vocab_axis), lax.psum(zsum, vocab_axis)

  stats = jax.shard_map(
      local, mesh=mesh,
      in_specs=(P(batch_axis, None), P(None, vocab_axis), P(vocab_axis), P(batch_axis), P()),
      out_specs=(P(batch_axis),) * 3)(_masked_hidden(h, kept), w, b, labels, cap)
  return _token_loss(stats, bad, kept, v, z_loss, label_smoothing)
