"""Cross-entropy family: softmax and sigmoid cross-entropy, focal loss, NLL, KL, label smoothing.

Class-axis losses take ``logits`` with the classes along ``axis`` (any int axis, so
``axis=1`` serves (N, C, H, W) segmentation maps without a transpose) and return the logits'
shape without that axis. Sigmoid losses are elementwise. bf16/fp16 inputs are computed in
float32 and returned in the logits' dtype.

Two closed-form derivatives (``jax.custom_jvp``, contract 3) carry the family:

* ``_softmax_xent``: Σ_j t_j (lse − x_j) + a·(lse − x_y), whose gradient in the logits is
  (a + Σ_j t_j)·softmax − a·onehot(y) − t. The one-hot is a comparison against an iota inside
  the tangent, never an array built in the forward pass.
* ``_sigmoid_xent`` and ``_sigmoid_focal``: one ``e = exp(−|x|)`` gives σ(x) = 1/(1 + e) or
  e/(1 + e), 1 − σ(x), and softplus(±x) = max(±x, 0) + log1p(e); the tangent reuses them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import checkify

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


# --------------------------------------------------------------------------------------------
# Input handling shared by the class-axis losses.
# --------------------------------------------------------------------------------------------

def _class_mask(fn: str, where: ArrayLike | None, x: jax.Array, axis: int) -> jax.Array | None:
  """``where`` as a boolean mask of the logits' shape (a batch-shaped one masks whole rows)."""
  if where is None:
    return None
  m = jnp.asarray(where)
  if m.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `where` must be a boolean mask, got {m.dtype}")
  if m.ndim == x.ndim - 1:
    m = jnp.expand_dims(m, axis)
  if m.ndim != x.ndim or jnp.broadcast_shapes(m.shape, x.shape) != x.shape:
    raise ValueError(f"{fn}: `where` must have the shape of `logits` or of `logits` without "
                     f"axis {axis}, got where.shape={jnp.shape(where)} and "
                     f"logits.shape={x.shape}")
  return jnp.broadcast_to(m, x.shape)


def _per_class(fn: str, name: str, value: ArrayLike, x: jax.Array, axis: int) -> jax.Array:
  """A (C,) per-class array reshaped to broadcast along the class axis of ``x``."""
  v = _numerics.check_floating(fn, name, value)
  n_classes = x.shape[axis]
  if v.shape != (n_classes,):
    raise ValueError(f"{fn}: `{name}` must have shape ({n_classes},), one entry per class of "
                     f"logits.shape={x.shape} along axis {axis}, got {name}.shape={v.shape}")
  shape = [1] * x.ndim
  shape[axis] = n_classes
  return v.astype(x.dtype).reshape(shape)


def _integer_labels(fn: str, labels: ArrayLike, x: jax.Array, axis: int, mask: jax.Array | None,
                    ignore_index: int | None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Checks integer labels against the logits.

  Returns ``(index, bad, zero)``: the label clipped into range with the class axis kept (for
  ``take_along_axis`` and the iota comparison), a mask of the rows whose label is out of range
  or points at a masked class (their loss is NaN), and a mask of the rows whose loss is 0
  (``ignore_index`` labels and rows with no unmasked class, optax's rule). Under ``checkify``
  a bad label raises an error that names it.
  """
  y = _numerics.check_integer(fn, "labels", labels)
  batch_shape = x.shape[:axis] + x.shape[axis + 1:]
  if y.shape != batch_shape:
    raise ValueError(f"{fn}: `labels` must have the shape of `logits` without axis {axis}, "
                     f"{batch_shape}, got logits.shape={x.shape} and labels.shape={y.shape}")
  n_classes = x.shape[axis]
  in_range = (y >= 0) & (y < n_classes)
  index = jnp.expand_dims(jnp.where(in_range, y, jnp.zeros_like(y)), axis)
  zero = jnp.zeros(y.shape, bool) if ignore_index is None else y == ignore_index
  bad = ~in_range
  if mask is not None:
    zero = zero | ~jnp.any(mask, axis)
    bad = bad | ~jnp.take_along_axis(mask, index, axis).squeeze(axis)
  bad = bad & ~zero
  first_bad = y.ravel()[jnp.argmax(bad.ravel())] if y.size else jnp.zeros((), y.dtype)
  checkify.debug_check(~jnp.any(bad), f"{fn}: label {{}} is not a class index in "
                       f"[0, {n_classes}) (or points at a class masked out by `where`)",
                       first_bad)
  return index, bad, zero


def _probability_inputs(fn: str, logits: ArrayLike, labels: ArrayLike, axis: int,
                        where: ArrayLike | None
                        ) -> tuple[jax.Array, jax.Array, int, jax.Array | None]:
  """Checks logits against same-shaped probability labels; returns them in the compute dtype,
  the canonical axis and the class mask."""
  x = _numerics.check_floating(fn, "logits", logits)
  y = _numerics.check_floating(fn, "labels", labels)
  if y.shape != x.shape:
    raise ValueError(f"{fn}: `logits` and `labels` must have the same shape, got "
                     f"logits.shape={x.shape} and labels.shape={y.shape}")
  axis = _numerics.canonical_axis(fn, axis, x.ndim)
  _, (x, y) = _numerics.upcast(x, y)
  return x, y, axis, _class_mask(fn, where, x, axis)


def _smooth(y: jax.Array, alpha: jax.Array, mask: jax.Array | None, axis: int) -> jax.Array:
  """(1 − α)·y + α/C' on the C' unmasked classes, exactly 0 on the masked ones."""
  if mask is None:
    return (1.0 - alpha) * y + alpha / y.shape[axis]
  n_classes = jnp.maximum(jnp.sum(mask, axis, keepdims=True), 1).astype(y.dtype)
  return jnp.where(mask, (1.0 - alpha) * y + alpha / n_classes, jnp.zeros_like(y))


# --------------------------------------------------------------------------------------------
# Softmax cross-entropy core.
# --------------------------------------------------------------------------------------------

def _masked_softmax_parts(x: jax.Array, mask: jax.Array | None, axis: int, exact: bool = True
                          ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(lse, e, z): logsumexp over the unmasked classes (keepdims, 0 for a row with no unmasked
  class), e = exp(x − max) (0 at masked classes) and z = Σ e, so that softmax = e / z.
  ``exact=False`` skips the guard of rows whose max is infinite (they come out NaN)."""
  if mask is not None:
    x = jnp.where(mask, x, -jnp.inf)
  top = jnp.max(x, axis, keepdims=True)
  if exact:
    top = jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))
  e = jnp.exp(x - top)
  z = jnp.sum(e, axis, keepdims=True)
  if mask is not None:
    z = jnp.where(z == 0, jnp.ones_like(z), z)  # rows with no unmasked class: e = 0, lse = 0
  return jnp.log(z) + top, e, z


