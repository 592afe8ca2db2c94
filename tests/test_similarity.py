"""Cosine similarity and distance, NT-Xent: float64 references, closed-form gradients, optax
agreement (values and gradients), and the edges: zero vectors, masks, huge and tiny entries,
duplicated embeddings, small temperatures."""

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


def np_cosine(a, b, eps=0.0, axis=-1):
  """optax's definition in float64: ⟨a, b⟩ / (sqrt(max(‖a‖², ε)) sqrt(max(‖b‖², ε)))."""
  a, b = np.float64(a), np.float64(b)
  na = np.sqrt(np.maximum(np.sum(a * a, axis=axis), eps))
  nb = np.sqrt(np.maximum(np.sum(b * b, axis=axis), eps))
  return np.sum(a * b, axis=axis) / (na * nb)


def np_cosine_grad(a, b, eps=0.0):
  """∂cos/∂a = b/(n_a n_b) − cos·a/n_a² where ‖a‖² > ε (else the norm is constant)."""
  a, b = np.float64(a), np.float64(b)
  na2 = np.sum(a * a, -1, keepdims=True)
  na = np.sqrt(np.maximum(na2, eps))
  nb = np.sqrt(np.maximum(np.sum(b * b, -1, keepdims=True), eps))
  cos = np.sum(a * b, -1, keepdims=True) / (na * nb)
  return b / (na * nb) - np.where(na2 > eps, cos * a / na**2, 0.0)


@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_cosine_against_float64_and_its_closed_form_gradient(rng, eps):
  a = rng.normal(size=(10, 6)).astype(np.float32)
  b = rng.normal(size=(10, 6)).astype(np.float32)
  a[0] *= 0.1  # ‖a‖² < ε = 0.5: the clipped branch
  cos = jaxloss.cosine_similarity(f32(a), f32(b), epsilon=eps)
  assert_close(cos, np_cosine(a, b, eps))
  assert_close(jaxloss.cosine_distance(f32(a), f32(b), epsilon=eps), 1 - np_cosine(a, b, eps))
  grad = jax.grad(lambda x: jnp.sum(jaxloss.cosine_similarity(x, f32(b), epsilon=eps)))(f32(a))
  assert_close(grad, np_cosine_grad(a, b, eps), rtol=1e-4)
  grad_d = jax.grad(lambda x: jnp.sum(jaxloss.cosine_distance(x, f32(b), epsilon=eps)))(f32(a))
  assert_close(grad_d, -np_cosine_grad(a, b, eps), rtol=1e-4)


@functools.partial(jax.jit, static_argnames="axis")
def _all_values_and_grads(a, b, where, weights, axis):
  """Values and gradients of both losses, ours and optax's, with and without a mask."""
  out = {}
  for lib in (jaxloss, optax.losses):
    for name in ("cosine_similarity", "cosine_distance"):
      for masked in (False, True):
        kwargs = {"axis": axis, "where": where, "epsilon": 1e-3} if masked else {"axis": axis}
        fn = getattr(lib, name)
        out[lib.__name__, name, masked] = jax.value_and_grad(
            lambda x: jnp.sum(weights * fn(x, b, **kwargs)))(a)
        out[lib.__name__, name, masked, "value"] = fn(a, b, **kwargs)
  return out


@pytest.mark.parametrize("axis", [-1, (0, 2), None])
def test_cosine_agrees_with_optax_on_axes_and_masks(rng, axis):
  a = f32(rng.normal(size=(4, 5, 6)))
  b = f32(rng.normal(size=(4, 5, 6)))
  where = rng.random((4, 5, 6)) > 0.3
  shape = np.shape(np.sum(np.zeros((4, 5, 6)), axis=axis))
  weights = f32(rng.normal(size=shape))
  out = _all_values_and_grads(a, b, where, weights, axis)
  for key, value in out.items():
    if key[0] == "jaxloss":
      other = out[("optax.losses", *key[1:])]
      np.testing.assert_allclose(value[0] if len(key) == 3 else value,
                                 other[0] if len(key) == 3 else other, rtol=1e-5, atol=1e-6)
      if len(key) == 3:
        np.testing.assert_allclose(value[1], other[1], rtol=1e-5, atol=1e-6)


