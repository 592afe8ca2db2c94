"""ranking_softmax_loss: float64 reference, the closed-form gradient (Σ w y)·softmax − w y,
optax agreement (values and gradients, every reduce_fn), masks, all-masked lists, extremes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from _reference import assert_close


def f32(x):
  return jnp.asarray(x, jnp.float32)


def np_ranking(s, y, where=None, weights=None):
  """Per-list loss and gradient in float64 over the kept items."""
  s = np.float64(s)
  keep = np.ones(s.shape, bool) if where is None else where
  yw = np.float64(y) * (1.0 if weights is None else weights) * keep
  z = np.where(keep, s, -np.inf)
  m = np.max(np.where(keep.any(-1, keepdims=True), z, 0.0), -1, keepdims=True)
  e = np.where(keep, np.exp(np.where(keep, s - m, 0.0)), 0.0)
  total = e.sum(-1, keepdims=True)
  lse = m + np.log(np.where(total > 0, total, 1.0))
  loss = np.sum(np.where(yw != 0, yw * (lse - s), 0.0), -1)
  softmax = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
  grad = yw.sum(-1, keepdims=True) * softmax - yw
  return loss, grad


def _inputs(rng, shape=(3, 4, 6)):
  s = (rng.normal(size=shape) * 2).astype(np.float32)
  y = rng.integers(0, 3, size=shape).astype(np.float32)
  where = rng.random(shape) > 0.3
  where[0, 0] = False  # an all-masked list
  w = rng.uniform(0.5, 2.0, size=shape).astype(np.float32)
  return s, y, where, w


@pytest.mark.parametrize("masked, weighted", [(False, False), (True, False), (True, True)])
def test_per_list_values_and_closed_form_gradient(rng, masked, weighted):
  s, y, where, w = _inputs(rng)
  kwargs = {"where": where if masked else None, "weights": w if weighted else None}
  loss_ref, grad_ref = np_ranking(s, y, **kwargs)
  loss = jaxloss.ranking_softmax_loss(f32(s), y, reduce_fn=None, **kwargs)
  assert loss.shape == s.shape[:-1]
  assert_close(loss, loss_ref)
  grad = jax.grad(lambda x: jnp.sum(jaxloss.ranking_softmax_loss(x, y, reduce_fn=None,
                                                                  **kwargs)))(f32(s))
  assert_close(grad, grad_ref)
  if masked:
    assert loss[0, 0] == 0 and np.all(grad[~where] == 0)


@functools.partial(jax.jit, static_argnames=("fn", "reduce_fn"))
def _value_and_grad(fn, s, y, where, w, reduce_fn):
  return jax.value_and_grad(lambda x: jnp.sum(fn(x, y, where=where, weights=w,
                                                 reduce_fn=reduce_fn)))(s)


@pytest.mark.parametrize("reduce_fn", [jnp.mean, jnp.sum, None])
def test_agrees_with_optax_values_and_gradients(rng, reduce_fn):
  s, y, where, w = _inputs(rng)
  where[0, 0] = True  # optax's per-list value at an all-masked list is 0 too, but NaN-prone
  ours = _value_and_grad(jaxloss.ranking_softmax_loss, f32(s), f32(y), where, f32(w),
                         reduce_fn)
  theirs = _value_and_grad(optax.losses.ranking_softmax_loss, f32(s), f32(y), where, f32(w),
                           reduce_fn)
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
  np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)
  default = jaxloss.ranking_softmax_loss(f32(s), f32(y), where=where, weights=f32(w))
  np.testing.assert_allclose(default, optax.losses.ranking_softmax_loss(
      f32(s), f32(y), where=where, weights=f32(w)), rtol=1e-5)  # the mean, optax's default


def test_mean_skips_all_masked_lists_and_is_zero_over_none(rng):
  s, y, where, _ = _inputs(rng)
  per_list = np.asarray(jaxloss.ranking_softmax_loss(f32(s), y, where=where, reduce_fn=None))
  valid = where.any(-1)
  assert_close(jaxloss.ranking_softmax_loss(f32(s), y, where=where),
               per_list[valid].mean())
  none = np.zeros(s.shape, bool)
  value, grad = jax.value_and_grad(
      lambda x: jaxloss.ranking_softmax_loss(x, y, where=none))(f32(s))
  assert value == 0 and np.all(grad == 0)


def test_masked_items_never_reach_value_or_gradient(rng):
  s, y, where, _ = _inputs(rng)
  poisoned = s.copy()
  poisoned[~where] = np.nan
  poisoned[~where & (y > 0)] = np.inf
  loss = jaxloss.ranking_softmax_loss(f32(poisoned), y, where=where, reduce_fn=None)
  assert_close(loss, np_ranking(s, y, where=where)[0])
  grad = jax.grad(lambda x: jaxloss.ranking_softmax_loss(x, y, where=where))(f32(poisoned))
  assert np.all(np.isfinite(grad)) and np.all(grad[~where] == 0)
  # −inf at the masked logits, forward mode too (jax #19490), per list and reduced.
  minus_inf = np.where(where, s, -np.inf).astype(np.float32)
  for reduce_fn in (None, jnp.mean):
    fn = lambda x: jaxloss.ranking_softmax_loss(x, y, where=where,
                                                reduce_fn=reduce_fn)
    primal, tangent = jax.jvp(fn, (f32(minus_inf),), (jnp.ones_like(f32(s)),))
    assert np.all(np.isfinite(primal)) and np.all(np.isfinite(tangent))
    grad = jax.grad(lambda x: jnp.sum(fn(x)))(f32(minus_inf))
    np.testing.assert_allclose(jnp.sum(tangent), jnp.sum(grad), rtol=1e-5, atol=1e-6)
    assert np.all(grad[~where] == 0)


def test_extreme_logits_and_zero_labels():
  # optax's test: 1e37-sized logits are exact.
  s = f32([0.0, -2.1e26, 3.4e37, 42.0])
  y = f32([0.0, 1.0, 1.0, 0.0])
  loss = jaxloss.ranking_softmax_loss(s, y, reduce_fn=jnp.sum)
  np.testing.assert_allclose(loss, 3.4e37 + 2.1e26, rtol=1e-6)
  zero = jax.value_and_grad(lambda x: jaxloss.ranking_softmax_loss(x, jnp.zeros(4)))(s)
  assert zero[0] == 0 and np.all(zero[1] == 0)
  # A zero label on a −inf logit contributes 0 (optax: 0·inf = NaN).
  out = jaxloss.ranking_softmax_loss(f32([1.0, -np.inf, 2.0]), f32([1.0, 0.0, 0.0]))
  np.testing.assert_allclose(out, np.log(1 + np.e), rtol=1e-6)


def test_bool_labels_dtypes_and_errors(rng):
  s, y, _, _ = _inputs(rng)
  out = jaxloss.ranking_softmax_loss(f32(s), y > 1, reduce_fn=None)
  assert_close(out, np_ranking(s, (y > 1).astype(np.float64))[0])
  assert jaxloss.ranking_softmax_loss(f32(s).astype(jnp.bfloat16), y > 1).dtype == jnp.bfloat16
  assert jaxloss.ranking_softmax_loss(f32(s).astype(jnp.bfloat16), f32(y)).dtype == jnp.float32
  with pytest.raises(ValueError, match="same shape"):
    jaxloss.ranking_softmax_loss(f32(s), y[..., :2])
  with pytest.raises(TypeError, match="where"):
    jaxloss.ranking_softmax_loss(f32(s), y, where=f32(y))
  with pytest.raises(TypeError, match="keyword"):
    jaxloss.ranking_softmax_loss(f32(s), y, None)
