"""Softmax family: softmax cross-entropy (probability and integer labels), PolyLoss, label
smoothing, and the integer-label losses NLL and softmax focal loss.

Every loss here takes an array with the classes along ``axis`` (any int axis, so ``axis=1``
serves (N, C, H, W) segmentation maps without a transpose) and returns its shape without that
axis. Where optax's signature allows it, ``axis`` may also be a tuple of ints (several class
axes, merged into one by :func:`jaxloss._numerics.merge_class_axes`: a transpose and a
reshape, which the int path never pays) or ``None`` (every axis). bf16/fp16 inputs are
computed in float32; the result has ``jnp.result_type`` of the floating inputs (bf16 logits
with float32 labels give float32, as optax).

One closed-form derivative (``jax.custom_jvp``, forward and reverse mode) carries the
cross-entropies, ``_softmax_xent``: Σ_j t_j (lse − x_j) + a·(lse − x_y), whose gradient in the
logits is (a + Σ_j t_j)·softmax − a·onehot(y) − t. The one-hot is a comparison against an iota
inside the tangent, never an array built in the forward pass. NLL and the softmax focal loss
gather the label's entry and let autodiff do the rest.

Integer labels follow one rule (:func:`jaxloss._numerics.class_labels`): a label outside
[0, C) other than ``ignore_index``, or pointing at a class masked out by ``where``, gives its
row NaN with a zero gradient (the value is computed from the label clipped into range, then
replaced); ``ignore_index`` gives 0 with a zero gradient; under ``checkify`` an error names
the label.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


def _smooth(y: jax.Array, alpha: jax.Array, mask: jax.Array | None, axis: int) -> jax.Array:
  """(1 − α)·y + α/C' on the C' unmasked classes, exactly 0 on the masked ones."""
  if mask is None:
    return (1.0 - alpha) * y + alpha / y.shape[axis]
  n_classes = jnp.maximum(jnp.sum(mask, axis, keepdims=True), 1).astype(y.dtype)
  return jnp.where(mask, (1.0 - alpha) * y + alpha / n_classes, jnp.zeros_like(y))


# --------------------------------------------------------------------------------------------
# The softmax cross-entropy core.
# --------------------------------------------------------------------------------------------

class _Softmax(NamedTuple):
  """The masked softmax in parts, keepdims along the class axis: softmax = e / z."""
  lse: jax.Array  # logsumexp over the unmasked classes; 0 for a row with no unmasked class
  e: jax.Array    # exp(x − max), 0 at masked classes
  z: jax.Array    # Σ e (1 for a row with no unmasked class)


def _masked_softmax(x: jax.Array, mask: jax.Array | None, axis: int,
                    exact: bool = True) -> _Softmax:
  """The parts of the softmax over the unmasked classes. ``exact=False`` skips the guard of
  rows whose max is infinite (they come out NaN)."""
  if mask is not None:
    x = jnp.where(mask, x, -jnp.inf)
  top = jnp.max(x, axis, keepdims=True)
  if exact:
    top = jnp.where(jnp.isfinite(top), top, jnp.zeros_like(top))
  e = jnp.exp(x - top)
  z = jnp.sum(e, axis, keepdims=True)
  if mask is not None:
    z = jnp.where(z == 0, jnp.ones_like(z), z)  # rows with no unmasked class: e = 0, lse = 0
  return _Softmax(jnp.log(z) + top, e, z)


class _XentTerms(NamedTuple):
  """The loss and what its tangent needs, keepdims along the class axis."""
  loss: jax.Array
  softmax: _Softmax
  x0: jax.Array              # the logits with masked entries at 0
  nll_y: jax.Array | None    # lse − x_y (with labels)
  tp: jax.Array | None       # Σ_j t_j p_j (with PolyLoss's ε)


def _xent_terms(axis: int, x: jax.Array, mask: jax.Array | None, labels: jax.Array | None,
                a: jax.Array | None, t: jax.Array | None, poly: jax.Array | None,
                exact: bool = True) -> _XentTerms:
  """``exact=False`` is plain arithmetic that XLA fuses into one pass, NaN where a zero target
  meets an infinite logit or a row's max is infinite. ``a`` comes with ``labels``, and ``t``
  with ``poly``."""
  sm = _masked_softmax(x, mask, axis, exact)
  x0 = x if mask is None else jnp.where(mask, x, jnp.zeros_like(x))
  loss = jnp.zeros_like(sm.lse)
  nll_y = None
  if labels is not None:
    assert a is not None
    nll_y = sm.lse - jnp.take_along_axis(x0, labels, axis)
    loss = a * nll_y
  if t is not None:
    t = jnp.broadcast_to(t, x.shape)
    # Σ_j t_j (lse − x_j) = (Σ_j t_j)·lse − Σ_j t_j x_j; t_j = 0 contributes exactly 0, also
    # where x_j = −inf (a class with zero target weight and zero probability).
    if exact:
      tx = jnp.where(t == 0, jnp.zeros_like(x), t * x0)
      loss = loss + jnp.sum(t, axis, keepdims=True) * sm.lse - jnp.sum(tx, axis, keepdims=True)
    else:
      loss = loss + jnp.sum(t * (sm.lse - x0), axis, keepdims=True)  # one sum, not two
  tp = None
  if poly is not None:
    assert t is not None
    # PolyLoss: + ε Σ_j t_j (1 − p_j) = ε (Σ_j t_j − Σ_j t_j p_j), p = e / z.
    tp = jnp.sum(t * sm.e, axis, keepdims=True) / sm.z
    loss = loss + poly * (jnp.sum(t, axis, keepdims=True) - tp)
  return _XentTerms(loss, sm, x0, nll_y, tp)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 7))
def _softmax_xent(axis: int, x: jax.Array, mask: jax.Array | None, labels: jax.Array | None,
                  a: jax.Array | None, t: jax.Array | None,
                  poly: jax.Array | None = None, outside_support_zero: bool = False
                  ) -> jax.Array:
  """Σ_j t_j (lse − x_j) + a·(lse − x_y) [+ poly·Σ_j t_j (1 − p_j)], keepdims along ``axis``.

  ``lse`` is the logsumexp over the unmasked classes; ``labels`` (class axis kept, in range)
  with per-row weight ``a``, and ``t`` (broadcastable to ``x``, 0 at masked classes) are the
  two parts of the unnormalised target; either may be ``None``. ``poly`` (ε of PolyLoss, with
  ``t`` of ``x``'s shape) adds its first polynomial term, p being the softmax.
  ``outside_support_zero`` (static) takes the derivative in a target whose logit is −inf as 0
  instead of +inf (:func:`safe_softmax_cross_entropy`).

  Undifferentiated, unmasked and with probability targets only (no ``labels``), the plain
  arithmetic runs first (:func:`_numerics.fused_or_exact`): the selects that hold 0·(−inf) at
  0 and guard infinite maxima keep XLA:CPU from fusing the loss into one pass, and every input
  they matter for makes the plain form NaN. With integer labels the exact form is already one
  gather and one pass, so it runs alone.
  """
  def exact() -> jax.Array:
    return _xent_terms(axis, x, mask, labels, a, t, poly).loss

  if mask is not None or t is None or labels is not None:
    return exact()
  return _numerics.fused_or_exact(
      lambda: _xent_terms(axis, x, mask, labels, a, t, poly, exact=False).loss, exact)


# Symbolic zeros: an unperturbed target has no tangent term, so the +inf of lse − x_j at an
# unmasked −inf logit with zero target never meets a zero tangent (0·inf = NaN in jax.jvp).
@functools.partial(_softmax_xent.defjvp, symbolic_zeros=True)
def _softmax_xent_jvp(axis: int, outside_support_zero: bool, primals: tuple[Any, ...],
                      tangents: tuple[Any, ...]) -> tuple[jax.Array, jax.Array]:
  x, mask, labels, a, t, poly = primals
  dx, _, _, da, dt, dpoly = tangents
  terms = _xent_terms(axis, x, mask, labels, a, t, poly)
  tp, nll_y = terms.tp, terms.nll_y  # not None with poly, with labels
  lse, e, z = terms.softmax
  tangent = jnp.zeros_like(terms.loss)
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
    d_dt = lse - terms.x0 if poly is None else (lse - terms.x0) + poly * (1.0 - e / z)
    if outside_support_zero:
      # A class of logit −inf is outside the softmax's support: its target's derivative is
      # taken as 0 (the class treated as absent), so a zero tangent there gives 0, not
      # 0·inf = NaN (optax PR #1762). A select on the primal: the tangent stays linear.
      d_dt = jnp.where(x == -jnp.inf, jnp.zeros_like(d_dt), d_dt)
    tangent = tangent + jnp.sum(jnp.broadcast_to(dt, x.shape) * d_dt, axis, keepdims=True)
  if poly is not None and _numerics.nonzero(dpoly):
    assert tp is not None
    tangent = tangent + dpoly * (jnp.sum(t, axis, keepdims=True) - tp)
  return terms.loss, tangent


# --------------------------------------------------------------------------------------------
# Cross-entropy against probability targets and against integer labels; PolyLoss.
# --------------------------------------------------------------------------------------------

@_numerics.loss_jit(static=("axis",),
                    bounds={"label_smoothing": _numerics.Range(low=0.0, high=1.0)})
def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike,
                          axis: _numerics.AxisLike = -1,
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
    axis: the class axis (static): an int, a tuple of ints (the softmax over those axes
      together, optax's meaning), or ``None`` (over every axis: a scalar loss).
    where: boolean mask of shape ``S`` (or ``S`` without ``axis``, masking whole rows):
      masked classes are taken out of the softmax and the sum (optax's meaning).
    label_smoothing: ε in [0, 1] (traced); spread over the unmasked classes only.
    class_weights: optional (C,) weights, PyTorch's ``weight`` with probability targets
      (with a tuple ``axis``, C is the product of its sizes, in the row-major order of the
      axes as given).

  Returns:
    The loss, ``S`` without ``axis``, in ``jnp.result_type`` of both inputs.

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

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.zeros((1, 3))  # uniform: the loss is log 3 for any one-hot target
    >>> print(jnp.round(jaxloss.softmax_cross_entropy(logits, jnp.array([[0., 1., 0.]])), 4))
    [1.0986]
  """
  fn = "softmax_cross_entropy"
  dtype, x, y, axis, mask = _numerics.probability_inputs(fn, logits, labels, axis, where)
  t = _smooth(y, jnp.asarray(label_smoothing, x.dtype), mask, axis)
  if class_weights is not None:
    t = t * _numerics.per_class(fn, "class_weights", class_weights, x, axis)
  loss = _softmax_xent(axis, x, mask, None, None, t)
  return loss.squeeze(axis).astype(dtype)


@_numerics.loss_jit()
def safe_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Softmax cross-entropy with 0·log 0 = 0 in value and derivatives (optax's
  ``safe_softmax_cross_entropy``).

  .. math::
    \\ell = -\\sum_c y_c \\log \\mathrm{softmax}(x)_c, \\qquad 0 \\cdot \\log 0 = 0

  over the last axis: :func:`softmax_cross_entropy` without ``axis``, ``where`` and the
  extras, and with one more convention in its derivative (below).

  Args:
    logits: floating array, classes along the last axis, shape ``S`` (``(C,)`` included).
    labels: floating probability targets of shape ``S``.

  Returns:
    The loss, ``S`` without its last axis, in ``jnp.result_type`` of both inputs.

  Gradient (a ``custom_jvp``): d/dx_j = (Σ_c y_c)·p_j − y_j, softmax − labels for labels
  that sum to 1, 0 at a logit of −inf with a zero label. In the labels, d/dy_j = −log p_j,
  taken as 0 where x_j = −inf: a class of logit −inf is outside the softmax's support and
  counts as absent, so forward-mode tangents (``jax.jvp``, ``jax.jacfwd``) stay finite there,
  also for a zero tangent, where optax's gave 0·(−inf) = NaN (optax PR #1762). The true
  derivative there is +∞.

  Edge cases:
    A logit of −inf with a zero label contributes 0 (a row ``[-inf, 0, -inf]`` with labels
    ``[0, 1, 0]`` gives 0); with a positive label the loss is +inf, the true value. A row of
    −inf logits only gives NaN. Labels must have the logits' shape (optax broadcasts them;
    jaxloss refuses the mismatch, ``ValueError`` naming both shapes). NaN inputs propagate.

  References:
    optax ``optax.losses.safe_softmax_cross_entropy``; C. M. Bishop, "Pattern Recognition and
    Machine Learning", 2006, §4.3.4 (multiclass logistic regression).

  Examples:
    >>> import jax, jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([-jnp.inf, 0., 0.])  # class 0 impossible: p = (0, 1/2, 1/2)
    >>> labels = jnp.array([0., 1., 0.])
    >>> print(jnp.round(jaxloss.safe_softmax_cross_entropy(logits, labels), 4))  # log 2
    0.6931
    >>> _, tangent = jax.jvp(jaxloss.safe_softmax_cross_entropy, (logits, labels),
    ...                      (jnp.zeros(3), jnp.zeros(3)))
    >>> print(tangent)
    0.0
  """
  fn = "safe_softmax_cross_entropy"
  dtype, x, y, axis, _ = _numerics.probability_inputs(fn, logits, labels, -1, None)
  loss = _softmax_xent(axis, x, None, None, None, y, None, True)
  return loss.squeeze(axis).astype(dtype)


@_numerics.loss_jit(static=("axis", "ignore_index"),
                    bounds={"label_smoothing": _numerics.Range(low=0.0, high=1.0)})
def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike, labels: ArrayLike, axis: int | tuple[int, ...] = -1,
    where: ArrayLike | None = None, *,
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
    axis: the class axis (static int), or a tuple of ints (optax's meaning): the classes are
      the entries of a slice over those axes and a label is the row-major flat index into
      that slice with the axes in the order given (``axis=(2, 3)`` on (N, K, H, W) logits:
      label = h·W + w; ``axis=(3, 2)``: w·H + h). ``None`` is refused, as optax does.
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
    at a class masked out by ``where`` gives NaN for that row with a zero gradient, with
    label smoothing and class weights too, so a row masked out afterwards by
    ``jaxloss.reduce(where=...)`` leaves every gradient finite (optax wraps −1 to the last
    class); under ``checkify.checkify(..., errors=checkify.user_checks)`` the error names the
    label. Float labels raise ``TypeError``. A row with no unmasked class gives 0 (optax).
    Logits of magnitude 1e4 and masked −inf logits give finite losses and gradients, 0 at the
    masked entries (optax #896). NaN logits propagate.

  References:
    optax ``optax.losses.softmax_cross_entropy_with_integer_labels``; PyTorch
    ``torch.nn.functional.cross_entropy`` (PyTorch issues #69339, #73205 on weights with
    label smoothing).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.zeros((2, 4))  # uniform over 4 classes: log 4 for any label
    >>> loss = jaxloss.softmax_cross_entropy_with_integer_labels(
    ...     logits, jnp.array([3, -100]), ignore_index=-100)
    >>> print(jnp.round(loss, 4))
    [1.3863 0.    ]
  """
  fn = "softmax_cross_entropy_with_integer_labels"
  logits, axis, where, _, _ = _numerics.merge_class_axes(fn, logits, axis, where,
                                                         allow_none=False)
  dtype, x, axis = _numerics.class_inputs(fn, logits, axis)
  mask = _numerics.class_mask(fn, where, x, axis)
  y = _numerics.class_labels(fn, labels, x, axis, mask=mask, ignore_index=ignore_index)
  eps = jnp.asarray(label_smoothing, x.dtype)
  w = None if class_weights is None else _numerics.per_class(fn, "class_weights",
                                                             class_weights, x, axis)
  zero = jnp.expand_dims(y.zero, axis)
  # The label's weight (1 − ε)·w_y and, on every unmasked class, ε/C' times its weight: the
  # two parts of the target; both 0 on the rows whose loss is 0.
  a = (1.0 - eps) * (jnp.ones(y.index.shape, x.dtype) if w is None else jnp.take(w.ravel(),
                                                                                  y.index))
  a = jnp.where(zero, jnp.zeros_like(a), a)
  spread = jnp.ones((1,) * x.ndim, x.dtype) if mask is None else mask.astype(x.dtype)
  if w is not None:
    spread = spread * w
  n_classes = x.shape[axis] if mask is None else jnp.maximum(
      jnp.sum(mask, axis, keepdims=True), 1).astype(x.dtype)
  per_class = jnp.where(zero, jnp.zeros((), x.dtype), eps / n_classes)
  loss = _softmax_xent(axis, x, mask, y.index, a, per_class * spread)
  return y.finish(loss.squeeze(axis)).astype(dtype)