def test_cosine_mask_equals_dropping_the_entries(rng):
  a, b = rng.normal(size=(2, 9)).astype(np.float32)
  where = rng.random(9) > 0.4
  a_nan = a.copy()
  a_nan[~where] = np.nan  # masked entries never reach the value or the gradient
  out = jaxloss.cosine_similarity(f32(a_nan), f32(b), where=where)
  assert_close(out, np_cosine(a[where], b[where]))
  grad = jax.grad(lambda x: jaxloss.cosine_similarity(x, f32(b), where=where))(f32(a_nan))
  assert np.all(grad[~where] == 0) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("eps", [0.0, 1e-8, 1e-3])
def test_cosine_zero_vector_value_and_subgradient(eps):
  z, b = jnp.zeros(4), f32([1.0, -2.0, 0.5, 3.0])
  assert jaxloss.cosine_similarity(z, b, epsilon=eps) == 0
  assert jaxloss.cosine_distance(z, b, epsilon=eps) == 1
  g = jax.grad(lambda x: jaxloss.cosine_similarity(x, b, epsilon=eps))(z)
  gb = jax.grad(lambda y: jaxloss.cosine_similarity(z, y, epsilon=eps))(b)
  assert np.all(np.isfinite(g)) and np.all(gb == 0)
  if eps == 0:
    assert np.all(g == 0)  # the documented sub-gradient (optax: NaN)
  else:  # smooth there: b/(sqrt(ε)·‖b‖)
    assert_close(g, np.float64(b) / (np.sqrt(eps) * np.linalg.norm(np.float64(b))), rtol=1e-4)
  both = jax.grad(lambda x: jaxloss.cosine_similarity(x, x, epsilon=eps))(z)
  assert np.all(np.isfinite(both))


def test_cosine_huge_and_tiny_entries_are_exact(rng):
  a, b = rng.normal(size=(2, 3, 5))
  ref = np_cosine(a, b)
  for scale in (1e25, 1e-25):
    out = jaxloss.cosine_similarity(f32(a * scale), f32(b))
    assert_close(out, ref)
    grad = jax.grad(lambda x: jnp.sum(jaxloss.cosine_similarity(x, f32(b))))(f32(a * scale))
    assert_close(grad, np_cosine_grad(a * scale, b), rtol=1e-4)


def test_cosine_never_outside_unit_interval():
  x = f32(np.full((3, 7), 0.1))
  assert_close(jaxloss.cosine_similarity(x, x), np.ones(3), rtol=2e-7)
  assert np.all(jaxloss.cosine_similarity(x, x) <= 1)
  assert np.all(jaxloss.cosine_distance(x, -x) <= 2)
  assert np.all(jaxloss.cosine_distance(x * 3, x) >= 0)


def test_cosine_dtypes_and_shape_errors(rng):
  a = rng.normal(size=(3, 4)).astype(np.float32)
  out = jaxloss.cosine_similarity(jnp.asarray(a, jnp.bfloat16), jnp.asarray(a, jnp.bfloat16))
  assert out.dtype == jnp.bfloat16
  out = jaxloss.cosine_similarity(jnp.asarray(a, jnp.bfloat16), f32(a))
  assert out.dtype == jnp.float32
  with pytest.raises(ValueError, match="same shape"):
    jaxloss.cosine_similarity(f32(a), f32(a[:, :1]))
  with pytest.raises(ValueError, match="epsilon"):
    jaxloss.cosine_distance(f32(a), f32(a), epsilon=-1.0)
  with pytest.raises(TypeError, match="axis"):
    jaxloss.cosine_similarity(f32(a), f32(a), axis=1.5)
  with pytest.raises(ValueError, match="repeats"):
    jaxloss.cosine_similarity(f32(a), f32(a), axis=(1, -1))


# ---------------------------------------------------------------------------------------------
# NT-Xent.
# ---------------------------------------------------------------------------------------------

