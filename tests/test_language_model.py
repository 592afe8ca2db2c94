"""token_log_probs, token_entropy and sequence_log_probs (issue 17).

References are numpy float64 from the formulas (log-softmax by logsumexp, Shannon entropy,
masked sums); derivatives are written from the maths: d log p_y / dx = (onehot − p) / T and
dH/dx = −p (log p + H) / T.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from scipy.special import logsumexp

import jaxloss
from _reference import assert_close

B, T, V = 2, 3, 7
TEMP = 0.7


def f32(x):
  return jnp.asarray(x, jnp.float32)


def _logits(rng, scale=2.0):
  return (rng.normal(size=(B, T, V)) * scale).astype(np.float32)


def _labels(rng):
  return rng.integers(0, V, size=(B, T)).astype(np.int32)


def _np_log_softmax(x, temperature=1.0, axis=-1):
  z = np.float64(x) / temperature
  return z - logsumexp(z, axis=axis, keepdims=True)


# ------------------------------------------------------------------------- token_log_probs

def test_token_log_probs_is_the_gathered_log_softmax(rng):
  x, y = _logits(rng), _labels(rng)
  expected = np.take_along_axis(_np_log_softmax(x, TEMP), y[..., None], -1)[..., 0]
  assert_close(jaxloss.token_log_probs(x, y, temperature=TEMP), expected)
  # The vocabulary on another axis: (B, V, T) with axis=1.
  xt = np.moveaxis(x, -1, 1)
  assert_close(jaxloss.token_log_probs(xt, y, axis=1, temperature=TEMP), expected)


def test_token_log_probs_gradient_is_onehot_minus_softmax_over_t(rng):
  x, y = _logits(rng), _labels(rng)
  g = jax.grad(lambda v: jnp.sum(jaxloss.token_log_probs(v, y, temperature=TEMP)))(f32(x))
  p = np.exp(_np_log_softmax(x, TEMP))
  onehot = np.eye(V)[y]
  assert_close(g, (onehot - p) / TEMP)
  # d/dT of x_y/T − lse(x/T) = (Σ_v p_v x_v − x_y) / T².
  g_t = jax.grad(lambda t: jnp.sum(jaxloss.token_log_probs(f32(x), y, temperature=t)))(
      jnp.float32(TEMP))
  x64 = np.float64(x)
  x_y = np.take_along_axis(x64, y[..., None], -1)[..., 0]
  assert_close(g_t, np.sum((np.sum(p * x64, -1) - x_y) / TEMP ** 2), rtol=1e-4)


def test_token_log_probs_forward_mode_matches_reverse(rng):
  x, y = f32(_logits(rng)), _labels(rng)
  direction = f32(rng.normal(size=x.shape))
  fn = lambda v: jnp.sum(jaxloss.token_log_probs(v, y))
  _, tangent = jax.jvp(fn, (x,), (direction,))
  assert_close(tangent, np.sum(np.asarray(jax.grad(fn)(x), np.float64) * direction), rtol=1e-4)


def test_token_log_probs_large_and_masked_logits():
  x = np.zeros((4, V), np.float32)
  x[0, 0] = 1e4  # a one-hot row, the label elsewhere: log p = −1e4
  x[1, 3] = -1e4
  x[2, 1:] = -np.inf  # a vocabulary mask, the label inside
  x[3, 2] = -np.inf  # the label at a −inf logit: log p = −inf
  y = np.array([1, 3, 0, 2], np.int32)
  out = jaxloss.token_log_probs(x, y)
  np.testing.assert_allclose(out[:3], [-1e4, -1e4 - np.log(V - 1), 0], rtol=1e-6)
  assert out[3] == -np.inf
  g = jax.grad(lambda v: jnp.sum(jaxloss.token_log_probs(v, y)))(f32(x))
  assert np.all(np.isfinite(g))
  np.testing.assert_array_equal(g[2, 1:], 0.0)  # masked logits get exactly 0
  assert g[3, 2] == 1.0 and np.all(np.delete(np.asarray(g[3]), 2) < 0)  # 1 − p_y, −p_j


def test_token_log_probs_bad_and_ignored_labels():
  x = np.zeros((4, V), np.float32)
  y = np.array([V, -1, -100, 2], np.int32)
  out = jaxloss.token_log_probs(x, y, ignore_index=-100)
  assert np.isnan(out[0]) and np.isnan(out[1]) and out[2] == 0
  np.testing.assert_allclose(out[3], -np.log(V), rtol=1e-6)
  g = jax.grad(lambda v: jnp.sum(jnp.where(jnp.arange(4) == 3,
                                           jaxloss.token_log_probs(v, y, ignore_index=-100),
                                           0.0)))(f32(x))
  np.testing.assert_array_equal(g[:3], 0.0)  # bad labels: NaN value, zero gradient
  fn = lambda v: jaxloss.token_log_probs(v, y, ignore_index=-100)
  err, _ = checkify.checkify(fn, errors=checkify.user_checks)(f32(x))
  with pytest.raises(checkify.JaxRuntimeError,
                     match=rf"token_log_probs: every label in `labels` must be in \[0, {V}\), "
                           rf"got {V}\b"):
    err.throw()
  with pytest.raises(TypeError, match="token_log_probs: `labels` must have an integer dtype"):
    jaxloss.token_log_probs(x, np.zeros(4, np.float32))
  with pytest.raises(ValueError, match=r"labels.shape=\(3,\)"):
    jaxloss.token_log_probs(x, np.zeros(3, np.int32))
  with pytest.raises(ValueError, match=r"token_log_probs\(temperature=...\) must be > 0.0"):
    jaxloss.token_log_probs(x, y, temperature=0.0)


# --------------------------------------------------------------------------- token_entropy

def test_token_entropy_and_its_gradient(rng):
  x = _logits(rng)
  lp = _np_log_softmax(x, TEMP)
  p = np.exp(lp)
  h = -np.sum(p * lp, -1)
  assert_close(jaxloss.token_entropy(x, temperature=TEMP), h)
  g, g_t = jax.grad(lambda v, t: jnp.sum(jaxloss.token_entropy(v, temperature=t)),
                   argnums=(0, 1))(f32(x), jnp.float32(TEMP))
  grad_u = -p * (lp + h[..., None])  # dH/du for u = x / T
  assert_close(g, grad_u / TEMP)
  assert_close(g_t, -np.sum(grad_u * np.float64(x) / TEMP) / TEMP, rtol=1e-4)  # −Σ G u / T


def test_huge_logits_at_a_temperature_stay_finite():
  # x/T − max(x/T) fused by XLA into a multiply-add is off by half an ulp of x/T: exp(1e23)
  # = inf at logits of 1e30; the shift is taken before the scaling.
  x = f32(np.broadcast_to(1e30 * np.where(np.arange(V) % 2 == 0, 1.0, -1.0), (2, V)))
  y = np.array([0, 1], np.int32)
  lp = jaxloss.token_log_probs(x, y, temperature=TEMP)
  n_top = (V + 1) // 2
  np.testing.assert_allclose(lp, [-np.log(n_top), -2e30 / TEMP], rtol=1e-6)
  np.testing.assert_allclose(jaxloss.token_entropy(x, temperature=TEMP), [np.log(n_top)] * 2,
                             rtol=1e-6)
  for fn in (lambda v: jaxloss.token_log_probs(v, y, temperature=TEMP),
             lambda v: jaxloss.token_entropy(v, temperature=TEMP)):
    assert np.all(np.isfinite(jax.grad(lambda v, fn=fn: jnp.sum(fn(v)))(x)))


def test_token_entropy_masked_and_one_hot_rows():
  x = np.zeros((3, 5), np.float32)
  x[0, 2:] = -np.inf  # two live classes: log 2
  x[1] = [1e4, 0, 0, 0, 0]  # one-hot to float precision: +0
  x[2] = -np.inf  # no class at all: 0
  h = jaxloss.token_entropy(x)
  np.testing.assert_allclose(h[0], np.log(2), rtol=1e-6)
  assert h[1] == 0 and not np.signbit(h[1]) and h[2] == 0
  g = jax.grad(lambda v: jnp.sum(jaxloss.token_entropy(v)))(f32(x))
  assert np.all(np.isfinite(g)) and np.all(g[0, 2:] == 0) and np.all(g[2] == 0)


# ----------------------------------------------------------------------- sequence_log_probs

def test_sequence_log_probs_masks_padding_in_sum_and_mean(rng):
  lp = -rng.uniform(0.1, 3.0, size=(3, 5)).astype(np.float32)
  mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
  lp_padded = lp.copy()
  lp_padded[~mask] = np.nan  # padding labels turned into NaN upstream must not leak
  total = np.where(mask, np.float64(lp), 0).sum(-1)
  count = mask.sum(-1)
  assert_close(jaxloss.sequence_log_probs(lp_padded, mask), total)
  mean = jaxloss.sequence_log_probs(lp_padded, mask, average=True)
  assert_close(mean, total / np.maximum(count, 1))
  # The trap: the mean over the padded length T is not the sequence's mean.
  assert not np.allclose(mean[0], total[0] / 5)
  g = jax.grad(lambda v: jnp.sum(jaxloss.sequence_log_probs(v, mask, average=True)))(
      f32(lp_padded))
  assert_close(g, mask / np.maximum(count, 1)[:, None])  # 0 at padding, 0 for the empty row
  assert mean[2] == 0


def test_sequence_log_probs_checks_its_mask():
  lp = np.zeros((2, 3), np.float32)
  with pytest.raises(TypeError, match=r"sequence_log_probs: `mask` must be a boolean array"):
    jaxloss.sequence_log_probs(lp, np.ones((2, 3), np.int32))
  with pytest.raises(ValueError, match=r"mask.shape=\(2, 4\)"):
    jaxloss.sequence_log_probs(lp, np.ones((2, 4), bool))


def test_padded_batch_pipeline_gives_per_sequence_log_likelihood(rng):
  """token_log_probs with TRL's −100 padding label, then the masked sum: each sequence's
  log-likelihood, independent of how much padding it carries."""
  x, y = _logits(rng), _labels(rng)
  y[0, 2] = -100
  mask = y != -100
  seq = jaxloss.sequence_log_probs(jaxloss.token_log_probs(x, y, ignore_index=-100), mask)
  lp = np.take_along_axis(_np_log_softmax(x), np.maximum(y, 0)[..., None], -1)[..., 0]
  assert_close(seq, np.where(mask, lp, 0).sum(-1))
  assert_close(seq[0], lp[0, :2].sum())


# ------------------------------------------------------------ transforms, dtypes, float64

def test_vmap_jit_and_batched_calls_agree(rng):
  x, y = f32(_logits(rng)), _labels(rng)
  mask = jnp.asarray(rng.random((B, T)) < 0.7)
  for fn, args in ((lambda a, b: jaxloss.token_log_probs(a, b, temperature=TEMP), (x, y)),
                   (lambda a: jaxloss.token_entropy(a, temperature=TEMP), (x,)),
                   (lambda a, m: jaxloss.sequence_log_probs(a, m, average=True),
                    (x[..., 0], mask))):
    batched = fn(*args)
    np.testing.assert_allclose(jax.vmap(fn)(*args), batched, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.jit(fn)(*args), batched, rtol=1e-6, atol=1e-6)
    g = jax.grad(lambda a, *r: jnp.sum(fn(a, *r)))(*args)
    g_vmap = jax.vmap(jax.grad(lambda a, *r: jnp.sum(fn(a, *r))))(*args)
    np.testing.assert_allclose(g_vmap, g, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs_are_computed_in_float32(rng, dtype):
  x, y = _logits(rng), _labels(rng)
  xl = jnp.asarray(x, dtype)
  x32 = np.asarray(xl.astype(jnp.float32))  # the rounded input, in float32
  out = jaxloss.token_log_probs(xl, y)
  assert out.dtype == dtype
  ref = np.take_along_axis(_np_log_softmax(x32), y[..., None], -1)[..., 0]
  np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=1e-2, atol=1e-2)
  assert jaxloss.token_entropy(xl).dtype == dtype
  seq = jaxloss.sequence_log_probs(out, jnp.ones((B, T), bool))
  assert seq.dtype == dtype


def test_float64_agrees_with_the_formulas_to_rounding(rng):
  x, y = _logits(rng), _labels(rng)
  with jax.enable_x64(True):
    out = jaxloss.token_log_probs(jnp.asarray(x, jnp.float64), y, temperature=TEMP)
    h = jaxloss.token_entropy(jnp.asarray(x, jnp.float64), temperature=TEMP)
    assert out.dtype == jnp.float64
  lp = _np_log_softmax(x, TEMP)
  np.testing.assert_allclose(out, np.take_along_axis(lp, y[..., None], -1)[..., 0], rtol=1e-12)
  np.testing.assert_allclose(h, -np.sum(np.exp(lp) * lp, -1), rtol=1e-12)

