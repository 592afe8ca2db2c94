"""Box IoU losses: torchvision's formulas in numpy float64, their derivatives written out by hand
(with the even split at ties that torch.maximum and jnp.maximum use), the configurations where
boxes touch, contain, miss and degenerate, and bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _reference import assert_close

EPS = 1e-7
NAMES = ["box_iou_loss", "generalized_box_iou_loss", "distance_box_iou_loss",
         "complete_box_iou_loss"]


def _d_max(a, b):
  """d max(a, b) / da, half at a tie."""
  return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def _d_min(a, b):
  return np.where(a < b, 1.0, np.where(a == b, 0.5, 0.0))


def _angle(w, h):
  with np.errstate(divide="ignore", invalid="ignore"):
    a = np.arctan(w / h)
  return np.where(h == 0, np.where(w == 0, 0.0, np.sign(w) * np.pi / 2), a)


@np.errstate(divide="ignore", invalid="ignore")  # the 0/0 branches are selected away
def np_box_losses(b1, b2, eps=EPS):
  """torchvision's four quantities (reduction="none"), and their gradients in ``b1``, in
  float64, each derivative from the chain rule of the formula (no autodiff)."""
  b1, b2 = np.float64(b1), np.float64(b2)
  x1, y1, x2, y2 = np.moveaxis(b1, -1, 0)
  X1, Y1, X2, Y2 = np.moveaxis(b2, -1, 0)
  zeros = np.zeros_like(x1)

  def grad(dx1, dy1, dx2, dy2):
    return np.stack([dx1 + zeros, dy1 + zeros, dx2 + zeros, dy2 + zeros], -1)

  w = np.minimum(x2, X2) - np.maximum(x1, X1)
  h = np.minimum(y2, Y2) - np.maximum(y1, Y1)
  overlap = ((w > 0) & (h > 0)).astype(np.float64)
  inter = np.where(overlap > 0, w * h, 0.0)
  d_inter = grad(-overlap * _d_max(x1, X1) * h, -overlap * _d_max(y1, Y1) * w,
                 overlap * _d_min(x2, X2) * h, overlap * _d_min(y2, Y2) * w)
  union = (x2 - x1) * (y2 - y1) + (X2 - X1) * (Y2 - Y1) - inter
  d_union = grad(-(y2 - y1), -(x2 - x1), y2 - y1, x2 - x1) - d_inter
  u = union + eps
  iou = np.where(u == 0, 0.0, inter / np.where(u == 0, 1.0, u))
  d_iou = np.where((u == 0)[..., None], 0.0,
                   (d_inter * u[..., None] - inter[..., None] * d_union) / (u ** 2)[..., None])
  cw = np.maximum(x2, X2) - np.minimum(x1, X1)
  ch = np.maximum(y2, Y2) - np.minimum(y1, Y1)
  d_cw = grad(-_d_min(x1, X1), 0.0, _d_max(x2, X2), 0.0)
  d_ch = grad(0.0, -_d_min(y1, Y1), 0.0, _d_max(y2, Y2))
  area = cw * ch
  d_area = d_cw * ch[..., None] + cw[..., None] * d_ch
  ca = area + eps
  giou_pen = np.where(ca == 0, 0.0, (area - union) / np.where(ca == 0, 1.0, ca))
  d_giou_pen = np.where((ca == 0)[..., None], 0.0,
                        ((d_area - d_union) * ca[..., None]
                         - (area - union)[..., None] * d_area) / (ca ** 2)[..., None])
  diag = cw ** 2 + ch ** 2 + eps
  d_diag = 2 * cw[..., None] * d_cw + 2 * ch[..., None] * d_ch
  dx, dy = (x1 + x2 - X1 - X2) / 2, (y1 + y2 - Y1 - Y2) / 2
  rho = dx ** 2 + dy ** 2
  d_rho = grad(dx, dy, dx, dy)
  dist = np.where(diag == 0, 0.0, rho / np.where(diag == 0, 1.0, diag))
  d_dist = np.where((diag == 0)[..., None], 0.0,
                    (d_rho * diag[..., None] - rho[..., None] * d_diag) / (diag ** 2)[..., None])
  wp, hp, wg, hg = x2 - x1, y2 - y1, X2 - X1, Y2 - Y1
  r2 = wp ** 2 + hp ** 2
  inv = np.where(r2 == 0, 0.0, 1 / np.where(r2 == 0, 1.0, r2))
  d_theta = grad(-hp * inv, wp * inv, hp * inv, -wp * inv)  # d arctan(wp/hp)
  diff = _angle(wg, hg) - _angle(wp, hp)
  v = 4 / np.pi ** 2 * diff ** 2
  d_v = -(8 / np.pi ** 2) * diff[..., None] * d_theta
  den = 1 - iou + v + eps
  alpha = np.where(den == 0, 0.0, v / np.where(den == 0, 1.0, den))
  values = {
      "box_iou_loss": 1 - iou,
      "generalized_box_iou_loss": 1 - iou + giou_pen,
      "distance_box_iou_loss": 1 - iou + dist,
      "complete_box_iou_loss": 1 - iou + dist + alpha * v,
  }
  grads = {
      "box_iou_loss": -d_iou,
      "generalized_box_iou_loss": -d_iou + d_giou_pen,
      "distance_box_iou_loss": -d_iou + d_dist,
      "complete_box_iou_loss": -d_iou + d_dist + alpha[..., None] * d_v,
  }
  return values, grads


def _random_boxes(rng, n):
  corner = rng.uniform(0, 5, size=(n, 2))
  size = rng.uniform(0.2, 4, size=(n, 2))
  return np.concatenate([corner, corner + size], -1).astype(np.float32)


def _both_grads(name, b1, b2, **kwargs):
  fn = getattr(jaxloss, name)
  return jax.jit(jax.grad(lambda a, b: jnp.sum(fn(a, b, **kwargs)), argnums=(0, 1)))(b1, b2)


# Special configurations: (boxes1, boxes2) rows.
SPECIAL = np.float32([
    [[0, 0, 2, 2], [0, 0, 2, 2]],      # identical
    [[0, 0, 2, 2], [2, 0, 4, 2]],      # touch along an edge
    [[0, 0, 1, 1], [1, 1, 2, 2]],      # touch at a corner
    [[0, 0, 4, 4], [1, 1, 2, 3]],      # containment
    [[1, 1, 2, 3], [0, 0, 4, 4]],      # contained
    [[0, 0, 1, 1], [3, 2, 5, 4]],      # disjoint
    [[0, 0, 2, 2], [0, 1, 2, 3]],      # shared x edges, overlapping
    [[0, 1, 0, 3], [0, 0, 0, 2]],      # zero-width boxes on one line: enclosing box degenerates
    [[1, 1, 1, 1], [1, 1, 1, 1]],      # the same point twice
    [[1, 1, 1, 1], [0, 0, 2, 2]],      # a point inside a box
    [[0, 0, 3, 0], [1, 1, 2, 2]],      # a zero-height box
])


@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_at_random_boxes(rng, name):
  b1, b2 = _random_boxes(rng, 64), _random_boxes(rng, 64)
  values, grads = np_box_losses(b1, b2)
  assert_close(getattr(jaxloss, name)(b1, b2), values[name])
  g1, g2 = _both_grads(name, b1, b2)
  assert_close(g1, grads[name], rtol=1e-4)
  # Symmetric losses: the gradient in boxes2 is the one in boxes1 with the roles swapped.
  assert_close(g2, np_box_losses(b2, b1)[1][name], rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_values_and_gradients_at_special_configurations(name):
  b1, b2 = SPECIAL[:, 0], SPECIAL[:, 1]
  values, grads = np_box_losses(b1, b2)
  out = getattr(jaxloss, name)(b1, b2)
  assert np.all(np.isfinite(out))
  assert_close(out, values[name])
  g1, g2 = _both_grads(name, b1, b2)
  assert np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
  assert_close(g1, grads[name], rtol=1e-4, atol=1e-5)
  assert_close(g2, np_box_losses(b2, b1)[1][name], rtol=1e-4, atol=1e-5)


def test_documented_special_values():
  b1, b2 = SPECIAL[:, 0], SPECIAL[:, 1]
  iou = np.asarray(jaxloss.box_iou_loss(b1, b2))
  assert iou[0] == pytest.approx(0.0, abs=1e-6)            # identical
  np.testing.assert_array_equal(iou[[1, 2, 5, 7, 8]], 1.0)  # touching, disjoint, degenerate
  g1 = np.asarray(_both_grads("box_iou_loss", b1, b2)[0])
  np.testing.assert_array_equal(g1[[1, 2, 5, 7, 8]], 0.0)     # flat at 1 where nothing overlaps
  assert np.max(np.abs(g1[0])) < 1e-6                       # identical boxes: the even split
  giou = np.asarray(jaxloss.generalized_box_iou_loss(b1, b2))
  assert giou[1] == pytest.approx(1.0) and giou[5] == pytest.approx(1 + (20 - 5) / 20)
  assert giou[7] == 1.0 and giou[8] == 1.0                   # |C| = 0: penalty 0
  diou = np.asarray(jaxloss.distance_box_iou_loss(b1, b2))
  assert diou[8] == 1.0                                      # c = ρ = 0
  assert diou[3] == pytest.approx(1 - 2 / 16 + (0.5 ** 2 + 0) / 32, rel=1e-6)


def test_eps_zero_is_finite():
  b1, b2 = SPECIAL[:, 0], SPECIAL[:, 1]
  for name in NAMES:
    out = getattr(jaxloss, name)(b1, b2, eps=0.0)
    g1, g2 = _both_grads(name, b1, b2, eps=0.0)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
    assert_close(out, np_box_losses(b1, b2, eps=0.0)[0][name])


def test_complete_iou_torchvision_nan_cases_are_defined():
  # torchvision: atan(w / h) with h = 0 has a NaN gradient, and w = h = 0 a NaN value.
  b1 = np.float32([[0, 0, 2, 0], [1, 1, 1, 1]])
  b2 = np.float32([[0, 0, 2, 2], [0, 0, 2, 2]])
  v = 4 / math.pi ** 2 * (math.pi / 4 - math.pi / 2) ** 2
  out = np.asarray(jaxloss.complete_box_iou_loss(b1, b2))
  iou0 = 0.0
  diou0 = 1 - iou0 + 1.0 / 8  # centres (1, 0) and (1, 1); enclosing 2 x 2
  assert out[0] == pytest.approx(diou0 + v / (1 - iou0 + v + EPS) * v, rel=1e-6)
  v1 = 4 / math.pi ** 2 * (math.pi / 4) ** 2
  assert out[1] == pytest.approx(1 - 0 + 0 + v1 / (1 + v1 + EPS) * v1, rel=1e-6)
  g1, _ = _both_grads("complete_box_iou_loss", b1, b2)
  assert np.all(np.isfinite(g1))


def test_shapes_dtypes_and_bad_input(rng):
  b1, b2 = _random_boxes(rng, 6).reshape(2, 3, 4), _random_boxes(rng, 6).reshape(2, 3, 4)
  for name in NAMES:
    fn = getattr(jaxloss, name)
    assert fn(b1, b2).shape == (2, 3)
    assert fn(b1[0, 0], b2[0, 0]).shape == ()
    assert fn(jnp.asarray(b1, jnp.bfloat16), jnp.asarray(b2, jnp.bfloat16)).dtype == jnp.bfloat16
    assert fn(jnp.asarray(b1, jnp.bfloat16), b2).dtype == jnp.float32
  ints1, ints2 = np.int32([[0, 0, 2, 2]]), np.int32([[1, 1, 3, 3]])
  out = jaxloss.generalized_box_iou_loss(ints1, ints2)
  assert out.dtype == jnp.float32
  assert_close(out, np_box_losses(ints1, ints2)[0]["generalized_box_iou_loss"])
  with pytest.raises(ValueError, match="same shape"):
    jaxloss.box_iou_loss(b1, b2[:, :2])
  with pytest.raises(ValueError, match="4 corners"):
    jaxloss.complete_box_iou_loss(b1[..., :3], b2[..., :3])
  with pytest.raises(ValueError, match="eps"):
    jaxloss.distance_box_iou_loss(b1, b2, eps=-1.0)
  nan_box = b1.copy()
  nan_box[0, 0, 0] = np.nan
  assert np.isnan(jaxloss.generalized_box_iou_loss(nan_box, b2)[0, 0])


def test_vmap_and_traced_eps(rng):
  b1, b2 = _random_boxes(rng, 8), _random_boxes(rng, 8)
  for name in NAMES:
    fn = getattr(jaxloss, name)
    assert_close(jax.vmap(fn)(b1, b2), fn(b1, b2))
    assert_close(jax.jit(lambda a, b, e: fn(a, b, eps=e))(b1, b2, 1e-3),
                 np_box_losses(b1, b2, eps=1e-3)[0][name])


def test_docstring_examples():
  import doctest

  import jaxloss.detection as module
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
