"""Segmentation losses: optax agreement (Dice family), float64 references written from the
formulas, closed-form gradients, the Lovász extensions against their set-function definition,
the empty-class rule and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from _reference import assert_close

SHAPE = (2, 3, 4, 3)  # (batch, H, W, classes)


def _grad(f):
  """``jax.grad`` under one ``jax.jit`` (one compilation instead of one per primitive)."""
  return jax.jit(jax.grad(f))


def _seg_inputs(rng, shape=SHAPE):
  logits = rng.normal(size=shape).astype(np.float32) * 2
  labels = rng.integers(0, shape[-1], size=shape[:-1])
  return logits, np.eye(shape[-1], dtype=np.float32)[labels]


def _np_probs(x, apply_softmax=True):
  x = np.float64(x)
  if not apply_softmax:
    return x
  if x.shape[-1] == 1:
    return 1 / (1 + np.exp(-x))
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_sums(x, t, apply_softmax=True, axes=None):
  p = _np_probs(x, apply_softmax)
  t = np.float64(t)
  axes = tuple(range(1, p.ndim - 1)) if axes is None else axes
  return p, (p * t).sum(axes), p.sum(axes), t.sum(axes)


def np_tversky_losses(x, t, alpha=0.5, beta=0.5, smooth=1.0, apply_softmax=True, axes=None):
  """Per-example, per-class 1 − TI from the definition, the empty class 0."""
  _, i, p, s = _np_sums(x, t, apply_softmax, axes)
  num = i + smooth
  den = i + alpha * (p - i) + beta * (s - i) + smooth
  with np.errstate(invalid="ignore", divide="ignore"):
    return 1 - np.where(den == 0, 1.0, num / den)


def np_tversky_grad(x, t, r, alpha, beta, smooth, outer=lambda u: 1.0):
  """d/dx of Σ_{b,c} r_bc·F(ℓ_bc) for ℓ = 1 − TI (spatial axes 1..-2), with dF/dℓ = outer(ℓ):
  dTI/dp = (t·D − N·((1 − α − β)·t + α))/D², then the softmax (or sigmoid) Jacobian."""
  p, i, ps, ts = _np_sums(x, t)
  t = np.float64(t)
  n = i + smooth
  d = i + alpha * (ps - i) + beta * (ts - i) + smooth
  loss = 1 - n / d
  coeff = -r * outer(loss)                         # dF/dTI per (batch, class)
  expand = (slice(None),) + (None,) * (p.ndim - 2) + (slice(None),)
  dti = (t * d[expand] - n[expand] * ((1 - alpha - beta) * t + alpha)) / d[expand] ** 2
  gp = coeff[expand] * dti
  if p.shape[-1] == 1:
    return gp * p * (1 - p)
  return p * (gp - (p * gp).sum(-1, keepdims=True))


# --------------------------------------------------------------------------------------------
# Dice family against optax (values and gradients, float32, rtol 1e-5).
# --------------------------------------------------------------------------------------------

DICE_CASES = [
    {},
    {"alpha": 0.3, "beta": 0.7, "smooth": 0.5},
    {"reduction": "none"},
    {"reduction": "sum", "ignore_background": True},
    {"class_weights": np.float32([1.0, 2.0, 0.5])},
    {"axis": (1,), "reduction": "none"},
]


def _value_and_grad(fn, x, *args, **kwargs):
  """The loss and the gradient of a fixed weighted sum of it, jitted (one compilation)."""
  def total(v):
    out = fn(v, *args, **kwargs)
    return jnp.sum(out * jnp.linspace(0.5, 1.5, out.size).reshape(out.shape)), out
  (_, out), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(jnp.asarray(x))
  return out, grad


def _optax(fn, x, *args, **kwargs):
  """optax's numbers: optax broadcasts class_weights by rank promotion and multiplies float by
  bool, both refused by this suite's strict settings (conftest)."""
  with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
    return _value_and_grad(fn, x, *args, **kwargs)


