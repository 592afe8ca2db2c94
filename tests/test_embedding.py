"""Embedding losses: triplet (PyTorch's numbers, optax), contrastive, center loss and its update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from _reference import assert_close, torch_cases

N, D, K = 12, 6, 4  # examples, feature size, classes


def f32(x):
  return jnp.asarray(x, jnp.float32)


def _triplet(rng):
  return tuple(rng.normal(size=(N, D)).astype(np.float32) for _ in range(3))


def np_dist(x, y, p, eps):
  # PyTorch's pairwise_distance: ‖x − y + eps‖_p.
  v = np.float64(x) - np.float64(y) + eps
  return np.sum(np.abs(v) ** p, axis=-1) ** (1 / p)


def np_dist_grad(x, y, p, eps):
  v = np.float64(x) - np.float64(y) + eps
  d = np.sum(np.abs(v) ** p, axis=-1, keepdims=True) ** (1 / p)
  return np.sign(v) * np.abs(v) ** (p - 1) / d ** (p - 1)


def np_triplet(a, p, n, norm, margin, eps, swap):
  """Loss and its gradient in the anchors, written out from PyTorch's definition."""
  d_pos, d_neg = np_dist(a, p, norm, eps), np_dist(a, n, norm, eps)
  g_neg = np_dist_grad(a, n, norm, eps)
  if swap:
    d_swap = np_dist(p, n, norm, eps)
    use_swap = d_swap < d_neg
    d_neg = np.where(use_swap, d_swap, d_neg)
    g_neg = np.where(use_swap[:, None], 0.0, g_neg)  # d(p, n) does not depend on the anchor
  loss = np.maximum(0, margin + d_pos - d_neg)
  grad = (loss > 0)[:, None] * (np_dist_grad(a, p, norm, eps) - g_neg)
  return loss, grad


@pytest.mark.parametrize("norm", [1, 2, 3])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_against_pytorch_formula(rng, norm, swap):
  a, p, n = _triplet(rng)
  margin, eps = 1.5, 1e-6
  loss, grad = np_triplet(a, p, n, norm, margin, eps, swap)
  fn = lambda x: jaxloss.triplet_margin_loss(x, f32(p), f32(n), norm_degree=norm,
                                             margin=margin, swap=swap)
  assert_close(fn(f32(a)), loss)
  assert_close(jax.grad(lambda x: jnp.sum(fn(x)))(f32(a)), grad, rtol=1e-4)
  assert 0 < np.count_nonzero(loss) < N  # both sides of the hinge are exercised


@pytest.mark.parametrize("case", torch_cases("triplet_margin_loss"), ids=lambda c: c["name"])
def test_triplet_against_pytorch_vectors(case):
  a, p, n = (f32(np.asarray(x)) for x in case["inputs"])
  kwargs = dict(case["kwargs"])
  kwargs["norm_degree"] = kwargs.pop("p")
  grad = jax.grad(lambda x: jnp.sum(jaxloss.triplet_margin_loss(x, p, n, **kwargs)))(a)
  assert_close(jaxloss.triplet_margin_loss(a, p, n, **kwargs), np.asarray(case["loss"]))
  assert_close(grad, np.asarray(case["grad"]), rtol=1e-4)


def test_triplet_optax_agreement_at_norm_degree_2(rng):
  a, p, n = (f32(x) for x in _triplet(rng))
  # eps = 0: both are the Euclidean distance, so value and gradient agree to rounding.
  ours = lambda x: jaxloss.triplet_margin_loss(x, p, n, eps=0.0)
  theirs = lambda x: optax.losses.triplet_margin_loss(x, p, n, eps=0.0)
  np.testing.assert_allclose(ours(a), theirs(a), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(ours(x)))(a),
                             jax.grad(lambda x: jnp.sum(theirs(x)))(a), rtol=1e-4, atol=1e-6)
  # Default eps = 1e-6: optax puts it inside the root, PyTorch adds it to the difference;
  # the two differ by O(eps).
  np.testing.assert_allclose(jaxloss.triplet_margin_loss(a, p, n),
                             optax.losses.triplet_margin_loss(a, p, n), atol=2e-5)


