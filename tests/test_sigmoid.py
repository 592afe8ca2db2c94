"""Sigmoid family (jaxloss/sigmoid.py): the focal loss's second derivative, label smoothing and
per-element weights of the binary cross-entropies, and the multilabel soft-margin loss."""

import jax
import numpy as np

import jaxloss
from _reference import assert_close, f32

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