@pytest.mark.parametrize("kwargs", DICE_CASES, ids=lambda k: "-".join(k) or "default")
def test_dice_loss_matches_optax(rng, kwargs):
  x, t = _seg_inputs(rng)
  ours, our_grad = _value_and_grad(jaxloss.dice_loss, x, t, **kwargs)
  theirs, their_grad = _optax(optax.losses.dice_loss, x, jnp.asarray(t), **kwargs)
  assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
  assert_close(ours, theirs)
  assert_close(our_grad, their_grad)


def test_generalized_and_binary_dice_match_optax(rng):
  x, t = _seg_inputs(rng, (2, 5, 4))
  for ignore in (False, True):
    kw = {"smooth": 0.7, "ignore_background": ignore}
    for a, b in zip(_value_and_grad(jaxloss.multiclass_generalized_dice_loss, x, t, **kw),
                    _optax(optax.losses.multiclass_generalized_dice_loss, x,
                                    jnp.asarray(t), **kw), strict=True):
      assert_close(a, b)
  xb = rng.normal(size=(3, 4, 5)).astype(np.float32)
  tb = rng.random((3, 4, 5)) < 0.4
  for xs, ts in ((xb, tb), (xb[..., None], tb[..., None]), (xb, tb[..., None])):
    for a, b in zip(_value_and_grad(jaxloss.binary_dice_loss, xs, ts),
                    _optax(optax.losses.binary_dice_loss, xs, jnp.asarray(ts)), strict=True):
      assert_close(a, b)


def test_dice_loss_probabilities_match_optax(rng):
  x, t = _seg_inputs(rng)
  p = jax.nn.softmax(jnp.asarray(x))
  assert_close(jaxloss.dice_loss(p, t, apply_softmax=False),
               optax.losses.dice_loss(p, t, apply_softmax=False))


# --------------------------------------------------------------------------------------------
# Values against float64 references from the formulas, and closed-form gradients.
# --------------------------------------------------------------------------------------------

def test_dice_values_against_numpy(rng):
  x, t = _seg_inputs(rng)
  w = np.float32([0.5, 1.0, 2.0])
  ref = np_tversky_losses(x, t, 0.2, 0.9, 0.3) * w
  out = jaxloss.dice_loss(x, t, alpha=0.2, beta=0.9, smooth=0.3, class_weights=w,
                          reduction="none")
  assert_close(out, ref)
  assert_close(jaxloss.dice_loss(x, t, alpha=0.2, beta=0.9, smooth=0.3, class_weights=w,
                                 ignore_background=True), ref[:, 1:].mean(-1))


def test_tversky_jaccard_focal_against_numpy(rng):
  x, t = _seg_inputs(rng)
  assert_close(jaxloss.tversky_loss(x, t, alpha=0.3, beta=0.7, smooth=0.1),
               np_tversky_losses(x, t, 0.3, 0.7, 0.1).mean(-1))
  assert_close(jaxloss.jaccard_loss(x, t, smooth=0.4),
               np_tversky_losses(x, t, 1.0, 1.0, 0.4).mean(-1))
  _, i, p, s = _np_sums(x, t)
  assert_close(jaxloss.jaccard_loss(x, t, smooth=0.4),
               (1 - (i + 0.4) / (p + s - i + 0.4)).mean(-1))
  assert_close(jaxloss.focal_tversky_loss(x, t, alpha=0.3, beta=0.7, gamma=0.75),
               (np_tversky_losses(x, t, 0.3, 0.7) ** 0.75).mean(-1))
  np.testing.assert_array_equal(jaxloss.tversky_loss(x, t, alpha=0.3, beta=0.7),
                                jaxloss.dice_loss(x, t, alpha=0.3, beta=0.7))
  assert_close(jaxloss.focal_tversky_loss(x, t, gamma=1.0), jaxloss.tversky_loss(x, t))


def test_overlap_losses_on_spatial_axis_subsets(rng):
  x, t = _seg_inputs(rng)
  for axis in (2, (-2,), [1, 2]):
    axes = tuple(sorted(a % 4 for a in ((axis,) if isinstance(axis, int) else axis)))
    assert_close(jaxloss.tversky_loss(x, t, axis=axis, alpha=0.4, beta=0.6),
                 np_tversky_losses(x, t, 0.4, 0.6, axes=axes).mean(-1))