def test_triplet_differs_from_optax_for_odd_norm_degree(rng):
  # DESIGN contract 9: optax 0.2.8 computes (Σ(a − p)^3 + eps)^(1/3) without |·|, so a
  # negative sum gives NaN (and a mixed-sign one a wrong distance).
  a, p, n = _triplet(rng)
  loss, _ = np_triplet(a, p, n, 3, 1.0, 1e-6, False)
  ours = jaxloss.triplet_margin_loss(f32(a), f32(p), f32(n), norm_degree=3)
  theirs = np.asarray(optax.losses.triplet_margin_loss(f32(a), f32(p), f32(n), norm_degree=3))
  assert_close(ours, loss)
  assert np.any(np.isnan(theirs)) or not np.allclose(theirs, loss, rtol=1e-3)


def test_triplet_zero_distance_has_finite_gradient():
  # The norm's gradient at 0 is 0/0 written naively; the sub-gradient 0 must come out.
  a = f32(np.zeros((2, D)))
  p = f32(np.zeros((2, D)))
  n = f32(np.ones((2, D)))
  g = jax.grad(lambda x: jnp.sum(jaxloss.triplet_margin_loss(x, p, n, margin=5.0, eps=0.0)))(a)
  assert np.all(np.isfinite(g))
  # d(a, p) contributes 0; d(a, n) contributes −(a − n)/‖a − n‖ = 1/√D per entry.
  assert_close(g, np.full((2, D), 1 / np.sqrt(D)))
  # With PyTorch's eps, the distance's vector a − p + eps is exactly 0 at a − p = −eps.
  a2, p2 = f32(np.zeros((1, D))), f32(np.full((1, D), 0.5))
  g2 = jax.grad(lambda x: jnp.sum(jaxloss.triplet_margin_loss(
      x, p2, f32(np.full((1, D), 9.0)), margin=20.0, eps=0.5)))(a2)
  assert np.all(np.isfinite(g2))
  assert jaxloss.triplet_margin_loss(a2, a2, a2, eps=0.0, margin=0.0)[0] == 0.0


def test_triplet_large_embeddings_do_not_overflow(rng):
  a, p, n = (f32(x * 1e30) for x in _triplet(rng))
  out = jaxloss.triplet_margin_loss(a, p, n, margin=0.0)
  assert np.all(np.isfinite(out))
  loss, _ = np_triplet(np.float64(a), np.float64(p), np.float64(n), 2, 0.0, 0.0, False)
  assert_close(out, loss, rtol=1e-4)


