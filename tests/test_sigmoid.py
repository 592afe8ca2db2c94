"""Sigmoid family (jaxloss/sigmoid.py): the focal loss's second derivative, label smoothing and
per-element weights of the binary cross-entropies, and the multilabel soft-margin loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _reference import assert_close, f32, torch_cases

GAMMAS = (0.0, 0.5, 1.0, 2.0)


def _np_softplus(x):
  return np.logaddexp(x, 0.0)


def _np_sigmoid(x):
  return np.exp(-_np_softplus(-x))


def _np_focal_grad(x, y, gamma, alpha):
  """d/dx of α_t·b^γ·CE from the maths, float64: b = 1 − p_t = y(1 − σ) + (1 − y)σ,
  db/dx = (1 − 2y)σ(1 − σ), CE = y·softplus(−x) + (1 − y)·softplus(x), dCE/dx = σ − y."""
  s = _np_sigmoid(x)
  b = y * (1 - s) + (1 - y) * s
  ce = y * _np_softplus(-x) + (1 - y) * _np_softplus(x)
  alpha_t = alpha * y + (1 - alpha) * (1 - y)
  return alpha_t * (gamma * b ** (gamma - 1) * (1 - 2 * y) * s * (1 - s) * ce
                    + b ** gamma * (s - y))


def _focal_second_derivative():
  """d²/dx² of the elementwise focal loss, one compilation for every γ (γ traced)."""
  def loss(x, y, gamma, alpha):
    return jaxloss.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma)
  return jax.jit(jax.vmap(jax.grad(jax.grad(loss)), in_axes=(0, 0, None, None)))


def test_sigmoid_focal_hessian_finite_at_saturated_logits():
  # optax's own test_extreme_logits_finite_gradients (issue 13) found a non-finite Hessian at
  # γ = 0.5; the tangent rule's σ(1 − σ)/(1 − p_t) is differentiated there, and at a hard label
  # on the logit's side (y = 1, x = 50) (1 − p_t)² underflows. Logits from 40 to 90 cover every
  # point where e^−|x| is a normal float32 but its square is not; optax's six inputs are in.
  # (The Hessian of a sum of elementwise losses is this diagonal.)
  sat = np.arange(40.0, 91.0, 2.0)
  x = np.concatenate([sat, -sat, [0.0, 30.0, -30.0, 1e4, -1e4, 100.0, -100.0, 75.0, -75.0]])
  labels = [1.0, 0.0, 0.9, 0.1, 0.8, 0.2]
  x, y = np.tile(x, len(labels)), np.repeat(labels, x.size)
  second = _focal_second_derivative()
  for gamma in GAMMAS:
    d2 = second(f32(x), f32(y), f32(gamma), f32(0.25))
    assert np.isfinite(np.asarray(d2)).all(), (gamma, x[~np.isfinite(np.asarray(d2))])


def test_sigmoid_focal_hessian_matches_float64_finite_differences(rng):
  # Central differences (h = 1e-5) of the float64 closed-form gradient, at moderate logits
  # with hard and soft labels; the loss is elementwise, so its Hessian is this diagonal.
  x = np.concatenate([rng.normal(size=24) * 3.0, [0.0, 6.0, -6.0, 12.0, -12.0]])
  y = np.concatenate([rng.integers(0, 2, size=12), rng.uniform(size=12), [1, 1, 0, 1, 0]])
  x, y = np.float64(np.float32(x)), np.float64(np.float32(y))
  h = 1e-5
  second = _focal_second_derivative()
  for gamma in GAMMAS:
    ref = (_np_focal_grad(x + h, y, gamma, 0.25) - _np_focal_grad(x - h, y, gamma, 0.25)) / (2 * h)
    assert_close(second(f32(x), f32(y), f32(gamma), f32(0.25)), ref, rtol=1e-4, atol_scale=1e-5)


# ------------------------------------------------------------------ label smoothing and weight


def _np_bce_logits(x, y):
  return y * _np_softplus(-x) + (1 - y) * _np_softplus(x)


def _smoothed(y, eps):
  # Keras BinaryCrossentropy(label_smoothing=ε): "1 − 0.5·ε for the target class and 0.5·ε
  # for the non-target class", i.e. y·(1 − ε) + ε/2.
  return y * (1 - eps) + 0.5 * eps


def test_sigmoid_cross_entropy_label_smoothing_and_weight_from_the_maths(rng):
  # v·BCE(x, ỹ): value, d/dx = v(σ − ỹ), and d/dε = v(½ − y)(softplus(−x) − softplus(x))
  # = −v·x·(½ − y) (the label derivative of the loss is −x).
  x = np.float64(np.float32(rng.normal(size=(6, 5)) * 3))
  y = np.float64(rng.integers(0, 2, size=(6, 5)))
  y[0] = np.float32(rng.uniform(size=5))  # soft labels too
  v = np.float64(np.float32(rng.uniform(0.5, 2.0, size=5)))
  eps = 0.2
  fn = jaxloss.sigmoid_binary_cross_entropy

  def total(x_, eps_):
    return jnp.sum(fn(x_, f32(y), weight=f32(v), label_smoothing=eps_))

  value, (gx, geps) = jax.value_and_grad(total, argnums=(0, 1))(f32(x), f32(eps))
  ys = _smoothed(y, eps)
  assert_close(value, np.sum(v * _np_bce_logits(x, ys)), rtol=2e-6)
  assert_close(gx, v * (_np_sigmoid(x) - ys))
  assert_close(geps, np.sum(-v * x * (0.5 - y)), rtol=1e-4)


def test_binary_cross_entropy_label_smoothing_and_weight_from_the_maths(rng):
  # v·[−ỹ log p − (1 − ỹ) log(1 − p)], d/dp = v(p − ỹ)/(p(1 − p)); weight (N, 1) per row.
  p = np.float64(np.float32(rng.uniform(0.02, 0.98, size=(6, 5))))
  y = np.float64(rng.integers(0, 2, size=(6, 5)))
  v = np.float64(np.float32(rng.uniform(0.5, 2.0, size=(6, 1))))
  eps = 0.3
  ys = _smoothed(y, eps)
  out, vjp = jax.vjp(lambda q: jaxloss.binary_cross_entropy(
      q, f32(y), weight=f32(v), label_smoothing=eps), f32(p))
  assert_close(out, -v * (ys * np.log(p) + (1 - ys) * np.log1p(-p)))
  (g,) = vjp(jnp.ones_like(out))
  assert_close(g, v * (p - ys) / (p * (1 - p)), rtol=1e-4)


def test_label_smoothing_is_the_loss_at_smoothed_labels(rng):
  # The logit and probability forms agree on the same smoothed labels; ε = 0 changes nothing.
  x = f32(rng.normal(size=(4, 3)) * 2)
  y = f32(rng.integers(0, 2, size=(4, 3)))
  for eps in (0.0, 0.1, 1.0):
    ys = f32(_smoothed(np.float64(y), eps))
    logit_form = jaxloss.sigmoid_binary_cross_entropy(x, y, label_smoothing=eps)
    assert_close(logit_form, jaxloss.sigmoid_binary_cross_entropy(x, ys))
    assert_close(jaxloss.binary_cross_entropy(jax.nn.sigmoid(x), y, label_smoothing=eps),
                 logit_form, rtol=1e-4)
  # ε = 1: every label is ½, the loss is softplus(x) − x/2 whatever the label.
  full = jaxloss.sigmoid_binary_cross_entropy(x, y, label_smoothing=1.0)
  assert_close(full, _np_softplus(np.float64(x)) - np.float64(x) / 2)


def test_zero_weight_gives_zero_loss_and_gradient_where_the_loss_is_infinite():
  # p = 0 with label 1 is +inf; a zero weight leaves the element out (0, zero gradient).
  p, y = f32([0.0, 0.5, 1.0]), f32([1.0, 1.0, 0.0])
  w = f32([0.0, 2.0, 0.0])
  out = jaxloss.binary_cross_entropy(p, y, weight=w)
  np.testing.assert_allclose(np.asarray(out), [0.0, 2 * np.log(2.0), 0.0], rtol=1e-6)
  g = jax.grad(lambda q: jnp.sum(jaxloss.binary_cross_entropy(q, y, weight=w)))(p)
  np.testing.assert_allclose(np.asarray(g), [0.0, -4.0, 0.0])


@pytest.mark.parametrize("fn", [jaxloss.sigmoid_binary_cross_entropy,
                                jaxloss.binary_cross_entropy])
def test_label_smoothing_bound_and_weight_shape_are_checked(fn):
  x, y = jnp.full((4, 3), 0.5), jnp.ones((4, 3))
  for eps in (-0.1, 1.5):
    with pytest.raises(ValueError, match=rf"{fn.__name__}\(label_smoothing=...\) must be in"):
      fn(x, y, label_smoothing=eps)
  with pytest.raises(ValueError, match=r"`weight` must broadcast.*weight.shape=\(4,\)"):
    fn(x, y, weight=jnp.ones(4))
  with pytest.raises(TypeError, match="`weight` must have a floating dtype"):
    fn(x, y, weight=jnp.ones(3, jnp.int32))


# ------------------------------------------------------------------ multilabel soft margin


@pytest.mark.parametrize("case", torch_cases("multilabel_soft_margin_loss"),
                         ids=lambda c: c["name"])
def test_multilabel_soft_margin_matches_torch(case):
  # tests/data/torch_reference_extra.json: F.multilabel_soft_margin_loss(reduction="none"),
  # float64, and the gradient of its sum.
  x, y = case["inputs"]
  w = case["kwargs"].get("weight")
  kwargs = {} if w is None else {"class_weights": f32(w)}
  value, grad = jax.value_and_grad(lambda v: jnp.sum(
      jaxloss.multilabel_soft_margin_loss(v, f32(y), **kwargs)))(f32(x))
  assert_close(jaxloss.multilabel_soft_margin_loss(f32(x), f32(y), **kwargs), case["loss"])
  assert_close(value, np.sum(case["loss"]))
  assert_close(grad, case["grad"])


def test_multilabel_soft_margin_is_the_mean_of_weighted_sigmoid_cross_entropies(rng):
  # (1/C) Σ_c w_c BCE(x_c, y_c) along any axis; d/dx_c = w_c(σ(x_c) − y_c)/C.
  x = np.float64(np.float32(rng.normal(size=(3, 4, 2)) * 3))
  y = np.float64(rng.integers(0, 2, size=(3, 4, 2)))
  w = np.float64(np.float32(rng.uniform(0.5, 2.0, size=4)))
  fn = jaxloss.multilabel_soft_margin_loss
  out, vjp = jax.vjp(lambda v: fn(v, f32(y), class_weights=f32(w), axis=1), f32(x))
  wb = w[None, :, None]
  assert out.shape == (3, 2)
  assert_close(out, np.mean(wb * _np_bce_logits(x, y), axis=1))
  (g,) = vjp(jnp.ones_like(out))
  assert_close(g, wb * (_np_sigmoid(x) - y) / 4)
  with pytest.raises(ValueError, match=r"`class_weights` must have shape \(4,\)"):
    fn(f32(x), f32(y), class_weights=jnp.ones(2), axis=1)
  with pytest.raises(ValueError, match="must have the same shape"):
    fn(f32(x), f32(y[:, :, :1]))