@pytest.mark.parametrize("alpha,beta,smooth", [(0.5, 0.5, 1.0), (0.2, 0.9, 0.0), (1.0, 1.0, 0.3)])
def test_dice_gradient_closed_form(rng, alpha, beta, smooth):
  x, t = _seg_inputs(rng)
  r = rng.random((SHAPE[0], SHAPE[-1])) + 0.5
  g = _grad(lambda v: jnp.sum(jnp.float32(r) * jaxloss.dice_loss(
      v, t, alpha=alpha, beta=beta, smooth=smooth, reduction="none")))(x)
  assert_close(g, np_tversky_grad(x, t, r, alpha, beta, smooth))


def test_binary_sigmoid_gradient_closed_form(rng):
  x = rng.normal(size=(3, 6, 1)).astype(np.float32)
  t = np.float32(rng.random((3, 6, 1)) < 0.5)
  g = _grad(lambda v: jnp.sum(jaxloss.tversky_loss(v, t, alpha=0.3, beta=0.7)))(x)
  assert_close(g, np_tversky_grad(x, t, np.ones((3, 1)), 0.3, 0.7, 1.0))


def test_focal_tversky_gradient_closed_form(rng):
  x, t = _seg_inputs(rng)
  w = rng.random(SHAPE[0]) + 0.5
  gamma = 0.75
  g = _grad(lambda v: jnp.sum(jnp.float32(w) * jaxloss.focal_tversky_loss(
      v, t, alpha=0.3, beta=0.7, gamma=gamma)))(x)
  r = np.repeat(w[:, None] / SHAPE[-1], SHAPE[-1], axis=1)
  assert_close(g, np_tversky_grad(x, t, r, 0.3, 0.7, 1.0,
                                  outer=lambda u: gamma * u ** (gamma - 1)), rtol=2e-5)


# --------------------------------------------------------------------------------------------
# Edge cases: the empty class, perfect classes, single-channel probabilities.
# --------------------------------------------------------------------------------------------

def _empty_class_case():
  # Two images, 4 pixels, 2 classes; class 1 is absent from image 0 in targets and predictions.
  p = np.zeros((2, 4, 2), np.float32)
  p[0, :, 0] = 1.0
  p[1] = [[1, 0], [0, 1], [0.5, 0.5], [1, 0]]
  t = np.zeros_like(p)
  t[0, :, 0] = 1.0
  t[1] = [[1, 0], [0, 1], [0, 1], [1, 0]]
  return p, t


@pytest.mark.parametrize("name", ["dice_loss", "tversky_loss", "jaccard_loss",
                                  "focal_tversky_loss"])
def test_empty_class_is_zero_with_zero_gradient_at_smooth_zero(name):
  p, t = _empty_class_case()
  fn = getattr(jaxloss, name)
  out = fn(p, t, smooth=0.0, apply_softmax=False)
  assert np.all(np.isfinite(out)) and out[0] == 0
  g = _grad(lambda v: jnp.sum(fn(v, t, smooth=0.0, apply_softmax=False)))(p)
  assert np.all(np.isfinite(g))
  np.testing.assert_array_equal(g[0, :, 1], 0.0)  # the empty class sends nothing back
  # optax's formula is 0/0 there (optax returns NaN for the empty class).
  assert np.isnan(optax.losses.dice_loss(jnp.asarray(p), jnp.asarray(t), smooth=0.0,
                                         apply_softmax=False, reduction="none")[0, 1])


def test_focal_tversky_perfect_class_has_zero_gradient():
  p, t = _empty_class_case()
  p[1, 2] = [0.0, 1.0]  # image 1 now perfect
  g = _grad(lambda v: jnp.sum(jaxloss.focal_tversky_loss(v, t, gamma=0.5,
                                                            apply_softmax=False)))(p)
  np.testing.assert_array_equal(g, 0.0)