@pytest.mark.parametrize("scale", [1.0, 1e30, 1e-20])
@pytest.mark.parametrize("batched", [False, True])
def test_triplet_euclidean_fast_and_scaled_paths_agree(rng, scale, batched):
  # Row 0 scaled: at 1e30 its sum of squares overflows float32, at 1e-20 it underflows, and the
  # whole batch is recomputed scaled by each row's largest entry (under vmap both paths run).
  a, p, n = (x.copy() for x in _triplet(rng))
  for x in (a, p, n):
    x[0] *= np.float32(scale)
  loss_fn = lambda a, p, n: jaxloss.triplet_margin_loss(a, p, n, margin=1.0, eps=0.0)
  if batched:
    loss_fn = jax.vmap(loss_fn)
    a, p, n = (x.reshape(3, N // 3, D) for x in (a, p, n))
  out = loss_fn(f32(a), f32(p), f32(n))
  grad = jax.grad(lambda x: jnp.sum(loss_fn(x, f32(p), f32(n))))(f32(a))
  ref_loss, ref_grad = np_triplet(*(np.float64(x).reshape(N, D) for x in (a, p, n)), 2, 1.0,
                                  0.0, False)
  assert_close(np.reshape(out, -1), ref_loss, rtol=1e-5)
  assert_close(np.reshape(grad, (N, D)), ref_grad, rtol=1e-4, atol=1e-6)


def test_triplet_shape_and_norm_degree_errors():
  x = jnp.zeros((3, D), jnp.float32)
  with pytest.raises(ValueError, match=r"anchors.shape=\(3, 6\).*negatives.shape=\(3, 5\)"):
    jaxloss.triplet_margin_loss(x, x, jnp.zeros((3, 5), jnp.float32))
  with pytest.raises(ValueError, match=r"norm_degree=\.\.\."):
    jaxloss.triplet_margin_loss(x, x, x, norm_degree=0)
  with pytest.raises(ValueError, match=r"triplet_margin_loss\(eps=\.\.\.\)"):
    jaxloss.triplet_margin_loss(x, x, x, eps=-1.0)


def test_triplet_axis(rng):
  a, p, n = _triplet(rng)
  np.testing.assert_allclose(jaxloss.triplet_margin_loss(f32(a.T), f32(p.T), f32(n.T), 0),
                             jaxloss.triplet_margin_loss(f32(a), f32(p), f32(n)), rtol=1e-6)


# ------------------------------------------------------------------------------ contrastive

def np_contrastive(x1, x2, same, margin):
  d = np.sqrt(np.sum((np.float64(x1) - np.float64(x2)) ** 2, axis=-1))
  return same * 0.5 * d ** 2 + (1 - same) * 0.5 * np.maximum(0, margin - d) ** 2


@pytest.mark.parametrize("margin", [3.5, 6.0])
def test_contrastive_against_hadsell_formula(rng, margin):
  x1, x2, _ = _triplet(rng)
  same = rng.integers(0, 2, size=N)
  out = jaxloss.contrastive_loss(f32(x1), f32(x2), jnp.asarray(same), margin=margin)
  ref = np_contrastive(x1, x2, same, margin)
  assert_close(out, ref)
  assert np.count_nonzero(ref[same == 0]) > 0  # the push term is exercised
  for s in (jnp.asarray(same, bool), f32(same)):
    np.testing.assert_array_equal(jaxloss.contrastive_loss(f32(x1), f32(x2), s, margin=margin),
                                  out)


def test_contrastive_zero_distance_finite_gradient():
  x = f32(np.ones((2, D)))
  for same, value in ((1, 0.0), (0, 0.5 * 2.0 ** 2)):
    fn = lambda a: jaxloss.contrastive_loss(a, x, same, margin=2.0)
    np.testing.assert_array_equal(fn(x), [value, value])
    g = jax.grad(lambda a: jnp.sum(fn(a)))(x)
    np.testing.assert_array_equal(g, np.zeros((2, D)))  # documented: 0, not 0/0 = NaN


def test_contrastive_bad_same_is_nan_and_checkified(rng):
  x1, x2, _ = _triplet(rng)
  same = np.ones(N, np.int32)
  same[4] = 2
  out = np.asarray(jaxloss.contrastive_loss(f32(x1), f32(x2), jnp.asarray(same)))
  assert np.isnan(out[4]) and np.isfinite(np.delete(out, 4)).all()
  err, _ = checkify.checkify(jaxloss.contrastive_loss, errors=checkify.user_checks)(
      f32(x1), f32(x2), jnp.asarray(same))
  with pytest.raises(checkify.JaxRuntimeError, match=r"same.*in \[0, 1\], got 2"):
    err.throw()


def test_contrastive_shape_errors():
  x = jnp.zeros((3, D), jnp.float32)
  with pytest.raises(ValueError, match=r"x1.shape=\(3, 6\).*same.shape=\(4,\)"):
    jaxloss.contrastive_loss(x, x, jnp.ones((4,), jnp.int32))
  with pytest.raises(ValueError, match=r"contrastive_loss\(margin=\.\.\.\)"):
    jaxloss.contrastive_loss(x, x, 1, margin=-1.0)


# ------------------------------------------------------------------------------ center loss

def _centers_batch(rng):
  x = rng.normal(size=(N, D)).astype(np.float32)
  y = rng.integers(0, K, size=N)
  c = rng.normal(size=(K, D)).astype(np.float32)
  return x, y, c


def test_center_loss_against_numpy(rng):
  x, y, c = _centers_batch(rng)
  out = jaxloss.center_loss(f32(x), y, f32(c))
  assert out.shape == (N,)
  assert_close(out, 0.5 * np.sum((np.float64(x) - c[y]) ** 2, axis=-1))
  # Leading batch axes of any rank.
  out3 = jaxloss.center_loss(f32(x.reshape(3, 4, D)), y.reshape(3, 4), f32(c))
  np.testing.assert_array_equal(out3, np.asarray(out).reshape(3, 4))


def test_center_loss_bad_label_is_nan_and_checkified(rng):
  x, y, c = _centers_batch(rng)
  y = y.copy()
  y[5] = K
  out = np.asarray(jaxloss.center_loss(f32(x), jnp.asarray(y), f32(c)))
  assert np.isnan(out[5]) and np.isfinite(np.delete(out, 5)).all()
  err, _ = checkify.checkify(jaxloss.center_loss, errors=checkify.user_checks)(
      f32(x), jnp.asarray(y), f32(c))
  with pytest.raises(checkify.JaxRuntimeError, match=rf"in \[0, {K}\), got {K}"):
    err.throw()


def test_center_loss_shape_and_type_errors(rng):
  x, y, c = _centers_batch(rng)
  with pytest.raises(ValueError, match=r"features.shape=\(12, 6\).*centers.shape=\(4, 5\)"):
    jaxloss.center_loss(f32(x), y, f32(c[:, :5]))
  with pytest.raises(ValueError, match=r"labels.shape=\(11,\)"):
    jaxloss.center_loss(f32(x), y[:11], f32(c))
  with pytest.raises(TypeError, match="integer"):
    jaxloss.center_loss(f32(x), f32(y), f32(c))


def np_update_centers(c, x, y, alpha):
  # Wen et al. 2016, Eq. 4, one class at a time.
  c = np.float64(c).copy()
  new = c.copy()
  for j in range(c.shape[0]):
    members = x[y == j]
    delta = np.sum(c[j] - members, axis=0) / (1 + len(members))
    new[j] = c[j] - alpha * delta
  return new


def test_update_centers_is_eq_4_and_keeps_absent_classes(rng):
  x, y, c = _centers_batch(rng)
  y = np.where(y == 2, 1, y)  # class 2 absent from the batch
  out = jaxloss.update_centers(f32(c), f32(x), jnp.asarray(y), alpha=0.3)
  assert out.shape == c.shape and out.dtype == jnp.float32
  assert_close(out, np_update_centers(c, x, y, 0.3))
  np.testing.assert_array_equal(out[2], c[2])  # exactly unchanged


def test_update_centers_drops_bad_labels_and_checkifies(rng):
  x, y, c = _centers_batch(rng)
  y_bad = y.copy()
  y_bad[0] = -1
  out = jaxloss.update_centers(f32(c), f32(x), jnp.asarray(y_bad))
  assert_close(out, np_update_centers(c, x[1:], y[1:], 0.5))
  err, _ = checkify.checkify(jaxloss.update_centers, errors=checkify.user_checks)(
      f32(c), f32(x), jnp.asarray(y_bad))
  with pytest.raises(checkify.JaxRuntimeError, match=r"update_centers.*got -1"):
    err.throw()


def test_update_centers_alpha_checked_and_traced(rng):
  x, y, c = _centers_batch(rng)
  with pytest.raises(ValueError, match=r"update_centers\(alpha=\.\.\.\)"):
    jaxloss.update_centers(f32(c), f32(x), y, alpha=1.5)
  # A new alpha does not re-trace: tests/test_transforms.py checks it for every registry entry.


def test_center_loss_and_update_pull_features_to_their_centers(rng):
  # Wen et al.'s Algorithm 1 on free features: gradient steps on the mean center loss move the
  # features, update_centers moves the centers; each class collapses toward its center.
  labels = jnp.asarray(np.repeat(np.arange(K), 6))
  features = f32(rng.normal(size=(6 * K, D)) * 2.0)
  centers = f32(rng.normal(size=(K, D)))

  @jax.jit
  def step(state, _):
    x, c = state
    loss, g = jax.value_and_grad(lambda f: jaxloss.reduce(jaxloss.center_loss(f, labels, c)))(x)
    x = x - 5.0 * g  # lr·(1/N) = 5/24 of the way to the center per step
    return (x, jaxloss.update_centers(c, x, labels, alpha=0.5)), loss

  (x, c), losses = jax.lax.scan(step, (features, centers), length=20)
  losses = np.asarray(losses)
  assert np.all(np.diff(losses) < 0)
  assert losses[-1] < 1e-2 * losses[0]

  def spread(f):  # mean squared distance to the class mean
    f = np.asarray(f)
    return np.mean([np.sum((f[labels == j] - f[labels == j].mean(0)) ** 2, axis=1).mean()
                    for j in range(K)])

  assert spread(x) < 1e-2 * spread(features)
  assert_close(jaxloss.center_loss(x, labels, c), np.zeros(6 * K), atol=1e-2 * losses[0])


def test_contrastive_derivative_in_same_at_zero_and_one():
  # d/ds [s·½d² + (1 − s)·½max(0, m − d)²] = ½d² − ½max(0, m − d)², also at s ∈ {0, 1}.
  x1, x2 = jnp.zeros(2, jnp.float32), jnp.asarray([3.0, 4.0], jnp.float32)
  for margin in (1.0, 7.0):
    for s in (0.0, 1.0, 0.3):
      g = jax.grad(lambda v, m=margin: jaxloss.contrastive_loss(x1, x2, v, margin=m))(
          jnp.float32(s))
      np.testing.assert_allclose(float(g), 0.5 * 25.0 - 0.5 * max(0.0, margin - 5.0) ** 2,
                                 rtol=1e-6)


def test_bad_labels_give_nan_value_and_zero_gradient(rng):
  x = f32(rng.normal(size=(4, 3)))
  c = f32(rng.normal(size=(5, 3)))
  y = jnp.asarray([0, -100, 4, 7])
  out = np.asarray(jaxloss.center_loss(x, y, c))
  assert np.all(np.isnan(out[[1, 3]])) and np.all(np.isfinite(out[[0, 2]]))
  g = np.asarray(jax.grad(lambda v: jaxloss.reduce(jaxloss.center_loss(v, y, c),
                                                   where=(y >= 0) & (y < 5)))(x))
  assert np.all(np.isfinite(g)) and np.all(g[[1, 3]] == 0)
  same = jnp.asarray([1.0, 2.0, 0.0, -1.0], jnp.float32)
  ok = (same >= 0) & (same <= 1)
  x2 = f32(rng.normal(size=(4, 3)))
  out = np.asarray(jaxloss.contrastive_loss(x, x2, same))
  assert np.all(np.isnan(out[[1, 3]])) and np.all(np.isfinite(out[[0, 2]]))
  g = np.asarray(jax.grad(lambda v: jaxloss.reduce(jaxloss.contrastive_loss(v, x2, same),
                                                   where=ok))(x))
  assert np.all(np.isfinite(g)) and np.all(g[[1, 3]] == 0)


def test_triplet_traced_norm_degree_equals_python_number(rng):
  a, p, n = (f32(rng.normal(size=(4, 6))) for _ in range(3))
  for q in (1.0, 2.0, 3.0):
    traced = jax.jit(lambda q_: jaxloss.triplet_margin_loss(a, p, n, norm_degree=q_))(
        jnp.float32(q))
    assert_close(traced, jaxloss.triplet_margin_loss(a, p, n, norm_degree=q))
  with pytest.raises(ValueError, match=r"triplet_margin_loss\(norm_degree=\.\.\.\) must be > 0"):
    jaxloss.triplet_margin_loss(a, p, n, norm_degree=0)


def _np_cos(a, b, eps):
  return np.sum(a * b, -1) / np.sqrt((np.sum(a * a, -1) + eps) * (np.sum(b * b, -1) + eps))


def test_cosine_embedding_matches_pytorch_formula(rng):
  a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  y = np.array([1, -1, 1, -1, -1, 1])
  for margin in (0.0, 0.3):
    cos = _np_cos(a, b, 1e-12)
    truth = np.where(y == 1, 1 - cos, np.maximum(0.0, cos - margin))
    assert_close(jaxloss.cosine_embedding_loss(f32(a), f32(b), jnp.asarray(y), margin=margin,
                                               eps=1e-12), truth)


def test_cosine_embedding_closed_form_gradient(rng):
  a, b = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
  y = np.array([1, -1, 1, -1, -1, 1])
  eps = 1e-8
  g = jax.grad(lambda v: jnp.sum(jaxloss.cosine_embedding_loss(v, f32(b), jnp.asarray(y))))(
      f32(a))
  na = np.sqrt(np.sum(a * a, -1, keepdims=True) + eps)
  nb = np.sqrt(np.sum(b * b, -1, keepdims=True) + eps)
  cos = np.sum(a * b, -1, keepdims=True) / (na * nb)
  dcos = b / (na * nb) - cos * a / na ** 2  # ∂cos/∂a
  sign = np.where(y == 1, -1.0, np.where(cos[:, 0] > 0.0, 1.0, 0.0))[:, None]
  assert_close(g, sign * dcos, rtol=1e-4)


def test_cosine_embedding_zero_vector_is_finite():
  z = jnp.zeros((1, 3), jnp.float32)
  x = jnp.ones((1, 3), jnp.float32)
  out, g = jax.value_and_grad(lambda v: jaxloss.cosine_embedding_loss(v, x, 1)[0])(z)
  np.testing.assert_allclose(float(out), 1.0)
  assert np.all(np.isfinite(np.asarray(g)))


def _np_cosine_embedding_and_grad(a, b, y, margin, eps):
  """The loss and d/da in float64: ∂cos/∂a = b/(n_a n_b) − cos·a/n_a², n² = ‖·‖² + ε."""
  na2 = np.sum(a * a, -1, keepdims=True) + eps
  nb = np.sqrt(np.sum(b * b, -1, keepdims=True) + eps)
  cos = np.sum(a * b, -1, keepdims=True) / (np.sqrt(na2) * nb)
  dcos = b / (np.sqrt(na2) * nb) - cos * a / na2
  loss = np.where(y == 1, 1 - cos[:, 0], np.maximum(0.0, cos[:, 0] - margin))
  return loss, np.where(y[:, None] == 1, -dcos, np.where(cos > margin, dcos, 0.0))


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_cosine_embedding_is_exact_for_huge_and_tiny_vectors(rng, scale):
  # ‖x‖² of |x| ~ 1e30 overflows float32 and of 1e-30 underflows: the plain formula gave
  # cosine 0 there (a finite, wrong loss) and a zero gradient. Scaled, both are exact.
  a = rng.normal(size=(6, 5))
  b = rng.normal(size=(6, 5))
  y = np.array([1, -1, 1, -1, -1, 1])
  a32 = f32(a * scale)
  out, g = jax.value_and_grad(lambda v: jnp.sum(jaxloss.cosine_embedding_loss(
      v, f32(b), jnp.asarray(y), margin=-0.5, eps=0.0)))(a32)
  loss, grad = _np_cosine_embedding_and_grad(np.float64(a32), b, y, -0.5, 0.0)
  assert_close(out, np.sum(loss))
  assert_close(g, grad)


def test_cosine_embedding_zero_vector_without_eps_has_cosine_zero_and_zero_gradient():
  # No direction: the cosine is taken as 0 (loss 1 for a similar pair, 0 for a dissimilar one
  # at margin 0) with gradient 0, never 0/0.
  z = jnp.zeros((2, 3), jnp.float32)
  x = jnp.ones((2, 3), jnp.float32)
  y = jnp.asarray([1, -1])
  out, g = jax.value_and_grad(lambda v: jnp.sum(jaxloss.cosine_embedding_loss(v, x, y, eps=0.0)))(
      z)
  assert float(out) == 1.0
  np.testing.assert_array_equal(g, np.zeros((2, 3), np.float32))


def test_cosine_embedding_bad_labels_are_nan_with_zero_gradient_and_named():
  # One compilation each, reused for every bad value (float labels: 0.5 is one).
  fn = jaxloss.cosine_embedding_loss
  a, b = f32(np.eye(3)), f32(np.ones((3, 3)))
  grad = jax.jit(jax.grad(lambda v, y: jaxloss.reduce(fn(v, b, y), where=jnp.asarray(
      [False, True, True]))))
  checked = jax.jit(checkify.checkify(fn, errors=checkify.user_checks))
  for bad in (0.0, 2.0, 0.5):
    y = f32([bad, 1.0, -1.0])
    out = np.asarray(fn(a, b, y))
    assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))
    np.testing.assert_array_equal(np.asarray(grad(a, y))[0], 0.0)
    err, _ = checked(a, b, y)
    with pytest.raises(checkify.JaxRuntimeError, match=rf"cosine_embedding_loss.*labels.*{bad}"):
      err.throw()


