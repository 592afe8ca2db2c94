"""Segmentation overlap losses: Dice (optax's three names), Tversky, focal Tversky, soft Jaccard
and the Lovász extensions of the Jaccard loss.

Layout. The overlap losses take ``predictions`` of shape ``(batch, *spatial, classes)`` (logits
by default; probabilities with ``apply_softmax=False``) and targets of the same shape (one-hot,
soft or binary masks; boolean, integer or floating). A single class channel (``classes == 1``)
is a binary problem and goes through a sigmoid instead of a softmax; a binary map without the
channel axis is accepted on either side, as optax does. For every class ``c`` the sums over
``axis`` (default: every axis but the first and the last) give

  I_c = Σ p·t (soft true positives),  P_c = Σ p,  T_c = Σ t,

so FP_c = P_c − I_c and FN_c = T_c − I_c, and every overlap loss here is built from the
Tversky index (Tversky 1977; Salehi et al. 2017)

  TI_c = (I_c + s) / (I_c + α·FP_c + β·FN_c + s),

α weighting false positives and β false negatives (α = β = ½ is Dice, α = β = 1 is Jaccard).

The empty class. A class with no target and no predicted mass in an image (I = P = T = 0) is
a perfect prediction: with ``smooth = 0`` the formula is 0/0 (optax returns NaN), and here the
index is defined as 1 whenever its denominator is 0, so the loss is 0 with a zero gradient.
With ``smooth > 0`` the formula already gives s/s = 1.

Reductions. ``dice_loss``, ``multiclass_generalized_dice_loss`` and ``binary_dice_loss`` are
optax drop-in names and keep optax's reductions (``dice_loss`` means over the classes by
default, ``reduction="none"`` returns per-example, per-class values; the generalized loss
returns optax's scalar). The other losses return one value per example (the mean over classes
of the per-class loss); reduce the batch with :func:`jaxloss.reduce`.

The Lovász losses (Berman et al. 2018) take logits and integer (or binary) labels and return
one value per image, as the paper's reference code does with ``per_image=True``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike
Axis = int | Sequence[int] | None

P = ParamSpec("P")
R = TypeVar("R")

_NONNEGATIVE = _numerics.Range(low=0.0)
_REDUCTIONS = ("mean", "sum", "none")


# --------------------------------------------------------------------------------------------
# Shared input handling.
# --------------------------------------------------------------------------------------------

def _targets(fn: str, targets: ArrayLike) -> jax.Array:
  t = jnp.asarray(targets)
  if not (t.dtype == jnp.bool_ or jnp.issubdtype(t.dtype, jnp.integer)
          or jnp.issubdtype(t.dtype, jnp.floating)):
    raise TypeError(f"{fn}: `targets` must be boolean, integer or floating, got {t.dtype}")
  return t


def _with_channel(p: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """optax's binary convenience: a map without the channel axis gets one (size 1)."""
  if p.ndim == t.ndim - 1:
    p = p[..., None]
  if t.ndim == p.ndim - 1:
    t = t[..., None]
  return p, t


def _spatial_axes(fn: str, axis: Axis, ndim: int) -> tuple[int, ...]:
  """The summation axes, non-negative and sorted; the class axis (the last) is refused."""
  if axis is None:
    return tuple(range(1, ndim - 1))
  axes = (axis,) if isinstance(axis, int) else tuple(axis)
  out = []
  for a in axes:
    if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
      raise TypeError(f"{fn}: `axis` must be an int, a tuple of ints or None, got {axis!r}")
    if not -ndim <= a < ndim:
      raise ValueError(f"{fn}: axis={axis!r} is out of range for predictions of rank {ndim}")
    out.append(int(a) % ndim)
  if len(set(out)) != len(out):
    raise ValueError(f"{fn}: axis={axis!r} repeats an axis")
  if ndim - 1 in out:
    raise ValueError(f"{fn}: axis={axis!r} includes the class axis (the last axis of the "
                     f"predictions); the sums run over spatial axes only")
  return tuple(sorted(out))


def _probability_tolerance(n_classes: int, dtype: Any) -> float:
  """How far from 1 a row of given probabilities may sum: optax's rtol (1e-5), or the rounding
  of a C-term sum in the input's dtype where that is larger (bf16 rows miss 1 by ~1e-2)."""
  return max(1e-5, n_classes * float(jnp.finfo(dtype).eps))


def _check_probabilities_eagerly(fn: str, predictions: Any, targets: Any) -> None:
  """optax's check for ``apply_softmax=False`` (``ValueError``), on concrete predictions only;
  traced ones are checked inside the jitted function with ``checkify``. One class channel is
  a binary map of probabilities and is not checked (optax refuses every such map whose
  probabilities are not all 1)."""
  if isinstance(predictions, jax.core.Tracer) or isinstance(targets, jax.core.Tracer):
    return
  try:
    p = np.asarray(predictions)
    t_ndim = np.ndim(targets)
  except (TypeError, ValueError):  # not an array: the jitted function's own checks report it
    return
  if not np.issubdtype(p.dtype, np.floating):
    return
  if p.ndim == t_ndim - 1:
    p = p[..., None]
  if p.ndim == 0 or p.shape[-1] <= 1 or p.size == 0:
    return
  sums = p.astype(np.float64).sum(axis=-1)
  finite = sums[np.isfinite(sums)]
  tol = _probability_tolerance(p.shape[-1], p.dtype)
  if finite.size and np.max(np.abs(finite - 1.0)) > tol:
    raise ValueError(f"{fn}: when apply_softmax=False, predictions must be valid probability "
                     f"distributions that sum to 1 along the class axis (within {tol:.1e}); "
                     f"found sum range: [{finite.min():.6f}, {finite.max():.6f}]")