def _xent_terms(axis, x, mask, labels, a, t, poly, exact=True):
  """The loss and what its tangent needs: (loss, lse, e, z, x with masked entries at 0,
  lse − x_y, Σ_j t_j p_j). ``exact=False`` is plain arithmetic that XLA:CPU fuses into one
  pass: NaN where a zero target meets an infinite logit, or a row's max is infinite."""
  lse, e, z = _masked_softmax_parts(x, mask, axis, exact)
  x0 = x if mask is None else jnp.where(mask, x, jnp.zeros_like(x))
  loss = jnp.zeros_like(lse)
  nll_y = None
  if labels is not None:
    nll_y = lse - jnp.take_along_axis(x0, labels, axis)
    loss = a * nll_y
  if t is not None:
    t = jnp.broadcast_to(t, x.shape)
    # Σ_j t_j (lse − x_j) = (Σ_j t_j)·lse − Σ_j t_j x_j; t_j = 0 contributes exactly 0, also
    # where x_j = −inf (a class with zero target weight and zero probability).
    if exact:
      tx = jnp.where(t == 0, jnp.zeros_like(x), t * x0)
      loss = loss + jnp.sum(t, axis, keepdims=True) * lse - jnp.sum(tx, axis, keepdims=True)
    else:
      loss = loss + jnp.sum(t * (lse - x0), axis, keepdims=True)  # one sum, not two
  tp = None
  if poly is not None:
    # PolyLoss: + ε Σ_j t_j (1 − p_j) = ε (Σ_j t_j − Σ_j t_j p_j), p = e / z.
    tp = jnp.sum(t * e, axis, keepdims=True) / z
    loss = loss + poly * (jnp.sum(t, axis, keepdims=True) - tp)
  return loss, lse, e, z, x0, nll_y, tp


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _softmax_xent(axis: int, x: jax.Array, mask: jax.Array | None, labels: jax.Array | None,
                  a: jax.Array | None, t: jax.Array | None,
                  poly: jax.Array | None = None) -> jax.Array:
  """Σ_j t_j (lse − x_j) + a·(lse − x_y) [+ poly·Σ_j t_j (1 − p_j)], keepdims along ``axis``.

  ``lse`` is the logsumexp over the unmasked classes; ``labels`` (class axis kept, in range)
  with per-row weight ``a``, and ``t`` (broadcastable to ``x``, 0 at masked classes) are the
  two parts of the unnormalised target; either may be ``None``. ``poly`` (ε of PolyLoss, with
  ``t`` of ``x``'s shape) adds its first polynomial term, p being the softmax.

  Undifferentiated, unmasked and with probability targets only (no ``labels``), plain
  arithmetic runs first (one fused pass on CPU; the selects that keep 0·(−inf) at 0 and guard
  infinite maxima cost an (N, C) buffer and a pass there, ~3x the time), and only a NaN in its
  result (an infinite logit, or NaN input) recomputes the exact form under ``lax.cond``.
  """
  exact = lambda: _xent_terms(axis, x, mask, labels, a, t, poly)[0]
  if mask is not None or t is None or labels is not None:
    return exact()  # with integer labels the exact form is as fast (forward ÷optax 0.99)
  fast = _xent_terms(axis, x, mask, labels, a, t, poly, exact=False)[0]
  return lax.cond(jnp.any(jnp.isnan(fast)), exact, lambda: fast)


@_softmax_xent.defjvp
def _softmax_xent_jvp(axis, primals, tangents):
  x, mask, labels, a, t, poly = primals
  dx, _, _, da, dt, dpoly = tangents
  loss, lse, e, z, x0, nll_y, tp = _xent_terms(axis, x, mask, labels, a, t, poly)
  tangent = jnp.zeros_like(loss)
  if _numerics.nonzero(dx):
    # d/dx_j = (a + Σ t)·p_j − a·[j = y] − t_j, with p = e / z the softmax over the unmasked
    # classes, from the exponentials the forward pass computed; the one-hot is an iota test.
    total = jnp.zeros_like(lse)
    if labels is not None:
      total = total + a
    if t is not None:
      total = total + jnp.sum(jnp.broadcast_to(t, x.shape), axis, keepdims=True)
    coeff = (total / z) * e
    if labels is not None:
      iota = lax.broadcasted_iota(labels.dtype, x.shape, axis)
      coeff = coeff - jnp.where(iota == labels, a, jnp.zeros_like(a))
    if t is not None:
      coeff = coeff - t
    if poly is not None:
      # + ε (p_j Σ_c t_c p_c − t_j p_j) = ε p_j (Σ_c t_c p_c − t_j).
      coeff = coeff + poly * ((e / z) * (tp - t))
    tangent = tangent + jnp.sum(coeff * dx, axis, keepdims=True)
  if labels is not None and _numerics.nonzero(da):
    tangent = tangent + da * nll_y
  if t is not None and _numerics.nonzero(dt):
    # d/dt_j = lse − x_j: +inf where p_j = 0 (log 0), as the mathematics says.
    d_dt = lse - x0 if poly is None else (lse - x0) + poly * (1.0 - e / z)
    tangent = tangent + jnp.sum(jnp.broadcast_to(dt, x.shape) * d_dt, axis, keepdims=True)
  if poly is not None and _numerics.nonzero(dpoly):
    tangent = tangent + dpoly * (jnp.sum(t, axis, keepdims=True) - tp)
  return loss, tangent