def test_cosine_embedding_label_shape_mismatch_names_both_shapes():
  with pytest.raises(ValueError, match=r"x1.shape=\(4, 3\) and labels.shape=\(3,\)"):
    jaxloss.cosine_embedding_loss(jnp.ones((4, 3)), jnp.ones((4, 3)), jnp.ones((3,)))


def test_triplet_with_distance_default_equals_triplet_margin_loss(rng):
  a, p, n = (f32(rng.normal(size=(5, 4))) for _ in range(3))
  for swap in (False, True):
    assert_close(jaxloss.triplet_margin_with_distance_loss(a, p, n, swap=swap, margin=0.7),
                 jaxloss.triplet_margin_loss(a, p, n, margin=0.7, swap=swap))


def _l1_distance(x, y):
  return jnp.sum(jnp.abs(x - y), -1)


def test_triplet_with_custom_distance_against_numpy(rng):
  a, p, n = (rng.normal(size=(5, 4)) for _ in range(3))
  d = lambda x, y: np.sum(np.abs(x - y), -1)
  truth = np.maximum(0.0, 1.0 + d(a, p) - np.minimum(d(a, n), d(p, n)))
  out = jaxloss.triplet_margin_with_distance_loss(f32(a), f32(p), f32(n),
                                                  distance_fn=_l1_distance, swap=True)
  assert_close(out, truth)
  g = jax.grad(lambda v: jnp.sum(jaxloss.triplet_margin_with_distance_loss(
      v, f32(p), f32(n), distance_fn=_l1_distance)))(f32(a))
  active = (1.0 + d(a, p) - d(a, n)) > 0
  assert_close(g, np.where(active[:, None], np.sign(a - p) - np.sign(a - n), 0.0))


def test_cosine_embedding_and_triplet_with_distance_match_pytorch_vectors():
  for case in torch_cases("cosine_embedding_loss"):
    a, b, y = (f32(v) for v in case["inputs"])
    fn = lambda v: jaxloss.cosine_embedding_loss(v, b, y, eps=1e-12, **case["kwargs"])
    assert_close(fn(a), case["loss"])
    assert_close(jax.grad(lambda v: jnp.sum(fn(v)))(a), case["grad"], rtol=1e-4)
  cases = torch_cases("triplet_margin_with_distance_loss")
  assert cases
  for case in cases:
    a, p, n = (f32(v) for v in case["inputs"])
    fn = lambda v: jaxloss.triplet_margin_with_distance_loss(v, p, n, **case["kwargs"])
    assert_close(fn(a), case["loss"])
    assert_close(jax.grad(lambda v: jnp.sum(fn(v)))(a), case["grad"])