@_numerics.loss_jit(static=("axis",))
def poly_loss_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, epsilon: ArrayLike = 2.0,
                            axis: _numerics.AxisLike = -1,
                            where: ArrayLike | None = None) -> jax.Array:
  """Poly-1 loss (Leng et al. 2022): CE + ε·Σ_c y_c (1 − p_c) (optax's).

  Args:
    logits: floating array, classes along ``axis``, shape ``S``.
    labels: floating probability targets, shape ``S``.
    epsilon: coefficient ε of the first polynomial term (traced; 2 for ImageNet, −1 for
      detection in the paper).
    axis: the class axis (static): an int, a tuple of ints, or ``None`` (every axis).
    where: optional boolean mask of shape ``S`` (or ``S`` without ``axis``): masked classes
      are taken out of the softmax and the sums.

  Returns:
    The loss, ``S`` without ``axis``, in ``jnp.result_type`` of both inputs.

  Gradient: d/dx_j = (Σ_c y_c) p_j − y_j + ε (p_j Σ_c y_c p_c − y_j p_j).

  Edge cases:
    As :func:`softmax_cross_entropy`: masked −inf logits give finite values and gradients,
    0 at masked entries. NaN inputs propagate.

  References:
    Z. Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
    Functions", ICLR 2022; optax ``optax.losses.poly_loss_cross_entropy``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> # p = (1/2, 1/2): CE = log 2, plus ε (1 − 1/2) = 1 at ε = 2.
    >>> loss = jaxloss.poly_loss_cross_entropy(jnp.zeros((1, 2)), jnp.array([[1., 0.]]))
    >>> print(jnp.round(loss, 4))
    [1.6931]
  """
  dtype, x, y, axis, mask = _numerics.probability_inputs("poly_loss_cross_entropy", logits,
                                                         labels, axis, where)
  if mask is not None:
    y = jnp.where(mask, y, jnp.zeros_like(y))
  # One custom_jvp for both terms: the softmax's exponentials are computed once and stored
  # once (autodiff of a separate jax.nn.softmax would store a second array of the logits' size).
  loss = _softmax_xent(axis, x, mask, None, None, y, jnp.asarray(epsilon, x.dtype))
  return loss.squeeze(axis).astype(dtype)


