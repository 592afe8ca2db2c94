"""Sparsemax losses and make_fenchel_young_loss: float64 references (sparsemax by its
definition as a projection), the closed-form gradients sparsemax(θ) − onehot and
sparse_sigmoid(s) − y, optax agreement (values and gradients), any batch shape, bad labels."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify
from jax.scipy.special import logsumexp

import jaxloss
from _reference import assert_close


def f32(x):
  return jnp.asarray(x, jnp.float32)


def np_sparsemax(z):
  """The Euclidean projection onto the simplex, found by bisection on τ in float64
  (Σ max(z − τ, 0) = 1): a route independent of the sort-based one under test."""
  z = np.float64(z)
  lo, hi = z.max(-1, keepdims=True) - 1.0, z.max(-1, keepdims=True)
  for _ in range(200):
    mid = (lo + hi) / 2
    too_much = np.sum(np.maximum(z - mid, 0), -1, keepdims=True) > 1
    lo, hi = np.where(too_much, mid, lo), np.where(too_much, hi, mid)
  return np.maximum(z - (lo + hi) / 2, 0)


def np_multiclass_sparsemax_loss(z, y):
  """Ω*(θ) − θ_y with Ω(p) = ½‖p‖² − ½ on the simplex: ⟨p, θ⟩ − ½‖p‖² + ½ − θ_y."""
  z = np.float64(z)
  p = np_sparsemax(z)
  target = np.take_along_axis(z, y[..., None], -1)[..., 0]
  return np.sum(p * z, -1) - 0.5 * np.sum(p * p, -1) + 0.5 - target


@pytest.mark.parametrize("shape", [(12, 5), (3, 4, 6), (7,)])
def test_multiclass_sparsemax_loss_and_gradient_at_any_batch_shape(rng, shape):
  scores = (rng.normal(size=shape) * 2).astype(np.float32)
  labels = rng.integers(0, shape[-1], size=shape[:-1])
  loss = jaxloss.multiclass_sparsemax_loss(f32(scores), labels)
  assert loss.shape == shape[:-1]
  assert_close(loss, np_multiclass_sparsemax_loss(scores, labels))
  grad = jax.grad(lambda s: jnp.sum(jaxloss.multiclass_sparsemax_loss(s, labels)))(f32(scores))
  onehot = np.eye(shape[-1])[labels]
  assert_close(grad, np_sparsemax(scores) - onehot)  # Blondel et al. 2020, Prop. 2


def test_multiclass_sparsemax_agrees_with_optax(rng):
  scores = f32(rng.normal(size=(16, 7)) * 3)
  labels = rng.integers(0, 7, size=16)
  weights = f32(rng.uniform(0.5, 1.5, size=16))

  def run(fn):
    return jax.value_and_grad(lambda s: jnp.sum(weights * fn(s, labels)))(scores)

  ours = run(jaxloss.multiclass_sparsemax_loss)
  with jax.numpy_dtype_promotion("standard"):  # optax's mixes float and int
    theirs = run(optax.losses.multiclass_sparsemax_loss)
    theirs_values = optax.losses.multiclass_sparsemax_loss(scores, labels)
  np.testing.assert_allclose(jaxloss.multiclass_sparsemax_loss(scores, labels), theirs_values,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
  np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


def test_multiclass_sparsemax_zero_exactly_at_a_one_hot_prediction_and_never_negative(rng):
  scores = f32([[0.0, 1e5, 0.0], [1e5, 0.0, 0.0], [0.0, 0.0, 1e5], [2.0, 1.0, 0.5]])
  labels = np.array([1, 0, 2, 0])
  loss = jaxloss.multiclass_sparsemax_loss(scores, labels)
  np.testing.assert_array_equal(loss, [0, 0, 0, 0])  # margin >= 1: sparsemax is one-hot
  big = f32(rng.normal(size=(64, 9)) * 1e3)
  assert np.all(jaxloss.multiclass_sparsemax_loss(big, rng.integers(0, 9, size=64)) >= 0)


def test_multiclass_sparsemax_hessian_is_the_sparsemax_jacobian(rng):
  scores = f32(rng.normal(size=6))
  hess = jax.hessian(lambda s: jaxloss.multiclass_sparsemax_loss(s, 2))(scores)
  support = np_sparsemax(scores) > 0
  expected = np.diag(support).astype(float) - np.outer(support, support) / support.sum()
  assert_close(hess, expected)


def test_multiclass_sparsemax_bad_labels(rng):
  scores = f32(rng.normal(size=(4, 5)))
  labels = np.array([0, 5, -1, 4])
  loss = np.asarray(jaxloss.multiclass_sparsemax_loss(scores, labels))
  assert np.isnan(loss[1]) and np.isnan(loss[2]) and np.all(np.isfinite(loss[[0, 3]]))
  grad = jax.grad(lambda s: jnp.nansum(jaxloss.multiclass_sparsemax_loss(s, labels)))(scores)
  assert np.all(grad[1:3] == 0)
  err, _ = checkify.checkify(jaxloss.multiclass_sparsemax_loss,
                             errors=checkify.user_checks)(scores, labels)
  assert "labels" in str(err.get())
  with pytest.raises(TypeError, match="integer"):
    jaxloss.multiclass_sparsemax_loss(scores, f32(labels))
  with pytest.raises(ValueError, match="shape"):
    jaxloss.multiclass_sparsemax_loss(scores, labels[:3])


def np_sparse_plus(x):
  return np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1) ** 2 / 4))


@pytest.mark.parametrize("label_dtype", [np.int32, np.float32, np.bool_])
def test_binary_sparsemax_loss_against_its_formula_and_optax(rng, label_dtype):
  logits = (rng.normal(size=(20,)) * 2).astype(np.float32)
  logits[:4] = [-1.0, 1.0, 0.0, 1e30]  # the knots, and a huge logit (exact linear piece)
  labels = rng.integers(0, 2, size=20).astype(label_dtype)
  y = labels.astype(np.float64)
  expected = np_sparse_plus(np.where(y == 1, -np.float64(logits), logits))
  loss = jaxloss.sparsemax_loss(f32(logits), labels)
  assert_close(loss, expected)
  grad = jax.grad(lambda s: jnp.sum(jaxloss.sparsemax_loss(s, labels)))(f32(logits))
  assert_close(grad, np.clip((np.float64(logits) + 1) / 2, 0, 1) - y)  # sparse_sigmoid − y
  np.testing.assert_allclose(loss[4:], optax.losses.sparsemax_loss(f32(logits[4:]),
                                                                  labels[4:]), rtol=1e-6)


def test_binary_sparsemax_bad_labels_and_dtype(rng):
  logits = f32(rng.normal(size=4))
  loss = jaxloss.sparsemax_loss(logits, np.array([0, 1, 2, -1]))
  assert np.all(np.isfinite(loss[:2])) and np.all(np.isnan(loss[2:]))
  grad = jax.grad(lambda s: jnp.nansum(jaxloss.sparsemax_loss(s, np.array([0, 1, 2, -1]))))(
      logits)
  assert np.all(grad[2:] == 0)
  assert jaxloss.sparsemax_loss(logits.astype(jnp.bfloat16), np.ones(4, np.int32)).dtype == \
      jnp.bfloat16
  assert jaxloss.sparsemax_loss(logits.astype(jnp.bfloat16), np.ones(4, np.float32)).dtype == \
      jnp.float32


def test_fenchel_young_loss_of_logsumexp_is_cross_entropy(rng):
  # With max_fun = logsumexp the loss is softmax cross-entropy minus the targets' entropy
  # (zero for one-hot targets); its gradient is softmax(θ) − y.
  fy = jaxloss.make_fenchel_young_loss(logsumexp)
  scores = (rng.normal(size=(2, 5, 6)) * 2).astype(np.float32)
  targets = rng.dirichlet(np.ones(6), size=(2, 5)).astype(np.float32)
  z = np.float64(scores)
  lse = np.log(np.sum(np.exp(z - z.max(-1, keepdims=True)), -1)) + z.max(-1)
  assert_close(fy(f32(scores), f32(targets)), lse - np.sum(targets * z, -1))
  grad = jax.grad(lambda s: jnp.sum(fy(s, f32(targets))))(f32(scores))
  softmax = np.exp(z - lse[..., None])
  assert_close(grad, softmax - targets)
  np.testing.assert_allclose(fy(f32(scores), f32(targets)),
                             optax.losses.make_fenchel_young_loss(logsumexp)(
                                 f32(scores), f32(targets)), rtol=1e-5)
  onehot = np.eye(6, dtype=np.float32)[rng.integers(0, 6, size=(2, 5))]
  assert_close(fy(f32(scores), f32(onehot)),
               optax.losses.softmax_cross_entropy(f32(scores), f32(onehot)))


def test_fenchel_young_loss_passes_extra_arguments_and_checks_shapes(rng):
  def scaled_lse(v, temperature=1.0):
    return temperature * logsumexp(v / temperature)

  fy = jaxloss.make_fenchel_young_loss(scaled_lse)
  scores, targets = f32(rng.normal(size=(3, 4))), f32(np.eye(4)[:3])
  out = fy(scores, targets, temperature=0.5)
  ref = optax.losses.make_fenchel_young_loss(scaled_lse)(scores, targets, temperature=0.5)
  np.testing.assert_allclose(out, ref, rtol=1e-5)
  out_jit = jax.jit(functools.partial(fy, temperature=0.5))(scores, targets)
  np.testing.assert_allclose(out_jit, ref, rtol=1e-5)
  with pytest.raises(ValueError, match="same shape"):
    fy(scores, targets[:, :2], temperature=0.5)
