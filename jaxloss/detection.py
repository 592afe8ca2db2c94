"""Box regression losses for object detection: IoU, generalized IoU, distance IoU, complete IoU.

Boxes are ``(..., 4)`` arrays of corners ``(x1, y1, x2, y2)`` with x1 <= x2 and y1 <= y2, as
torchvision.ops; the two arguments have the same shape and the result is that shape without
the last axis (one value per box pair, torchvision's ``reduction="none"``). Every loss is
symmetric in its two arguments. Integer boxes are computed in float32 (torchvision's
``_upcast_non_float``); bf16/fp16 in float32 and returned in the promoted input dtype.

The shared pieces, for boxes B and G:

* intersection I = max(0, min(x2, x2g) − max(x1, x1g)) · max(0, min(y2, y2g) − max(y1, y1g)),
  zero (with a zero gradient) unless both overlaps are positive: boxes that touch along an
  edge intersect in 0;
* union U = |B| + |G| − I, and IoU = I / (U + ε);
* the smallest enclosing box C, of area |C| and squared diagonal c².

Ties inside the min/max (boxes that share an edge coordinate, identical boxes) split the
derivative evenly between the two boxes, as ``jnp.maximum`` and ``torch.maximum`` do; at
identical boxes the gradient of the IoU is then 0, its maximum. Where a denominator is
exactly 0 (``eps = 0`` with degenerate boxes) the ratio is defined as 0 with a zero gradient,
so no loss here is ever NaN for finite boxes.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

_EPS = _numerics.Range(low=0.0)


def _boxes(fn: str, boxes1: ArrayLike, boxes2: ArrayLike
           ) -> tuple[jnp.dtype, jax.Array, jax.Array]:
  b1 = _numerics.check_numeric(fn, "boxes1", boxes1)
  b2 = _numerics.check_numeric(fn, "boxes2", boxes2)
  if b1.shape != b2.shape:
    raise ValueError(f"{fn}: `boxes1` and `boxes2` must have the same shape, got "
                     f"boxes1.shape={b1.shape} and boxes2.shape={b2.shape}")
  if b1.ndim == 0 or b1.shape[-1] != 4:
    raise ValueError(f"{fn}: boxes must have a last axis of 4 corners (x1, y1, x2, y2), got "
                     f"boxes1.shape={b1.shape}")
  out_dtype = _numerics.result_dtype(b1, b2)
  dtype = _numerics.compute_dtype(b1, b2)
  return out_dtype, b1.astype(dtype), b2.astype(dtype)


def _ratio(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """numerator / denominator, and 0 (zero gradient) where the denominator is exactly 0."""
  zero = denominator == 0
  return jnp.where(zero, jnp.zeros((), numerator.dtype),
                   numerator / jnp.where(zero, jnp.ones((), denominator.dtype), denominator))


class _Pair:
  """Corner coordinates and the intersection, union and enclosing box of two box arrays."""

  def __init__(self, b1: jax.Array, b2: jax.Array):
    self.x1, self.y1, self.x2, self.y2 = (b1[..., i] for i in range(4))
    self.x1g, self.y1g, self.x2g, self.y2g = (b2[..., i] for i in range(4))
    w = jnp.minimum(self.x2, self.x2g) - jnp.maximum(self.x1, self.x1g)
    h = jnp.minimum(self.y2, self.y2g) - jnp.maximum(self.y1, self.y1g)
    overlap = (w > 0) & (h > 0)
    self.intersection = jnp.where(overlap, w * h, jnp.zeros((), w.dtype))
    self.union = ((self.x2 - self.x1) * (self.y2 - self.y1)
                  + (self.x2g - self.x1g) * (self.y2g - self.y1g) - self.intersection)

  def iou(self, eps: jax.Array) -> jax.Array:
    return _ratio(self.intersection, self.union + eps)

  def enclosing_sides(self) -> tuple[jax.Array, jax.Array]:
    return (jnp.maximum(self.x2, self.x2g) - jnp.minimum(self.x1, self.x1g),
            jnp.maximum(self.y2, self.y2g) - jnp.minimum(self.y1, self.y1g))

  def distance_penalty(self, eps: jax.Array) -> jax.Array:
    """ρ²/(c² + ε): the squared distance of the centres over the enclosing box's diagonal,
    computed with every length divided by the enclosing box's longer side s (the same ratio,
    (ρ/s)²/((c/s)² + ε/s²)), so that coordinates of 1e20 do not overflow the squares."""
    cw, ch = self.enclosing_sides()
    side = jnp.maximum(cw, ch)
    point = side == 0  # both boxes the same point: ρ = c = 0, penalty 0
    s = jnp.where(point, jnp.ones((), side.dtype), side)
    diagonal = jnp.square(cw / s) + jnp.square(ch / s) + eps / jnp.square(s)
    centres = (jnp.square((self.x1 + self.x2 - self.x1g - self.x2g) / (2 * s))
               + jnp.square((self.y1 + self.y2 - self.y1g - self.y2g) / (2 * s)))
    return jnp.where(point, jnp.zeros((), side.dtype), _ratio(centres, diagonal))


@jax.custom_jvp
def _aspect_angle(w: jax.Array, h: jax.Array) -> jax.Array:
  """arctan(w / h) as torchvision computes it (±π/2 for h = 0), and 0 at w = h = 0 (a point
  box, where torchvision's 0/0 gives NaN)."""
  flat = h == 0
  angle = jnp.arctan(w / jnp.where(flat, jnp.ones((), h.dtype), h))
  edge = jnp.where(w == 0, jnp.zeros((), w.dtype), jnp.sign(w) * (math.pi / 2))
  return jnp.where(flat, edge, angle)


@functools.partial(_aspect_angle.defjvp, symbolic_zeros=True)
def _aspect_angle_jvp(primals: tuple[jax.Array, jax.Array], tangents: tuple[Any, Any]
                      ) -> tuple[jax.Array, jax.Array]:
  # d arctan(w/h) = (h dw − w dh) / (w² + h²): finite at h = 0 (where torchvision's autograd
  # multiplies 0 by ∞), and 0 at the point box w = h = 0.
  w, h = primals
  dw, dh = tangents
  r2 = jnp.square(w) + jnp.square(h)
  point = r2 == 0
  inv = jnp.where(point, jnp.zeros((), r2.dtype), 1 / jnp.where(point, jnp.ones((), r2.dtype), r2))
  tangent = jnp.zeros_like(r2)
  if _numerics.nonzero(dw):
    tangent = tangent + h * inv * dw
  if _numerics.nonzero(dh):
    tangent = tangent - w * inv * dh
  return _aspect_angle(w, h), tangent


@_numerics.loss_jit(bounds={"eps": _EPS})
def box_iou_loss(boxes1: ArrayLike, boxes2: ArrayLike, *, eps: ArrayLike = 1e-7) -> jax.Array:
  r"""IoU loss, 1 − IoU, for pairs of boxes.

  .. math::
    \ell = 1 - \frac{I}{U + \varepsilon}

  Args:
    boxes1: ``(..., 4)`` boxes ``(x1, y1, x2, y2)`` (floating or integer).
    boxes2: boxes of the same shape.
    eps: ε >= 0 added to the union (traced), torchvision's default 1e-7.

  Returns:
    ``(...)``, one value per pair, in [0, 1] for valid boxes, in the promoted input dtype.

  Sub-gradient: 0 in every coordinate while the boxes do not overlap (the loss is flat at 1;
  touching boxes included); ties in the corner comparisons split evenly, so identical boxes
  get gradient 0 (up to ε).

  Edge cases:
    Two zero-area boxes give loss 1 (I = U = 0) and a zero gradient; with ``eps = 0`` that is
    the 0/0 = 0 rule of this module. Boxes with x2 < x1 are not checked: the formulas apply as
    written (as torchvision, which documents 0 <= x1 < x2). torchvision has no IoU loss of this
    name; this is the IoU term shared by its three losses.

  References:
    Yu et al., "UnitBox: An Advanced Object Detection Network", ACM MM 2016.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a = jnp.array([[0.0, 0.0, 2.0, 2.0]])
    >>> b = jnp.array([[1.0, 1.0, 3.0, 3.0]])
    >>> print(f"{jaxloss.box_iou_loss(a, b)[0]:.4f}")
    0.8571
  """
  fn = "box_iou_loss"
  out_dtype, b1, b2 = _boxes(fn, boxes1, boxes2)
  pair = _Pair(b1, b2)
  return (1 - pair.iou(jnp.asarray(eps, b1.dtype))).astype(out_dtype)


@_numerics.loss_jit(bounds={"eps": _EPS})
def generalized_box_iou_loss(boxes1: ArrayLike, boxes2: ArrayLike, *,
                             eps: ArrayLike = 1e-7) -> jax.Array:
  r"""Generalized IoU loss (Rezatofighi et al. 2019), torchvision's
  ``generalized_box_iou_loss(reduction="none")``.

  .. math::
    \ell = 1 - \frac{I}{U + \varepsilon} + \frac{|C| - U}{|C| + \varepsilon}

  with C the smallest box enclosing both. Unlike the IoU loss it keeps a gradient when the
  boxes do not overlap (the enclosing-box term pulls them together).

  Args:
    boxes1: ``(..., 4)`` boxes ``(x1, y1, x2, y2)`` (floating or integer).
    boxes2: boxes of the same shape.
    eps: ε >= 0 (traced), torchvision's default 1e-7.

  Returns:
    ``(...)``, one value per pair, in [0, 2) for valid boxes, in the promoted input dtype.

  Sub-gradient: the corner min/max split ties evenly (identical boxes: gradient 0 up to ε);
  the intersection has zero gradient where the boxes only touch or miss.

  Edge cases:
    A degenerate enclosing box (both boxes on one line, |C| = 0) gives the penalty 0 and loss 1;
    two point boxes likewise. Finite with finite gradients for every finite input, also at
    ``eps = 0``.

  References:
    H. Rezatofighi et al., "Generalized Intersection over Union: A Metric and A Loss for
    Bounding Box Regression", CVPR 2019; torchvision ``ops.generalized_box_iou_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a = jnp.array([[0.0, 0.0, 1.0, 1.0]])
    >>> b = jnp.array([[2.0, 0.0, 3.0, 1.0]])  # disjoint: IoU 0, enclosing box 3 x 1
    >>> print(f"{jaxloss.generalized_box_iou_loss(a, b)[0]:.4f}")
    1.3333
  """
  fn = "generalized_box_iou_loss"
  out_dtype, b1, b2 = _boxes(fn, boxes1, boxes2)
  e = jnp.asarray(eps, b1.dtype)
  pair = _Pair(b1, b2)
  cw, ch = pair.enclosing_sides()
  area_c = cw * ch
  # (|C| − U)/(|C| + ε) written as 1 − (U + ε)/(|C| + ε): the same number, and 1 (not inf/inf)
  # where |C| overflows; 0/0 (a degenerate C with ε = 0) is a penalty of 0.
  covered = pair.union + e
  spread = area_c + e
  empty = spread == 0
  penalty = jnp.where(empty, jnp.zeros((), e.dtype),
                      1 - covered / jnp.where(empty, jnp.ones((), e.dtype), spread))
  return (1 - pair.iou(e) + penalty).astype(out_dtype)


@_numerics.loss_jit(bounds={"eps": _EPS})
def distance_box_iou_loss(boxes1: ArrayLike, boxes2: ArrayLike, *,
                          eps: ArrayLike = 1e-7) -> jax.Array:
  r"""Distance IoU loss (Zheng et al. 2020), torchvision's
  ``distance_box_iou_loss(reduction="none")``.

  .. math::
    \ell = 1 - \frac{I}{U + \varepsilon} + \frac{\rho^2}{c^2 + \varepsilon}

  with ρ the distance between the box centres and c the diagonal of the enclosing box.

  Args:
    boxes1: ``(..., 4)`` boxes ``(x1, y1, x2, y2)`` (floating or integer).
    boxes2: boxes of the same shape.
    eps: ε >= 0 (traced), torchvision's default 1e-7.

  Returns:
    ``(...)``, one value per pair, in [0, 2) for valid boxes, in the promoted input dtype.

  Sub-gradient: as :func:`generalized_box_iou_loss`; the centre term is smooth.

  Edge cases:
    Two boxes reduced to the same point: c = ρ = 0, penalty 0, loss 1, finite gradient (also at
    ``eps = 0``).

  References:
    Z. Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box
    Regression", AAAI 2020; torchvision ``ops.distance_box_iou_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a = jnp.array([[0.0, 0.0, 2.0, 2.0]])
    >>> b = jnp.array([[1.0, 1.0, 3.0, 3.0]])
    >>> print(f"{jaxloss.distance_box_iou_loss(a, b)[0]:.4f}")
    0.9683
  """
  fn = "distance_box_iou_loss"
  out_dtype, b1, b2 = _boxes(fn, boxes1, boxes2)
  e = jnp.asarray(eps, b1.dtype)
  pair = _Pair(b1, b2)
  return (1 - pair.iou(e) + pair.distance_penalty(e)).astype(out_dtype)


@_numerics.loss_jit(bounds={"eps": _EPS})
def complete_box_iou_loss(boxes1: ArrayLike, boxes2: ArrayLike, *,
                          eps: ArrayLike = 1e-7) -> jax.Array:
  r"""Complete IoU loss (Zheng et al. 2020), torchvision's
  ``complete_box_iou_loss(reduction="none")``.

  .. math::
    \ell = \ell_{\mathrm{DIoU}} + \alpha v, \quad
    v = \frac{4}{\pi^2}\left(\arctan\frac{w_2}{h_2} - \arctan\frac{w_1}{h_1}\right)^2, \quad
    \alpha = \frac{v}{1 - \mathrm{IoU} + v + \varepsilon}

  The trade-off α is treated as a constant in the gradient (``stop_gradient``), as in the
  paper and torchvision (``torch.no_grad``).

  Args:
    boxes1: ``(..., 4)`` boxes ``(x1, y1, x2, y2)`` (floating or integer).
    boxes2: boxes of the same shape.
    eps: ε >= 0 (traced), torchvision's default 1e-7. It is used in every term; torchvision
      (at the time of writing) passes only its default to the DIoU part, so the two agree at
      the default and differ slightly for another ``eps``.

  Returns:
    ``(...)``, one value per pair, in the promoted input dtype.

  Sub-gradient: as :func:`distance_box_iou_loss`, plus α·dv with
  d arctan(w/h) = (h dw − w dh)/(w² + h²).

  Edge cases:
    torchvision divides w/h: a box of zero height gets the angle ±π/2 there too (here with the
    finite derivative above, where torchvision's is NaN), and a point box (w = h = 0) is
    NaN in torchvision and has angle 0 with a zero derivative here. Finite with finite
    gradients for every finite input.

  References:
    Zheng et al., "Distance-IoU Loss", AAAI 2020 (Eqs. 8–11); torchvision
    ``ops.complete_box_iou_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> a = jnp.array([[0.0, 0.0, 2.0, 2.0]])
    >>> b = jnp.array([[1.0, 1.0, 4.0, 3.0]])
    >>> print(f"{jaxloss.complete_box_iou_loss(a, b)[0]:.4f}")
    1.0192
  """
  fn = "complete_box_iou_loss"
  out_dtype, b1, b2 = _boxes(fn, boxes1, boxes2)
  e = jnp.asarray(eps, b1.dtype)
  pair = _Pair(b1, b2)
  iou = pair.iou(e)
  theta1 = _aspect_angle(pair.x2 - pair.x1, pair.y2 - pair.y1)
  theta2 = _aspect_angle(pair.x2g - pair.x1g, pair.y2g - pair.y1g)
  v = (4 / math.pi ** 2) * jnp.square(theta2 - theta1)
  alpha = jax.lax.stop_gradient(_ratio(v, 1 - iou + v + e))
  return (1 - iou + pair.distance_penalty(e) + alpha * v).astype(out_dtype)