# Symbolic zeros: an unperturbed target has no tangent term, so the +inf of lse − x_j at an
# unmasked −inf logit with zero target never meets a zero tangent (0·inf = NaN in jax.jvp).
_softmax_xent.defjvp(_softmax_xent_jvp, symbolic_zeros=True)


@_numerics.loss_jit(static=("axis",), bounds={"label_smoothing": _numerics.Range(low=0.0, high=1.0)})
def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike, axis: int = -1,
                          where: ArrayLike | None = None, *, label_smoothing: ArrayLike = 0.0,
                          class_weights: ArrayLike | None = None) -> jax.Array:
  """Softmax cross-entropy against probability targets (optax's ``softmax_cross_entropy``).

  .. math::
    \\ell = -\\sum_c w_c\\, y'_c \\log \\mathrm{softmax}(x)_c, \\qquad
    y' = (1 - \\varepsilon)\\, y + \\varepsilon / C'

  with ``C'`` the number of unmasked classes, ``w`` the class weights (1 when ``None``) and
  the softmax taken over the unmasked classes.

  Args:
    logits: floating array, classes along ``axis``, shape ``S``.
    labels: floating probability targets of shape ``S`` (need not sum to 1).
    axis: the class axis (static int).
    where: boolean mask of shape ``S`` (or ``S`` without ``axis``, masking whole rows):
      masked classes are taken out of the softmax and the sum (optax's meaning).
    label_smoothing: ε in [0, 1] (traced); spread over the unmasked classes only.
    class_weights: optional (C,) weights, PyTorch's ``weight`` with probability targets.

  Returns:
    The loss, ``S`` without ``axis``, in the logits' dtype.

  Gradient (a ``custom_jvp``): d/dx_j = (Σ_c w_c y'_c)·p_j − w_j y'_j, which is
  softmax − labels for plain one-hot labels.

  Edge cases:
    Masked logits may be −inf: loss and gradient stay finite and the masked entries get
    gradient exactly 0, in forward mode too (optax #896 gives NaN). A row with no unmasked
    class gives 0 (optax). An unmasked −inf logit with a zero target contributes 0; with a
    positive target the loss is +inf, as the mathematics says. The derivative with respect to
    a target is −log p_c, +inf where p_c = 0. NaN inputs propagate.

  References:
    optax ``optax.losses.softmax_cross_entropy``; PyTorch ``cross_entropy`` with probability
    targets, ``weight`` and ``label_smoothing``; Szegedy et al., "Rethinking the Inception
    Architecture for Computer Vision", CVPR 2016 (label smoothing).
  """
  fn = "softmax_cross_entropy"
  x, y, axis, mask = _probability_inputs(fn, logits, labels, axis, where)
  dtype = x.dtype
  t = _smooth(y, jnp.asarray(label_smoothing, dtype), mask, axis)
  if class_weights is not None:
    t = t * _per_class(fn, "class_weights", class_weights, x, axis)
  loss = _softmax_xent(axis, x, mask, None, None, t)
  return loss.squeeze(axis).astype(logits.dtype)


@_numerics.loss_jit(static=("axis", "ignore_index"),
                    bounds={"label_smoothing": _numerics.Range(low=0.0, high=1.0)})
def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike, labels: ArrayLike, axis: int = -1, where: ArrayLike | None = None, *,
    label_smoothing: ArrayLike = 0.0, ignore_index: int | None = None,
    class_weights: ArrayLike | None = None) -> jax.Array:
  """Softmax cross-entropy against integer class labels (optax's name, PyTorch's options).

  .. math::
    \\ell = (1 - \\varepsilon)\\, w_y (\\mathrm{lse}(x) - x_y)
            + \\frac{\\varepsilon}{C'} \\sum_{c\\ \\mathrm{unmasked}} w_c (\\mathrm{lse}(x) - x_c)

  which is PyTorch's ``cross_entropy(..., weight=w, label_smoothing=ε, reduction="none")``
  (the smoothing term carries every class's own weight), and optax's loss for w = 1, ε = 0.

  Args:
    logits: floating array with classes along ``axis`` (static int; ``axis=1`` for
      (N, C, H, W)), shape ``S``.
    labels: integer class indices, shape ``S`` without ``axis``.
    axis: the class axis.
    where: boolean mask of shape ``S`` (or ``S`` without ``axis``): masked classes are taken
      out of the softmax (optax's meaning).
    label_smoothing: ε in [0, 1] (traced), spread over the unmasked classes only.
    ignore_index: optional static int; rows with this label give 0 with gradient 0.
    class_weights: optional (C,) per-class weights (PyTorch's ``weight``).

  Returns:
    The loss, ``S`` without ``axis``, in the logits' dtype.

  Gradient (a ``custom_jvp``): d/dx_j = s·p_j − (1 − ε) w_y [j = y] − (ε/C') w_j, with
  s = (1 − ε) w_y + (ε/C') Σ_c w_c: softmax − onehot(y) when w = 1, ε = 0. The one-hot is a
  comparison with an iota inside the tangent; the forward pass gathers x_y and never builds
  an array of the logits' size besides the softmax the gradient needs.

  Edge cases:
    A label outside [0, C) (negative ones included, other than ``ignore_index``) or pointing
    at a class masked out by ``where`` gives NaN for that row (optax wraps −1 to the last
    class); under ``checkify.checkify(..., errors=checkify.user_checks)`` the error names the
    label. Float labels raise ``TypeError``. A row with no unmasked class gives 0 (optax).
    Logits of magnitude 1e4 and masked −inf logits give finite losses and gradients, 0 at the
    masked entries (optax #896). NaN logits propagate.

  References:
    optax ``optax.losses.softmax_cross_entropy_with_integer_labels``; PyTorch
    ``torch.nn.functional.cross_entropy`` (PyTorch issues #69339, #73205 on weights with
    label smoothing).
  """
  fn = "softmax_cross_entropy_with_integer_labels"
  x = _numerics.check_floating(fn, "logits", logits)
  axis = _numerics.canonical_axis(fn, axis, x.ndim)
  dtype, (x,) = _numerics.upcast(x)
  mask = _class_mask(fn, where, x, axis)
  index, bad, zero = _integer_labels(fn, labels, x, axis, mask, ignore_index)
  eps = jnp.asarray(label_smoothing, dtype)
  w = None if class_weights is None else _per_class(fn, "class_weights", class_weights, x, axis)
  a = (1.0 - eps) * (jnp.ones(index.shape, dtype) if w is None else jnp.take(w.ravel(), index))
  zero_k, bad_k = jnp.expand_dims(zero, axis), jnp.expand_dims(bad, axis)
  a = jnp.where(zero_k, 0.0, jnp.where(bad_k, jnp.nan, a))
  # ε/C' on every unmasked class, times its weight: the smoothing part of the target.
  spread = jnp.ones((1,) * x.ndim, dtype) if mask is None else mask.astype(dtype)
  if w is not None:
    spread = spread * w
  n_classes = x.shape[axis] if mask is None else jnp.maximum(
      jnp.sum(mask, axis, keepdims=True), 1).astype(dtype)
  per_class = jnp.where(zero_k, 0.0, eps / n_classes)
  loss = _softmax_xent(axis, x, mask, index, a, per_class * spread)
  return jnp.where(zero, 0.0, loss.squeeze(axis)).astype(logits.dtype)