@_numerics.loss_jit(static=("axis",), bounds={"alpha": _numerics.Range(low=0.0, high=1.0)})
def smooth_labels(labels: ArrayLike, alpha: ArrayLike, *, axis: _numerics.AxisLike = -1,
                  where: ArrayLike | None = None) -> jax.Array:
  """Label smoothing, ``(1 − α)·y + α/C`` (optax's ``smooth_labels``).

  Args:
    labels: floating one-hot (or probability) labels, classes along ``axis``, shape ``S``.
    alpha: the smoothing factor α in [0, 1] (traced).
    axis: the class axis (static): an int, a tuple of ints (C the product of their sizes), or
      ``None`` (every axis).
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

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(jaxloss.smooth_labels(jnp.array([[0., 1., 0., 0.]]), 0.2))
    [[0.05 0.85 0.05 0.05]]
  """
  fn = "smooth_labels"
  labels, axis, where, _, merged = _numerics.merge_class_axes(fn, labels, axis, where,
                                                              name="labels")
  dtype, y, axis = _numerics.class_inputs(fn, labels, axis, name="labels")
  mask = _numerics.class_mask(fn, where, y, axis, name="labels")
  out = _smooth(y, jnp.asarray(alpha, y.dtype), mask, axis).astype(dtype)
  return out if merged is None else merged.split(out)


