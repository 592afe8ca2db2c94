"""Regularizers and structural risk: values over pytrees, masks, and a lasso trained with optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from _reference import assert_close


def f32(x):
  return jnp.asarray(x, jnp.float32)


def _params(rng):
  return {"dense": {"w": f32(rng.normal(size=(4, 3))), "b": f32(rng.normal(size=(3,)))},
          "layers": [f32(rng.normal(size=(5,))), f32(np.asarray([0.0, -1.5]))],
          "scale": f32(2.5)}


def _np_leaves(params):
  return [np.float64(leaf) for leaf in jax.tree.leaves(params)]


def test_penalties_against_numpy(rng):
  params = _params(rng)
  leaves = _np_leaves(params)
  l1 = sum(np.abs(w).sum() for w in leaves)
  l2 = sum(0.5 * (w ** 2).sum() for w in leaves)
  assert_close(jaxloss.l1_penalty(params), l1)
  assert_close(jaxloss.l2_penalty(params), l2)
  for r in (0.0, 0.3, 1.0):
    assert_close(jaxloss.elastic_net_penalty(params, l1_ratio=r), r * l1 + (1 - r) * l2)
  assert jaxloss.l1_penalty(params).shape == ()


def test_mask_excludes_leaves_full_structure_and_prefix(rng):
  params = _params(rng)
  full = {"dense": {"w": True, "b": False}, "layers": [True, False], "scale": False}
  expected = np.abs(np.float64(params["dense"]["w"])).sum() + np.abs(
      np.float64(params["layers"][0])).sum()
  assert_close(jaxloss.l1_penalty(params, mask=full), expected)
  # A prefix: one bool for the whole "dense" subtree.
  prefix = {"dense": False, "layers": True, "scale": True}
  expected = sum(np.abs(np.float64(w)).sum() for w in jax.tree.leaves(params["layers"])) + 2.5
  assert_close(jaxloss.l1_penalty(params, mask=prefix), expected)
  # The mask as arrays (e.g. built inside a jitted step) works the same.
  as_arrays = jax.tree.map(jnp.asarray, prefix)
  assert_close(jaxloss.l1_penalty(params, mask=as_arrays), expected)


def test_masked_leaf_nan_reaches_neither_value_nor_gradient(rng):
  params = {"w": f32([1.0, -2.0]), "b": f32([np.nan, np.inf])}
  mask = {"w": True, "b": False}
  for fn in (jaxloss.l1_penalty, jaxloss.l2_penalty, jaxloss.elastic_net_penalty):
    value, grad = jax.value_and_grad(lambda p: fn(p, mask=mask))(params)
    assert np.isfinite(value)
    np.testing.assert_array_equal(grad["b"], [0.0, 0.0])


def test_empty_and_fully_masked_are_zero(rng):
  assert jaxloss.l1_penalty({}) == 0.0
  params = _params(rng)
  mask = jax.tree.map(lambda _: False, params)
  value, grad = jax.value_and_grad(lambda p: jaxloss.l2_penalty(p, mask=mask))(params)
  assert value == 0.0
  assert all(np.all(g == 0) for g in jax.tree.leaves(grad))


def test_low_precision_leaves_accumulate_in_float32(rng):
  w = rng.normal(size=(1000,)).astype(np.float32)
  out = jaxloss.l2_penalty({"w": jnp.asarray(w, jnp.bfloat16)})
  assert out.dtype == jnp.float32
  ref = 0.5 * np.sum(np.float64(jnp.asarray(w, jnp.bfloat16).astype(jnp.float32)) ** 2)
  assert_close(out, ref)


def test_mask_and_leaf_errors(rng):
  params = _params(rng)
  with pytest.raises(ValueError, match="structure"):
    jaxloss.l1_penalty(params, mask={"dense": True})
  with pytest.raises(TypeError, match="scalar bool"):
    jaxloss.l1_penalty({"w": f32([1.0])}, mask={"w": 1.0})
  with pytest.raises(TypeError, match="floating"):
    jaxloss.l1_penalty({"step": jnp.asarray(3)})


def test_elastic_net_ratio_checked_eager_and_traced(rng):
  params = _params(rng)
  with pytest.raises(ValueError, match=r"elastic_net_penalty\(l1_ratio=\.\.\.\)"):
    jaxloss.elastic_net_penalty(params, l1_ratio=1.5)
  f = checkify.checkify(lambda r: jaxloss.elastic_net_penalty(params, l1_ratio=r),
                        errors=checkify.user_checks)
  err, _ = jax.jit(f)(jnp.float32(-0.5))
  with pytest.raises(checkify.JaxRuntimeError, match="l1_ratio"):
    err.throw()


# ------------------------------------------------------------------------------ structural risk

def test_structural_risk_is_mean_plus_penalties(rng):
  params = _params(rng)
  losses = f32(rng.uniform(0, 3, size=(8,)))
  where = jnp.asarray([True, False] * 4)
  leaves = _np_leaves(params)
  l1 = sum(np.abs(w).sum() for w in leaves)
  l2 = sum(0.5 * (w ** 2).sum() for w in leaves)
  out = jaxloss.structural_risk(losses, params, l1=0.01, l2=0.1, where=where)
  assert out.shape == ()
  assert_close(out, np.float64(losses)[::2].mean() + 0.01 * l1 + 0.1 * l2)
  assert_close(jaxloss.structural_risk(losses, params), np.float64(losses).mean())
  # Fully masked batch: the empirical risk is 0 (jaxloss.reduce's rule), the penalty remains.
  none = jnp.zeros((8,), bool)
  assert_close(jaxloss.structural_risk(losses, params, l2=1.0, where=none), l2)


def test_structural_risk_gradient(rng):
  params = {"w": f32([1.0, -2.0, 0.0]), "b": f32(0.5)}
  losses = f32([1.0, 2.0, 4.0, 8.0])
  g_losses, g_params = jax.grad(
      lambda lo, p: jaxloss.structural_risk(lo, p, l1=0.3, l2=0.2, mask={"w": True, "b": False}),
      argnums=(0, 1))(losses, params)
  np.testing.assert_allclose(g_losses, np.full(4, 0.25))
  # l1·sign(w) (0 at w = 0) + l2·w; the masked bias gets nothing.
  np.testing.assert_allclose(g_params["w"], [0.3 + 0.2, -0.3 - 0.4, 0.0], rtol=1e-6)
  assert g_params["b"] == 0.0


def test_structural_risk_strengths_checked_and_traced(rng):
  params = _params(rng)
  losses = f32(np.ones(4))
  with pytest.raises(ValueError, match=r"structural_risk\(l1=\.\.\.\)"):
    jaxloss.structural_risk(losses, params, l1=-0.1)
  # New strengths do not re-trace: tests/test_transforms.py checks it for every registry entry.
  f = checkify.checkify(lambda v: jaxloss.structural_risk(losses, params, l2=v),
                        errors=checkify.user_checks)
  err, _ = jax.jit(f)(jnp.float32(-1.0))
  with pytest.raises(checkify.JaxRuntimeError, match=r"structural_risk\(l2=\.\.\.\)"):
    err.throw()


def _fit(x, y, l1, l2, steps=400):
  """Linear regression trained with optax on structural_risk(½(xw + b − y)², …)."""
  params = {"w": jnp.zeros((x.shape[1],), jnp.float32), "b": jnp.zeros((), jnp.float32)}
  optimizer = optax.sgd(0.05)

  def objective(p):
    losses = jaxloss.l2_loss(x @ p["w"] + p["b"], y)
    return jaxloss.structural_risk(losses, p, l1=l1, l2=l2, mask={"w": True, "b": False})

  @jax.jit
  def train(params):
    def step(carry, _):
      p, state = carry
      grads = jax.grad(objective)(p)
      updates, state = optimizer.update(grads, state)
      return (optax.apply_updates(p, updates), state), None
    (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
    return params

  return np.asarray(train(params)["w"])


def test_lasso_shrinks_irrelevant_weights_where_ridge_keeps_them():
  # The survey's L1-vs-L2 contrast: the lasso's penalty has a constant pull (sub-gradient
  # l1·sign(w)) that beats the noise's small correlation with an irrelevant feature; ridge's
  # pull l2·w vanishes near 0, so noise-fitted weights survive.
  rng = np.random.default_rng(42)
  n, d = 60, 12
  x = rng.normal(size=(n, d))
  w_true = np.zeros(d)
  w_true[:3] = [3.0, -2.0, 1.5]
  y = x @ w_true + 0.7 * rng.normal(size=n)
  x, y = f32(x), f32(y)
  lasso = _fit(x, y, l1=0.25, l2=0.0)
  ridge = _fit(x, y, l1=0.0, l2=0.25)
  irrelevant = slice(3, None)
  assert np.max(np.abs(lasso[irrelevant])) < 0.03  # about SGD's oscillation lr·l1 = 0.0125
  assert np.mean(np.abs(ridge[irrelevant])) > 5 * np.mean(np.abs(lasso[irrelevant]))
  assert np.max(np.abs(ridge[irrelevant])) > 0.05
  # The relevant weights survive both penalties.
  np.testing.assert_allclose(lasso[:3], w_true[:3], atol=0.5)
  np.testing.assert_allclose(ridge[:3], w_true[:3], atol=0.8)


def test_elastic_net_with_one_penalty_switched_off_equals_it_at_huge_weights():
  params = {"w": jnp.asarray([1e20, 1.0], jnp.float32)}
  np.testing.assert_allclose(float(jaxloss.elastic_net_penalty(params, l1_ratio=1.0)),
                             float(jaxloss.l1_penalty(params)), rtol=1e-6)
  losses = jnp.ones(3, jnp.float32)
  risk = jaxloss.structural_risk(losses, params, l1=0.5, l2=0.0)
  np.testing.assert_allclose(float(risk), 1.0 + 0.5 * (1e20 + 1.0), rtol=1e-6)


def test_structural_risk_where_errors_name_structural_risk():
  with pytest.raises(ValueError, match=r"structural_risk: `where` must have the shape"):
    jaxloss.structural_risk(jnp.ones(4, jnp.float32), {"w": jnp.ones(2)},
                            where=jnp.ones(3, bool))