# --------------------------------------------------------------------------------------------
# Sigmoid cross-entropy and focal loss: one exp(−|x|) serves every transcendental.
# --------------------------------------------------------------------------------------------

def _sigmoid_parts(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(σ(x), 1 − σ(x), −log σ(x), −log(1 − σ(x))) from e = exp(−|x|), without cancellation.

  σ(x) = 1/(1 + e) for x ≥ 0 and e/(1 + e) below; −log σ(x) = softplus(−x) =
  max(−x, 0) + log1p(e), −log(1 − σ(x)) = softplus(x) = max(x, 0) + log1p(e).
  """
  e = jnp.exp(-jnp.abs(x))
  inv = 1.0 / (1.0 + e)
  positive = x >= 0
  p = jnp.where(positive, inv, e * inv)
  q = jnp.where(positive, e * inv, inv)
  log1pe = jnp.log1p(e)
  return p, q, jnp.maximum(-x, 0.0) + log1pe, jnp.maximum(x, 0.0) + log1pe


def _bce_terms(x, y, pos_weight):
  p, q, nlp, nlq = _sigmoid_parts(x)
  if pos_weight is None:
    # y·softplus(−x) + (1 − y)·softplus(x) = softplus(x) − y·x: fewer operations, same value.
    return p, q, nlp, nlq, y, nlq - y * x
  wy = pos_weight * y
  return p, q, nlp, nlq, wy, wy * nlp + (1.0 - y) * nlq


@jax.custom_jvp
def _sigmoid_xent(x: jax.Array, y: jax.Array, pos_weight: jax.Array | None) -> jax.Array:
  """−w·y·log σ(x) − (1 − y)·log(1 − σ(x)), w = ``pos_weight`` (1 when ``None``)."""
  return _bce_terms(x, y, pos_weight)[-1]


@_sigmoid_xent.defjvp
def _sigmoid_xent_jvp(primals, tangents):
  x, y, pos_weight = primals
  dx, dy, dw = tangents
  p, q, nlp, nlq, wy, loss = _bce_terms(x, y, pos_weight)
  tangent = jnp.zeros_like(loss)
  if _numerics.nonzero(dx):
    # d/dx = (1 − y)·σ(x) − w·y·(1 − σ(x)) (= σ(x) − y for w = 1), with 1 − σ(x) exact.
    tangent = tangent + ((1.0 - y) * p - wy * q) * dx
  if _numerics.nonzero(dy):
    tangent = tangent + ((nlp if pos_weight is None else pos_weight * nlp) - nlq) * dy
  if pos_weight is not None and _numerics.nonzero(dw):
    tangent = tangent + y * nlp * dw
  return loss, tangent


_sigmoid_xent.defjvp(_sigmoid_xent_jvp, symbolic_zeros=True)


def _focal_terms(x, y, gamma):
  p, q, nlp, nlq, _, ce = _bce_terms(x, y, None)
  base = y * q + (1.0 - y) * p  # 1 − p_t
  weight = jnp.power(base, gamma)  # 0^0 = 1: gamma = 0 is exactly the cross-entropy
  return p, q, nlp, nlq, ce, base, weight


@jax.custom_jvp
def _sigmoid_focal(x: jax.Array, y: jax.Array, gamma: jax.Array) -> jax.Array:
  """(1 − p_t)^γ · BCE(x, y), 1 − p_t = y(1 − σ(x)) + (1 − y)σ(x)."""
  _, _, _, _, ce, _, weight = _focal_terms(x, y, gamma)
  return weight * ce


@_sigmoid_focal.defjvp
def _sigmoid_focal_jvp(primals, tangents):
  x, y, gamma = primals
  dx, dy, dgamma = tangents
  p, q, nlp, nlq, ce, base, weight = _focal_terms(x, y, gamma)
  loss = weight * ce
  tangent = jnp.zeros_like(loss)
  positive = base > 0
  safe_base = jnp.where(positive, base, jnp.ones_like(base))
  if _numerics.nonzero(dx):
    # d(1 − p_t)/dx = (1 − 2y)σ(1 − σ), so d/dx = γ·w·(1 − 2y)·r·CE + w·(σ − y) with
    # r = σ(1 − σ)/(1 − p_t): written as the ratio, the (1 − p_t)^(γ−1) = inf that meets
    # σ(1 − σ) = 0 at saturated logits with γ < 1 (optax #1267) never appears. The limit of r
    # at 1 − p_t = 0 (y = 1, σ = 1 or y = 0, σ = 0) is 1.
    ratio = jnp.where(positive, p * q / safe_base, jnp.ones_like(base))
    tangent = tangent + weight * (gamma * (1.0 - 2.0 * y) * ratio * ce
                                  + (1.0 - y) * p - y * q) * dx
  if _numerics.nonzero(dy):
    # d(1 − p_t)/dy = (1 − 2σ); the BCE's d/dy = log(σ(x)/(1 − σ(x))) = nlq − nlp.
    grow = jnp.where(positive, weight / safe_base, jnp.zeros_like(base))
    tangent = tangent + (gamma * grow * (q - p) * ce + weight * (nlp - nlq)) * dy
  if _numerics.nonzero(dgamma):
    log_base = jnp.where(positive, jnp.log(safe_base), jnp.zeros_like(base))
    tangent = tangent + weight * log_base * ce * dgamma
  return loss, tangent


_sigmoid_focal.defjvp(_sigmoid_focal_jvp, symbolic_zeros=True)


def _binary_inputs(fn: str, logits: ArrayLike, labels: ArrayLike
                   ) -> tuple[jnp.dtype, jax.Array, jax.Array]:
  dtype, x, y = _numerics.elementwise_inputs(fn, logits, labels, "logits", "labels")
  return dtype, x, jnp.broadcast_to(y, x.shape)


@_numerics.loss_jit()
def sigmoid_binary_cross_entropy(logits: ArrayLike, labels: ArrayLike, *,
                                 pos_weight: ArrayLike | None = None) -> jax.Array:
  """Sigmoid (binary) cross-entropy on logits, with PyTorch's ``pos_weight``.

  .. math::
    \\ell = -w\\, y \\log\\sigma(x) - (1 - y)\\log(1 - \\sigma(x))
          = w\\, y\\, \\mathrm{softplus}(-x) + (1 - y)\\, \\mathrm{softplus}(x)

  Args:
    logits: floating array of shape ``S``.
    labels: 0/1 labels or probabilities in [0, 1], integer or floating, shape ``S`` (or a
      scalar).
    pos_weight: optional weight ``w`` of the positive term (PyTorch's ``pos_weight``),
      broadcasting against the trailing axes of ``logits`` (per class: shape (C,)).

  Returns:
    The elementwise loss, shape ``S``, in the logits' dtype.

  Gradient (a ``custom_jvp``): d/dx = (1 − y)σ(x) − w·y·(1 − σ(x)), which is σ(x) − y for
  w = 1; d/dy = w·softplus(−x) − softplus(x).

  Edge cases:
    Finite for every finite logit (±1e30 included: the loss is then |x| or 0). Unlike optax
    0.2.8, (N,) logits against (N, 1) labels raise ``ValueError`` instead of broadcasting to
    (N, N). NaN inputs propagate.

  References:
    optax ``optax.losses.sigmoid_binary_cross_entropy``; PyTorch
    ``binary_cross_entropy_with_logits`` (``pos_weight``).
  """
  fn = "sigmoid_binary_cross_entropy"
  dtype, x, y = _binary_inputs(fn, logits, labels)
  if pos_weight is not None:
    w = _numerics.check_floating(fn, "pos_weight", pos_weight).astype(x.dtype)
    if w.ndim > x.ndim or jnp.broadcast_shapes(w.shape, x.shape) != x.shape:
      raise ValueError(f"{fn}: `pos_weight` must broadcast against the trailing axes of "
                       f"`logits`, got pos_weight.shape={w.shape} and logits.shape={x.shape}")
    pos_weight = w.reshape((1,) * (x.ndim - w.ndim) + w.shape)
  return _sigmoid_xent(x, y, pos_weight).astype(dtype)


@_numerics.loss_jit()
def binary_cross_entropy(probs: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Binary cross-entropy on probabilities, ``−y log p − (1 − y) log(1 − p)``.

  Args:
    probs: floating probabilities in [0, 1], shape ``S``.
    labels: 0/1 labels or probabilities, integer or floating, shape ``S`` (or a scalar).

  Returns:
    The elementwise loss, shape ``S``, in the probabilities' dtype.

  Gradient: d/dp = (p − y)/(p(1 − p)); the terms with a zero coefficient are skipped
  (0·log 0 = 0), so the gradient is finite at p = 0 with y = 0 and at p = 1 with y = 1.

  Edge cases:
    Exact at p ∈ {0, 1}: 0 where the label agrees, +inf where it disagrees (the true value;
    PyTorch instead clamps the log at −100 and returns 100). ``1 − p`` is rounded in float32,
    so for p within 6e-8 of 1 the second term loses precision: prefer
    :func:`sigmoid_binary_cross_entropy` on logits. NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.binary_cross_entropy``.
  """
  dtype, p, y = _numerics.elementwise_inputs("binary_cross_entropy", probs, labels, "probs",
                                             "labels")
  return -(_numerics.xlogy(y, p) + _numerics.xlogy(1.0 - y, 1.0 - p)).astype(dtype)


@_numerics.loss_jit(bounds={"gamma": _numerics.Range(low=0.0), "alpha": _numerics.Range(low=0.0, high=1.0)})
def sigmoid_focal_loss(logits: ArrayLike, labels: ArrayLike, *, alpha: ArrayLike | None = None,
                       gamma: ArrayLike = 2.0) -> jax.Array:
  """Sigmoid focal loss (Lin et al. 2017), optax's ``sigmoid_focal_loss``.

  .. math::
    \\ell = -\\alpha_t (1 - p_t)^\\gamma \\log p_t, \\qquad
    1 - p_t = y(1 - \\sigma(x)) + (1 - y)\\sigma(x), \\qquad
    \\alpha_t = \\alpha y + (1 - \\alpha)(1 - y)

  with −log p_t the sigmoid cross-entropy, so soft labels in [0, 1] work as in optax.

  Args:
    logits: floating array of shape ``S``.
    labels: 0/1 labels or probabilities, integer or floating, shape ``S`` (or a scalar).
    alpha: optional weight of the positive class in [0, 1] (traced); ``None`` weighs both
      classes 1.
    gamma: focusing exponent γ >= 0 (traced); γ = 0 is the cross-entropy.

  Returns:
    The elementwise loss, shape ``S``, in the logits' dtype.

  Gradient (a ``custom_jvp``): with w = (1 − p_t)^γ and CE = −log p_t,
  d/dx = α_t [γ w (1 − 2y) σ(1 − σ)/(1 − p_t)·CE + w (σ − y)].

  Edge cases:
    Finite values and gradients at γ = 0, at 0 < γ < 1 and at logits of ±1e4 or ±1e30, where
    optax's gradient is NaN (optax #1267: (1 − p_t)^(γ − 1) = inf times σ(1 − σ) = 0). The
    gradient with respect to γ is w·log(1 − p_t)·CE, taken as 0 where 1 − p_t = 0. NaN inputs
    propagate.

  References:
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017;
    optax ``optax.losses.sigmoid_focal_loss``.
  """
  fn = "sigmoid_focal_loss"
  dtype, x, y = _binary_inputs(fn, logits, labels)
  loss = _sigmoid_focal(x, y, jnp.asarray(gamma, x.dtype))
  if alpha is not None:
    a = jnp.asarray(alpha, x.dtype)
    loss = (a * y + (1.0 - a) * (1.0 - y)) * loss
  return loss.astype(dtype)


# --------------------------------------------------------------------------------------------
# Integer-label losses on log-probabilities and the softmax focal loss.
# --------------------------------------------------------------------------------------------

def _gather_label(fn: str, x: jax.Array, labels: ArrayLike, axis: int,
                  ignore_index: int | None, class_weights: ArrayLike | None
                  ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(x_y, w_y, bad, zero) with the class axis removed; w_y is 1 without class weights."""
  index, bad, zero = _integer_labels(fn, labels, x, axis, None, ignore_index)
  x_y = jnp.take_along_axis(x, index, axis).squeeze(axis)
  if class_weights is None:
    return x_y, jnp.ones((), x.dtype), bad, zero
  w = _per_class(fn, "class_weights", class_weights, x, axis)
  return x_y, jnp.take(w.ravel(), index.squeeze(axis)), bad, zero


def _finish_integer(loss: jax.Array, bad: jax.Array, zero: jax.Array) -> jax.Array:
  """NaN for a bad label, 0 (with gradient 0) for an ignored row."""
  return jnp.where(zero, 0.0, jnp.where(bad, jnp.nan, loss))


@_numerics.loss_jit(static=("axis", "ignore_index"))
def nll_loss(log_probs: ArrayLike, labels: ArrayLike, *, axis: int = -1,
             ignore_index: int | None = None,
             class_weights: ArrayLike | None = None) -> jax.Array:
  """Negative log-likelihood of integer labels given log-probabilities, ``−w_y·log p_y``.

  Args:
    log_probs: floating log-probabilities with classes along ``axis`` (static int), shape
      ``S`` (e.g. ``jax.nn.log_softmax`` of logits; not normalised here).
    labels: integer class indices, shape ``S`` without ``axis``.
    axis: the class axis.
    ignore_index: optional static int; rows with this label give 0 with gradient 0.
    class_weights: optional (C,) per-class weights (PyTorch's ``weight``).

  Returns:
    The loss, ``S`` without ``axis``, in the log-probabilities' dtype.

  Gradient: −w_y at the label's entry, 0 elsewhere.

  Edge cases:
    A label outside [0, C) other than ``ignore_index`` gives NaN for that row, and under
    ``checkify`` an error naming it; float labels raise ``TypeError``. A log-probability of
    −inf at the label gives +inf (the true value). NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.nll_loss`` (``reduction="none"``).
  """
  fn = "nll_loss"
  lp = _numerics.check_floating(fn, "log_probs", log_probs)
  axis = _numerics.canonical_axis(fn, axis, lp.ndim)
  _, (lp,) = _numerics.upcast(lp)
  lp_y, w_y, bad, zero = _gather_label(fn, lp, labels, axis, ignore_index, class_weights)
  return _finish_integer(-w_y * lp_y, bad, zero).astype(log_probs.dtype)


@_numerics.loss_jit(static=("axis",), bounds={"gamma": _numerics.Range(low=0.0),
                                               "alpha": _numerics.Range(low=0.0)})
def softmax_focal_loss(logits: ArrayLike, labels: ArrayLike, *, gamma: ArrayLike = 2.0,
                       alpha: ArrayLike | None = None, axis: int = -1) -> jax.Array:
  """Softmax focal loss, ``−α_y (1 − p_y)^γ log p_y`` with p = softmax(logits).

  Args:
    logits: floating array with classes along ``axis`` (static int), shape ``S``.
    labels: integer class indices, shape ``S`` without ``axis``.
    gamma: focusing exponent γ >= 0 (traced); γ = 0 with ``alpha=None`` is
      :func:`softmax_cross_entropy_with_integer_labels`.
    alpha: ``None`` (1), a scalar weighing every class, or a (C,) per-class array.

  Returns:
    The loss, ``S`` without ``axis``, in the logits' dtype.

  Gradient: with u = 1 − p_y and CE = −log p_y, d/dx_j = α_y [u^γ (p_j − [j = y])
  + γ u^(γ−1) p_y (p_j − [j = y]) CE]. u is computed as −expm1(log p_y), accurate near p_y = 1.

  Edge cases:
    Finite values and gradients at γ = 0, 0 < γ < 1 and logit gaps of 1e4 or more, where
    u = 0 exactly: the factor u^γ is then taken as a constant (its derivative u^(γ−1)·du is
    inf·0 there, optax #1267), which is the true limit 0 of the product. A label outside
    [0, C) gives NaN for that row and a ``checkify`` error naming it. NaN inputs propagate.

  References:
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (Eq. 5, with the
    softmax in place of the sigmoid).
  """
  fn = "softmax_focal_loss"
  x = _numerics.check_floating(fn, "logits", logits)
  axis = _numerics.canonical_axis(fn, axis, x.ndim)
  _, (x,) = _numerics.upcast(x)
  alpha_w = None
  if alpha is not None and jnp.ndim(alpha) == 1:
    alpha_w, alpha = alpha, None
  x_y, a_y, bad, zero = _gather_label(fn, x, labels, axis, None, alpha_w)
  log_p_y = x_y - jax.nn.logsumexp(x, axis)
  u = -jnp.expm1(log_p_y)
  g = jnp.asarray(gamma, x.dtype)
  weight = _numerics.safe_where(u > 0, lambda v: v ** g, u, (g == 0).astype(x.dtype))
  loss = -weight * log_p_y
  if alpha is not None:
    loss = jnp.asarray(alpha, x.dtype) * loss
  return _finish_integer(a_y * loss, bad, zero).astype(logits.dtype)


# --------------------------------------------------------------------------------------------
# KL divergence, label smoothing and PolyLoss.
# --------------------------------------------------------------------------------------------

def _kl_inputs(fn: str, log_predictions: ArrayLike, targets: ArrayLike, target_name: str,
               axis: int, where: ArrayLike | None
               ) -> tuple[jnp.dtype, jax.Array, jax.Array, int, jax.Array | None]:
  lp = _numerics.check_floating(fn, "log_predictions", log_predictions)
  t = _numerics.check_floating(fn, target_name, targets)
  if t.shape != lp.shape:
    raise ValueError(f"{fn}: `log_predictions` and `{target_name}` must have the same shape, "
                     f"got log_predictions.shape={lp.shape} and {target_name}.shape={t.shape}")
  axis = _numerics.canonical_axis(fn, axis, lp.ndim)
  dtype = lp.dtype  # the result's: bf16/fp16 are computed in float32 and returned as given
  _, (lp, t) = _numerics.upcast(lp, t)
  return dtype, lp, t, axis, _class_mask(fn, where, lp, axis)


def _masked_sum(values: jax.Array, mask: jax.Array | None, axis: int) -> jax.Array:
  if mask is not None:
    values = jnp.where(mask, values, jnp.zeros_like(values))
  return jnp.sum(values, axis)


def _kl_parts(log_targets, lp, u):
  """(t = 0, a = log t − log q with 0 where t = 0, w = t) from u = t or u = log t."""
  zero = u == (-jnp.inf if log_targets else 0.0)
  log_t = u if log_targets else jnp.log(jnp.where(zero, jnp.ones_like(u), u))
  a = jnp.where(zero, jnp.zeros_like(lp), log_t - lp)
  # exp(−inf) = 0 and a = 0 there: w·a is 0 at t = 0 without a select, so XLA's CPU reduction
  # fusion (YNNPACK) computes it inside the sum, from the one stored array a.
  return zero, a, jnp.exp(u) if log_targets else u


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 4))
def _kl(log_targets: bool, lp: jax.Array, u: jax.Array, mask: jax.Array | None,
        axis: int) -> jax.Array:
  """Σ over ``axis`` of t·(log t − log q), exactly 0 where t = 0 and at masked entries; u is
  t, or log t if ``log_targets``.

  Written so that forward and backward store one array of the inputs' size, a = log t − log q,
  which the gradient overwrites in place (the ``jnp.where`` form this replaces stored two;
  bench/NOTES.md). Undifferentiated, unmasked and with log targets, the plain
  Σ exp(log t)·(log t − log q) runs first: one fused pass on CPU, where the select that holds
  t = 0 at exactly 0 costs an (N, C) buffer (~2.5x the time). Only a NaN in it (a log target of
  −inf, or NaN input) recomputes the exact form under ``lax.cond``.
  """
  def exact():
    _, a, w = _kl_parts(log_targets, lp, u)
    return _masked_sum(w * a, mask, axis)

  if mask is not None or not log_targets:
    return exact()  # probability targets are often exactly 0: the fast form would be NaN
  fast = jnp.sum(jnp.exp(u) * (u - lp), axis)
  return lax.cond(jnp.any(jnp.isnan(fast)), exact, lambda: fast)


@functools.partial(_kl.defjvp, symbolic_zeros=True)
def _kl_jvp(log_targets, axis, primals, tangents):
  lp, u, mask = primals
  dlp, du, _ = tangents
  zero, a, w = _kl_parts(log_targets, lp, u)
  tangent = jnp.zeros_like(a)
  if _numerics.nonzero(dlp):
    # d/d(log q) = −t, +0 where t = 0 (read from a, which is 0 there: the gradient is written
    # over a). With log targets t is exp(log t with −inf replaced by 0), not the forward's w:
    # a separate exp keeps XLA from storing exp(log t) for the sum and the gradient to share.
    t = jnp.exp(jnp.where(zero, jnp.zeros_like(u), u)) if log_targets else u
    tangent = tangent + jnp.where(zero, a, -t) * dlp
  if _numerics.nonzero(du):
    # d/dt = log t − log q + 1; d/d(log t) = t·(log t − log q + 1); 0 where t = 0.
    coeff = w * (a + 1.0) if log_targets else a + 1.0
    tangent = tangent + jnp.where(zero, jnp.zeros_like(a), coeff) * du
  return _masked_sum(w * a, mask, axis), _masked_sum(tangent, mask, axis)


@_numerics.loss_jit(static=("axis",))
def kl_divergence(log_predictions: ArrayLike, targets: ArrayLike, axis: int = -1,
                  where: ArrayLike | None = None) -> jax.Array:
  """Kullback–Leibler divergence KL(t ‖ q) = Σ_c t_c (log t_c − log q_c) (optax's).

  Args:
    log_predictions: floating log-probabilities log q, classes along ``axis``, shape ``S``.
    targets: floating probabilities t, shape ``S``.
    axis: the axis summed over (static int).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``); masked entries
      contribute exactly 0 to the value and the gradient.

  Returns:
    The divergence, ``S`` without ``axis``, in the log-predictions' dtype.

  Gradient (a ``custom_jvp``): d/d(log q_c) = −t_c, finite everywhere;
  d/dt_c = log t_c + 1 − log q_c.

  Edge cases:
    0·log 0 = 0: a zero target contributes 0, also where log q = −inf, and the gradient with
    respect to the log-predictions stays finite there (the ``jnp.where`` trap of optax PR
    #1786: xlogy's gradient is NaN at 0). The derivative with respect to a zero target is −∞
    mathematically; here it is returned as 0 (the term is held at 0 where t = 0), so do not
    differentiate with respect to targets that can be 0. NaN inputs propagate.

  References:
    S. Kullback, R. A. Leibler, "On Information and Sufficiency", 1951;
    optax ``optax.losses.kl_divergence``; PyTorch ``kl_div`` (elementwise).
  """
  fn = "kl_divergence"
  dtype, lp, t, axis, mask = _kl_inputs(fn, log_predictions, targets, "targets", axis, where)
  return _kl(False, lp, t, mask, axis).astype(dtype)


@_numerics.loss_jit(static=("axis",))
def kl_divergence_with_log_targets(log_predictions: ArrayLike, log_targets: ArrayLike,
                                   axis: int = -1, where: ArrayLike | None = None) -> jax.Array:
  """KL divergence with log-space targets, Σ_c exp(log t_c)(log t_c − log q_c) (optax's).

  Args:
    log_predictions: floating log-probabilities log q, classes along ``axis``, shape ``S``.
    log_targets: floating log-probabilities log t, shape ``S``.
    axis: the axis summed over (static int).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``).

  Returns:
    The divergence, ``S`` without ``axis``, in the log-predictions' dtype.

  Gradient (a ``custom_jvp``): d/d(log q_c) = −t_c; d/d(log t_c) = t_c (log t_c − log q_c + 1).

  Edge cases:
    A target of log t = −inf contributes exactly 0 with zero gradients (optax gives NaN:
    0·(−inf)). NaN inputs propagate.

  References:
    optax ``optax.losses.kl_divergence_with_log_targets``; PyTorch ``kl_div(log_target=True)``.
  """
  fn = "kl_divergence_with_log_targets"
  dtype, lp, lt, axis, mask = _kl_inputs(fn, log_predictions, log_targets, "log_targets", axis,
                                         where)
  return _kl(True, lp, lt, mask, axis).astype(dtype)


@_numerics.loss_jit(static=("axis",), bounds={"alpha": _numerics.Range(low=0.0, high=1.0)})
def smooth_labels(labels: ArrayLike, alpha: ArrayLike, *, axis: int = -1,
                  where: ArrayLike | None = None) -> jax.Array:
  """Label smoothing, ``(1 − α)·y + α/C`` (optax's ``smooth_labels``).

  Args:
    labels: floating one-hot (or probability) labels, classes along ``axis``, shape ``S``.
    alpha: the smoothing factor α in [0, 1] (traced).
    axis: the class axis (static int).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``): α is spread over
      the C' unmasked classes only.

  Returns:
    The smoothed labels, shape ``S``, in the labels' dtype.

  Edge cases:
    Masked classes get exactly 0 (optax gives them (1 − α)·y + α/C', which makes the row sum
    exceed 1); on the unmasked classes the numbers are optax's. α outside [0, 1] raises
    ``ValueError`` (Python number) or fails ``checkify`` (traced).

  References:
    R. Müller, S. Kornblith, G. Hinton, "When Does Label Smoothing Help?", NeurIPS 2019;
    optax ``optax.smooth_labels``.
  """
  fn = "smooth_labels"
  y = _numerics.check_floating(fn, "labels", labels)
  axis = _numerics.canonical_axis(fn, axis, y.ndim)
  dtype, (y,) = _numerics.upcast(y)
  mask = _class_mask(fn, where, y, axis)
  return _smooth(y, jnp.asarray(alpha, dtype), mask, axis).astype(labels.dtype)


@_numerics.loss_jit(static=("axis",))
def poly_loss_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, epsilon: ArrayLike = 2.0,
                            axis: int = -1, where: ArrayLike | None = None) -> jax.Array:
  """Poly-1 loss (Leng et al. 2022): CE + ε·Σ_c y_c (1 − p_c) (optax's).

  Args:
    logits: floating array, classes along ``axis``, shape ``S``.
    labels: floating probability targets, shape ``S``.
    epsilon: coefficient ε of the first polynomial term (traced; 2 for ImageNet, −1 for
      detection in the paper).
    axis: the class axis (static int).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``): masked classes
      are taken out of the softmax and the sums.

  Returns:
    The loss, ``S`` without ``axis``, in the logits' dtype.

  Gradient: d/dx_j = (Σ_c y_c) p_j − y_j + ε (p_j Σ_c y_c p_c − y_j p_j).

  Edge cases:
    As :func:`softmax_cross_entropy`: masked −inf logits give finite values and gradients,
    0 at masked entries. NaN inputs propagate.

  References:
    Z. Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
    Functions", ICLR 2022; optax ``optax.losses.poly_loss_cross_entropy``.
  """
  x, y, axis, mask = _probability_inputs("poly_loss_cross_entropy", logits, labels, axis, where)
  if mask is not None:
    y = jnp.where(mask, y, jnp.zeros_like(y))
  # One custom_jvp for both terms: the softmax's exponentials are computed once and stored
  # once (autodiff of a separate jax.nn.softmax stored a second array; bench/NOTES.md).
  loss = _softmax_xent(axis, x, mask, None, None, y, jnp.asarray(epsilon, x.dtype))
  return loss.squeeze(axis).astype(logits.dtype)