# --------------------------------------------------------------------------------------------
# Integer-label losses that gather the label's entry: NLL and the softmax focal loss.
# --------------------------------------------------------------------------------------------

class _Gathered(NamedTuple):
  """The label's entry of a class-axis array, its weight, and the checked labels."""
  value: jax.Array  # x_y, batch-shaped (the clipped label's entry for invalid rows)
  weight: jax.Array  # w_y, batch-shaped; a scalar 1 without per-class weights
  labels: _numerics.ClassLabels


def _gather(fn: str, x: jax.Array, labels: ArrayLike, axis: int, *, x_name: str,
            weights: ArrayLike | None = None, weights_name: str = "class_weights",
            ignore_index: int | None = None) -> _Gathered:
  y = _numerics.class_labels(fn, labels, x, axis, x_name=x_name, ignore_index=ignore_index)
  x_y = jnp.take_along_axis(x, y.index, axis).squeeze(axis)
  if weights is None:
    return _Gathered(x_y, jnp.ones((), x.dtype), y)
  w = _numerics.per_class(fn, weights_name, weights, x, axis, x_name=x_name)
  return _Gathered(x_y, jnp.take(w.ravel(), y.index.squeeze(axis)), y)


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
    A label outside [0, C) other than ``ignore_index`` gives NaN for that row with a zero
    gradient, and under ``checkify`` an error naming it; float labels raise ``TypeError``.
    A log-probability of −inf at the label gives +inf (the true value). NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.nll_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> log_probs = jnp.log(jnp.array([[0.5, 0.25, 0.25]]))
    >>> print(jnp.round(jaxloss.nll_loss(log_probs, jnp.array([0])), 4))  # log 2
    [0.6931]
  """
  fn = "nll_loss"
  dtype, lp, axis = _numerics.class_inputs(fn, log_probs, axis, name="log_probs")
  g = _gather(fn, lp, labels, axis, x_name="log_probs", weights=class_weights,
              ignore_index=ignore_index)
  return g.labels.finish(-g.weight * g.value).astype(dtype)


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
  + γ u^(γ−1) p_y (p_j − [j = y]) CE]. u is computed from the other classes' mass,
  Σ_{j≠y} p_j, accurate near p_y = 1 and for near-tied logits of any size
  (``[[1e30, 1e30, 0]]``, label 0, γ = 1 gives ½ log 2).

  Edge cases:
    Finite values and gradients at γ = 0, 0 < γ < 1 and logit gaps of 1e4 or more, where
    u = 0 exactly: the factor u^γ is then taken as a constant (its derivative u^(γ−1)·du is
    inf·0 there, optax #1267), which is the true limit 0 of the product. A label outside
    [0, C) gives NaN for that row with a zero gradient, and a ``checkify`` error naming it.
    NaN inputs propagate.

  References:
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (Eq. 5, with the
    softmax in place of the sigmoid).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> # p_y = 1/2: (1 − 1/2)² · log 2.
    >>> print(jnp.round(jaxloss.softmax_focal_loss(jnp.zeros((1, 2)), jnp.array([0])), 4))
    [0.1733]
  """
  fn = "softmax_focal_loss"
  dtype, x, axis = _numerics.class_inputs(fn, logits, axis)
  per_class_alpha = None
  if alpha is not None and jnp.ndim(alpha) == 1:
    per_class_alpha, alpha = alpha, None
  g = _gather(fn, x, labels, axis, x_name="logits", weights=per_class_alpha,
              weights_name="alpha")
  # log p_y = (x_y − m) − log z and 1 − p_y = (Σ_{j≠y} e_j)/z with e = exp(x − m), z = Σ e:
  # 1 − p_y from the other classes' mass, not −expm1(log p_y), which rounds to 0 for near-tied
  # huge logits (lse − x_y loses its log 2 at 1e30). m is a constant of the loss (stopped).
  m = jnp.max(x, axis, keepdims=True)
  m = lax.stop_gradient(jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m)))
  e = jnp.exp(x - m)
  z = jnp.sum(e, axis)
  iota = lax.broadcasted_iota(g.labels.index.dtype, x.shape, axis)
  others = jnp.sum(jnp.where(iota == g.labels.index, jnp.zeros_like(e), e), axis)
  log_p_y = (g.value - m.squeeze(axis)) - jnp.log(z)
  u = others / z
  loss = -_focal_weight(u, jnp.asarray(gamma, x.dtype)) * log_p_y
  if alpha is not None:
    loss = jnp.asarray(alpha, x.dtype) * loss
  return g.labels.finish(g.weight * loss).astype(dtype)