def np_ntxent(x, labels, temperature):
  """SimCLR's loss as optax defines it, in float64, and its gradient in the embeddings."""
  x = np.float64(x)
  eps = np.finfo(np.float32).eps
  norm = np.sqrt(np.maximum(np.sum(x * x, 1, keepdims=True), eps))
  u = x / norm
  s = u @ u.T / temperature
  same = labels[:, None] == labels[None, :]
  pos = same & ~np.eye(len(x), dtype=bool)
  neg = ~same
  loss, g_s = 0.0, np.zeros_like(s)
  for i, j in zip(*np.nonzero(pos), strict=True):
    logits = np.concatenate([[s[i, j]], s[i, neg[i]]])
    m = logits.max()
    lse = m + np.log(np.sum(np.exp(logits - m)))
    loss += lse - s[i, j]
    soft = np.exp(logits - lse)
    g_s[i, j] += soft[0] - 1
    g_s[i, neg[i]] += soft[1:]
  count = max(pos.sum(), 1)
  loss, g_s = loss / count, g_s / count
  # s = U Uᵀ/τ; U = x/n(x) with ∂u/∂x = (I − u uᵀ [‖x‖² > ε])/n.
  g_u = (g_s + g_s.T) @ u / temperature
  inside = np.sum(x * x, 1, keepdims=True) > eps
  g_x = (g_u - np.where(inside, np.sum(g_u * u, 1, keepdims=True) * u, 0.0)) / norm
  return loss, g_x


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_ntxent_against_float64_and_optax(rng, temperature):
  x = rng.normal(size=(8, 5)).astype(np.float32)
  labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])
  loss_ref, grad_ref = np_ntxent(x, labels, temperature)
  loss, grad = jax.value_and_grad(jaxloss.ntxent)(f32(x), labels, temperature)
  assert_close(loss, loss_ref)
  assert_close(grad, grad_ref, rtol=1e-4)
  with jax.numpy_dtype_promotion("standard"):  # optax's ntxent mixes bool and int
    theirs = jax.jit(jax.value_and_grad(optax.losses.ntxent))(f32(x), jnp.asarray(labels),
                                                             temperature)
  np.testing.assert_allclose(loss, theirs[0], rtol=1e-5)
  assert_close(grad, theirs[1], rtol=1e-4)


def test_ntxent_finite_at_duplicates_small_temperatures_and_zero_embeddings(rng):
  x = rng.normal(size=(8, 5)).astype(np.float32)
  x[1] = x[0]  # a duplicated positive pair
  x[3] = x[2]
  x[5] = x[4]
  labels = np.array([0, 0, 1, 2, 3, 3, 4, 4])  # x[2], x[3]: duplicated but negatives
  x[7] = 0.0  # a zero embedding
  for temperature in (0.07, 0.01, 0.001):
    loss, grad = jax.value_and_grad(jaxloss.ntxent)(f32(x), labels, temperature)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    loss_ref, grad_ref = np_ntxent(x, labels, temperature)
    assert_close(loss, loss_ref, rtol=1e-4)
    assert_close(grad, grad_ref, rtol=1e-3, atol_scale=1e-4)


def test_ntxent_without_positive_pairs_or_negatives(rng):
  x = f32(rng.normal(size=(4, 3)))
  loss, grad = jax.value_and_grad(jaxloss.ntxent)(x, jnp.arange(4))
  assert loss == 0 and np.all(grad == 0)  # optax: 0/0 = NaN
  loss, grad = jax.value_and_grad(jaxloss.ntxent)(x, jnp.zeros(4, jnp.int32))
  assert loss == 0 and np.all(np.isfinite(grad))  # no negatives: every pair's term is 0


def test_ntxent_errors_and_dtype(rng):
  x = rng.normal(size=(4, 3)).astype(np.float32)
  assert jaxloss.ntxent(jnp.asarray(x, jnp.bfloat16), jnp.array([0, 0, 1, 1])).dtype == \
      jnp.bfloat16
  with pytest.raises(ValueError, match="labels"):
    jaxloss.ntxent(f32(x), jnp.array([0, 0, 1]))
  with pytest.raises(ValueError, match="temperature"):
    jaxloss.ntxent(f32(x), jnp.array([0, 0, 1, 1]), 0.0)
