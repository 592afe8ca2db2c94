"""Closed-form derivative tests: the gradient written from the maths against ``jax.grad``.

Each test states the derivative, evaluates it in numpy float64 at random points and exactly at
the kinks, where the documented sub-gradient must come out. The first two tests read
``bench/registry.py``: every entry's ``kinks`` (the documented sub-gradient at each) and, where
an entry gives one, its closed-form ``grad``; the tests below them are the closed forms that need
more than one formula per loss (hyper-parameter sweeps, several inputs, second derivatives).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from _reference import assert_close, grad_of_sum
from bench import registry


def _points(rng, kinks):
  """Random residuals plus the kinks, exactly representable in float32."""
  x = rng.normal(size=64).astype(np.float32) * 3
  return np.concatenate([x, np.asarray(kinks, np.float32)])


def _np64(a):
  return np.asarray(a, np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else np.asarray(a)


# ------------------------------------------------------------------------------ the registry
# Where 0 is a sub-gradient the gradient is 0 (L1 at 0, quantile at 0, hinge at m = 1,
# perceptron at m = 0, every max(0, ·) at 0); ties go to the lowest class index. optax's
# jnp.maximum gives −0.5 at hinge's kink.

KINKS = [pytest.param(entry, kink,
                      id=entry.id + "".join(f"-{k}={v}" for k, v in kink.kwargs.items()))
         for entry in registry.LOSSES for kink in entry.kinks]


@pytest.mark.parametrize("entry,kink", KINKS)
def test_subgradient_at_kinks_is_the_documented_one(entry, kink):
  x, *others = kink.arrays()
  grad = grad_of_sum(entry.fn, x, *others, **kink.kwargs)
  np.testing.assert_allclose(grad, np.asarray(kink.grad, np.float32), rtol=1e-6, atol=0,
                             err_msg=kink.why)


CLOSED_FORMS = [pytest.param(entry, id=entry.id) for entry in registry.LOSSES
                if entry.grad is not None]


@pytest.mark.parametrize("entry", CLOSED_FORMS)
def test_gradient_matches_closed_form_at_random_points_and_kinks(entry):
  points = [entry.inputs(seed) for seed in range(3)]
  # The random points share shapes and keywords: one compilation serves the three.
  random_grad = jax.jit(lambda x, *rest: grad_of_sum(entry.fn, x, *rest, **points[0][1]))
  grads = [random_grad(*args) for args, _ in points]
  points += [(kink.arrays(), kink.kwargs) for kink in entry.kinks]
  grads += [grad_of_sum(entry.fn, args[0], *args[1:], **kwargs) for args, kwargs in points[3:]]
  for (args, kwargs), g in zip(points, grads, strict=True):
    expected = entry.grad(*(_np64(a) for a in args), **kwargs)
    assert_close(g, expected)
    if not np.any(expected):  # an exact 0 (a step function, or 0 at every kink point)
      np.testing.assert_array_equal(g, np.zeros_like(expected))


# ------------------------------------------------------------------------------ regression

def test_l1_gradient_is_sign_and_zero_at_zero(rng):
  x = _points(rng, [0.0, -0.0])
  g = grad_of_sum(jaxloss.l1_loss, x)
  np.testing.assert_array_equal(g, np.sign(x))
  assert g[-1] == 0 and g[-2] == 0


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_smooth_l1_gradient_and_kinks(rng, beta):
  x = _points(rng, [beta, -beta, 0.0])
  expected = np.where(np.abs(x) < beta, x / beta, np.sign(x))
  g = grad_of_sum(jaxloss.smooth_l1_loss, x, beta=beta)
  assert_close(g, expected)
  np.testing.assert_array_equal(g[-3:], [1.0, -1.0, 0.0])


def test_smooth_l1_beta_zero_is_l1_with_finite_gradient(rng):
  x = _points(rng, [0.0])
  g = grad_of_sum(jaxloss.smooth_l1_loss, x, beta=0.0)
  np.testing.assert_array_equal(g, np.sign(x))
  assert np.all(np.isfinite(g))


@pytest.mark.parametrize("delta", [0.3, 1.0, 3.0])
def test_huber_gradient_and_kinks(rng, delta):
  d = np.float32(delta)
  x = _points(rng, [d, -d, 0.0])
  expected = np.where(np.abs(x) <= d, x, d * np.sign(x))
  g = grad_of_sum(jaxloss.huber_loss, x, delta=delta)
  assert_close(g, expected)
  np.testing.assert_array_equal(g[-3:], [d, -d, 0.0])


def test_huber_gradient_in_delta(rng):
  # d/dδ of δ(|x| − δ/2) is |x| − δ beyond δ, and 0 inside (½x² does not depend on δ).
  x = _points(rng, [1.0, -1.0, 0.0])
  g = jax.vmap(jax.grad(lambda d, p: jaxloss.huber_loss(p, delta=d)), (None, 0))(
      jnp.float32(1.0), jnp.asarray(x))
  assert_close(g, np.where(np.abs(x) <= 1.0, 0.0, np.abs(np.float64(x)) - 1.0))


def test_log_cosh_gradient_and_second_derivative(rng):
  x = _points(rng, [0.0, 20.0, -20.0])
  assert_close(grad_of_sum(jaxloss.log_cosh, x), np.tanh(np.float64(x)))
  second = jax.vmap(jax.grad(jax.grad(lambda p: jaxloss.log_cosh(p))))(jnp.asarray(x))
  assert_close(second, 1 / np.cosh(np.float64(x)) ** 2)
  assert second[-3] == 1.0  # sech²(0), not the 0 that |x| differentiated twice would give


@pytest.mark.parametrize("q", [0.0, 0.3, 1.0])
def test_quantile_gradient_and_kink(rng, q):
  p = _points(rng, [0.5])
  t = np.float32(0.5)
  expected = np.where(p < t, -q, np.where(p > t, 1 - q, 0.0))
  g = grad_of_sum(jaxloss.quantile_loss, p, t, quantile=q)
  assert_close(g, expected)
  assert g[-1] == 0.0


def test_poisson_nll_gradients(rng):
  x = rng.normal(size=32).astype(np.float32)
  t = rng.poisson(2.0, size=32).astype(np.float32)
  assert_close(grad_of_sum(jaxloss.poisson_nll_loss, x, t), np.exp(np.float64(x)) - t)
  r = rng.uniform(0.1, 4.0, size=32).astype(np.float32)
  g = grad_of_sum(jaxloss.poisson_nll_loss, r, t, log_input=False, eps=1e-3)
  assert_close(g, 1 - t / (np.float64(r) + 1e-3), rtol=1e-4)


def test_gaussian_nll_gradients_with_straight_through_clamp(rng):
  mu = rng.normal(size=32).astype(np.float32)
  t = rng.normal(size=32).astype(np.float32)
  var = rng.uniform(0.2, 2.0, size=32).astype(np.float32)
  var[:4] = [1e-9, 0.0, 5e-7, 1e-6]  # at or below eps = 1e-6: the clamp is active
  v = np.maximum(np.float64(var), 1e-6)
  e = np.float64(mu) - t
  f = jaxloss.gaussian_nll_loss
  g_mu = jax.grad(lambda m: jnp.sum(f(m, jnp.asarray(t), jnp.asarray(var))))(jnp.asarray(mu))
  g_var = jax.grad(lambda s: jnp.sum(f(jnp.asarray(mu), jnp.asarray(t), s)))(jnp.asarray(var))
  assert_close(g_mu, e / v, rtol=1e-4)
  # d/dσ² = ½(1/v − e²/v²) at the clamped v, passed straight through (PyTorch's behaviour).
  assert_close(g_var, 0.5 * (1 / v - e * e / v ** 2), rtol=1e-4)
  assert np.all(g_var[:4] != 0)


# Later families append their closed-form tests below, one section per module.


# ------------------------------------------------------------------------------ margin
# The ±1 losses' closed forms d/ds = y·dℓ/dm and the 0-1 losses' zero gradient are the
# registry's ``grad`` (tested above); the Crammer–Singer and Weston–Watkins forms need ties.

def _np_crammer_singer_grad(s, y, margin):
  """e_k − e_y with k the lowest-index best other class, where the loss is positive."""
  n, c = s.shape
  others = np.where(np.arange(c) == y[:, None], -np.inf, s)
  k = np.argmax(others, axis=1)
  active = margin + others[np.arange(n), k] - s[np.arange(n), y] > 0
  g = np.zeros((n, c))
  g[np.arange(n), k] += active
  g[np.arange(n), y] -= active
  return g


@pytest.mark.parametrize("name,margin", [("multiclass_hinge_loss", 1.0),
                                         ("multiclass_perceptron_loss", 0.0)])
def test_crammer_singer_gradients_ties_and_kinks(rng, name, margin):
  s = rng.normal(size=(32, 4)).astype(np.float32)
  y = rng.integers(0, 4, size=32)
  extra_s = np.float32([
      [2.0, 2.0, 0.0, -1.0],          # two other classes tie for the max: lowest index wins
      [0.0, margin, 0.0, 0.0],        # at the kink: s_y = margin + max_{j≠y} s_j
      [1.0, 1.0 + margin, 1.0, 1.0],  # kink with tied others
  ])
  extra_y = np.array([3, 1, 1])
  s, y = np.concatenate([s, extra_s]), np.concatenate([y, extra_y])
  g = grad_of_sum(getattr(jaxloss, name), s, jnp.asarray(y))
  np.testing.assert_array_equal(g, _np_crammer_singer_grad(np.float64(s), y, margin))
  np.testing.assert_array_equal(g[-3], [1.0, 0.0, 0.0, -1.0])
  np.testing.assert_array_equal(g[-2:], np.zeros((2, 4)))


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_gradient_and_kink(rng, p):
  c = 5
  s = rng.normal(size=(32, c)).astype(np.float32)
  y = rng.integers(0, c, size=32)
  s = np.concatenate([s, np.float32([[0.0, 1.0, 0.0, -3.0, 0.5]])])  # h = 0 at j = 0, 2
  y = np.concatenate([y, [1]])
  w = rng.uniform(0.5, 2.0, size=c).astype(np.float32)
  margin = 1.0
  n = len(y)
  s64 = np.float64(s)
  h = margin - s64[np.arange(n), y][:, None] + s64
  h[np.arange(n), y] = 0.0
  dh = w[y][:, None] / c * p * np.where(h > 0, np.maximum(h, 0) ** (p - 1), 0.0)
  expected = dh.copy()
  expected[np.arange(n), y] -= dh.sum(axis=1)
  g = grad_of_sum(jaxloss.multi_margin_loss, s, jnp.asarray(y), p=p, margin=margin,
                  class_weights=jnp.asarray(w))
  assert_close(g, expected)
  # The kink of max(0, ·): terms at h = 0 contribute 0 (only j = 4, h = 0.5, is active).
  w1 = w[1] / c * p * (0.5 ** (p - 1))
  assert_close(g[-1], np.float64([0.0, -w1, 0.0, 0.0, w1]))


# ------------------------------------------------------------------------------ embedding

def _unit(v):
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_triplet_gradients_in_all_three_inputs_and_kink(rng):
  a, p, n = (rng.normal(size=(16, 3)).astype(np.float32) for _ in range(3))
  args = [jnp.asarray(x) for x in (a, p, n)]

  def total(*xs):
    return jnp.sum(jaxloss.triplet_margin_loss(*xs, margin=2.0, eps=0.0))

  ga, gp, gn = jax.grad(total, argnums=(0, 1, 2))(*args)
  a64, p64, n64 = np.float64(a), np.float64(p), np.float64(n)
  u_pos, u_neg = _unit(a64 - p64), _unit(a64 - n64)
  active = (2.0 + np.linalg.norm(a64 - p64, axis=1) - np.linalg.norm(a64 - n64, axis=1) > 0)
  active = active[:, None]
  assert 0 < active.sum() < 16
  assert_close(ga, active * (u_pos - u_neg))
  assert_close(gp, active * -u_pos)
  assert_close(gn, active * u_neg)
  # The kink margin + d(a, p) = d(a, n): 5 + 5 = 10, exactly, gives the sub-gradient 0.
  kink = [jnp.asarray([[0.0, 0.0]]), jnp.asarray([[3.0, 4.0]]), jnp.asarray([[6.0, 8.0]])]
  g = jax.grad(lambda x: jnp.sum(jaxloss.triplet_margin_loss(x, *kink[1:], margin=5.0,
                                                             eps=0.0)))(kink[0])
  np.testing.assert_array_equal(g, [[0.0, 0.0]])


def test_contrastive_gradient_and_kinks(rng):
  x1, x2 = (rng.normal(size=(32, 3)).astype(np.float32) for _ in range(2))
  same = rng.integers(0, 2, size=32).astype(np.float32)
  margin = 2.5
  g = grad_of_sum(jaxloss.contrastive_loss, x1, jnp.asarray(x2), jnp.asarray(same),
                  margin=margin)
  diff = np.float64(x1) - np.float64(x2)
  d = np.linalg.norm(diff, axis=1, keepdims=True)
  s = same[:, None]
  assert_close(g, s * diff - (1 - s) * np.maximum(0, margin - d) * diff / d)
  # d = margin (push term's kink) and d = 0 (coinciding pair): both exactly 0.
  x = jnp.asarray([[3.0, 4.0], [1.0, 1.0]])
  g = grad_of_sum(jaxloss.contrastive_loss, x, jnp.asarray([[0.0, 0.0], [1.0, 1.0]]),
                  jnp.asarray([0.0, 0.0]), margin=5.0)
  np.testing.assert_array_equal(g, np.zeros((2, 2)))


def test_center_loss_gradients_in_features_and_centers(rng):
  x = rng.normal(size=(20, 3)).astype(np.float32)
  y = rng.integers(0, 4, size=20)
  c = rng.normal(size=(4, 3)).astype(np.float32)
  gx, gc = jax.grad(lambda f, cc: jnp.sum(jaxloss.center_loss(f, jnp.asarray(y), cc)),
                    argnums=(0, 1))(jnp.asarray(x), jnp.asarray(c))
  diff = np.float64(x) - np.float64(c)[y]
  assert_close(gx, diff)  # Wen et al. Eq. 3
  expected_gc = np.zeros((4, 3))
  np.add.at(expected_gc, y, -diff)
  assert_close(gc, expected_gc)


def test_update_centers_derivative(rng):
  x = rng.normal(size=(20, 3)).astype(np.float32)
  y = rng.integers(0, 3, size=20)  # class 3 absent
  c = rng.normal(size=(4, 3)).astype(np.float32)
  counts = np.bincount(y, minlength=4)[:, None].astype(np.float64)
  alpha = 0.4
  gc, gx = jax.grad(lambda cc, f: jnp.sum(jaxloss.update_centers(cc, f, jnp.asarray(y),
                                                                 alpha=alpha)),
                    argnums=(0, 1))(jnp.asarray(c), jnp.asarray(x))
  # c_j − α(n_j c_j − Σx)/(1 + n_j): d/dc_j = 1 − α n_j/(1 + n_j); features are constants.
  assert_close(gc, np.broadcast_to(1 - alpha * counts / (1 + counts), (4, 3)))
  np.testing.assert_array_equal(gc[3], [1.0, 1.0, 1.0])
  np.testing.assert_array_equal(gx, np.zeros_like(x))


# ------------------------------------------------------------------------------ regularizers

def test_penalty_gradients_and_zero_subgradient(rng):
  w = _points(rng, [0.0, -0.0])
  params = {"w": jnp.asarray(w), "v": jnp.asarray(w[:5] * 2)}
  sign = {"w": np.sign(w), "v": np.sign(w[:5])}
  g1 = jax.grad(jaxloss.l1_penalty)(params)
  np.testing.assert_array_equal(g1["w"], sign["w"])
  np.testing.assert_array_equal(g1["w"][-2:], [0.0, 0.0])  # L1 at w = 0: the sub-gradient 0
  g2 = jax.grad(jaxloss.l2_penalty)(params)
  assert_close(g2["w"], np.float64(w))
  ge = jax.grad(lambda p: jaxloss.elastic_net_penalty(p, l1_ratio=0.3))(params)
  assert_close(ge["v"], 0.3 * sign["v"] + 0.7 * np.float64(w[:5] * 2))
  assert_close(ge["w"], 0.3 * sign["w"] + 0.7 * np.float64(w))


def test_structural_risk_gradient_closed_form(rng):
  losses = rng.uniform(0, 2, size=10).astype(np.float32)
  where = np.arange(10) % 3 != 0
  w = _points(rng, [0.0])
  gl, gw = jax.grad(lambda lo, p: jaxloss.structural_risk(lo, p, l1=0.2, l2=0.5,
                                                          where=jnp.asarray(where)),
                    argnums=(0, 1))(jnp.asarray(losses), jnp.asarray(w))
  np.testing.assert_allclose(gl, where / where.sum(), rtol=1e-6)
  assert_close(gw, 0.2 * np.sign(w) + 0.5 * np.float64(w))
  assert gw[-1] == 0.0


# ------------------------------------------------------------------------------ classification

def _np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_integer_cross_entropy_gradient_is_softmax_minus_target(rng, smoothing, weighted):
  # d/dx_j = s·p_j − t_j with t_j = (1 − ε) w_y [j = y] + (ε/C) w_j and s = Σ_j t_j.
  n, c = 8, 5
  x = rng.normal(size=(n, c)).astype(np.float32) * 2
  y = rng.integers(0, c, size=n)
  w = rng.uniform(0.5, 2.0, size=c).astype(np.float32) if weighted else np.ones(c, np.float32)
  t = (1 - smoothing) * w[y][:, None] * np.eye(c)[y] + smoothing / c * np.float64(w)[None, :]
  expected = t.sum(-1, keepdims=True) * _np_softmax(np.float64(x)) - t
  g = grad_of_sum(jaxloss.softmax_cross_entropy_with_integer_labels, x,
                  jnp.asarray(y, jnp.int32), label_smoothing=smoothing,
                  class_weights=jnp.asarray(w) if weighted else None)
  assert_close(g, expected)
  labels = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
  t = np.float64(w) * ((1 - smoothing) * np.float64(labels) + smoothing / c)
  expected = t.sum(-1, keepdims=True) * _np_softmax(np.float64(x)) - t
  g = grad_of_sum(jaxloss.softmax_cross_entropy, x, jnp.asarray(labels),
                  label_smoothing=smoothing, class_weights=jnp.asarray(w) if weighted else None)
  assert_close(g, expected)


def test_sigmoid_cross_entropy_gradient_and_pos_weight(rng):
  x = _points(rng, [0.0, 30.0, -30.0])
  y = rng.uniform(size=x.shape).astype(np.float32)
  y[-3:] = [1.0, 1.0, 0.0]
  s = _np_sigmoid(np.float64(x))
  g = grad_of_sum(jaxloss.sigmoid_binary_cross_entropy, x, jnp.asarray(y))
  assert_close(g, s - y)
  w = np.float32(3.0)
  g = grad_of_sum(jaxloss.sigmoid_binary_cross_entropy, x, jnp.asarray(y), pos_weight=w)
  assert_close(g, (1 - y) * s - w * y * (1 - s))  # d/dx of w·y·softplus(−x) + (1 − y)·softplus(x)
  assert g[-3] == -1.5  # w·y·(σ(0) − 1) at x = 0, y = 1


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
def test_sigmoid_focal_gradient_from_the_maths(rng, gamma):
  # L = −α_t (1 − p_t)^γ log p_t. For y = 1: dL/dx = α(1 − p)^γ [γ p log p − (1 − p)];
  # for y = 0: dL/dx = (1 − α) p^γ [p − γ (1 − p) log(1 − p)], with p = σ(x).
  x = _points(rng, [0.0, 12.0, -12.0])
  y = rng.integers(0, 2, size=x.shape).astype(np.float32)
  p = _np_sigmoid(np.float64(x))
  alpha = 0.25
  pos = alpha * (1 - p) ** gamma * (gamma * p * np.log(p) - (1 - p))
  neg = (1 - alpha) * p ** gamma * (p - gamma * (1 - p) * np.log1p(-p))
  g = grad_of_sum(jaxloss.sigmoid_focal_loss, x, jnp.asarray(y), alpha=alpha, gamma=gamma)
  assert_close(g, np.where(y == 1, pos, neg), rtol=1e-4)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_softmax_focal_gradient_from_the_maths(rng, gamma):
  # L = −u^γ log p_y, u = 1 − p_y: dL/dx_j = ([j = y] − p_j)(γ u^(γ−1) p_y log p_y − u^γ).
  n, c = 8, 4
  x = rng.normal(size=(n, c)).astype(np.float32)
  y = rng.integers(0, c, size=n)
  p = _np_softmax(np.float64(x))
  p_y = p[np.arange(n), y][:, None]
  u = 1 - p_y
  expected = (np.eye(c)[y] - p) * (gamma * u ** (gamma - 1) * p_y * np.log(p_y) - u ** gamma)
  g = grad_of_sum(jaxloss.softmax_focal_loss, x, jnp.asarray(y, jnp.int32), gamma=gamma)
  assert_close(g, expected, rtol=1e-4)


def test_nll_and_binary_cross_entropy_gradients(rng):
  lp = rng.normal(size=(6, 4)).astype(np.float32)
  y = rng.integers(0, 4, size=6)
  w = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
  g = grad_of_sum(jaxloss.nll_loss, lp, jnp.asarray(y, jnp.int32), class_weights=jnp.asarray(w))
  assert_close(g, -np.eye(4)[y] * w[y][:, None])
  p = rng.uniform(0.05, 0.95, size=32).astype(np.float32)
  t = rng.uniform(size=32).astype(np.float32)
  g = grad_of_sum(jaxloss.binary_cross_entropy, p, jnp.asarray(t))
  assert_close(g, (np.float64(p) - t) / (np.float64(p) * (1 - np.float64(p))), rtol=1e-4)


def test_kl_divergence_gradients(rng):
  lq = np.log(rng.dirichlet(np.ones(5), size=6)).astype(np.float32)
  t = rng.dirichlet(np.ones(5), size=6).astype(np.float32)
  t[0, :2] = 0.0  # zero targets: d/d(log q) = −t = 0 there, finite
  assert_close(grad_of_sum(jaxloss.kl_divergence, lq, jnp.asarray(t)), -t)
  g_t = jax.grad(lambda v: jnp.sum(jaxloss.kl_divergence(jnp.asarray(lq[1:]), v)))(
      jnp.asarray(t[1:]))
  assert_close(g_t, np.log(np.float64(t[1:])) + 1 - lq[1:], rtol=1e-4)
  lt = np.log(t[1:])
  assert_close(grad_of_sum(jaxloss.kl_divergence_with_log_targets, lq[1:], jnp.asarray(lt)),
               -t[1:])