def _focal_weight(u: jax.Array, gamma: jax.Array) -> jax.Array:
  """The focal factor u^γ of u = 1 − p, held constant where u = 0 (its derivative
  γ u^(γ−1)·du is inf·0 there for γ < 1, optax #1267): 0 there, 1 at γ = 0."""
  return _numerics.safe_where(u > 0, lambda v: v ** gamma, u, (gamma == 0).astype(u.dtype))


@_numerics.loss_jit(static=("axis",), bounds={"gamma": _numerics.Range(low=0.0),
                                               "alpha": _numerics.Range(low=0.0)})
def categorical_focal_loss(logits: ArrayLike, labels: ArrayLike, *,
                           alpha: ArrayLike | None = None, gamma: ArrayLike = 2.0,
                           axis: int = -1) -> jax.Array:
  """Focal loss on probability (one-hot or soft) targets, ``Σ_c α_c y_c (1 − p_c)^γ (−log p_c)``.

  p = softmax(logits); Keras's ``CategoricalFocalCrossentropy(from_logits=True)`` per example.
  With one-hot labels it is :func:`softmax_focal_loss` of the label's index; at γ = 0 and
  ``alpha=None`` it is :func:`softmax_cross_entropy`.

  Args:
    logits: floating array with classes along ``axis`` (static int), shape ``S``.
    labels: floating target probabilities, shape ``S``.
    alpha: ``None`` (1: Keras's default is 0.25), a scalar weighing every class, or a (C,)
      per-class array, each >= 0.
    gamma: focusing exponent γ >= 0 (traced).
    axis: the class axis.

  Returns:
    The loss, ``S`` without ``axis``, in the result type of logits and labels.

  Gradient: with A_c = α_c y_c [u_c^γ + γ u_c^(γ−1) p_c (−log p_c)], u_c = 1 − p_c,
  d/dx_j = p_j Σ_c A_c − A_j (the softmax's Jacobian applied to A).

  Edge cases:
    u_c is computed as (Σ_j e_j − e_c)/Σ_j e_j with e = exp(x − max x). Where u_c = 0 (a logit
    gap of about 17 or more in float32) the factor u_c^γ is held constant, so γ < 1 stays
    finite with the true limit as value. A class with y_c = 0 adds nothing, even where its
    logit is −inf (a masked class); y_c > 0 on a −inf logit gives inf. NaN propagates.

  References:
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (Eq. 5); Keras's
    ``CategoricalFocalCrossentropy`` for the multi-class form on probability targets.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> # p = (1/2, 1/2), y = (1, 0): (1 − 1/2)² · log 2.
    >>> print(jnp.round(jaxloss.categorical_focal_loss(jnp.zeros((1, 2)),
    ...                                                jnp.array([[1.0, 0.0]])), 4))
    [0.1733]
  """
  fn = "categorical_focal_loss"
  dtype, x, y, axis, _ = _numerics.probability_inputs(fn, logits, labels, axis, None)
  m = jnp.max(x, axis, keepdims=True)
  m = lax.stop_gradient(jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m)))
  e = jnp.exp(x - m)
  z = jnp.sum(e, axis, keepdims=True)
  # −log p_c only where y_c ≠ 0 (a double where): a masked class's inf never meets a zero
  # cotangent in the product below.
  ce = jnp.where(y == 0, jnp.zeros_like(x), -((x - m) - jnp.log(z)))
  per_class = _focal_weight((z - e) / z, jnp.asarray(gamma, x.dtype)) * ce
  if alpha is not None:
    a = (_numerics.per_class(fn, "alpha", alpha, x, axis) if jnp.ndim(alpha) == 1
         else jnp.asarray(alpha, x.dtype))
    y = a * y
  return jnp.sum(y * per_class, axis).astype(dtype)
