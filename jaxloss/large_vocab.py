"""Large-vocabulary losses: the output layer's cross-entropy, log-probabilities, entropies and
distillation divergences, computed from hidden states without the (N, V) logits.

Every function here reduces the logits ``hidden @ weight (+ bias)`` of N tokens over a vocabulary
of V words to a few numbers per token, and does it tile by tile: a tile is a block of T tokens
times a chunk of c vocabulary columns, so temporary memory is O(T·c + T·D + D·c) plus the
(N, D) float32 accumulator of the hidden states' gradient; no (N, V) array exists (Wijmans et
al. 2024, "Cut Your Losses in Large-Vocabulary Language Models"; Liger-Kernel's fused linear
cross-entropy, log-prob and JSD).

One kernel serves them all. A *statistic* (``_Softmax``, ``_PairLogSumExp``, ``_Divergence``)
says what is accumulated per token over the vocabulary chunks (an online log-sum-exp, the label
logit, the sum of logits, an entropy; two heads' log-sum-exps; a divergence), how the per-shard
numbers of a vocabulary-parallel run combine, and the closed-form derivative of the per-token
outputs with respect to a tile's logits. Three loops run any statistic:

* ``_forward``: token blocks outside, vocabulary chunks inside; the per-token outputs.
* ``_backward``: vocabulary chunks outside, token blocks inside; recomputes each tile's logits
  and runs two matrix products per tile (d hidden, d weight), the weight's gradient written
  chunk by chunk into its final layout, the hidden states' accumulated in float32.
* ``_fused_forward``: for a loss that is reduced to a scalar before the backward pass
  (``reduction="mean"|"sum"``), the gradient is computed in the forward pass, one token block
  at a time: the block's logits are kept (T, V), its per-token loss differentiated, and the
  two gradient products run at once; three matrix products in all (Liger-Kernel's scheme). The
  backward pass only scales the stored gradients by the incoming cotangent.

``_stats`` (``_forward`` + ``_backward``) and ``_fused`` (``_fused_forward``) are
``jax.custom_vjp`` functions, the exception to the library's ``custom_jvp`` rule (DESIGN
contract 3): their backward passes are different algorithms from a forward pass's tangent. They
are reverse-mode only; Hessians go through ``jax.jacrev(jax.grad(...))`` (``reduction="none"``).

Dtypes: the products take the inputs' dtype (bf16 on tensor cores and TPUs) with float32
accumulation; everything else is float32, or float64 when an input is float64. The per-token
results are float32 (float64 for float64 inputs): each is a reduction over the vocabulary.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Generic, Literal, NamedTuple, TypeVar, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike
DTypeLike = jax.typing.DTypeLike
_C = TypeVar("_C")  # a loop's carry
_Y = TypeVar("_Y")  # a scan's per-step output
_Leaf = TypeVar("_Leaf")  # what a _Head holds: arrays, cotangents or PartitionSpecs
# A statistic's per-token accumulators, outputs or cotangents by name, each (T,) or (N,).
_Outputs = dict[str, jax.Array]

# --------------------------------------------------------------------------------------------
# Tiling. chunk_size=None / token_chunk_size=None choose tiles whose float32 operands fit these
# budgets (tuned with bench/large_vocab.py on CPU; bench/NOTES.md has the measurements):
# a (T, D) hidden block or a (D, c) weight chunk in float32 (XLA's CPU backend converts bf16
# product operands to float32), a (T, c) logits tile, and, for the fused mode, the (T, V)
# float32 logits of one token block. Each size is the widest power of two under its budgets,
# then the largest divisor of the dimension between half of it and it, if there is one (no
# shifted last block or chunk).
# --------------------------------------------------------------------------------------------

_OPERAND_BYTES = 8 * 2**20
_TILE_BYTES = 32 * 2**20
_BLOCK_BYTES = 64 * 2**20
_MIN_CHUNK, _MAX_CHUNK = 256, 4096
_MIN_BLOCK = 16

_REDUCTIONS = ("none", "mean", "sum")
_DIVERGENCES = ("jsd", "forward_kl", "reverse_kl")
_POSITIVE = _numerics.Range(low=0.0, low_open=True)
_CE_BOUNDS = {"z_loss": _numerics.Range(low=0.0),
              "label_smoothing": _numerics.Range(0.0, 1.0),
              "logit_soft_cap": _POSITIVE}


class _Tiling(NamedTuple):
  block: int  # T, tokens per tile
  chunk: int  # c, vocabulary columns per tile


def _power_of_two(limit: int, low: int, high: int) -> int:
  """The largest power of two in [low, high] that is <= limit (``low`` if none is)."""
  p = high
  while p > low and p > limit:
    p //= 2
  return p


def _near_divisor(total: int, target: int) -> int:
  """``total`` if it is <= target, else its largest divisor in [target/2, target], else target."""
  if total <= target:
    return total
  for size in range(target, target // 2 - 1, -1):
    if total % size == 0:
      return size
  return target


def _positive_int(fn: str, name: str, value: int | None) -> None:
  if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                            or value < 1):
    raise ValueError(f"{fn}({name}=...) must be a positive int or None, got {value!r}")


def _tiling(fn: str, n: int, d: int, v: int, chunk_size: int | None,
            token_chunk_size: int | None, fused: bool) -> _Tiling:
  """Tile sizes for N tokens, hidden width D (the widest head's) and V columns (per shard)."""
  _positive_int(fn, "chunk_size", chunk_size)
  _positive_int(fn, "token_chunk_size", token_chunk_size)
  if token_chunk_size is not None:
    block = int(token_chunk_size)
  else:
    limit = _OPERAND_BYTES // (4 * d)
    if fused:
      limit = min(limit, _BLOCK_BYTES // (4 * v))
    block = n if n <= limit else _near_divisor(n, _power_of_two(limit, _MIN_BLOCK, 1 << 30))
  block = max(1, min(block, n))
  if chunk_size is not None:
    chunk = int(chunk_size)
  else:
    limit = min(_TILE_BYTES // (4 * block), _OPERAND_BYTES // (4 * d))
    chunk = _near_divisor(v, _power_of_two(limit, _MIN_CHUNK, _MAX_CHUNK))
  return _Tiling(block, min(chunk, v))


def _span(total: int, size: int, k: Any) -> tuple[Any, jax.Array | None]:
  """Start of block ``k`` of ``size`` along an axis of length ``total``, and which of its
  entries are new (None: all of them).

  The last block of an axis that ``size`` does not divide is shifted back to end at ``total``
  (no padded copy of the operand); the entries it shares with the block before are not new.
  """
  start = k * size
  if total % size == 0:
    return start, None
  shifted = jnp.minimum(start, total - size)
  return shifted, (shifted + _iota(size)) >= start


def _unblock(stacked: jax.Array, total: int) -> jax.Array:
  """(n_blocks, T, ...) per-block rows back to (total, ...) rows (see ``_span``)."""
  n_blocks, size = stacked.shape[:2]
  if n_blocks * size == total:
    return stacked.reshape(total, *stacked.shape[2:])
  tail = total - (n_blocks - 1) * size  # rows new in the shifted last block
  return jnp.concatenate([stacked[:-1].reshape(-1, *stacked.shape[2:]), stacked[-1, size - tail:]])


def _rows(x: Any, row: Any, size: int) -> Any:
  """Rows [row, row + size) of a per-token array; scalars and None pass through."""
  if x is None or jnp.ndim(x) == 0:
    return x
  return lax.dynamic_slice_in_dim(x, row, size, axis=0)


def _iota(size: int) -> jax.Array:
  return jnp.arange(size, dtype=jnp.int32)  # int32 positions, with or without jax_enable_x64


def _barrier(x: Any, count: int) -> Any:
  """``lax.optimization_barrier`` in a loop of ``count`` > 1 iterations (one block of tokens
  is the whole operand: nothing to keep from being hoisted)."""
  return x if count == 1 else lax.optimization_barrier(x)


def _fori(count: int, body: Callable[[jax.Array, _C], _C], init: _C) -> _C:
  if count == 1:
    return body(jnp.int32(0), init)
  # Static bounds (a scan: reverse-differentiable); int32 positions under jax_enable_x64 too.
  return lax.fori_loop(0, count, lambda k, carry: body(k.astype(jnp.int32), carry), init)


def _scan(count: int, body: Callable[[_C, jax.Array], tuple[_C, _Y]], init: _C
          ) -> tuple[_C, _Y]:
  """``lax.scan`` of ``body(carry, k)`` over k < count (inlined, with a leading axis, for 1)."""
  if count == 1:
    carry, out = body(init, jnp.int32(0))
    return carry, jax.tree.map(lambda x: x[None], out)
  return lax.scan(body, init, _iota(count))


# --------------------------------------------------------------------------------------------
# shard_map typing: loop carries vary over the mesh axes their inputs vary over.
# --------------------------------------------------------------------------------------------

def _varying_axes(*trees: Any) -> frozenset[str]:
  """The shard_map mesh axes over which any array in ``trees`` varies (empty outside)."""
  return frozenset().union(*(jax.typeof(a).manual_axis_type.varying
                             for a in jax.tree.leaves(trees)))


def _zeros(shape: tuple[int, ...], dtype: DTypeLike, axes: frozenset[str]) -> jax.Array:
  """Zeros typed as varying over ``axes``, as a loop carry inside shard_map must be."""
  z = jnp.zeros(shape, dtype)
  return lax.pcast(z, tuple(sorted(axes)), to="varying") if axes else z


def _sum_to(ct: jax.Array | None, primal: jax.Array | None) -> jax.Array | None:
  """A cotangent summed over the mesh axes along which its primal is replicated.

  Inside shard_map the weight's gradient varies over the batch axis and the hidden states'
  over the vocabulary axis; their primals do not, so these are all-reduced here (Megatron).
  """
  if ct is None or primal is None:
    return None
  extra = _varying_axes(ct) - _varying_axes(primal)
  return lax.psum(ct, tuple(sorted(extra))) if extra else ct


# --------------------------------------------------------------------------------------------
# Heads and tiles.
# --------------------------------------------------------------------------------------------

class _Head(NamedTuple, Generic[_Leaf]):
  """A linear head: logits ``scale · s(h W + b)``, s the optional soft cap c·tanh(·/c).

  Its leaves are arrays (``_Head[jax.Array]``), their cotangents or their PartitionSpecs.
  """
  h: _Leaf                # (N, D)
  w: _Leaf                # (D, V)
  b: _Leaf | None = None  # (V,)
  cap: _Leaf | None = None
  scale: _Leaf | None = None  # 1/temperature


class _Tile(NamedTuple):
  """What a statistic sees of one tile."""
  z: jax.Array                # (T, c) student logits (capped, scaled)
  t: jax.Array | None         # (T, c) teacher logits (scaled), or None
  fresh: jax.Array | None     # (c,) columns no earlier chunk had (None: all)
  start: Any                  # first column of the tile
  first: Any                  # first column the tile owns (> start in a shifted chunk)
  labels: jax.Array | None    # (T,) the tokens' labels
  extra: _Outputs             # per-token inputs of the tile's tokens, and scalars


def _raw(h_j: jax.Array, w_c: jax.Array, b_c: jax.Array | None, acc: DTypeLike) -> jax.Array:
  # Operands in the input dtype (bf16 on the MXU / tensor cores), ``acc`` accumulation.
  z = lax.dot_general(h_j, w_c, (((1,), (0,)), ((), ())), preferred_element_type=acc)
  return z if b_c is None else z + b_c.astype(acc)[None, :]


# capped, tanh(raw/cap), raw/cap (the last two None without a cap).
_Parts = tuple[jax.Array, jax.Array | None, jax.Array | None]


def _transform(raw: jax.Array, cap: jax.Array | None, scale: jax.Array | None
               ) -> tuple[jax.Array, _Parts]:
  """scale · cap·tanh(raw/cap) and what its derivative needs (capped, tanh, raw/cap)."""
  if cap is None:
    capped, t, u = raw, None, None
  else:
    u = raw / cap
    t = jnp.tanh(u)  # Gemma 2's soft cap
    capped = cap * t
  return (capped if scale is None else capped * scale), (capped, t, u)


def _untransform(g: jax.Array, parts: _Parts, cap: jax.Array | None, scale: jax.Array | None,
                 dcap: jax.Array | None, dscale: jax.Array | None
                 ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
  """The chain rule back through ``_transform``; accumulates d/dcap and d/dscale."""
  capped, t, u = parts
  if scale is not None:
    assert dscale is not None  # accumulated exactly when the head has a scale
    dscale = dscale + jnp.sum(g * capped)
    g = g * scale
  if cap is not None:
    assert t is not None and u is not None and dcap is not None  # all there with a cap
    # d(cap·tanh(r/cap))/dr = 1 − t², d/dcap = t − (r/cap)(1 − t²).
    dcap = dcap + jnp.sum(g * (t - u * (1 - t * t)))
    g = g * (1 - t * t)
  return g, dcap, dscale


@overload
def _head_block(h: jax.Array, kept_j: jax.Array | None, row: Any, size: int) -> jax.Array: ...
@overload
def _head_block(h: jax.Array | None, kept_j: jax.Array | None, row: Any, size: int
                ) -> jax.Array | None: ...
def _head_block(h: jax.Array | None, kept_j: jax.Array | None, row: Any, size: int
                ) -> jax.Array | None:
  """The block's hidden rows, zeroed for dropped tokens: a NaN there then cannot reach any
  product (0·NaN = NaN in hiddenᵀ @ dlogits), and the rows get gradient 0.

  ``h`` should come through a loop carry behind ``lax.optimization_barrier``: otherwise XLA's
  CPU backend converts the *whole* bf16 hidden states to float32 once, outside the loops
  (an (N, D) float32 buffer), instead of one block at a time.
  """
  if h is None:
    return None
  h_j = _rows(h, row, size)
  return h_j if kept_j is None else jnp.where(kept_j[:, None], h_j, jnp.zeros((), h_j.dtype))


@overload
def _chunk(head: _Head[jax.Array], w: jax.Array, start: Any, chunk: int
           ) -> tuple[jax.Array, jax.Array | None]: ...
@overload
def _chunk(head: _Head[jax.Array] | None, w: jax.Array | None, start: Any, chunk: int
           ) -> tuple[jax.Array | None, jax.Array | None]: ...
def _chunk(head: _Head[jax.Array] | None, w: jax.Array | None, start: Any, chunk: int
           ) -> tuple[jax.Array | None, jax.Array | None]:
  """The weight's (D, c) and the bias's (c,) columns from ``start`` (``w``: the head's weight,
  as it comes through a loop carry); None for no head."""
  if head is None:
    return None, None
  assert w is not None  # a head's weight
  w_c = lax.dynamic_slice_in_dim(w, start, chunk, axis=1)
  b_c = None if head.b is None else lax.dynamic_slice_in_dim(head.b, start, chunk)
  return w_c, b_c


def _teacher_logits(teacher: _Head[jax.Array] | None, t_j: jax.Array | None,
                    wt_c: jax.Array | None, acc: DTypeLike
                    ) -> tuple[jax.Array | None, jax.Array | None]:
  if teacher is None:
    return None, None
  assert t_j is not None and wt_c is not None  # a teacher's hidden rows and weight columns
  raw = _raw(t_j, wt_c, None, acc)
  return (raw if teacher.scale is None else raw * teacher.scale), raw


# --------------------------------------------------------------------------------------------
# Statistics: what is accumulated per token, how shards combine, and d(outputs)/d(logits).
# --------------------------------------------------------------------------------------------

def _online(m: jax.Array, s: jax.Array, zm: jax.Array
            ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Online log-sum-exp (Milakov & Gimelshein 2018): the new max, the rescaled sum, the factor
  e^{m − m'} and the tile's e^{z − m'} (``zm``: logits with repeated columns at −inf)."""
  m_new = jnp.maximum(m, jnp.max(zm, axis=1))
  shrink = jnp.exp(m - m_new)
  # z − m' <= 0, but XLA's CPU backend may recompute z = raw·scale inside this fusion and
  # contract it with the subtraction into one fused multiply-add, unrounded, while the max saw
  # the rounded z: at |z| ~ 1e30 that is ~1e23 above 0 and exp gives inf. Hence the clamp.
  e = jnp.exp(jnp.minimum(zm - m_new[:, None], 0.0))
  return m_new, s * shrink + jnp.sum(e, axis=1), shrink, e


def _masked(tile: _Tile, x: jax.Array, fill: float) -> jax.Array:
  return x if tile.fresh is None else jnp.where(tile.fresh[None, :], x, fill)


def _combine_lse(lse: jax.Array, axis: str) -> tuple[jax.Array, jax.Array]:
  """The log-sum-exp over all shards and each shard's weight e^{lse_s − lse}."""
  # The max is only a shift (the result does not depend on it), so it is a constant: the
  # sum stays differentiable where pmax has no derivative rule (second derivatives).
  m = lax.pmax(lax.stop_gradient(lse), axis)
  total = m + jnp.log(lax.psum(jnp.exp(lse - m), axis))
  return total, jnp.exp(lse - total)


def _softmax_of(z: jax.Array, lse: jax.Array) -> jax.Array:
  # z − lse <= 0, but a recomputed z may round one ulp above the forward pass's: at |z| ~ 1e10
  # an ulp is ~1000 and exp overflows, so a positive z − lse is taken as 0.
  d = z - lse[:, None]
  return jnp.exp(jnp.where(d > 0, jnp.zeros_like(d), d))


@dataclasses.dataclass(frozen=True)
class _Softmax:
  """One head: log-sum-exp ``lse``, label logit ``label``, Σ_j z_j ``sum`` (``sums``) and the
  entropy ``entropy`` = log s + Σ e^{z−m}(m − z)/s (``entropy``; every term >= 0, so no
  cancellation of lse against E[z])."""
  sums: bool = True
  entropy: bool = False
  teacher = False

  def init(self, rows: int, dtype: DTypeLike, axes: frozenset[str]) -> _Outputs:
    zeros = _zeros((rows,), dtype, axes)
    carry = {"m": zeros - jnp.inf, "s": zeros, "label": zeros}
    if self.sums:
      carry["sum"] = zeros
    if self.entropy:
      carry["u"] = zeros
    return carry

  def update(self, carry: _Outputs, tile: _Tile) -> _Outputs:
    z, labels = tile.z, tile.labels
    c = z.shape[1]
    carry = dict(carry)
    # The label logit is picked from the same z that enters the log-sum-exp (so lse >= z_y
    # holds exactly) by a (T,) gather: a one-hot select over the tile would cost two passes.
    owned = (labels >= tile.first) & (labels < tile.start + c)  # new columns only
    picked = jnp.take_along_axis(z, jnp.clip(labels - tile.start, 0, c - 1)[:, None], axis=1)
    carry["label"] = carry["label"] + jnp.where(owned, picked[:, 0], 0.0)
    m, s = carry["m"], carry["s"]
    m_new, carry["s"], shrink, e = _online(m, s, _masked(tile, z, -jnp.inf))
    carry["m"] = m_new
    if self.sums:
      carry["sum"] = carry["sum"] + jnp.sum(_masked(tile, z, 0.0), axis=1)
    if self.entropy:
      # Σ e^{z−m'}(m' − z) = e^{m−m'}(u + (m' − m)·s) over the earlier chunks; m = −inf only
      # while s = 0.
      step = jnp.where(s > 0, m_new - m, jnp.zeros_like(m))
      carry["u"] = shrink * (carry["u"] + step * s) + jnp.sum(e * (m_new[:, None] - z), axis=1)
    return carry

  def finish(self, carry: _Outputs, axis: str | None, extra: _Outputs) -> _Outputs:
    del extra
    s = carry["s"]
    out = {"lse": carry["m"] + jnp.log(s), "label": carry["label"]}
    if self.sums:
      out["sum"] = carry["sum"]
    if self.entropy:
      out["entropy"] = jnp.log(s) + carry["u"] / s
    if axis is not None:
      lse, weight = _combine_lse(out["lse"], axis)
      if self.entropy:
        # H = Σ_shards w_s (H_s + lse − lse_s): E[z] = Σ_s w_s E_s[z], every term >= 0.
        out["entropy"] = lax.psum(weight * (out["entropy"] + lse - out["lse"]), axis)
      out["lse"] = lse
      out["label"] = lax.psum(out["label"], axis)
      if self.sums:
        out["sum"] = lax.psum(out["sum"], axis)
    return out

  def grad(self, tile: _Tile, out: _Outputs, ct: _Outputs
           ) -> tuple[jax.Array, jax.Array | None]:
    # d/dz of g_lse·lse + g_label·z_y + g_sum·Σz + g_H·H
    #   = g_lse·p + g_label·onehot + g_sum + g_H·p·(lse − z − H).
    z, lse = tile.z, out["lse"]
    p = _softmax_of(z, lse)
    weight = ct["lse"][:, None]
    if self.entropy:
      weight = weight + ct["entropy"][:, None] * (lse[:, None] - z - out["entropy"][:, None])
    assert tile.labels is not None  # a softmax statistic's tiles carry the labels
    hit = (tile.start + _iota(z.shape[1]))[None, :] == tile.labels[:, None]
    g = weight * p + jnp.where(hit, ct["label"][:, None], 0.0)
    if self.sums:
      g = g + ct["sum"][:, None]
    return g, None


@dataclasses.dataclass(frozen=True)
class _PairLogSumExp:
  """Two heads (student z, teacher t): ``lse_s`` and ``lse_t``: the first pass of a
  divergence, which differentiates through them in closed form (never differentiated
  itself)."""
  teacher = True
  keys = ("lse_s", "lse_t")

  def init(self, rows: int, dtype: DTypeLike, axes: frozenset[str]) -> _Outputs:
    zeros = _zeros((rows,), dtype, axes)
    return {"m_s": zeros - jnp.inf, "s_s": zeros, "m_t": zeros - jnp.inf, "s_t": zeros}

  def update(self, carry: _Outputs, tile: _Tile) -> _Outputs:
    assert tile.t is not None  # the teacher's logits
    m_s, s_s, _, _ = _online(carry["m_s"], carry["s_s"], _masked(tile, tile.z, -jnp.inf))
    m_t, s_t, _, _ = _online(carry["m_t"], carry["s_t"], _masked(tile, tile.t, -jnp.inf))
    return {"m_s": m_s, "s_s": s_s, "m_t": m_t, "s_t": s_t}

  def finish(self, carry: _Outputs, axis: str | None, extra: _Outputs) -> _Outputs:
    del extra
    out = {"lse_s": carry["m_s"] + jnp.log(carry["s_s"]),
           "lse_t": carry["m_t"] + jnp.log(carry["s_t"])}
    return out if axis is None else {k: _combine_lse(x, axis)[0] for k, x in out.items()}


@dataclasses.dataclass(frozen=True)
class _Divergence:
  """A divergence between the student's p = softmax(z) and the teacher's q = softmax(t),
  given both log-sum-exps from a first pass (``prepass``, whose outputs join ``extra`` and the
  outputs): each term uses the exact log-probabilities log p = z − lse_s, log q = t − lse_t.

  ``forward_kl``: KL(q ‖ p); ``reverse_kl``: KL(p ‖ q); ``jsd``: generalized JSD with
  m = (1 − β) p + β q, returned as ``kq`` = KL(q ‖ m), ``kp`` = KL(p ‖ m) and ``value`` =
  β kq + (1 − β) kp, which at β = 0 (m = p, kp = 0) is KL(q ‖ p) and at β = 1 KL(p ‖ q).
  Only ``value`` is differentiated; the gradient is the total derivative, through lse_s too.
  """
  kind: str
  prepass: _PairLogSumExp | None = _PairLogSumExp()
  teacher = True

  def _parts(self, tile: _Tile) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    # log p <= 0, but the logits here need not round as the first pass's did (see _online):
    # at |z| ~ 1e30 an ulp is 1e23 and a positive log p would give exp = inf, so it is clamped
    # at 0 (the values there are as uncertain as the logits themselves, but finite).
    assert tile.t is not None  # the teacher's logits
    lp = jnp.minimum(tile.z - tile.extra["lse_s"][:, None], 0.0)
    lq = jnp.minimum(tile.t - tile.extra["lse_t"][:, None], 0.0)
    return lp, lq, jnp.exp(lp), jnp.exp(lq)

  def _mixture(self, lp: jax.Array, lq: jax.Array, beta: jax.Array) -> jax.Array:
    # log m = log((1 − β) p + β q); exact at β = 0 and 1 (logaddexp with −inf).
    return jnp.logaddexp(lp + jnp.log1p(-beta), lq + jnp.log(beta))

  def init(self, rows: int, dtype: DTypeLike, axes: frozenset[str]) -> _Outputs:
    zeros = _zeros((rows,), dtype, axes)
    return {"kq": zeros, "kp": zeros} if self.kind == "jsd" else {"value": zeros}

  def update(self, carry: _Outputs, tile: _Tile) -> _Outputs:
    lp, lq, p, q = self._parts(tile)
    if self.kind == "forward_kl":
      return {"value": carry["value"] + jnp.sum(_masked(tile, q * (lq - lp), 0.0), axis=1)}
    if self.kind == "reverse_kl":
      return {"value": carry["value"] + jnp.sum(_masked(tile, p * (lp - lq), 0.0), axis=1)}
    lm = self._mixture(lp, lq, tile.extra["beta"])
    return {"kq": carry["kq"] + jnp.sum(_masked(tile, q * (lq - lm), 0.0), axis=1),
            "kp": carry["kp"] + jnp.sum(_masked(tile, p * (lp - lm), 0.0), axis=1)}

  def finish(self, carry: _Outputs, axis: str | None, extra: _Outputs) -> _Outputs:
    out = carry if axis is None else {k: lax.psum(x, axis) for k, x in carry.items()}
    if self.kind != "jsd":
      return out
    beta = extra["beta"]
    return {**out, "value": jnp.where(beta == 0, 1.0, beta) * out["kq"]
            + jnp.where(beta == 1, 1.0, 1 - beta) * out["kp"]}

  def grad(self, tile: _Tile, out: _Outputs, ct: _Outputs
           ) -> tuple[jax.Array, jax.Array | None]:
    lp, lq, p, q = self._parts(tile)
    g_value = ct["value"][:, None]
    value = out["value"][:, None]
    if self.kind == "forward_kl":  # student p − q; teacher q ⊙ (log q − log p − KL)
      return g_value * (p - q), g_value * q * (lq - lp - value)
    if self.kind == "reverse_kl":  # student p ⊙ (log p − log q − KL); teacher q − p
      return g_value * p * (lp - lq - value), g_value * (q - p)
    # dJ/dz = (1 − β) p ⊙ (log p − log m − kp) (the terms through m cancel), and at β = 0
    # (the forward KL) p − q; the teacher's likewise with β, q, kq, and q − p at β = 1.
    beta = tile.extra["beta"]
    lm = self._mixture(lp, lq, beta)
    a_p, b_p = jnp.where(beta == 1, 1.0, 1 - beta), jnp.where(beta == 0, 1.0, 0.0)
    a_q, b_q = jnp.where(beta == 0, 1.0, beta), jnp.where(beta == 1, 1.0, 0.0)
    g_z = a_p * p * (lp - lm - out["kp"][:, None]) + b_p * (p - q)
    g_t = a_q * q * (lq - lm - out["kq"][:, None]) + b_q * (q - p)
    return g_value * g_z, g_value * g_t


# --------------------------------------------------------------------------------------------
# The kernel's loops.
# --------------------------------------------------------------------------------------------

class _Config(NamedTuple):
  spec: Any           # a statistic (_Softmax, _PairLogSumExp, _Divergence)
  tiling: _Tiling
  axis: str | None    # the vocabulary's mesh axis inside shard_map, else None


def _acc_dtype(*arrays: jax.Array | None) -> jnp.dtype:
  return _numerics.compute_dtype(*(a for a in arrays if a is not None))


def _forward(cfg: _Config, student: _Head[jax.Array], teacher: _Head[jax.Array] | None,
             labels: jax.Array | None, kept: jax.Array | None, extra: _Outputs) -> _Outputs:
  """Per-token outputs of ``cfg.spec``: token blocks outside, vocabulary chunks inside.

  A statistic with a ``prepass`` (a divergence) runs it first, over all tokens; its outputs
  join ``extra`` and are returned too (the backward pass reads them from there).
  """
  prepass = getattr(cfg.spec, "prepass", None)
  if prepass is not None:
    first = _forward(cfg._replace(spec=prepass), student, teacher, labels, kept, extra)
    out = _forward(cfg._replace(spec=dataclasses.replace(cfg.spec, prepass=None)), student,
                   teacher, labels, kept, {**extra, **first})
    return {**out, **first}
  n, v = student.h.shape[0], student.w.shape[1]
  block, chunk = cfg.tiling
  acc = _acc_dtype(student.h, student.w, None if teacher is None else teacher.h)
  axes = _varying_axes(student, teacher, labels, kept, extra)
  n_chunks, n_blocks = -(-v // chunk), -(-n // block)
  if n == 0:  # an empty batch: the statistic's outputs of no token
    return cfg.spec.finish(cfg.spec.init(0, acc, axes), cfg.axis, extra)

  def one_block(hs: tuple[jax.Array, jax.Array | None], j: jax.Array
                ) -> tuple[tuple[jax.Array, jax.Array | None], _Outputs]:
    hs = _barrier(hs, n_blocks)  # see _head_block
    row, _ = _span(n, block, j)
    kept_j = _rows(kept, row, block)
    h_j, t_j = (_head_block(x, kept_j, row, block) for x in hs)
    assert h_j is not None  # the student's rows
    labels_j = _rows(labels, row, block)
    extra_j = {k: _rows(x, row, block) for k, x in extra.items()}

    def one_chunk(k: jax.Array, inner: tuple[tuple[jax.Array, jax.Array | None], _Outputs]
                  ) -> tuple[tuple[jax.Array, jax.Array | None], _Outputs]:
      # The weights ride in the carry behind an optimization barrier: otherwise XLA's CPU
      # backend hoists the bf16 -> float32 conversion of the *whole* weight out of the loop.
      weights, state = inner
      weights = lax.optimization_barrier(weights)
      w, wt = weights
      start, fresh = _span(v, chunk, k)
      w_c, b_c = _chunk(student, w, start, chunk)
      z, _ = _transform(_raw(h_j, w_c, b_c, acc), student.cap, student.scale)
      wt_c, _ = _chunk(teacher, wt, start, chunk)
      t, _ = _teacher_logits(teacher, t_j, wt_c, acc)
      tile = _Tile(z, t, fresh, start, k * chunk, labels_j, extra_j)
      return weights, cfg.spec.update(state, tile)

    weights = (student.w, None if teacher is None else teacher.w)
    _, state = _fori(n_chunks, one_chunk, (weights, cfg.spec.init(block, acc, axes)))
    return hs, cfg.spec.finish(state, cfg.axis, extra_j)

  hs = (student.h, None if teacher is None else teacher.h)
  _, stacked = _scan(n_blocks, one_block, hs)
  return {k: _unblock(x, n) for k, x in stacked.items()}


# Gradients (hidden, weight, bias, cap, scale) of a head (hidden's per token block in the fused
# mode); None for the head's absent parts.
_Grads = tuple[jax.Array, jax.Array, jax.Array | None, jax.Array | None, jax.Array | None]
# A loop carry of ``_backward``: the two heads' weights (hidden states in the inner loop), then
# the gradients accumulated so far (the weight's: its chunk's in the inner loop).
_GradCarry = tuple[tuple[jax.Array, jax.Array | None], jax.Array, jax.Array, jax.Array | None,
                   jax.Array | None, jax.Array | None]


def _backward(cfg: _Config, student: _Head[jax.Array], teacher: _Head[jax.Array] | None,
              labels: jax.Array | None, kept: jax.Array | None, extra: _Outputs, out: _Outputs,
              ct: _Outputs) -> _Grads:
  """Gradients (hidden, weight, bias, cap, scale) of Σ ct·out: vocabulary chunks outside,
  token blocks inside; each tile's logits recomputed, never stored."""
  prepass = getattr(cfg.spec, "prepass", None)
  if prepass is not None:  # its outputs are constants of the statistic's closed-form grad
    extra = {**extra, **{k: out[k] for k in prepass.keys}}
  h, w = student.h, student.w
  n, v = h.shape[0], w.shape[1]
  block, chunk = cfg.tiling
  acc = _acc_dtype(h, w, None if teacher is None else teacher.h)
  axes = _varying_axes(student, teacher, labels, kept, extra, out, ct)
  n_chunks, n_blocks = -(-v // chunk), -(-n // block)
  cap, scale = student.cap, student.scale
  if n == 0:  # an empty batch: zero gradients
    return (jnp.zeros_like(h), jnp.zeros_like(w), None if student.b is None else
            jnp.zeros_like(student.b), None if cap is None else jnp.zeros((), acc),
            None if scale is None else jnp.zeros((), acc))

  def one_chunk(k: jax.Array, carry: _GradCarry) -> _GradCarry:
    weights, dh, dw, db, dcap, dscale = carry
    weights = lax.optimization_barrier(weights)  # as in _forward
    w_k, wt_k = weights
    # Last chunk first: the columns a shifted last chunk repeats get gradient 0 here and are
    # overwritten by their own chunk later, so no write needs to read the buffer (reading it
    # makes XLA's CPU backend widen the whole bf16 buffer to float32 and copy it).
    start, fresh = _span(v, chunk, n_chunks - 1 - k)
    w_c, b_c = _chunk(student, w_k, start, chunk)
    wt_c, _ = _chunk(teacher, wt_k, start, chunk)

    def one_block(j: jax.Array, inner: _GradCarry) -> _GradCarry:
      hs, dh, dw_c, db_c, dcap, dscale = inner
      hs = _barrier(hs, n_blocks)  # see _head_block
      row, new_rows = _span(n, block, j)
      kept_j = _rows(kept, row, block)
      h_j, t_j = (_head_block(x, kept_j, row, block) for x in hs)
      assert h_j is not None  # the student's rows
      ct_j = {key: _rows(x, row, block) for key, x in ct.items()}
      if new_rows is not None:  # rows of a shifted last block that the block before had
        ct_j = {key: jnp.where(new_rows, x, jnp.zeros_like(x)) for key, x in ct_j.items()}
      z, parts = _transform(_raw(h_j, w_c, b_c, acc), cap, scale)
      t, t_raw = _teacher_logits(teacher, t_j, wt_c, acc)
      tile = _Tile(z, t, fresh, start, None, _rows(labels, row, block),
                   {key: _rows(x, row, block) for key, x in extra.items()})
      g, g_t = cfg.spec.grad(tile, {key: _rows(x, row, block) for key, x in out.items()}, ct_j)
      if fresh is not None:
        g = jnp.where(fresh[None, :], g, 0.0)
      if g_t is not None and scale is not None:  # the teacher's logits depend on the temperature
        assert dscale is not None and t_raw is not None  # with the scale and the teacher
        dscale = dscale + jnp.sum(_masked(tile, g_t * t_raw, 0.0))
      g, dcap, dscale = _untransform(g, parts, cap, scale, dcap, dscale)
      g_lo = g.astype(h.dtype)
      dh_j = lax.dot_general(g_lo, w_c, (((1,), (1,)), ((), ())), preferred_element_type=acc)
      dh = lax.dynamic_update_slice_in_dim(dh, _rows(dh, row, block) + dh_j, row, axis=0)
      dw_c = dw_c + lax.dot_general(h_j, g_lo, (((0,), (0,)), ((), ())),
                                    preferred_element_type=acc)
      if db_c is not None:
        db_c = db_c + jnp.sum(g, axis=0)
      return hs, dh, dw_c, db_c, dcap, dscale

    init = ((h, None if teacher is None else teacher.h), dh,
            _zeros((h.shape[1], chunk), acc, axes),
            None if b_c is None else _zeros((chunk,), acc, axes), dcap, dscale)
    _, dh, dw_c, db_c, dcap, dscale = _fori(n_blocks, one_block, init)
    # The weight's gradient is written chunk by chunk into its final (D, V) layout (stacking
    # the chunks and transposing would cost another (D, V) buffer).
    dw = lax.dynamic_update_slice_in_dim(dw, dw_c.astype(dw.dtype), start, axis=1)
    if db is not None:
      assert db_c is not None  # the bias's chunk, accumulated with a bias
      db = lax.dynamic_update_slice_in_dim(db, db_c.astype(db.dtype), start, axis=0)
    return weights, dh, dw, db, dcap, dscale

  weights = (w, None if teacher is None else teacher.w)
  init = (weights, _zeros(h.shape, acc, axes), _zeros(w.shape, w.dtype, axes),
          None if student.b is None else _zeros(student.b.shape, student.b.dtype, axes),
          None if cap is None else _zeros((), acc, axes),
          None if scale is None else _zeros((), acc, axes))
  _, dh, dw, db, dcap, dscale = _fori(n_chunks, one_chunk, init)
  return dh.astype(h.dtype), dw, db, dcap, dscale


def _student_cotangent(student: _Head[jax.Array], grads: _Grads) -> _Head[jax.Array | None]:
  dh, dw, db, dcap, dscale = grads
  # d/dcap (d/dscale) is there exactly when the head has a cap (a scale).
  cts = (dh, dw, db,
         None if dcap is None else dcap.astype(student.cap.dtype),  # type: ignore[union-attr]
         None if dscale is None else dscale.astype(student.scale.dtype))  # type: ignore[union-attr]
  return _Head(*(_sum_to(ct, x) for ct, x in zip(cts, student, strict=False)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _stats(cfg: _Config, student: _Head[jax.Array], teacher: _Head[jax.Array] | None,
           labels: jax.Array | None, kept: jax.Array | None, extra: _Outputs) -> _Outputs:
  """Per-token outputs of ``cfg.spec`` (a dict of (N,) arrays), differentiable with respect
  to the student head; the teacher, labels, mask and ``extra`` are constants."""
  return _forward(cfg, student, teacher, labels, kept, extra)


class _StatsResiduals(NamedTuple):
  """``_stats``'s inputs and outputs: only (N,) vectors beyond the inputs."""
  student: _Head[jax.Array]
  teacher: _Head[jax.Array] | None
  labels: jax.Array | None
  kept: jax.Array | None
  extra: _Outputs
  out: _Outputs


def _stats_fwd(cfg: _Config, student: _Head[jax.Array], teacher: _Head[jax.Array] | None,
               labels: jax.Array | None, kept: jax.Array | None, extra: _Outputs
               ) -> tuple[_Outputs, _StatsResiduals]:
  out = _forward(cfg, student, teacher, labels, kept, extra)
  return out, _StatsResiduals(student, teacher, labels, kept, extra, out)


def _stats_bwd(cfg: _Config, residuals: _StatsResiduals, ct: _Outputs
               ) -> tuple[_Head[jax.Array | None], None, None, None, None]:
  student, teacher, labels, kept, extra, out = residuals
  grads = _backward(cfg, student, teacher, labels, kept, extra, out, ct)
  return _student_cotangent(student, grads), None, None, None, None


_stats.defvjp(_stats_fwd, _stats_bwd)


# --------------------------------------------------------------------------------------------
# The fused mode: a loss reduced to a scalar, its gradient computed in the forward pass.
# --------------------------------------------------------------------------------------------

# A per-token loss from the statistic's outputs, the per-token arguments and the
# hyper-parameters (the reduction's coefficients are in the arguments, under "coef").
_LossFn = Callable[[_Outputs, _Outputs, _Outputs], jax.Array]
# ``_fused_forward``'s carry over token blocks: the hidden states, the (T, V) logits buffer,
# then the gradients accumulated so far (weight, bias, cap, scale; None when not differentiated).
_FusedCarry = tuple[jax.Array, jax.Array, jax.Array | None, jax.Array | None, jax.Array | None,
                    jax.Array | None]


@overload
def _fused_forward(cfg: _Config, loss_fn: _LossFn, student: _Head[jax.Array], labels: jax.Array,
                   kept: jax.Array | None, args: _Outputs, hyper: _Outputs, *,
                   differentiate: Literal[False]) -> tuple[jax.Array, _Outputs]: ...
@overload
def _fused_forward(cfg: _Config, loss_fn: _LossFn, student: _Head[jax.Array], labels: jax.Array,
                   kept: jax.Array | None, args: _Outputs, hyper: _Outputs, *,
                   differentiate: Literal[True]
                   ) -> tuple[jax.Array, _Outputs, _Grads, _Outputs]: ...
def _fused_forward(cfg: _Config, loss_fn: _LossFn, student: _Head[jax.Array], labels: jax.Array,
                   kept: jax.Array | None, args: _Outputs, hyper: _Outputs, *,
                   differentiate: bool
                   ) -> tuple[jax.Array, _Outputs] | tuple[jax.Array, _Outputs, _Grads, _Outputs]:
  """Σ_i coef_i·loss_fn(out_i) over token blocks and, with ``differentiate``, its gradients.

  Per token block: the vocabulary chunks' raw logits go into a (T, V) buffer while the
  statistic accumulates (one product per tile); the block's per-token loss is differentiated
  with respect to the statistic's outputs (``jax.vjp``, with the reduction's coefficients as
  cotangents); the buffer's tiles then give d loss / d logits and the two gradient products.
  Without ``differentiate`` only the first pass runs (the same numbers, no gradient).
  """
  h, w, b, cap, scale = student
  n, v = h.shape[0], w.shape[1]
  block, chunk = cfg.tiling
  acc = _acc_dtype(h, w)
  axes = _varying_axes(student, labels, kept, args, hyper)
  n_chunks, n_blocks = -(-v // chunk), -(-n // block)
  if n == 0:  # an empty batch: a sum of nothing, with zero gradients
    out = cfg.spec.finish(cfg.spec.init(0, acc, axes), cfg.axis, {})
    total = jnp.zeros((), acc)
    if not differentiate:
      return total, out
    zero = functools.partial(jax.tree.map, jnp.zeros_like)
    grads: _Grads = (jnp.zeros((0,) + h.shape, h.dtype), jnp.zeros(w.shape, acc),
                     None if b is None else jnp.zeros(b.shape, acc), zero(cap), zero(scale))
    return total, out, grads, zero(hyper)

  # The stacked output is (total, out) or, differentiated, (total, out, dh, dhyper): a static
  # choice mypy cannot follow to the indexing below, hence Any.
  def one_block(carry: _FusedCarry, j: jax.Array) -> tuple[_FusedCarry, tuple[Any, ...]]:
    h_all, buffer, dw, db, dcap, dscale = carry
    h_all = _barrier(h_all, n_blocks)  # see _head_block
    row, new_rows = _span(n, block, j)
    kept_j = _rows(kept, row, block)
    h_j = _head_block(h_all, kept_j, row, block)
    labels_j = _rows(labels, row, block)
    args_j = {k: _rows(x, row, block) for k, x in args.items()}
    if new_rows is not None:  # rows the block before had: counted there
      args_j["coef"] = jnp.where(new_rows, args_j["coef"], 0.0)

    def first_pass(k: jax.Array, inner: tuple[jax.Array, _Outputs, jax.Array]
                   ) -> tuple[jax.Array, _Outputs, jax.Array]:
      weights, state, buffer = inner
      weights = lax.optimization_barrier(weights)
      start, fresh = _span(v, chunk, k)
      w_c, b_c = _chunk(student, weights, start, chunk)
      raw = _raw(h_j, w_c, b_c, acc)
      if differentiate:
        buffer = lax.dynamic_update_slice_in_dim(buffer, raw, start, axis=1)
      z, _ = _transform(raw, cap, scale)
      tile = _Tile(z, None, fresh, start, k * chunk, labels_j, {})
      return weights, cfg.spec.update(state, tile), buffer

    _, state, buffer = _fori(n_chunks, first_pass, (w, cfg.spec.init(block, acc, axes), buffer))
    out_j = cfg.spec.finish(state, cfg.axis, {})
    loss_j, loss_vjp = jax.vjp(lambda o, hp: loss_fn(o, args_j, hp), out_j, hyper)
    total_j = jnp.sum(args_j["coef"] * loss_j)
    if not differentiate:
      return carry, (total_j, out_j)
    assert dw is not None  # accumulated when differentiated
    ct_j, dhyper_j = loss_vjp(args_j["coef"].astype(loss_j.dtype))

    def second_pass(k: jax.Array, inner: tuple[jax.Array, jax.Array, jax.Array, jax.Array | None,
                                               jax.Array | None, jax.Array | None]
                    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None,
                               jax.Array | None, jax.Array | None]:
      weights, dh_j, dw, db, dcap, dscale = inner
      weights = lax.optimization_barrier(weights)
      start, fresh = _span(v, chunk, k)
      w_c, _ = _chunk(student, weights, start, chunk)
      z, parts = _transform(lax.dynamic_slice_in_dim(buffer, start, chunk, axis=1), cap, scale)
      tile = _Tile(z, None, fresh, start, None, labels_j, {})
      g, _ = cfg.spec.grad(tile, out_j, ct_j)
      if fresh is not None:
        g = jnp.where(fresh[None, :], g, 0.0)
      g, dcap, dscale = _untransform(g, parts, cap, scale, dcap, dscale)
      g_lo = g.astype(h.dtype)
      dh_j = dh_j + lax.dot_general(g_lo, w_c, (((1,), (1,)), ((), ())),
                                    preferred_element_type=acc)
      # The weight's gradient accumulates in float32 whatever the weight's dtype
      # (Liger-Kernel #512, #827: bf16 accumulation diverged training).
      dw_c = lax.dot_general(h_j, g_lo, (((0,), (0,)), ((), ())), preferred_element_type=acc)
      dw = lax.dynamic_update_slice_in_dim(
          dw, lax.dynamic_slice_in_dim(dw, start, chunk, axis=1) + dw_c, start, axis=1)
      if db is not None:
        db = lax.dynamic_update_slice_in_dim(
            db, lax.dynamic_slice_in_dim(db, start, chunk) + jnp.sum(g, axis=0), start, axis=0)
      return weights, dh_j, dw, db, dcap, dscale

    _, dh_j, dw, db, dcap, dscale = _fori(
        n_chunks, second_pass, (w, _zeros(h_j.shape, acc, axes), dw, db, dcap, dscale))
    return (h_all, buffer, dw, db, dcap, dscale), (total_j, out_j, dh_j.astype(h.dtype),
                                                   dhyper_j)

  init = (h, _zeros((block, v) if differentiate else (), acc, axes),
          _zeros(w.shape, acc, axes) if differentiate else None,
          None if b is None or not differentiate else _zeros(b.shape, acc, axes),
          None if cap is None or not differentiate else _zeros((), acc, axes),
          None if scale is None or not differentiate else _zeros((), acc, axes))
  (_, _, dw, db, dcap, dscale), stacked = _scan(n_blocks, one_block, init)
  total = jnp.sum(stacked[0])
  out = {k: _unblock(x, n) for k, x in stacked[1].items()}
  if not differentiate:
    return total, out
  assert dw is not None  # accumulated when differentiated
  grads = (stacked[2], dw, db, dcap, dscale)  # the hidden states' still per block
  return total, out, grads, jax.tree.map(lambda x: jnp.sum(x, axis=0), stacked[3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused(cfg: _Config, loss_fn: _LossFn, student: _Head[jax.Array], labels: jax.Array,
           kept: jax.Array | None, args: _Outputs, hyper: _Outputs
           ) -> tuple[jax.Array, _Outputs]:
  """(Σ_i coef_i·loss_fn(out_i, args_i, hyper), out) with the gradient of the first computed
  in the forward pass; ``out`` (the statistic's outputs) is not differentiated."""
  return _fused_forward(cfg, loss_fn, student, labels, kept, args, hyper, differentiate=False)


class _FusedResiduals(NamedTuple):
  """``_fused``'s gradients, computed in the forward pass for a unit cotangent."""
  student: _Head[jax.Array]
  grads: _Grads  # the hidden states' per token block
  dhyper: _Outputs
  hyper: _Outputs


def _fused_fwd(cfg: _Config, loss_fn: _LossFn, student: _Head[jax.Array], labels: jax.Array,
               kept: jax.Array | None, args: _Outputs, hyper: _Outputs
               ) -> tuple[tuple[jax.Array, _Outputs], _FusedResiduals]:
  total, out, grads, dhyper = _fused_forward(cfg, loss_fn, student, labels, kept, args, hyper,
                                             differentiate=True)
  return (total, out), _FusedResiduals(student, grads, dhyper, hyper)


def _fused_bwd(cfg: _Config, loss_fn: _LossFn, residuals: _FusedResiduals, cts: tuple[Any, Any]
               ) -> tuple[_Head[jax.Array | None], None, None, None, _Outputs]:
  student, (dh, dw, db, dcap, dscale), dhyper, hyper = residuals
  g = cts[0]  # the scalar's cotangent; ``out`` is not differentiated

  @overload
  def scaled(x: jax.Array, like: jax.Array) -> jax.Array: ...
  @overload
  def scaled(x: jax.Array | None, like: jax.Array | None) -> jax.Array | None: ...
  def scaled(x: jax.Array | None, like: jax.Array | None) -> jax.Array | None:
    # ``like`` (the primal) is None exactly when ``x`` (its gradient) is.
    return None if x is None else (
        (g * x.astype(g.dtype)).astype(like.dtype))  # type: ignore[union-attr]

  grads = (_unblock(scaled(dh, student.h), student.h.shape[0]), scaled(dw, student.w),
           scaled(db, student.b), scaled(dcap, student.cap), scaled(dscale, student.scale))
  student_ct = _Head(*(_sum_to(ct, x) for ct, x in zip(grads, student, strict=False)))
  hyper_ct = jax.tree.map(lambda d, x: _sum_to(scaled(d, x), x), dhyper, hyper)
  return student_ct, None, None, None, hyper_ct


_fused.defvjp(_fused_fwd, _fused_bwd)


# --------------------------------------------------------------------------------------------
# Input checks.
# --------------------------------------------------------------------------------------------

def _linear_inputs(fn: str, hidden: ArrayLike, weight: ArrayLike, hidden_name: str = "hidden",
                   weight_name: str = "weight") -> tuple[jax.Array, jax.Array]:
  """Checked (N, D) and (D, V) arrays in their common floating dtype."""
  h = _numerics.check_floating(fn, hidden_name, hidden)
  w = _numerics.check_floating(fn, weight_name, weight)
  if h.ndim != 2:
    raise ValueError(f"{fn}: `{hidden_name}` must have shape (N, D) (jax.vmap or reshape to "
                     f"(B·T, D) for more axes), got {hidden_name}.shape={h.shape}")
  if w.ndim != 2 or w.shape[0] != h.shape[1]:
    raise ValueError(f"{fn}: `{hidden_name}` (N, D) and `{weight_name}` (D, V) must share D, "
                     f"got {hidden_name}.shape={h.shape} and {weight_name}.shape={w.shape}")
  dtype = jnp.promote_types(h.dtype, w.dtype)
  return h.astype(dtype), w.astype(dtype)


def _token_mask(fn: str, name: str, mask: ArrayLike | None, n: int) -> jax.Array | None:
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `{name}` must be a boolean mask, got {mask.dtype}")
  if mask.shape != (n,):
    raise ValueError(f"{fn}: `{name}` must have shape (N,) = ({n},), one entry per token, got "
                     f"{name}.shape={mask.shape}")
  return mask


def _inputs(fn: str, hidden: ArrayLike, weight: ArrayLike, labels: ArrayLike,
            bias: ArrayLike | None, where: ArrayLike | None
            ) -> tuple[jax.Array, jax.Array, jax.Array | None, jax.Array, jax.Array | None]:
  h, w = _linear_inputs(fn, hidden, weight)
  labels = _numerics.wide_labels(_numerics.check_integer(fn, "labels", labels))
  if labels.shape != h.shape[:1]:
    raise ValueError(f"{fn}: `labels` must have shape (N,) for `hidden` of shape (N, D), got "
                     f"hidden.shape={h.shape} and labels.shape={labels.shape}")
  if bias is not None:
    bias = _numerics.check_floating(fn, "bias", bias)
    if bias.shape != w.shape[1:]:
      raise ValueError(f"{fn}: `bias` must have shape (V,) for `weight` of shape (D, V), got "
                       f"weight.shape={w.shape} and bias.shape={bias.shape}")
  return h, w, bias, labels, _token_mask(fn, "where", where, h.shape[0])


def _kept(labels: jax.Array, where: jax.Array | None, ignore_index: int | None
          ) -> jax.Array | None:
  """The tokens that count (None: all), from ``where`` and ``ignore_index``."""
  kept = where
  if ignore_index is not None:
    kept = labels != ignore_index if kept is None else kept & (labels != ignore_index)
  return kept


def _kernel_labels(labels: jax.Array, valid: jax.Array) -> jax.Array:
  """int32 labels for the kernel: a bad one (NaN'd afterwards) becomes −1, which matches no
  column; an ``ignore_index`` one matches none either."""
  return jnp.where(valid, labels, -1).astype(jnp.int32)


def _valid_labels(fn: str, labels: jax.Array, kept: jax.Array | None, v: int) -> jax.Array:
  """False at the kept tokens whose label is outside [0, V); ``checkify`` names the first.

  Called before any shard_map: checkify (jax 0.10.2) turns the errors raised before a shard_map
  into per-device ones, and ``err.get()`` crashes on a mix of those with one raised after it.
  """
  valid = (labels >= 0) & (labels < v)
  if kept is not None:
    valid = valid | ~kept
  _numerics.debug_check_labels(fn, "labels", labels, valid,
                               f"in [0, {v}) (or equal ignore_index)")
  return valid


def _check_reduction(fn: str, reduction: str) -> None:
  if reduction not in _REDUCTIONS:
    raise ValueError(f"{fn}(reduction=...) must be one of {_REDUCTIONS}, got {reduction!r}")


def _mesh_axes(fn: str, mesh: Mesh, vocab_axis: str, batch_axis: str, n: int, v: int
               ) -> tuple[int, int]:
  for name in (vocab_axis, batch_axis):
    if name not in mesh.shape:
      raise ValueError(f"{fn}: mesh axis {name!r} is not in the mesh's axes {tuple(mesh.shape)}")
  n_vocab, n_batch = mesh.shape[vocab_axis], mesh.shape[batch_axis]
  if v % n_vocab:
    raise ValueError(f"{fn}: the vocabulary size V={v} (weight.shape[1]) is not divisible by the "
                     f"{n_vocab} shards of mesh axis {vocab_axis!r}")
  if n % n_batch:
    raise ValueError(f"{fn}: the token count N={n} (hidden.shape[0]) is not divisible by the "
                     f"{n_batch} shards of mesh axis {batch_axis!r}")
  return n // n_batch, v // n_vocab


# --------------------------------------------------------------------------------------------
# The cross-entropy (both forms).
# --------------------------------------------------------------------------------------------

def _ce_token_loss(v: int, out: _Outputs, args: _Outputs, hyper: _Outputs) -> jax.Array:
  """lse − (1 − ε)·z_y − (ε/V)·Σ_j z_j + z·lse², NaN (zero gradient) for bad labels, 0 for
  dropped tokens. The one formula of every mode."""
  lse = out["lse"]
  eps, z_loss = hyper["label_smoothing"], hyper["z_loss"]
  loss = lse - (1 - eps) * out["label"] - (eps / v) * out["sum"] + z_loss * lse * lse
  loss = jnp.where(args["kept"], loss, jnp.zeros_like(loss))
  return _numerics.nan_where_invalid(loss, args["valid"])


# The cross-entropy's kernel run on (per-device) operands: (loss, lse) from the student head,
# labels, mask, per-token arguments, hyper-parameters, the vocabulary's mesh axis (or None)
# and the (N, V) the tiles are chosen for.
_Run = Callable[[_Head[jax.Array], jax.Array, jax.Array | None, _Outputs, _Outputs, str | None,
                 tuple[int, int]], tuple[jax.Array, jax.Array]]
# ``local(run, student, labels, kept, args, hyper, fused)``: ``run`` under shard_map.
_Local = Callable[[_Run, _Head[jax.Array], jax.Array, jax.Array | None, _Outputs, _Outputs,
                   bool], tuple[jax.Array, jax.Array]]


def _cross_entropy(fn: str, h: jax.Array, w: jax.Array, b: jax.Array | None, labels: jax.Array,
                   where: jax.Array | None, *, v_total: int, chunk_size: int | None,
                   token_chunk_size: int | None, z_loss: ArrayLike, label_smoothing: ArrayLike,
                   logit_soft_cap: ArrayLike | None, ignore_index: int | None, reduction: str,
                   return_lse: bool, local: _Local | None = None
                   ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """The cross-entropy of either form; ``local(run, arrays)`` runs ``run`` under shard_map."""
  _check_reduction(fn, reduction)
  acc = _acc_dtype(h, w)
  n = h.shape[0]
  kept = _kept(labels, where, ignore_index)
  valid = _valid_labels(fn, labels, kept, v_total)
  labels = _kernel_labels(labels, valid)
  kept_f = jnp.ones((n,), bool) if kept is None else kept
  hyper = {"z_loss": jnp.asarray(z_loss, acc), "label_smoothing": jnp.asarray(label_smoothing,
                                                                              acc)}
  cap = None if logit_soft_cap is None else jnp.asarray(logit_soft_cap, acc)
  loss_fn = functools.partial(_ce_token_loss, v_total)
  args = {"kept": kept_f, "valid": valid}
  fused = reduction != "none"
  if fused:
    count = jnp.sum(kept_f.astype(acc))
    coef = kept_f.astype(acc)
    args["coef"] = coef / jnp.maximum(count, 1) if reduction == "mean" else coef

  def run(student: _Head[jax.Array], labels: jax.Array, kept: jax.Array | None, args: _Outputs,
          hyper: _Outputs, axis: str | None, shape: tuple[int, int]
          ) -> tuple[jax.Array, jax.Array]:
    tiling = _tiling(fn, shape[0], h.shape[1], shape[1], chunk_size, token_chunk_size, fused)
    cfg = _Config(_Softmax(sums=True), tiling, axis)
    if fused:
      total, out = _fused(cfg, loss_fn, student, labels, kept, args, hyper)
      return total, lax.stop_gradient(out["lse"])  # a by-product: not differentiated
    out = _stats(cfg, student, None, labels, kept, {})
    return loss_fn(out, args, hyper), out["lse"]

  student = _Head(h, w, b, cap, None)
  if local is None:
    loss, lse = run(student, labels, kept, args, hyper, None, (n, w.shape[1]))
  else:
    loss, lse = local(run, student, labels, kept, args, hyper, fused)
  if not return_lse:
    return loss
  return loss, jnp.where(kept_f, lse, jnp.zeros_like(lse))


@_numerics.loss_jit(static=("chunk_size", "token_chunk_size", "ignore_index", "reduction",
                            "return_lse"), bounds=_CE_BOUNDS)
def linear_softmax_cross_entropy(hidden: ArrayLike, weight: ArrayLike, labels: ArrayLike, *,
                                 bias: ArrayLike | None = None, where: ArrayLike | None = None,
                                 chunk_size: int | None = None, z_loss: ArrayLike = 0.0,
                                 label_smoothing: ArrayLike = 0.0,
                                 logit_soft_cap: ArrayLike | None = None,
                                 ignore_index: int | None = None, reduction: str = "none",
                                 return_lse: bool = False,
                                 token_chunk_size: int | None = None
                                 ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Softmax cross-entropy of ``hidden @ weight (+ bias)`` without the (N, V) logits.

  With logits z = s(h W + b), s the optional soft cap c·tanh(·/c) (Gemma 2), and Z = Σ_j e^{z_j},

  .. math::
    \\ell = \\log Z - (1 - \\varepsilon) z_y - \\frac{\\varepsilon}{V} \\sum_j z_j
            + z_{\\text{loss}} \\log^2 Z

  ``reduction="none"`` (the default) returns ℓ per token. Its forward pass runs over tiles of
  T tokens × c vocabulary columns keeping a running log-sum-exp (online softmax), the target
  logit and the sum of logits; only log Z (N,) is saved. The backward pass recomputes each
  tile's logits, forms d\\ell/dz = (1 + 2 z_loss log Z)·softmax − (1 − ε)·onehot − ε/V and runs
  both products, writing the weight's gradient chunk by chunk in place: four (N, D)×(D, V)
  products in all.

  ``reduction="mean"`` (over the kept tokens: ``where`` and not ``ignore_index``) or ``"sum"``
  returns a scalar and computes its gradient in the forward pass, one block of T tokens at a
  time (their (T, V) float32 logits kept): three products in all, the naive computation's
  count. The backward pass scales the stored gradients by the incoming cotangent. Memory: the
  weight's gradient is accumulated in a float32 (D, V) buffer (one more weight-sized buffer
  when the weight is bf16) and the hidden states' is stored, (N, D) in their dtype.

  Every option works in every mode, with the same per-token formula and the same numbers. No
  (N, V) array exists in either mode; a vocabulary (or token count) that the tile does not
  divide is handled by shifting the last chunk (block) back and masking what it repeats (no
  padded copy of the weight).

  Args:
    hidden: (N, D) floating hidden states (bf16 products run in bf16, accumulated in float32).
    weight: (D, V) floating output projection.
    labels: (N,) integer target classes in [0, V).
    bias: optional (V,) logit bias.
    where: optional (N,) boolean mask of the tokens that count; dropped tokens give loss 0 and
      no gradient, and are left out of the mean.
    chunk_size: vocabulary columns per tile (static); ``None`` picks the widest power of two
      from 256 to 4096 whose float32 (T, c) logits fit 32 MiB and (D, c) weight chunk 8 MiB,
      then the largest divisor of V between half of it and it, if there is one.
    z_loss: coefficient z >= 0 of the auxiliary z·log²Z term (traced).
    label_smoothing: ε in [0, 1]; the target is (1 − ε)·onehot + ε/V (traced).
    logit_soft_cap: c > 0: logits become c·tanh(logit/c) before everything else; ``None`` off.
    ignore_index: a label value (static int) whose tokens are dropped, as in PyTorch.
    reduction: ``"none"``, ``"mean"`` or ``"sum"`` (static; see above).
    return_lse: also return the per-token log Z (N,) (0 at dropped tokens); differentiable with
      ``reduction="none"``, a constant (``stop_gradient``) in the fused modes.
    token_chunk_size: tokens per tile (static); ``None``: all N if their float32 (N, D) fits
      8 MiB, else the widest power of two that does (the fused mode also keeps its (T, V)
      float32 logits under 64 MiB), then the divisor rule.

  Returns:
    The per-token loss (N,) with ``reduction="none"``, else a scalar; float32 (float64 for
    float64 inputs). For (B, T, D) hidden states use ``jax.vmap`` over B (weight unmapped) or
    reshape to (B·T, D). With ``return_lse``, the pair ``(loss, lse)``.

  Derivatives: reverse mode only (``jax.custom_vjp``, DESIGN contract 3's exception); gradients
  flow to ``hidden``, ``weight``, ``bias``, ``logit_soft_cap``, ``z_loss`` and
  ``label_smoothing`` in every mode. Second derivatives: ``jax.jacrev(jax.grad(...))`` with
  ``reduction="none"`` (the fused modes' stored gradients are not differentiable again). The
  loss is smooth, so there are no kinks. In the fused modes the hidden states' gradient is
  stored in their dtype before the cotangent scales it (for bf16: one more rounding when the
  cotangent is not 1).

  Edge cases:
    A label outside [0, V) (other than ``ignore_index``) gives NaN for that token (and so a NaN
    mean) with a zero gradient for it, and under ``checkify.checkify(...,
    errors=checkify.user_checks)`` an error naming the label. Tokens dropped by
    ``where``/``ignore_index`` give exactly 0 and zero gradient even if their hidden state
    holds NaN or inf; a mean over no kept token is 0 with zero gradient. Large logits (1e4)
    stay finite (running max subtraction). NaN in a kept token's hidden state or in the weight
    propagates.

  References:
    E. Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", 2024 (Cut
    Cross-Entropy); Liger-Kernel ``LigerFusedLinearCrossEntropyLoss`` (the gradient in the
    forward pass); M. Milakov and N. Gimelshein, "Online normalizer calculation for softmax",
    2018; Chowdhery et al., PaLM, 2022 (z-loss); Gemma Team, Gemma 2, 2024 (logit
    soft-capping); optax ``softmax_cross_entropy_with_integer_labels`` and PyTorch
    ``cross_entropy`` for the value.

  Examples:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> h = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    >>> w = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    >>> y = jnp.array([0, 2])
    >>> print(*(f"{x:.4f}" for x in jaxloss.linear_softmax_cross_entropy(h, w, y)))
    0.4076 1.4076
    >>> print(f"{jaxloss.linear_softmax_cross_entropy(h, w, y, reduction='mean'):.4f}")
    0.9076
  """
  fn = "linear_softmax_cross_entropy"
  h, w, b, labels, where = _inputs(fn, hidden, weight, labels, bias, where)
  return _cross_entropy(fn, h, w, b, labels, where, v_total=w.shape[1], chunk_size=chunk_size,
                        token_chunk_size=token_chunk_size, z_loss=z_loss,
                        label_smoothing=label_smoothing, logit_soft_cap=logit_soft_cap,
                        ignore_index=ignore_index, reduction=reduction, return_lse=return_lse)


def _shard_map_runner(mesh: Mesh, vocab_axis: str, batch_axis: str, shape: tuple[int, int]
                      ) -> _Local:
  """``local(run, student, labels, kept, args, hyper, fused)`` for :func:`_cross_entropy`."""
  n_local, v_local = shape

  def local(run: _Run, student: _Head[jax.Array], labels: jax.Array, kept: jax.Array | None,
            args: _Outputs, hyper: _Outputs, fused: bool) -> tuple[jax.Array, jax.Array]:
    def shard(student: _Head[jax.Array], labels: jax.Array, kept: jax.Array | None,
              args: _Outputs, hyper: _Outputs) -> tuple[jax.Array, jax.Array]:
      # Labels outside this shard's columns match nothing: the owner alone adds the target.
      labels = labels - lax.axis_index(vocab_axis) * v_local
      loss, lse = run(student, labels, kept, args, hyper, vocab_axis, (n_local, v_local))
      return (lax.psum(loss, batch_axis) if fused else loss), lse

    tokens, columns = P(batch_axis), P(None, vocab_axis)
    student_spec = _Head(P(batch_axis, None), columns, P(vocab_axis), P(), P())
    return jax.shard_map(
        shard, mesh=mesh,
        in_specs=(student_spec, tokens, tokens, {k: tokens for k in args},
                  {k: P() for k in hyper}),
        out_specs=(P() if fused else tokens, tokens))(student, labels, kept, args, hyper)

  return local


@_numerics.loss_jit(static=("mesh", "vocab_axis", "batch_axis", "chunk_size", "token_chunk_size",
                            "ignore_index", "reduction", "return_lse"), bounds=_CE_BOUNDS)
def vocab_parallel_linear_softmax_cross_entropy(
    hidden: ArrayLike, weight: ArrayLike, labels: ArrayLike, *, mesh: Mesh,
    vocab_axis: str = "model", batch_axis: str = "data", bias: ArrayLike | None = None,
    where: ArrayLike | None = None, chunk_size: int | None = None, z_loss: ArrayLike = 0.0,
    label_smoothing: ArrayLike = 0.0, logit_soft_cap: ArrayLike | None = None,
    ignore_index: int | None = None, reduction: str = "none", return_lse: bool = False,
    token_chunk_size: int | None = None) -> jax.Array | tuple[jax.Array, jax.Array]:
  """:func:`linear_softmax_cross_entropy` with the weight sharded over the vocabulary.

  Megatron-LM's vocabulary-parallel cross-entropy under ``jax.shard_map``: the weight (and bias)
  is split over ``vocab_axis`` of ``mesh``, the hidden states, labels and mask over
  ``batch_axis``. Each device runs the chunked kernel on its V/n_vocab columns, giving a local
  log-sum-exp, target logit (0 unless it owns the label) and sum of logits per token block;
  then

  .. math::
    \\log Z = m + \\log \\sum_{\\text{shards}} e^{\\log Z_s - m}, \\quad
    m = \\max_{\\text{shards}} \\log Z_s

  (all-reduce max, then sum) and the target logit and sum are all-reduced by sum: only (T,)
  vectors cross devices in the forward pass. The gradient: the hidden states' is summed over
  ``vocab_axis``, the weight's over ``batch_axis``. With ``reduction="mean"|"sum"`` the
  gradient is computed in the forward pass as in the unsharded form, and the scalar is summed
  over ``batch_axis``.

  Args:
    hidden: (N, D) floating hidden states, N divisible by the size of ``batch_axis``.
    weight: (D, V) floating projection, V divisible by the size of ``vocab_axis``.
    labels: (N,) integer target classes in [0, V).
    mesh: a ``jax.sharding.Mesh`` (static) holding both axes.
    vocab_axis: the mesh axis that splits the vocabulary.
    batch_axis: the mesh axis that splits the tokens.
    bias: as in :func:`linear_softmax_cross_entropy`, sharded like the weight's columns.

  The other keywords (``where``, ``chunk_size``, ``z_loss``, ``label_smoothing``,
  ``logit_soft_cap``, ``ignore_index``, ``reduction``, ``return_lse``, ``token_chunk_size``) are
  as in :func:`linear_softmax_cross_entropy`; the tile sizes are chosen for the per-device shapes.

  Returns:
    As :func:`linear_softmax_cross_entropy`, the per-token loss sharded over ``batch_axis``
    (or a replicated scalar): the same numbers.

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

  Examples:
    >>> import jax, jax.numpy as jnp, numpy as np, jaxloss
    >>> from jax.sharding import Mesh
    >>> mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    >>> h = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    >>> w = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    >>> loss = jaxloss.vocab_parallel_linear_softmax_cross_entropy(h, w, jnp.array([0, 2]),
    ...                                                            mesh=mesh)
    >>> print(*(f"{x:.4f}" for x in loss))
    0.4076 1.4076
  """
  fn = "vocab_parallel_linear_softmax_cross_entropy"
  h, w, b, labels, where = _inputs(fn, hidden, weight, labels, bias, where)
  shape = _mesh_axes(fn, mesh, vocab_axis, batch_axis, h.shape[0], w.shape[1])
  return _cross_entropy(fn, h, w, b, labels, where, v_total=w.shape[1], chunk_size=chunk_size,
                        token_chunk_size=token_chunk_size, z_loss=z_loss,
                        label_smoothing=label_smoothing, logit_soft_cap=logit_soft_cap,
                        ignore_index=ignore_index, reduction=reduction, return_lse=return_lse,
                        local=_shard_map_runner(mesh, vocab_axis, batch_axis, shape))


# --------------------------------------------------------------------------------------------
# Token log-probabilities and entropies; distillation.
# --------------------------------------------------------------------------------------------

@_numerics.loss_jit(static=("chunk_size", "token_chunk_size", "return_entropy", "ignore_index"),
                    bounds={"temperature": _POSITIVE, "logit_soft_cap": _POSITIVE})
def linear_token_log_probs(hidden: ArrayLike, weight: ArrayLike, labels: ArrayLike, *,
                           bias: ArrayLike | None = None, where: ArrayLike | None = None,
                           temperature: ArrayLike = 1.0,
                           chunk_size: int | None = None, return_entropy: bool = False,
                           logit_soft_cap: ArrayLike | None = None,
                           ignore_index: int | None = None,
                           token_chunk_size: int | None = None
                           ) -> jax.Array | tuple[jax.Array, jax.Array]:
  """Per-token log p(label) (and entropy) of ``softmax((hidden @ weight + bias) / T)`` without
  the (N, V) logits.

  With x = s(h W + b) / T (s the optional soft cap) and lse = log Σ_v e^{x_v},

  .. math::
    \\log p(y) = x_y - \\mathrm{lse}, \\qquad
    H = -\\sum_v p_v \\log p_v = \\mathrm{lse} - \\sum_v p_v x_v

  The policy's quantities of RL fine-tuning (PPO, GRPO, DAPO: :mod:`jaxloss.preference` takes
  them) at the memory of the chunked cross-entropy: the same kernel, with the entropy
  accumulated online as log s + Σ e^{x−m}(m − x)/s (every term >= 0: no cancellation of lse
  against E[x]). Both outputs are differentiable, each with its own cotangent (a
  policy-gradient loss weights the log-probabilities by advantages and the entropy by a bonus).

  Args:
    hidden: (N, D) floating hidden states.
    weight: (D, V) floating output projection.
    labels: (N,) integer token ids in [0, V).
    bias: optional (V,) logit bias.
    where: optional (N,) boolean mask of the tokens that count (padding False): dropped
      tokens give 0 (log-probability and entropy) with zero gradient.
    temperature: T > 0 (traced), dividing the logits as a sampler with that temperature does.
    chunk_size: vocabulary columns per tile (static), as in
      :func:`linear_softmax_cross_entropy`.
    return_entropy: also return the entropy (static).
    logit_soft_cap: optional c > 0, applied before the temperature (Gemma 2).
    ignore_index: optional static int (the padding label, −100 in PyTorch and TRL): those
      tokens give 0 (log-probability and entropy) with zero gradient.
    token_chunk_size: tokens per tile (static), as in :func:`linear_softmax_cross_entropy`.

  Returns:
    Log-probabilities (N,) (<= 0), float32 (float64 for float64 inputs); with
    ``return_entropy`` the pair ``(log_probs, entropy)``, entropies in [0, log V] nats.
    :func:`jaxloss.token_log_probs` and :func:`jaxloss.token_entropy` of the explicit logits
    give the same numbers.

  Derivatives: reverse mode only (``jax.custom_vjp``): d log p(y)/dx_v = [v = y] − p_v,
  dH/dx_v = −p_v (log p_v + H), then through 1/T (and the soft cap) to ``hidden``, ``weight``,
  ``bias``, ``temperature`` and ``logit_soft_cap``.

  Edge cases:
    A label outside [0, V) other than ``ignore_index`` gives a NaN log-probability with zero
    gradient for that token (its entropy is unaffected), and under ``checkify`` an error
    naming it. Logits of magnitude 1e4 give finite values and gradients. NaN propagates.

  References:
    R. J. Williams, "Simple statistical gradient-following algorithms for connectionist
    reinforcement learning", 1992; Liger-Kernel's fused linear log-prob/entropy for RL
    (``LigerFusedLinearPPOBase``); E. Wijmans et al., "Cut Your Losses in Large-Vocabulary
    Language Models", 2024.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> h = jnp.array([[1.0, 0.0], [0.0, 2.0]])
    >>> w = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    >>> logp, entropy = jaxloss.linear_token_log_probs(h, w, jnp.array([0, 2]),
    ...                                                return_entropy=True)
    >>> print(*(f"{x:.4f}" for x in logp))
    -0.4076 -1.4076
    >>> print(*(f"{x:.4f}" for x in entropy))
    0.8324 0.8324
  """
  fn = "linear_token_log_probs"
  h, w, b, labels, where = _inputs(fn, hidden, weight, labels, bias, where)
  acc = _acc_dtype(h, w)
  n, v = h.shape[0], w.shape[1]
  kept = _kept(labels, where, ignore_index)
  valid = _valid_labels(fn, labels, kept, v)
  labels = _kernel_labels(labels, valid)
  cap = None if logit_soft_cap is None else jnp.asarray(logit_soft_cap, acc)
  scale = 1 / jnp.asarray(temperature, acc)
  tiling = _tiling(fn, n, h.shape[1], v, chunk_size, token_chunk_size, False)
  cfg = _Config(_Softmax(sums=False, entropy=return_entropy), tiling, None)
  out = _stats(cfg, _Head(h, w, b, cap, scale), None, labels, kept, {})
  log_p = out["label"] - out["lse"]
  if kept is not None:
    log_p = jnp.where(kept, log_p, jnp.zeros_like(log_p))
  log_p = _numerics.nan_where_invalid(log_p, valid)
  if not return_entropy:
    return log_p
  entropy = out["entropy"]
  return log_p, (entropy if kept is None else jnp.where(kept, entropy, jnp.zeros_like(entropy)))


@_numerics.loss_jit(static=("divergence", "chunk_size", "token_chunk_size", "mesh", "vocab_axis",
                            "batch_axis"),
                    bounds={"beta": _numerics.Range(0.0, 1.0), "temperature": _POSITIVE})
def linear_distillation_loss(student_hidden: ArrayLike, student_weight: ArrayLike,
                             teacher_hidden: ArrayLike, teacher_weight: ArrayLike, *,
                             divergence: str = "jsd", beta: ArrayLike = 0.5,
                             temperature: ArrayLike = 1.0, where: ArrayLike | None = None,
                             chunk_size: int | None = None,
                             token_chunk_size: int | None = None, mesh: Mesh | None = None,
                             vocab_axis: str = "model", batch_axis: str = "data") -> jax.Array:
  """Per-token divergence between a student's and a teacher's output distributions, from both
  models' hidden states, without either (N, V) logits.

  With p = softmax(h_s W_s / T) (the student) and q = softmax(h_t W_t / T) (the teacher):

  .. math::
    \\mathrm{JSD}_\\beta = \\beta\\,\\mathrm{KL}(q \\,\\|\\, m) + (1 - \\beta)\\,
    \\mathrm{KL}(p \\,\\|\\, m),\\quad m = (1 - \\beta) p + \\beta q; \\qquad
    \\mathrm{KL}(q \\,\\|\\, p) \\ (\\text{forward}), \\quad
    \\mathrm{KL}(p \\,\\|\\, q) \\ (\\text{reverse})

  ``divergence="jsd"`` is :func:`jaxloss.generalized_jsd` (GKD, TRL), KL(q ‖ p) at β = 0 and
  KL(p ‖ q) at β = 1; ``"forward_kl"`` and ``"reverse_kl"`` ignore β. The same kernel as
  :func:`linear_softmax_cross_entropy` with two heads per tile: a first pass over the
  vocabulary gives both log-sum-exps, a second sums the divergence from the exact
  log-probabilities (no cancellation of one log-sum-exp against the other); the backward pass
  recomputes both tiles' logits.

  The teacher is not differentiated: its hidden states and weight pass through
  ``jax.lax.stop_gradient`` (a frozen teacher, as in GKD and Liger's fused linear JSD).

  Args:
    student_hidden: (N, D_s) floating student hidden states.
    student_weight: (D_s, V) floating student output projection.
    teacher_hidden: (N, D_t) floating teacher hidden states.
    teacher_weight: (D_t, V) floating teacher output projection (the same vocabulary).
    divergence: ``"jsd"``, ``"forward_kl"`` or ``"reverse_kl"`` (static).
    beta: β in [0, 1] (traced), for ``"jsd"``.
    temperature: T > 0 (traced), dividing both models' logits (no T² factor is applied).
    where: optional (N,) boolean mask of the tokens that count; dropped tokens give 0 with
      zero gradient.
    chunk_size, token_chunk_size: tile sizes (static), as in
      :func:`linear_softmax_cross_entropy` (chosen for the wider of D_s and D_t).
    mesh: optional ``jax.sharding.Mesh`` (static): both weights are then sharded over
      ``vocab_axis``, the hidden states over ``batch_axis``, as in
      :func:`vocab_parallel_linear_softmax_cross_entropy` (V and N divisible by the axes'
      sizes); the same numbers as without a mesh.
    vocab_axis, batch_axis: the mesh axes (used with ``mesh``).

  Returns:
    The divergence per token (N,), float32 (float64 for float64 inputs).

  Derivatives: reverse mode only (``jax.custom_vjp``): the student's logits get
  (1 − β) p ⊙ (log p − log m − KL(p ‖ m)) / T for the JSD, (p − q) / T for the forward KL
  and p ⊙ (log p − log q − KL) / T for the reverse KL, then the products give ``student_hidden``
  and ``student_weight``; ``beta`` gets KL(q ‖ m) − KL(p ‖ m) for 0 < β < 1 and
  ``temperature`` its gradient through both models' logits.

  Edge cases:
    A teacher that is one-hot to float precision (a logit gap of 1e4) gives finite values
    and gradients for the forward KL and the JSD (log-probabilities come from the
    log-sum-exps, never from a log of an underflowed probability); the reverse KL is then
    large, the true value. Tokens dropped by ``where`` give exactly 0 and zero gradient even
    with NaN hidden states. NaN in a kept token propagates.

  References:
    R. Agarwal et al., "On-Policy Distillation of Language Models: Learning from
    Self-Generated Mistakes" (GKD), ICLR 2024; Y. Gu et al., "MiniLLM", ICLR 2024 (reverse
    KL); G. Hinton et al., "Distilling the Knowledge in a Neural Network", 2015 (forward KL
    with temperature); Liger-Kernel ``LigerFusedLinearJSDLoss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> hs, ws = jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]])
    >>> ht, wt = jnp.array([[0.0, 2.0]]), jnp.array([[0.5, 0.0, 0.0], [0.0, 1.0, -1.0]])
    >>> for d in ("jsd", "forward_kl", "reverse_kl"):
    ...   print(d, f"{jaxloss.linear_distillation_loss(hs, ws, ht, wt, divergence=d)[0]:.4f}")
    jsd 0.2125
    forward_kl 0.8651
    reverse_kl 1.0011
  """
  fn = "linear_distillation_loss"
  if divergence not in _DIVERGENCES:
    raise ValueError(f"{fn}(divergence=...) must be one of {_DIVERGENCES}, got {divergence!r}")
  hs, ws = _linear_inputs(fn, student_hidden, student_weight, "student_hidden",
                          "student_weight")
  ht, wt = _linear_inputs(fn, teacher_hidden, teacher_weight, "teacher_hidden",
                          "teacher_weight")
  if ht.shape[0] != hs.shape[0] or wt.shape[1] != ws.shape[1]:
    raise ValueError(f"{fn}: the student and the teacher must share N tokens and V words, got "
                     f"student_hidden.shape={hs.shape}, student_weight.shape={ws.shape}, "
                     f"teacher_hidden.shape={ht.shape} and teacher_weight.shape={wt.shape}")
  n, v = hs.shape[0], ws.shape[1]
  kept = _token_mask(fn, "where", where, n)
  acc = _acc_dtype(hs, ws, ht, wt)
  scale = 1 / jnp.asarray(temperature, acc)
  beta = jnp.asarray(beta, acc)
  ht, wt = lax.stop_gradient(ht), lax.stop_gradient(wt)
  shape = (n, v) if mesh is None else _mesh_axes(fn, mesh, vocab_axis, batch_axis, n, v)
  tiling = _tiling(fn, shape[0], max(hs.shape[1], ht.shape[1]), shape[1], chunk_size,
                   token_chunk_size, False)

  def run(student: _Head[jax.Array], teacher: _Head[jax.Array], kept: jax.Array | None,
          beta: jax.Array, axis: str | None) -> _Outputs:
    # β's gradient is added below; the kernel's extra inputs are constants.
    return _stats(_Config(_Divergence(divergence), tiling, axis), student, teacher, None, kept,
                  {"beta": lax.stop_gradient(beta)})

  student, teacher = _Head(hs, ws, None, None, scale), _Head(ht, wt, None, None, scale)
  if mesh is None:
    out = run(student, teacher, kept, beta, None)
  else:
    head = _Head(P(batch_axis, None), P(None, vocab_axis), None, None, P())
    out = jax.shard_map(lambda s, t, k, b: run(s, t, k, b, vocab_axis), mesh=mesh,
                        in_specs=(head, head, P(batch_axis), P()),
                        out_specs=P(batch_axis))(student, teacher, kept, beta)
  value = out["value"]
  if divergence == "jsd":
    # dJ/dβ = KL(q ‖ m) − KL(p ‖ m) for 0 < β < 1 (the terms through m cancel); 0 at the
    # endpoints, where the divergence switches to a KL that does not depend on β.
    interior = (beta > 0) & (beta < 1)
    slope = lax.stop_gradient(jnp.where(interior, out["kq"] - out["kp"], 0.0))
    value = value + (beta - lax.stop_gradient(beta)) * slope
  return value if kept is None else jnp.where(kept, value, jnp.zeros_like(value))