def test_single_channel_probabilities_are_accepted(rng):
  # optax's sum-to-one check refuses every (…, 1) map of probabilities that is not all ones.
  p = rng.random((2, 5, 1)).astype(np.float32)
  t = np.float32(rng.random((2, 5, 1)) < 0.5)
  with pytest.raises(ValueError):
    optax.losses.dice_loss(jnp.asarray(p), jnp.asarray(t), apply_softmax=False)
  assert_close(jaxloss.dice_loss(p, t, apply_softmax=False),
               np_tversky_losses(p, t, apply_softmax=False).mean(-1))
  assert_close(jaxloss.binary_dice_loss(p[..., 0], t[..., 0], apply_sigmoid=False),
               np_tversky_losses(p, t, apply_softmax=False).mean(-1))


def test_probabilities_must_sum_to_one(rng):
  x, t = _seg_inputs(rng)
  bad = rng.random(SHAPE).astype(np.float32)
  for name in ("dice_loss", "tversky_loss", "multiclass_generalized_dice_loss"):
    with pytest.raises(ValueError, match="sum to 1"):
      getattr(jaxloss, name)(bad, t, apply_softmax=False)
  checked = checkify.checkify(lambda v: jaxloss.jaccard_loss(v, t, apply_softmax=False),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(bad)
  with pytest.raises(checkify.JaxRuntimeError, match="sum to 1"):
    err.throw()
  err, _ = jax.jit(checked)(jax.nn.softmax(jnp.asarray(x)))
  err.throw()
  # bf16 probabilities miss 1 by their rounding and pass.
  jaxloss.dice_loss(jax.nn.softmax(jnp.asarray(x)).astype(jnp.bfloat16), t, apply_softmax=False)


# --------------------------------------------------------------------------------------------
# Shapes, dtypes, transforms, bad arguments.
# --------------------------------------------------------------------------------------------

def test_shapes_and_binary_channel_rule(rng):
  x, t = _seg_inputs(rng)
  assert jaxloss.tversky_loss(x, t).shape == (2,)
  assert jaxloss.dice_loss(x, t, reduction="none", ignore_background=True).shape == (2, 2)
  assert jaxloss.multiclass_generalized_dice_loss(x, t).shape == ()
  xb = rng.normal(size=(2, 3, 4)).astype(np.float32)
  tb = rng.random((2, 3, 4)) < 0.5
  np.testing.assert_array_equal(jaxloss.jaccard_loss(xb, tb[..., None]),
                                jaxloss.jaccard_loss(xb[..., None], tb))
  with pytest.raises(ValueError, match="same shape"):
    jaxloss.dice_loss(x, t[..., :2])
  with pytest.raises(ValueError, match="class axis"):
    jaxloss.dice_loss(x, t, axis=(1, 3))
  with pytest.raises(ValueError, match="out of range"):
    jaxloss.tversky_loss(x, t, axis=4)
  with pytest.raises(ValueError, match="repeats"):
    jaxloss.tversky_loss(x, t, axis=(1, -3))
  with pytest.raises(ValueError, match="unsupported reduction"):
    jaxloss.dice_loss(x, t, reduction="batchmean")
  with pytest.raises(ValueError, match="class_weights"):
    jaxloss.dice_loss(x, t, class_weights=np.ones(2, np.float32))
  with pytest.raises(ValueError, match="alpha"):
    jaxloss.tversky_loss(x, t, alpha=-0.1)
  with pytest.raises(ValueError, match="gamma"):
    jaxloss.focal_tversky_loss(x, t, gamma=0.0)
  with pytest.raises(TypeError, match="reduction"):
    jaxloss.tversky_loss(x, t, reduction="mean")


def test_dtypes(rng):
  x, t = _seg_inputs(rng)
  xb = jnp.asarray(x, jnp.bfloat16)
  assert jaxloss.tversky_loss(xb, t.astype(bool)).dtype == jnp.bfloat16
  assert jaxloss.tversky_loss(xb, jnp.asarray(t, jnp.bfloat16)).dtype == jnp.bfloat16
  assert jaxloss.dice_loss(xb, t).dtype == jnp.float32  # bf16 with float32 targets: float32
  assert jaxloss.jaccard_loss(xb, t.astype(np.int32)).dtype == jnp.bfloat16
  assert jaxloss.multiclass_generalized_dice_loss(xb, t.astype(bool)).dtype == jnp.bfloat16
  assert_close(jaxloss.tversky_loss(xb, t), np_tversky_losses(np.float32(xb), t).mean(-1),
               rtol=1e-5)  # computed in float32 from the bf16 logits
  with pytest.raises(TypeError, match="floating"):
    jaxloss.tversky_loss(x.astype(np.int32), t)


def test_traced_hyper_parameters_and_vmap(rng):
  x, t = _seg_inputs(rng)
  f = jax.jit(lambda v, a, b, s, g: jaxloss.focal_tversky_loss(v, t, alpha=a, beta=b, smooth=s,
                                                               gamma=g))
  assert_close(f(x, 0.3, 0.7, 0.5, 0.9), jaxloss.focal_tversky_loss(x, t, alpha=0.3, beta=0.7,
                                                                    smooth=0.5, gamma=0.9))
  per_image = jax.vmap(lambda v, u: jaxloss.tversky_loss(v[None], u[None])[0])(x, t)
  assert_close(per_image, jaxloss.tversky_loss(x, t))
  da = _grad(lambda a: jnp.sum(jaxloss.tversky_loss(x, t, alpha=a)))(0.4)
  _, i, p, _ = _np_sums(x, t)
  n = i + 1.0
  d = i + 0.4 * (p - i) + 0.5 * (t.sum((1, 2)) - i) + 1.0
  assert_close(da, np.sum(n * (p - i) / d ** 2) / SHAPE[-1])


# --------------------------------------------------------------------------------------------
# Lovász extensions against their definition: Δ(M) = |M| / |F ∪ M| and the sorted differences.
# --------------------------------------------------------------------------------------------

def np_lovasz(m, fg, keep):
  """The Lovász extension of Δ at m ≥ 0 and its gradient, from the set function itself."""
  idx = [i for i in range(len(m)) if keep[i]]
  order = sorted(idx, key=lambda i: (-m[i], i))
  foreground = {i for i in idx if fg[i]}
  grad = np.zeros(len(m))
  chosen, previous, value = set(), 0.0, 0.0
  for i in order:
    chosen.add(i)
    union = foreground | chosen
    delta = len(chosen) / len(union)
    grad[i] = delta - previous
    previous = delta
    value += m[i] * grad[i]
  return value, grad


def np_lovasz_hinge(x, y, ignore=None):
  """Per image (first axis) value and gradient in the logits."""
  x = np.float64(x).reshape(x.shape[0], -1)
  y = np.asarray(y).reshape(y.shape[0], -1)
  values, grads = [], []
  for xi, yi in zip(x, y, strict=True):
    keep = np.ones(len(xi), bool) if ignore is None else yi != ignore
    s = 2.0 * (yi == 1) - 1
    e = 1 - xi * s
    v, g = np_lovasz(np.maximum(e, 0), yi == 1, keep)
    values.append(v)
    grads.append(np.where(keep & (e > 0), -s * g, 0.0))
  return np.array(values), np.array(grads)


def np_lovasz_softmax(x, y, classes="present", ignore=None):
  """Per image value and gradient in the logits (classes last, images first)."""
  n_classes = x.shape[-1]
  p = _np_probs(x).reshape(x.shape[0], -1, n_classes)
  y = np.asarray(y).reshape(y.shape[0], -1)
  values, grads = [], []
  for pi, yi in zip(p, y, strict=True):
    keep = np.ones(len(yi), bool) if ignore is None else yi != ignore
    per_class, gp, weights = [], np.zeros_like(pi), []
    for c in range(n_classes):
      fg = (yi == c) & keep
      m = np.abs(fg - pi[:, c])
      v, g = np_lovasz(m, fg, keep)
      if classes == "present":
        w = float(fg.any())
      else:
        w = 1.0 if classes == "all" else float(c in classes)
      per_class.append(v)
      weights.append(w)
      gp[:, c] = w * g * np.sign(pi[:, c] - fg)
    total = max(sum(weights), 1.0)
    values.append(np.dot(weights, per_class) / total)
    gp /= total
    grads.append(pi * (gp - (pi * gp).sum(-1, keepdims=True)))
  return np.array(values), np.array(grads).reshape(x.shape)


def test_lovasz_hinge_against_definition(rng):
  x = rng.normal(size=(3, 2, 4)).astype(np.float32) * 1.5
  y = rng.integers(0, 2, size=(3, 2, 4))
  y[1] = 0  # an image without foreground
  value, grad = np_lovasz_hinge(x, y)
  assert_close(jaxloss.lovasz_hinge_loss(x, y), value)
  g = _grad(lambda v: jnp.sum(jaxloss.lovasz_hinge_loss(v, y)))(x)
  assert_close(g, grad.reshape(x.shape))
  assert_close(jaxloss.lovasz_hinge_loss(x[0, 0], y[0, 0]),
               np_lovasz_hinge(x[:1, 0], y[:1, 0])[0][0])


def test_lovasz_hinge_ignore_index_and_bad_labels(rng):
  x = rng.normal(size=(3, 6)).astype(np.float32)
  y = rng.integers(0, 2, size=(3, 6))
  y[0, [1, 4]] = 255
  y[2, :] = 255
  value, grad = np_lovasz_hinge(x, y, ignore=255)
  assert_close(jaxloss.lovasz_hinge_loss(x, y, ignore_index=255), value)
  assert value[2] == 0
  g = _grad(lambda v: jnp.sum(jaxloss.lovasz_hinge_loss(v, y, ignore_index=255)))(x)
  assert_close(g, grad)
  bad = y.copy()
  bad[1, 0] = 2
  out = np.asarray(jaxloss.lovasz_hinge_loss(x, bad, ignore_index=255))
  assert np.isnan(out[1]) and np.all(np.isfinite(out[[0, 2]]))
  g = _grad(lambda v: jnp.sum(jnp.where(jnp.arange(3) == 1, 0.0, jaxloss.lovasz_hinge_loss(
      v, bad, ignore_index=255))))(x)
  np.testing.assert_array_equal(g[1], 0.0)
  checked = checkify.checkify(lambda v: jaxloss.lovasz_hinge_loss(v, bad, ignore_index=255),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(x)
  with pytest.raises(checkify.JaxRuntimeError, match="0 or 1"):
    err.throw()


def test_lovasz_hinge_equals_jaccard_loss_at_vertices(rng):
  # At errors in {0, 1} the extension is the set function: the fraction of the union missed.
  y = rng.integers(0, 2, size=(4, 7))
  miss = rng.random((4, 7)) < 0.4
  s = 2.0 * y - 1
  x = np.float32(np.where(miss, 0.0, 1.0) * s)  # hinge error 1 where missed, 0 elsewhere
  fg = y == 1
  ref = miss.sum(1) / np.maximum((fg | miss).sum(1), 1)
  assert_close(jaxloss.lovasz_hinge_loss(x, y), ref)


@pytest.mark.parametrize("classes", ["present", "all", (0, 2)])
def test_lovasz_softmax_against_definition(rng, classes):
  x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32) * 2
  y = rng.integers(0, 3, size=(2, 3, 3))  # class 3 never present
  value, grad = np_lovasz_softmax(x, y, classes)
  assert_close(jaxloss.lovasz_softmax_loss(x, y, classes=classes), value)
  g = _grad(lambda v: jnp.sum(jaxloss.lovasz_softmax_loss(v, y, classes=classes)))(x)
  assert_close(g, grad)


def test_lovasz_softmax_ignore_axis_and_bad_labels(rng):
  x = rng.normal(size=(3, 8, 4)).astype(np.float32)
  y = rng.integers(0, 4, size=(3, 8))
  y[0, :3] = -1
  y[2, :] = -1
  value, grad = np_lovasz_softmax(x, y, ignore=-1)
  assert_close(jaxloss.lovasz_softmax_loss(x, y, ignore_index=-1), value)
  assert value[2] == 0
  g = _grad(lambda v: jnp.sum(jaxloss.lovasz_softmax_loss(v, y, ignore_index=-1)))(x)
  assert_close(g, grad)
  # Classes on axis 1 (N, C, P) give the same numbers.
  assert_close(jaxloss.lovasz_softmax_loss(np.moveaxis(x, -1, 1), y, axis=1, ignore_index=-1),
               value)
  # One image of (P, C) gives a scalar.
  assert_close(jaxloss.lovasz_softmax_loss(x[1], y[1]), np_lovasz_softmax(x[1:2], y[1:2])[0][0])
  bad = y.copy()
  bad[1, 2] = 4
  out = np.asarray(jaxloss.lovasz_softmax_loss(x, bad, ignore_index=-1))
  assert np.isnan(out[1]) and np.all(np.isfinite(out[[0, 2]]))
  g = _grad(lambda v: jnp.sum(jnp.where(jnp.arange(3) == 1, 0.0, jaxloss.lovasz_softmax_loss(
      v, bad, ignore_index=-1))))(x)
  np.testing.assert_array_equal(g[1], 0.0)
  checked = checkify.checkify(lambda v: jaxloss.lovasz_softmax_loss(v, bad, ignore_index=-1),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(x)
  with pytest.raises(checkify.JaxRuntimeError, match=r"in \[0, 4\)"):
    err.throw()
  with pytest.raises(ValueError, match="classes"):
    jaxloss.lovasz_softmax_loss(x, y, classes=(0, 4))
  with pytest.raises(ValueError, match="2 classes"):
    jaxloss.lovasz_softmax_loss(x[..., :1], y)
  with pytest.raises(TypeError, match="integer"):
    jaxloss.lovasz_softmax_loss(x, np.float32(y))


def test_lovasz_softmax_perfect_prediction_is_zero(rng):
  y = rng.integers(0, 3, size=(2, 6))
  probs = np.eye(3, dtype=np.float32)[y]
  np.testing.assert_array_equal(jaxloss.lovasz_softmax_loss(probs, y, apply_softmax=False), 0.0)
  g = _grad(lambda v: jnp.sum(jaxloss.lovasz_softmax_loss(v, y, apply_softmax=False)))(probs)
  np.testing.assert_array_equal(g, 0.0)  # |·| at its kink: derivative 0


def test_lovasz_ties_have_a_deterministic_subgradient():
  # Two hinge errors tie; the lower pixel index comes first in the order.
  x = np.float32([[0.0, 0.0, -2.0]])
  y = np.int32([[1, 0, 0]])
  g = _grad(lambda v: jnp.sum(jaxloss.lovasz_hinge_loss(v, y)))(x)
  _, ref = np_lovasz_hinge(x, y)
  assert_close(g, ref)


def test_lovasz_dtypes_and_jit(rng):
  x = rng.normal(size=(2, 5, 3)).astype(np.float32)
  y = rng.integers(0, 3, size=(2, 5))
  assert jaxloss.lovasz_softmax_loss(jnp.asarray(x, jnp.bfloat16), y).dtype == jnp.bfloat16
  assert jaxloss.lovasz_hinge_loss(jnp.asarray(x[..., 0], jnp.bfloat16),
                                   y > 0).dtype == jnp.bfloat16
  assert jaxloss.lovasz_hinge_loss(jnp.asarray(x[..., 0], jnp.bfloat16),
                                   np.float32(y > 0)).dtype == jnp.float32
  assert_close(jax.jit(jaxloss.lovasz_softmax_loss)(x, y), jaxloss.lovasz_softmax_loss(x, y))


def test_docstring_examples():
  import doctest

  import jaxloss.segmentation as module
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
  assert result.attempted > 0 and result.failed == 0