def _optax_front(fn: str, probability_flag: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
  """Wraps a ``loss_jit`` function: a list ``axis`` becomes a tuple (it is static, so it must be
  hashable), and ``probability_flag=False`` gets optax's eager probability check."""

  def wrap(jitted: Callable[P, R]) -> Callable[P, R]:
    signature = inspect.signature(jitted)

    @functools.wraps(jitted)
    def front(*args: P.args, **kwargs: P.kwargs) -> R:
      try:
        bound = signature.bind(*args, **kwargs)
      except TypeError:
        return jitted(*args, **kwargs)  # loss_jit's message names the function
      arguments = bound.arguments
      if isinstance(arguments.get("axis"), list):
        arguments["axis"] = tuple(arguments["axis"])
      if arguments.get(probability_flag, True) is False:
        _check_probabilities_eagerly(fn, arguments.get("predictions"),
                                     arguments.get("targets"))
      return jitted(*bound.args, **bound.kwargs)

    return front

  return wrap


class _Overlap:
  """The per-class sums of a prediction/target pair (all of shape ``(*batch, C)``)."""

  def __init__(self, fn: str, predictions: ArrayLike, targets: ArrayLike, *,
               apply_softmax: bool, axis: Axis, expand: bool = True,
               extra: Sequence[jax.Array] = ()):
    p = _numerics.check_floating(fn, "predictions", predictions)
    t = _targets(fn, targets)
    if expand:
      p, t = _with_channel(p, t)
    if p.shape != t.shape:
      raise ValueError(f"{fn}: `predictions` and `targets` must have the same shape, got "
                       f"predictions.shape={jnp.shape(predictions)} and "
                       f"targets.shape={jnp.shape(targets)}")
    if p.ndim == 0:
      raise ValueError(f"{fn}: `predictions` must have a class axis (the last), got a scalar")
    self.out_dtype = _numerics.result_dtype(p, t, *extra)
    self.dtype = _numerics.compute_dtype(p, t, *extra)
    x = p.astype(self.dtype)
    tt = t.astype(self.dtype)
    self.n_classes = x.shape[-1]
    if apply_softmax:
      probs = jax.nn.sigmoid(x) if self.n_classes == 1 else jax.nn.softmax(x, axis=-1)
    else:
      probs = x
      if self.n_classes > 1:
        sums = jnp.sum(probs, axis=-1)
        tol = _probability_tolerance(self.n_classes, p.dtype)
        ok = (jnp.abs(sums - 1) <= tol) | ~jnp.isfinite(sums)
        checkify.debug_check(jnp.all(ok), f"{fn}: when apply_softmax=False, predictions must "
                             f"sum to 1 along the class axis, found a sum of {{}}",
                             sums.reshape(-1)[jnp.argmin(ok.reshape(-1))])
    axes = _spatial_axes(fn, axis, x.ndim)
    self.intersection = jnp.sum(probs * tt, axis=axes)
    self.pred_sum = jnp.sum(probs, axis=axes)
    self.target_sum = jnp.sum(tt, axis=axes)
    self.targets = tt

  def index(self, alpha: ArrayLike, beta: ArrayLike, smooth: ArrayLike) -> jax.Array:
    """The Tversky index per class; 1 where its denominator is 0 (the empty class)."""
    a = jnp.asarray(alpha, self.dtype)
    b = jnp.asarray(beta, self.dtype)
    s = jnp.asarray(smooth, self.dtype)
    i = self.intersection
    numerator = i + s
    denominator = i + a * (self.pred_sum - i) + b * (self.target_sum - i) + s
    empty = denominator == 0
    one = jnp.ones((), self.dtype)
    return jnp.where(empty, one, numerator / jnp.where(empty, one, denominator))


def _reduce_classes(fn: str, losses: jax.Array, reduction: str) -> jax.Array:
  if reduction == "mean":
    return jnp.mean(losses, axis=-1)
  if reduction == "sum":
    return jnp.sum(losses, axis=-1)
  if reduction == "none":
    return losses
  raise ValueError(f"{fn}: unsupported reduction {reduction!r}; use one of {_REDUCTIONS}")


def _class_weights(fn: str, class_weights: ArrayLike | None, n_classes: int
                   ) -> jax.Array | None:
  if class_weights is None:
    return None
  w = _numerics.check_floating(fn, "class_weights", class_weights)
  if w.shape != (n_classes,):
    raise ValueError(f"{fn}: `class_weights` must have shape ({n_classes},), one weight per "
                     f"class, got class_weights.shape={w.shape}")
  return w


def _dice_per_class(fn: str, predictions: ArrayLike, targets: ArrayLike,
                    class_weights: ArrayLike | None, smooth: ArrayLike, alpha: ArrayLike,
                    beta: ArrayLike, apply_softmax: bool, ignore_background: bool, axis: Axis,
                    expand: bool = True, weights_set_dtype: bool = True
                    ) -> tuple[jax.Array, jnp.dtype]:
  """Per-class Dice losses ``(*batch, C)`` (or ``C − 1``) and the output dtype; user-given
  ``class_weights`` take part in the dtype promotion, computed ones do not."""
  extra = [jnp.asarray(class_weights)] if class_weights is not None and weights_set_dtype else []
  o = _Overlap(fn, predictions, targets, apply_softmax=apply_softmax, axis=axis,
               expand=expand, extra=extra)
  losses = 1 - o.index(alpha, beta, smooth)
  w = _class_weights(fn, class_weights, o.n_classes)
  if w is not None:
    losses = losses * w.astype(o.dtype).reshape((1,) * (losses.ndim - 1) + w.shape)
  if ignore_background and o.n_classes > 1:
    losses = losses[..., 1:]
  return losses, o.out_dtype


# --------------------------------------------------------------------------------------------
# optax's Dice names.
# --------------------------------------------------------------------------------------------

@_optax_front("dice_loss", "apply_softmax")
@_numerics.loss_jit(static=("apply_softmax", "reduction", "ignore_background", "axis"),
                    bounds={"smooth": _NONNEGATIVE, "alpha": _NONNEGATIVE,
                            "beta": _NONNEGATIVE})
def dice_loss(predictions: ArrayLike, targets: ArrayLike, *,
              class_weights: ArrayLike | None = None, smooth: ArrayLike = 1.0,
              alpha: ArrayLike = 0.5, beta: ArrayLike = 0.5, apply_softmax: bool = True,
              reduction: str = "mean", ignore_background: bool = False,
              axis: Axis = None) -> jax.Array:
  r"""Soft Dice loss with Tversky's false-positive/false-negative weights (optax's ``dice_loss``).

  For each class ``c``, with I, P, T the sums of p·t, p and t over ``axis``:

  .. math::
    \ell_c = 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c) + \beta (T_c - I_c) + s}

  ``α = β = ½`` is the Dice coefficient 2I/(P + T) (smoothed); α > β penalises false
  positives more, β > α false negatives (the Tversky loss).

  Args:
    predictions: floating ``(*batch, *spatial, C)``: logits, or probabilities when
      ``apply_softmax=False``. ``C == 1`` (or no channel axis, matched against the targets) is
      binary and uses a sigmoid; ``C > 1`` a softmax over the last axis.
    targets: the same shape (one-hot, soft or binary; boolean, integer or floating).
    class_weights: optional ``(C,)`` weights multiplying the per-class losses (before
      ``ignore_background`` drops class 0; the mean is then a plain mean, as optax).
    smooth: ``s >= 0``, added to numerator and denominator (traced).
    alpha: weight of the false positives, ``>= 0`` (traced).
    beta: weight of the false negatives, ``>= 0`` (traced).
    apply_softmax: whether ``predictions`` are logits. With ``False`` and ``C > 1`` they must
      sum to 1 over the classes: ``ValueError`` for concrete inputs (optax's check), a
      ``checkify`` error under ``checkify`` for traced ones.
    reduction: over the classes: ``"mean"`` (default), ``"sum"`` or ``"none"`` (static).
    ignore_background: drop class 0 from the loss (static; no effect when ``C == 1``).
    axis: the summation axes (an int, a tuple of ints, negative allowed; static). ``None``
      sums every axis but the first (the batch) and the last (the classes).

  Returns:
    ``"mean"``/``"sum"``: the batch shape (the predictions' shape without ``axis`` and the
    class axis), one value per example; ``"none"``: the same with the class axis kept
    (``C`` or ``C − 1`` entries). In the promoted dtype of the floating inputs. This is one of
    the documented exceptions to "losses never reduce" (an optax drop-in name keeps optax's
    default).

  Derivative: dℓ_c/dp = −(t·D − N·((1 − α − β)·t + α))/D² for N, D the numerator and
  denominator, chained through the softmax (or sigmoid); smooth everywhere except at the empty
  class rule below.

  Edge cases:
    An empty class (I = P = T = 0, possible with ``apply_softmax=False``) has loss 0 and a zero
    gradient also at ``smooth = 0``, where the formula is 0/0 and optax returns NaN. Shapes that
    differ (after the binary channel rule) raise ``ValueError``; ``axis`` containing the class
    axis raises ``ValueError`` (optax would silently sum over the classes). Unlike optax, a
    single-channel map of probabilities (``C == 1``, ``apply_softmax=False``) is accepted
    (optax's sum-to-one check refuses any such map that is not all ones). Negative ``smooth``,
    ``alpha`` or ``beta`` raise ``ValueError``. NaN inputs propagate.

  References:
    Milletari, Navab & Ahmadi, "V-Net", 3DV 2016; Salehi, Erdogmus & Gholipour, "Tversky loss
    function for image segmentation using 3D fully convolutional deep networks", MLMI 2017;
    optax ``optax.losses.dice_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]]])  # (1 image, 3 pixels, 2)
    >>> targets = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> print(f"{jaxloss.dice_loss(logits, targets)[0]:.4f}")
    0.1141
    >>> jaxloss.dice_loss(logits, targets, reduction="none").shape
    (1, 2)
  """
  fn = "dice_loss"
  losses, out_dtype = _dice_per_class(fn, predictions, targets, class_weights, smooth, alpha,
                                      beta, apply_softmax, ignore_background, axis)
  return _reduce_classes(fn, losses, reduction).astype(out_dtype)


@_optax_front("multiclass_generalized_dice_loss", "apply_softmax")
@_numerics.loss_jit(static=("apply_softmax", "ignore_background"),
                    bounds={"smooth": _NONNEGATIVE})
def multiclass_generalized_dice_loss(predictions: ArrayLike, targets: ArrayLike, *,
                                     smooth: ArrayLike = 1.0, apply_softmax: bool = True,
                                     ignore_background: bool = False) -> jax.Array:
  r"""Dice loss with inverse squared class-frequency weights (optax's generalized Dice).

  .. math::
    f_c = \sum_{\text{batch, pixels}} t_c, \quad
    w_c = C \cdot \frac{1 / (f_c^2 + 10^{-7})}{\sum_k 1 / (f_k^2 + 10^{-7})}, \quad
    \ell = \operatorname{mean}_{\text{batch}, c}\; w_c \, \ell^{\text{Dice}}_c

  with ℓ^Dice_c the per-example, per-class loss of :func:`dice_loss` (α = β = ½). The
  frequencies are counted over the whole batch, so the result is one scalar, as in optax.

  Args:
    predictions: floating ``(*batch, *spatial, C)`` logits (probabilities with
      ``apply_softmax=False``, checked as in :func:`dice_loss`).
    targets: one-hot (or soft) targets of the same shape.
    smooth: ``s >= 0`` (traced).
    apply_softmax: whether ``predictions`` are logits (static).
    ignore_background: drop class 0 after weighting (its weight still counts in the
      normalisation, as optax; static).

  Returns:
    A scalar (an optax drop-in name that optax returns reduced), in the promoted dtype of the
    floating inputs.

  Edge cases:
    This is optax's definition (a weighted mean of per-class Dice losses), not the single
    ratio 1 − 2Σw_c I_c / Σw_c (P_c + T_c) of Sudre et al.; a class absent from the whole batch
    gets the weight of frequency 0 (1e7 before normalisation), finite. Shapes must match
    exactly (``ValueError``).

  References:
    Sudre et al., "Generalised Dice overlap as a deep learning loss function for highly
    unbalanced segmentations", DLMIA 2017; optax
    ``optax.losses.multiclass_generalized_dice_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]]])
    >>> targets = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> print(f"{jaxloss.multiclass_generalized_dice_loss(logits, targets):.4f}")
    0.1205
  """
  fn = "multiclass_generalized_dice_loss"
  t = _targets(fn, targets)
  p = _numerics.check_floating(fn, "predictions", predictions)
  if p.shape != t.shape:
    raise ValueError(f"{fn}: `predictions` and `targets` must have the same shape, got "
                     f"predictions.shape={p.shape} and targets.shape={t.shape}")
  if p.ndim == 0:
    raise ValueError(f"{fn}: `predictions` must have a class axis (the last), got a scalar")
  dtype = _numerics.compute_dtype(p, t)
  frequencies = jnp.sum(t.astype(dtype), axis=tuple(range(t.ndim - 1)))
  inverse = 1 / (jnp.square(frequencies) + 1e-7)
  weights = inverse / jnp.sum(inverse) * inverse.shape[0]
  losses, out_dtype = _dice_per_class(fn, p, t, weights, smooth, 0.5, 0.5, apply_softmax,
                                      ignore_background, None, expand=False,
                                      weights_set_dtype=False)
  return jnp.mean(losses).astype(out_dtype)


@_numerics.loss_jit(static=("apply_sigmoid",), bounds={"smooth": _NONNEGATIVE})
def binary_dice_loss(predictions: ArrayLike, targets: ArrayLike, *, smooth: ArrayLike = 1.0,
                     apply_sigmoid: bool = True) -> jax.Array:
  r"""Binary Dice loss (optax's ``binary_dice_loss``): :func:`dice_loss` on one channel.

  .. math::
    \ell = 1 - \frac{2 I + 2 s}{P + T + 2 s}, \quad I = \sum \sigma(x) t,\;
    P = \sum \sigma(x),\; T = \sum t

  (the ½-weighted form 1 − (I + s)/(I + ½FP + ½FN + s), summed over every axis but the first).

  Args:
    predictions: floating ``(*batch, *spatial)`` or ``(*batch, *spatial, 1)`` logits
      (probabilities with ``apply_sigmoid=False``).
    targets: binary targets of either shape (boolean, integer or floating).
    smooth: ``s >= 0`` (traced).
    apply_sigmoid: whether ``predictions`` are logits (static).

  Returns:
    One value per example, the batch shape, in the promoted dtype of the floating inputs.

  Edge cases:
    As :func:`dice_loss`: an all-background image predicted all background (with
    ``apply_sigmoid=False``) has loss 0 also at ``smooth = 0``. Probabilities are not checked
    to sum to 1 (there is one class).

  References:
    Milletari et al., "V-Net", 3DV 2016; optax ``optax.losses.binary_dice_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[3.0, -2.0, 1.0, -4.0]])  # one image of 4 pixels
    >>> masks = jnp.array([[1.0, 0.0, 1.0, 0.0]])
    >>> print(f"{jaxloss.binary_dice_loss(logits, masks)[0]:.4f}")
    0.0779
  """
  fn = "binary_dice_loss"
  p = _numerics.check_floating(fn, "predictions", predictions)
  t = _targets(fn, targets)
  if p.shape != t.shape and p.shape != t.shape + (1,) and p.shape + (1,) != t.shape:
    raise ValueError(f"{fn}: `predictions` and `targets` must have the same shape (one of them "
                     f"may have a channel axis of 1 more), got predictions.shape={p.shape} and "
                     f"targets.shape={t.shape}")
  if p.ndim == t.ndim and p.ndim > 0 and p.shape[-1] != 1:
    p, t = p[..., None], t[..., None]
  losses, out_dtype = _dice_per_class(fn, p, t, None, smooth, 0.5, 0.5, apply_sigmoid, False,
                                      None)
  return jnp.mean(losses, axis=-1).astype(out_dtype)


# --------------------------------------------------------------------------------------------
# Tversky, focal Tversky, Jaccard: one value per example.
# --------------------------------------------------------------------------------------------

@_optax_front("tversky_loss", "apply_softmax")
@_numerics.loss_jit(static=("axis", "apply_softmax"),
                    bounds={"alpha": _NONNEGATIVE, "beta": _NONNEGATIVE,
                            "smooth": _NONNEGATIVE})
def tversky_loss(predictions: ArrayLike, targets: ArrayLike, *, alpha: ArrayLike = 0.5,
                 beta: ArrayLike = 0.5, smooth: ArrayLike = 1.0, axis: Axis = None,
                 apply_softmax: bool = True) -> jax.Array:
  r"""Tversky loss (Salehi et al. 2017): one minus the Tversky index, mean over classes.

  .. math::
    \ell = \frac{1}{C} \sum_c \left(1 - \frac{I_c + s}{I_c + \alpha\,FP_c + \beta\,FN_c + s}
    \right), \quad FP_c = \sum p(1 - t), \; FN_c = \sum (1 - p) t

  Args:
    predictions: floating ``(*batch, *spatial, C)`` logits (softmax over the classes, a
      sigmoid when ``C == 1``) or probabilities with ``apply_softmax=False``.
    targets: the same shape (one-hot, soft or binary; boolean, integer or floating).
    alpha: weight of the false positives, ``>= 0`` (traced).
    beta: weight of the false negatives, ``>= 0`` (traced).
    smooth: ``s >= 0`` (traced).
    axis: summation axes (int, tuple or ``None`` for all but the first and last; static).
    apply_softmax: whether ``predictions`` are logits (static; probabilities are checked as
      in :func:`dice_loss`).

  Returns:
    One value per example (the batch shape), in the promoted dtype of the floating inputs.
    Equals ``dice_loss(..., alpha=alpha, beta=beta)``; per-class values are
    ``dice_loss(..., reduction="none")``.

  Derivative: as :func:`dice_loss` (smooth; the empty-class rule gives 0).

  Edge cases:
    The empty class (I = P = T = 0) has loss 0 and zero gradient at every ``smooth``. α = β = 0
    makes the index 1 (loss 0) wherever I + s > 0. Keras 3's ``keras.losses.Tversky`` has the
    roles of α and β swapped (its ``fp`` sums (1 − p)·t), adds ε = 1e-7 to the denominator
    instead of ``smooth``, takes probabilities, and with ``axis=None`` sums over the whole
    batch and every class. For a binary mask of probabilities ``p, t`` of shape ``(N,)`` Keras's
    value is ``tversky_loss(p[None, :, None], t[None, :, None], alpha=β_keras, beta=α_keras,
    smooth=0, apply_softmax=False)`` up to that ε.

  References:
    Salehi, Erdogmus & Gholipour, "Tversky loss function for image segmentation using 3D fully
    convolutional deep networks", MLMI 2017 (Eq. 3); A. Tversky, "Features of similarity",
    Psychological Review 1977.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]]])
    >>> targets = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> print(f"{jaxloss.tversky_loss(logits, targets, alpha=0.3, beta=0.7)[0]:.4f}")
    0.1093
  """
  o = _Overlap("tversky_loss", predictions, targets, apply_softmax=apply_softmax, axis=axis)
  return jnp.mean(1 - o.index(alpha, beta, smooth), axis=-1).astype(o.out_dtype)


@_optax_front("focal_tversky_loss", "apply_softmax")
@_numerics.loss_jit(static=("axis", "apply_softmax"),
                    bounds={"alpha": _NONNEGATIVE, "beta": _NONNEGATIVE,
                            "smooth": _NONNEGATIVE,
                            "gamma": _numerics.Range(low=0.0, low_open=True)})
def focal_tversky_loss(predictions: ArrayLike, targets: ArrayLike, *, alpha: ArrayLike = 0.5,
                       beta: ArrayLike = 0.5, smooth: ArrayLike = 1.0, gamma: ArrayLike = 0.75,
                       axis: Axis = None, apply_softmax: bool = True) -> jax.Array:
  r"""Focal Tversky loss (Abraham & Khan 2019): the per-class Tversky loss to the power γ.

  .. math::
    \ell = \frac{1}{C} \sum_c \left(1 - TI_c\right)^{\gamma}, \quad
    TI_c = \frac{I_c + s}{I_c + \alpha\,FP_c + \beta\,FN_c + s}

  The paper writes the exponent as 1/γ with γ ∈ [1, 3] and recommends γ = 4/3; its authors'
  code uses (1 − TI)^0.75, which is the default here (``gamma`` is the exponent itself). γ < 1
  raises the loss of well-segmented classes relative to poor ones less than the plain Tversky
  loss does, focusing training on the hard classes; γ = 1 is :func:`tversky_loss`.

  Args:
    predictions: floating ``(*batch, *spatial, C)`` logits (probabilities with
      ``apply_softmax=False``).
    targets: the same shape (one-hot, soft or binary).
    alpha: weight of the false positives, ``>= 0`` (traced).
    beta: weight of the false negatives, ``>= 0`` (traced).
    smooth: ``s >= 0`` (traced).
    gamma: the exponent, ``> 0`` (traced).
    axis: summation axes (static, as :func:`tversky_loss`).
    apply_softmax: whether ``predictions`` are logits (static).

  Returns:
    One value per example (the batch shape), in the promoted dtype of the floating inputs.
    (The paper sums over classes; this is the mean, so that γ = 1 equals the Tversky loss.)

  Sub-gradient: for γ < 1 the derivative γ(1 − TI)^{γ−1} is infinite at a perfect class
  (TI = 1, reachable with ``apply_softmax=False`` or ``alpha = beta = 0``); the gradient there
  is 0, the loss's minimum, and 0 is a sub-gradient. Elsewhere it is finite and smooth.

  Edge cases:
    The empty class has loss 0 and zero gradient. The authors' code weights false negatives
    with its ``alpha`` (0.7) and false positives with 1 − α; here, as in optax and Salehi et
    al., ``alpha`` weights false positives: their setting is ``alpha=0.3, beta=0.7``.

  References:
    N. Abraham & N. M. Khan, "A Novel Focal Tversky Loss Function with Improved Attention U-Net
    for Lesion Segmentation", ISBI 2019.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]]])
    >>> targets = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> print(f"{jaxloss.focal_tversky_loss(logits, targets, alpha=0.3, beta=0.7)[0]:.4f}")
    0.1890
  """
  o = _Overlap("focal_tversky_loss", predictions, targets, apply_softmax=apply_softmax,
               axis=axis)
  u = 1 - o.index(alpha, beta, smooth)
  g = jnp.asarray(gamma, o.dtype)
  perfect = u == 0
  # Double where (jax #1052): the power's derivative at u = 0 is infinite for γ < 1.
  focal = jnp.where(perfect, jnp.zeros((), o.dtype),
                    jnp.power(jnp.where(perfect, jnp.ones((), o.dtype), u), g))
  return jnp.mean(focal, axis=-1).astype(o.out_dtype)


@_optax_front("jaccard_loss", "apply_softmax")
@_numerics.loss_jit(static=("axis", "apply_softmax"), bounds={"smooth": _NONNEGATIVE})
def jaccard_loss(predictions: ArrayLike, targets: ArrayLike, *, smooth: ArrayLike = 1.0,
                 axis: Axis = None, apply_softmax: bool = True) -> jax.Array:
  r"""Soft Jaccard (IoU) loss (Rahman & Wang 2016), mean over classes.

  .. math::
    \ell = \frac{1}{C} \sum_c \left(1 - \frac{I_c + s}{P_c + T_c - I_c + s}\right)

  the soft intersection over the soft union; the Tversky loss at α = β = 1.

  Args:
    predictions: floating ``(*batch, *spatial, C)`` logits (probabilities with
      ``apply_softmax=False``).
    targets: the same shape (one-hot, soft or binary).
    smooth: ``s >= 0`` (traced).
    axis: summation axes (static, as :func:`tversky_loss`).
    apply_softmax: whether ``predictions`` are logits (static).

  Returns:
    One value per example (the batch shape), in the promoted dtype of the floating inputs.

  Derivative: dℓ_c/dp = −(t·U − N·(1 − t))/U² for N = I + s and U = P + T − I + s, chained
  through the softmax; smooth.

  Edge cases:
    The empty class has loss 0 and zero gradient at every ``smooth``. NaN inputs propagate.

  References:
    M. A. Rahman & Y. Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks for
    Image Segmentation", ISVC 2016.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]]])
    >>> targets = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> print(f"{jaxloss.jaccard_loss(logits, targets)[0]:.4f}")
    0.2047
  """
  o = _Overlap("jaccard_loss", predictions, targets, apply_softmax=apply_softmax, axis=axis)
  return jnp.mean(1 - o.index(1.0, 1.0, smooth), axis=-1).astype(o.out_dtype)


# --------------------------------------------------------------------------------------------
# Lovász extensions of the Jaccard loss (Berman, Rannen Triki & Blaschko 2018).
# --------------------------------------------------------------------------------------------

def _lovasz_weights(gt_sorted: jax.Array, valid_sorted: jax.Array) -> jax.Array:
  """The gradient of the Lovász extension of the Jaccard loss at errors sorted decreasingly
  (the paper's Algorithm 1): g_i = Δ({π_1..π_i}) − Δ({π_1..π_{i−1}}) with
  Δ(M) = |M| / |F ∪ M| for the foreground F. Ignored pixels come last and get g = 0."""
  gts = jnp.sum(gt_sorted, axis=-1, keepdims=True)
  intersection = gts - jnp.cumsum(gt_sorted, axis=-1)
  union = gts + jnp.cumsum((1 - gt_sorted) * valid_sorted, axis=-1)
  jaccard = 1 - intersection / jnp.where(union > 0, union, jnp.ones_like(union))
  return jnp.concatenate([jaccard[..., :1], jnp.diff(jaccard, axis=-1)], axis=-1)


def _lovasz(errors: jax.Array, hinge: bool, gt: jax.Array, valid: jax.Array) -> jax.Array:
  """Σ_i m_{π_i} g_i over the last axis: errors sorted decreasingly (ignored pixels last;
  ties in index order, so the gradient at a tie is deterministic), m = relu(errors) for the
  hinge."""
  key = jnp.where(valid, errors, -jnp.inf)
  order = jnp.argsort(-key, axis=-1, stable=True)
  e = jnp.take_along_axis(errors, order, axis=-1)
  g = _lovasz_weights(jnp.take_along_axis(gt, order, axis=-1),
                      jnp.take_along_axis(valid, order, axis=-1).astype(gt.dtype))
  m = _numerics.relu(e) if hinge else e
  keep = jnp.take_along_axis(valid, order, axis=-1)
  return jnp.sum(jnp.where(keep, m, jnp.zeros((), m.dtype)) * jax.lax.stop_gradient(g),
                 axis=-1)


def _label_equals(labels: jax.Array, value: int | None) -> jax.Array:
  """``labels == value`` (all False for ``None``), without wrapping ``value`` into a narrow
  integer dtype (uint8 labels compared with 300 would otherwise match 44)."""
  if value is None:
    return jnp.zeros(labels.shape, bool)
  if jnp.issubdtype(labels.dtype, jnp.integer):
    info = jnp.iinfo(labels.dtype)
    if not info.min <= value <= info.max:
      return jnp.zeros(labels.shape, bool)
  return labels == value


def _images(x: jax.Array, n_trailing: int) -> tuple[jax.Array, bool]:
  """(images, pixels, *trailing): the first axis indexes images unless only the pixel axis
  is there (one image)."""
  lead = x.ndim - n_trailing
  if lead == 1:
    return x.reshape((1, x.shape[0]) + x.shape[lead:]), True
  pixels = math.prod(x.shape[1:lead])  # explicit: -1 is ambiguous for an empty batch
  return x.reshape((x.shape[0], pixels) + x.shape[lead:]), False


@_numerics.loss_jit(static=("axis", "ignore_index", "classes", "apply_softmax"))
def lovasz_softmax_loss(logits: ArrayLike, labels: ArrayLike, *, axis: int = -1,
                        ignore_index: int | None = None, classes: str | Sequence[int] = "present",
                        apply_softmax: bool = True) -> jax.Array:
  r"""Lovász-softmax loss (Berman et al. 2018): the Lovász extension of the Jaccard loss of
  each class, on the softmax errors, per image.

  For class c of one image, with m_i = |1[y_i = c] − p_ic| sorted decreasingly
  (m_{π_1} ≥ m_{π_2} ≥ …) and the Jaccard set loss Δ_c(M) = |M| / |F_c ∪ M| (F_c the pixels
  labelled c):

  .. math::
    \bar\Delta_c(m) = \sum_i m_{\pi_i}\,\big(\Delta_c(\{\pi_1..\pi_i\}) -
    \Delta_c(\{\pi_1..\pi_{i-1}\})\big), \qquad
    \ell = \operatorname{mean}_{c \in \text{classes}} \bar\Delta_c

  a convex, piecewise-linear surrogate of 1 − IoU_c that equals it at 0/1 predictions.

  Args:
    logits: floating, the classes along ``axis``; after removing the class axis, the first
      axis indexes images and the remaining ones pixels (``(B, H, W, C)`` → ``(B,)``). With
      only one axis left (``(P, C)``) the array is one image and the result a scalar.
      Probabilities with ``apply_softmax=False``.
    labels: integer class indices, the logits' shape without ``axis``.
    axis: the class axis (static).
    ignore_index: a label whose pixels are left out (static), as the reference code's
      ``ignore``.
    classes: ``"present"`` (average over the classes present in the image's labels, the
      reference default), ``"all"``, or a tuple of class indices (static).
    apply_softmax: whether ``logits`` are logits (static).

  Returns:
    One value per image, ``(B,)`` (a scalar for one image), in the logits' dtype.

  Sub-gradient: the extension is piecewise linear; its gradient in the sorted errors is the
  weight vector g above (Algorithm 1 of the paper), and at ties the errors are ordered by pixel
  index (the lowest first), so the returned gradient is one element of the sub-differential.
  |·| has derivative 0 at 0 (a probability exactly equal to its 0/1 target).

  Edge cases:
    An image whose pixels are all ignored, or (with ``"present"``) with no class present, has
    loss 0 and zero gradient (the reference code's empty mean). A label outside [0, C) other
    than ``ignore_index`` makes its image NaN with a zero gradient (and a ``checkify`` error
    naming it). ``C < 2`` raises ``ValueError`` (use :func:`lovasz_hinge_loss`).

  References:
    M. Berman, A. Rannen Triki & M. B. Blaschko, "The Lovász-Softmax loss: A tractable
    surrogate for the optimization of the intersection-over-union measure in neural networks",
    CVPR 2018 (Eq. 12, Algorithm 1; reference code ``lovasz_softmax(per_image=True)``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[[2.0, -1.0], [0.5, 0.5], [-1.0, 3.0]]])  # 1 image, 3 pixels
    >>> labels = jnp.array([[0, 0, 1]])
    >>> print(f"{jaxloss.lovasz_softmax_loss(logits, labels)[0]:.4f}")
    0.2688
  """
  fn = "lovasz_softmax_loss"
  inputs = _numerics.class_inputs(fn, logits, axis)
  if inputs.x.shape[inputs.axis] < 2:
    raise ValueError(f"{fn}: needs at least 2 classes along axis {axis}, got "
                     f"logits.shape={inputs.x.shape}; use lovasz_hinge_loss for a binary map")
  if inputs.x.ndim < 2:
    raise ValueError(f"{fn}: `logits` must have a pixel axis besides the class axis, got "
                     f"logits.shape={inputs.x.shape}")
  checked = _numerics.class_labels(fn, labels, inputs.x, inputs.axis, ignore_index=ignore_index)
  n_classes = inputs.x.shape[inputs.axis]
  x = jnp.moveaxis(inputs.x, inputs.axis, -1)
  probs = jax.nn.softmax(x, axis=-1) if apply_softmax else x
  index = jnp.moveaxis(checked.index, inputs.axis, -1)[..., 0]
  # Ignored pixels and bad labels are left out of the extension; a bad label then makes the
  # whole image NaN below.
  keep = ~checked.zero & checked.valid
  probs, single = _images(probs, 1)
  index, _ = _images(index, 0)
  keep, _ = _images(keep, 0)
  bad, _ = _images(~checked.valid, 0)
  dtype = probs.dtype
  fg = ((index[:, None, :] == jnp.arange(n_classes)[None, :, None])
        & keep[:, None, :]).astype(dtype)                               # (B, C, P)
  errors = _numerics.abs0(fg - jnp.swapaxes(probs, 1, 2))
  valid = jnp.broadcast_to(keep[:, None, :], fg.shape)
  per_class = _lovasz(errors, False, fg, valid)                         # (B, C)
  if classes == "present":
    weights = (jnp.sum(fg, axis=-1) > 0).astype(dtype)
  elif classes == "all":
    weights = jnp.ones_like(per_class)
  else:
    if isinstance(classes, str) or not all(isinstance(c, int) and 0 <= c < n_classes
                                           for c in classes):
      raise ValueError(f"{fn}: classes must be 'present', 'all' or a tuple of class indices "
                       f"in [0, {n_classes}), got {classes!r}")
    chosen = np.zeros(n_classes, bool)
    chosen[list(classes)] = True
    weights = jnp.broadcast_to(jnp.asarray(chosen, dtype), per_class.shape)
  total = jnp.sum(weights, axis=-1)
  loss = jnp.sum(weights * per_class, axis=-1) / jnp.maximum(total, 1)
  loss = _numerics.nan_where_invalid(loss, ~jnp.any(bad, axis=-1))
  return (loss[0] if single else loss).astype(inputs.dtype)


@_numerics.loss_jit(static=("ignore_index",))
def lovasz_hinge_loss(logits: ArrayLike, labels: ArrayLike, *,
                      ignore_index: int | None = None) -> jax.Array:
  r"""Binary Lovász hinge loss (Berman et al. 2018): the Lovász extension of the foreground
  Jaccard loss on the hinge errors, per image.

  With signs s_i = 2y_i − 1, hinge errors m_i = max(0, 1 − x_i s_i) sorted decreasingly and
  Δ(M) = |M| / |F ∪ M| (F the foreground pixels):

  .. math::
    \ell = \sum_i m_{\pi_i}\,\big(\Delta(\{\pi_1..\pi_i\}) - \Delta(\{\pi_1..\pi_{i-1}\})\big)

  Args:
    logits: floating ``(B, *pixels)``: the first axis indexes images (a 1-D array is one
      image and gives a scalar).
    labels: binary labels of the same shape (0/1; boolean, integer or floating), or
      ``ignore_index``.
    ignore_index: a label whose pixels are left out (static).

  Returns:
    One value per image, ``(B,)`` (a scalar for one image), in the promoted dtype of the
    floating inputs.

  Sub-gradient: d/dx_i = −s_i · g_{rank(i)} where the hinge is active and 0 where
  1 − x_i s_i ≤ 0 (0 at the hinge's kink); ties between errors are ordered by pixel index.

  Edge cases:
    An image whose pixels are all ignored has loss 0 and zero gradient. A label that is
    neither 0, 1 nor ``ignore_index`` makes its image NaN with a zero gradient (and a
    ``checkify`` error). An image without foreground pixels still has a loss (its largest
    hinge error: every mistake is a false positive).

  References:
    Berman, Rannen Triki & Blaschko, CVPR 2018 (Eq. 11; reference code
    ``lovasz_hinge(per_image=True)``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[2.0, -1.0, 0.5, -3.0]])  # one image of 4 pixels
    >>> labels = jnp.array([[1, 0, 0, 0]])
    >>> print(f"{jaxloss.lovasz_hinge_loss(logits, labels)[0]:.4f}")
    0.7500
  """
  fn = "lovasz_hinge_loss"
  x = _numerics.check_floating(fn, "logits", logits)
  y = jnp.asarray(labels)
  if not (y.dtype == jnp.bool_ or jnp.issubdtype(y.dtype, jnp.integer)
          or jnp.issubdtype(y.dtype, jnp.floating)):
    raise TypeError(f"{fn}: `labels` must be boolean, integer or floating, got {y.dtype}")
  _numerics.check_same_shape(fn, "logits", x, "labels", y, allow_scalar=False)
  if y.dtype == jnp.bool_:
    y = y.astype(jnp.int32)
  if x.ndim == 0:
    raise ValueError(f"{fn}: `logits` must have a pixel axis, got a scalar")
  out_dtype = _numerics.result_dtype(x, y)
  dtype = _numerics.compute_dtype(x, y)
  ignored = _label_equals(y, ignore_index)
  binary = (y == 0) | (y == 1)
  valid_label = binary | ignored
  expected = "0 or 1" + ("" if ignore_index is None else f" (or ignore_index={ignore_index})")
  _numerics.debug_check_labels(fn, "labels", y, valid_label, expected)
  keep = binary & ~ignored
  gt = jnp.where(keep, y.astype(dtype), jnp.zeros((), dtype))
  signs = 2 * gt - 1
  errors = 1 - x.astype(dtype) * signs
  errors, single = _images(errors, 0)
  gt, _ = _images(gt, 0)
  keep, _ = _images(keep, 0)
  bad, _ = _images(~valid_label, 0)
  loss = _lovasz(errors, True, gt, keep)
  loss = _numerics.nan_where_invalid(loss, ~jnp.any(bad, axis=-1))
  return (loss[0] if single else loss).astype(out_dtype)
