"""Distillation divergences: generalized JSD, reverse KL, total variation (issue 17).

References are numpy float64 from the definitions (GKD's Eq. 1 with TRL's endpoint
convention, KL, ½‖p − q‖₁); derivatives are written from the maths as p ⊙ (g − ⟨p, g⟩) / T
for dV/dp = g.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

import jaxloss
from _reference import assert_close

R, C = 5, 11
TEMP = 1.5


def f32(x):
  return jnp.asarray(x, jnp.float32)


def _logits(rng, scale=2.0):
  return [(rng.normal(size=(R, C)) * scale).astype(np.float32) for _ in range(2)]


def _np_log_softmax(x, temperature=1.0):
  z = np.float64(x) / temperature
  with np.errstate(invalid="ignore"):
    return z - logsumexp(z, axis=-1, keepdims=True)


def _xlogy_ratio(p, lp, lq):
  """Σ p (log p − log q) with 0 where p = 0."""
  with np.errstate(invalid="ignore"):
    return np.sum(np.where(p > 0, p * (lp - lq), 0.0), -1)


def _np_jsd(s, t, beta, temperature=1.0):
  lp, lq = _np_log_softmax(s, temperature), _np_log_softmax(t, temperature)
  p, q = np.exp(lp), np.exp(lq)
  if beta == 0:
    return _xlogy_ratio(q, lq, lp)  # KL(teacher ‖ student)
  if beta == 1:
    return _xlogy_ratio(p, lp, lq)  # KL(student ‖ teacher)
  m = beta * q + (1 - beta) * p
  with np.errstate(divide="ignore"):
    lm = np.log(m)
  return beta * _xlogy_ratio(q, lq, lm) + (1 - beta) * _xlogy_ratio(p, lp, lm)


def _softmax_chain(p, g):
  return p * (g - np.sum(p * g, -1, keepdims=True))


# -------------------------------------------------------------------------- generalized JSD

@pytest.mark.parametrize("beta", [0.0, 0.3, 0.7, 1.0])
def test_generalized_jsd_matches_gkd_and_trl(rng, beta):
  s, t = _logits(rng)
  out = jaxloss.generalized_jsd(s, t, beta=beta, temperature=TEMP)
  assert_close(out, _np_jsd(s, t, beta, TEMP))


def test_endpoints_equal_kl_divergence_both_ways(rng):
  s, t = _logits(rng)
  ls, lt = jax.nn.log_softmax(f32(s) / TEMP), jax.nn.log_softmax(f32(t) / TEMP)
  forward = jaxloss.kl_divergence(ls, jnp.exp(lt))  # KL(teacher ‖ student)
  reverse = jaxloss.kl_divergence(lt, jnp.exp(ls))  # KL(student ‖ teacher)
  np.testing.assert_allclose(jaxloss.generalized_jsd(s, t, beta=0.0, temperature=TEMP), forward,
                             rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(jaxloss.generalized_jsd(s, t, beta=1.0, temperature=TEMP), reverse,
                             rtol=2e-6, atol=1e-7)
  np.testing.assert_allclose(jaxloss.kl_divergence_with_log_targets(lt, ls), reverse,
                             rtol=2e-6, atol=1e-7)
  np.testing.assert_array_equal(jaxloss.reverse_kl_divergence(s, t, temperature=TEMP),
                                jaxloss.generalized_jsd(s, t, beta=1.0, temperature=TEMP))


@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_generalized_jsd_closed_form_gradients(rng, beta):
  s, t = _logits(rng)
  fn = lambda a, b: jnp.sum(jaxloss.generalized_jsd(a, b, beta=beta,
                                                    temperature=TEMP))
  gs, gt = jax.grad(fn, argnums=(0, 1))(f32(s), f32(t))
  lp, lq = _np_log_softmax(s, TEMP), _np_log_softmax(t, TEMP)
  p, q = np.exp(lp), np.exp(lq)
  if beta == 0:
    es, et = p - q, _softmax_chain(q, lq - lp)
  elif beta == 1:
    es, et = _softmax_chain(p, lp - lq), q - p
  else:
    lm = np.log(beta * q + (1 - beta) * p)
    es, et = _softmax_chain(p, (1 - beta) * (lp - lm)), _softmax_chain(q, beta * (lq - lm))
  assert_close(gs, es / TEMP, rtol=1e-4)
  assert_close(gt, et / TEMP, rtol=1e-4)


def test_generalized_jsd_beta_derivative(rng):
  s, t = _logits(rng)
  g = jax.grad(lambda b: jnp.sum(jaxloss.generalized_jsd(f32(s), f32(t), beta=b)))(
      jnp.float32(0.35))
  lp, lq = _np_log_softmax(s), _np_log_softmax(t)
  p, q = np.exp(lp), np.exp(lq)
  lm = np.log(0.35 * q + 0.65 * p)
  # dJ/dβ = KL(q ‖ m) − KL(p ‖ m): the terms through m cancel.
  assert_close(g, np.sum(_xlogy_ratio(q, lq, lm) - _xlogy_ratio(p, lp, lm)), rtol=1e-4)


def test_temperature_derivatives(rng):
  """dV/dT = −Σ_j G_j u_j / T with u = x / T the scaled logits and G = dV/du (student and
  teacher), G from the closed forms above."""
  s, t = _logits(rng)
  u, w = np.float64(s) / TEMP, np.float64(t) / TEMP
  lp, lq = _np_log_softmax(s, TEMP), _np_log_softmax(t, TEMP)
  p, q = np.exp(lp), np.exp(lq)
  lm = np.log(0.4 * q + 0.6 * p)
  kl = np.sum(p * (lp - lq), -1, keepdims=True)
  g_tv = 0.5 * np.sign(p - q)
  cases = {
      "jsd": (lambda a, b, T: jaxloss.generalized_jsd(a, b, beta=0.4, temperature=T),
              _softmax_chain(p, 0.6 * (lp - lm)), _softmax_chain(q, 0.4 * (lq - lm))),
      "reverse": (lambda a, b, T: jaxloss.reverse_kl_divergence(a, b, temperature=T),
                  p * (lp - lq - kl), q - p),
      "tv": (lambda a, b, T: jaxloss.total_variation_distance(a, b, temperature=T),
             _softmax_chain(p, g_tv), _softmax_chain(q, -g_tv)),
  }
  for name, (fn, gu, gw) in cases.items():
    g = jax.grad(lambda T, fn=fn: jnp.sum(fn(f32(s), f32(t), T)))(jnp.float32(TEMP))
    expected = -np.sum(gu * u + gw * w) / TEMP
    assert_close(g, expected, rtol=1e-4, atol=1e-5 * np.abs(gu * u).sum()), name


@settings(deadline=None, max_examples=15)
@given(st.floats(0.05, 0.95), st.integers(0, 2 ** 16))
def test_jsd_swaps_with_one_minus_beta_and_is_bounded(beta, seed):
  """JSD_β(student, teacher) = JSD_{1−β}(teacher, student), and 0 <= JSD_β <= H(β)."""
  s, t = _logits(np.random.default_rng(seed))
  a = jaxloss.generalized_jsd(s, t, beta=beta)
  b = jaxloss.generalized_jsd(t, s, beta=1.0 - beta)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  bound = -beta * np.log(beta) - (1 - beta) * np.log(1 - beta)
  assert np.all(np.asarray(a) >= -1e-7) and np.all(np.asarray(a) <= bound + 1e-6)


# ------------------------------------------------------------ one-hot teachers and masks

def test_one_hot_teachers_give_finite_values_and_gradients():
  s = np.linspace(-2, 2, C, dtype=np.float32)[None].repeat(3, 0)
  t = np.zeros((3, C), np.float32)
  t[0, 3] = 200.0  # exp(−200) underflows: probabilities exactly 0, log-probabilities −200
  t[1, 3] = 1e4
  t[2, :] = -np.inf
  t[2, 3] = 0.0  # a true one-hot: −inf logits elsewhere, unmasked
  # The trap: log(softmax(teacher)) is −inf at the zeros; the reverse KL becomes inf.
  with np.errstate(divide="ignore"):
    naive_log_q = np.log(np.exp(_np_log_softmax(t[:2])))
  assert np.isneginf(naive_log_q).any()
  fns = [lambda a, b: jaxloss.generalized_jsd(a, b, beta=0.0),
         lambda a, b: jaxloss.generalized_jsd(a, b, beta=0.5),
         lambda a, b: jaxloss.reverse_kl_divergence(a, b),
         lambda a, b: jaxloss.total_variation_distance(a, b)]
  for i, fn in enumerate(fns):
    out = fn(s, t)
    # (The reverse KL's third row is +inf, its gradient NaN: only rows 0-1 are differentiated.)
    g = jax.grad(lambda a, fn=fn: jnp.sum(fn(a, f32(t[:2]))))(f32(s[:2]))
    assert np.all(np.isfinite(out[:2])) and np.all(np.isfinite(g)), i
    if i == 2:
      assert out[2] == np.inf  # zero teacher probability under student mass: true infinity
      lp = _np_log_softmax(s[0])
      assert_close(out[:2], [np.sum(np.exp(lp) * (lp - _np_log_softmax(t[0]))),
                             np.sum(np.exp(lp) * (lp - _np_log_softmax(t[1])))])
    else:
      assert np.isfinite(out[2]), i
      assert_close(out, _np_jsd(s, t, 0.0) if i == 0 else
                   _np_jsd(s, t, 0.5) if i == 1 else
                   0.5 * np.abs(np.exp(_np_log_softmax(s)) - np.exp(_np_log_softmax(t))).sum(-1))


def test_where_masks_classes_and_rows(rng):
  s, t = _logits(rng)
  keep = rng.random((R, C)) < 0.6
  keep[:, 0] = True
  keep[-1] = False  # a row with no class: 0 with zero gradient
  s_inf, t_inf = np.where(keep, s, -np.inf), np.where(keep, t, -np.inf)
  for beta in (0.0, 0.5, 1.0):
    out = jaxloss.generalized_jsd(s_inf, t_inf, beta=beta, where=keep)
    ref = _np_jsd(np.where(keep, s, -np.inf), np.where(keep, t, -np.inf), beta)
    ref[-1] = 0.0
    assert_close(out, ref)
    g = jax.grad(lambda a, b=beta: jnp.sum(jaxloss.generalized_jsd(a, f32(t_inf), beta=b,
                                                                   where=keep)))(f32(s_inf))
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~keep] == 0)
  rev = jaxloss.reverse_kl_divergence(s_inf, t_inf, where=keep)
  tv = jaxloss.total_variation_distance(s_inf, t_inf, where=keep)
  assert np.all(np.isfinite(rev)) and rev[-1] == 0 and tv[-1] == 0
  # A row-shaped mask drops whole rows.
  rows = np.array([True] * (R - 1) + [False])
  np.testing.assert_allclose(jaxloss.total_variation_distance(s, t, where=rows)[:-1],
                             jaxloss.total_variation_distance(s, t)[:-1], rtol=1e-6)
  with pytest.raises(TypeError, match="generalized_jsd: `where` must be a boolean mask"):
    jaxloss.generalized_jsd(s, t, where=keep.astype(np.int32))


# ------------------------------------------------------------- reverse KL, total variation

def test_reverse_kl_and_total_variation_values_and_gradients(rng):
  s, t = _logits(rng)
  lp, lq = _np_log_softmax(s, TEMP), _np_log_softmax(t, TEMP)
  p, q = np.exp(lp), np.exp(lq)
  kl = np.sum(p * (lp - lq), -1)
  assert_close(jaxloss.reverse_kl_divergence(s, t, temperature=TEMP), kl)
  gs, gt = jax.grad(lambda a, b: jnp.sum(jaxloss.reverse_kl_divergence(a, b, temperature=TEMP)),
                    argnums=(0, 1))(f32(s), f32(t))
  assert_close(gs, p * (lp - lq - kl[:, None]) / TEMP, rtol=1e-4)
  assert_close(gt, (q - p) / TEMP, rtol=1e-4)
  tv = 0.5 * np.abs(p - q).sum(-1)
  assert_close(jaxloss.total_variation_distance(s, t, temperature=TEMP), tv)
  gs, gt = jax.grad(lambda a, b: jnp.sum(
      jaxloss.total_variation_distance(a, b, temperature=TEMP)), argnums=(0, 1))(f32(s), f32(t))
  g = 0.5 * np.sign(p - q)
  assert_close(gs, _softmax_chain(p, g) / TEMP, rtol=1e-4)
  assert_close(gt, _softmax_chain(q, -g) / TEMP, rtol=1e-4)


def test_total_variation_kink_takes_sign_zero():
  # p = (½, ½, 0), q = (½, 0, ½) exactly: p_0 = q_0 is a kink of |p_0 − q_0|, where the
  # sub-gradient 0 is taken (sign(0) = 0): g = (0, ½, −½), p ⊙ (g − ⟨p, g⟩) = (−⅛, ⅛, 0).
  # (With |x|' = 1 at 0, as jnp.abs differentiates, it would be (0, 0, 0).)
  s = np.array([[0.0, 0.0, -np.inf]], np.float32)
  t = np.array([[0.0, -np.inf, 0.0]], np.float32)
  assert jaxloss.total_variation_distance(s, t)[0] == 0.5
  gs, gt = jax.grad(lambda a, b: jnp.sum(jaxloss.total_variation_distance(a, b)),
                    argnums=(0, 1))(f32(s), f32(t))
  np.testing.assert_array_equal(gs, [[-0.125, 0.125, 0.0]])
  np.testing.assert_array_equal(gt, [[-0.125, 0.0, 0.125]])


def test_large_logit_gaps_are_finite():
  # 1e4, and 1e30 at a temperature other than 1: x/T − max(x/T) fused into a multiply-add
  # is off by half an ulp of 1e30 (exp(1e23) = inf); the shift is taken before the scaling.
  s = np.array([[1e4, 0.0, -1e4], [0.0, 1e30, -1e30]], np.float32)
  t = np.array([[0.0, 1e4, 0.0], [-1e4, 0.0, 1e4]], np.float32)
  for fn in (lambda a, b: jaxloss.generalized_jsd(a, b, beta=0.0, temperature=0.7),
             lambda a, b: jaxloss.generalized_jsd(a, b, beta=0.5, temperature=0.7),
             lambda a, b: jaxloss.reverse_kl_divergence(a, b, temperature=0.7),
             lambda a, b: jaxloss.total_variation_distance(a, b, temperature=0.7)):
    value, grads = jax.value_and_grad(lambda a, b, fn=fn: jnp.sum(fn(a, b)), argnums=(0, 1))(
        f32(s), f32(t))
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


# ------------------------------------------------------------ transforms, dtypes, float64

def test_vmap_jit_jvp_and_batched_calls_agree(rng):
  s, t = map(f32, _logits(rng))
  for i, fn in enumerate((lambda a, b: jaxloss.generalized_jsd(a, b, beta=0.3),
                          lambda a, b: jaxloss.reverse_kl_divergence(a, b),
                          lambda a, b: jaxloss.total_variation_distance(a, b))):
    batched = fn(s, t)
    np.testing.assert_allclose(jax.vmap(fn)(s, t), batched, rtol=1e-6, atol=1e-7)
    if i == 0:
      np.testing.assert_allclose(jax.jit(fn)(s, t), batched, rtol=1e-6, atol=1e-7)
    total = lambda a, b, fn=fn: jnp.sum(fn(a, b))
    g = jax.grad(total)(s, t)
    np.testing.assert_allclose(jax.vmap(jax.grad(total))(s, t), g, rtol=1e-5, atol=1e-7)
    direction = jnp.ones_like(s).at[:, 0].set(-2.0)
    _, tangent = jax.jvp(lambda a, fn=fn: jnp.sum(fn(a, t)), (s,), (direction,))
    np.testing.assert_allclose(tangent, jnp.sum(g * direction), rtol=1e-4, atol=1e-6)


def test_low_precision_inputs_follow_the_dtype_rule(rng):
  s, t = _logits(rng)
  sb, tb = jnp.asarray(s, jnp.bfloat16), jnp.asarray(t, jnp.bfloat16)
  out = jaxloss.generalized_jsd(sb, tb)
  assert out.dtype == jnp.bfloat16
  ref = _np_jsd(np.asarray(sb.astype(jnp.float32)), np.asarray(tb.astype(jnp.float32)), 0.5)
  np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=2e-2, atol=2e-3)
  assert jaxloss.total_variation_distance(sb, tb).dtype == jnp.bfloat16
  with jax.numpy_dtype_promotion("standard"):
    assert jaxloss.reverse_kl_divergence(sb, f32(t)).dtype == jnp.float32


def test_float64_agrees_with_the_formulas_to_rounding(rng):
  s, t = _logits(rng)
  with jax.enable_x64(True):
    s64, t64 = jnp.asarray(s, jnp.float64), jnp.asarray(t, jnp.float64)
    jsd = jaxloss.generalized_jsd(s64, t64, beta=0.3, temperature=TEMP)
    tv = jaxloss.total_variation_distance(s64, t64, temperature=TEMP)
    assert jsd.dtype == jnp.float64
  np.testing.assert_allclose(jsd, _np_jsd(s, t, 0.3, TEMP), rtol=1e-12)
  p, q = np.exp(_np_log_softmax(s, TEMP)), np.exp(_np_log_softmax(t, TEMP))
  np.testing.assert_allclose(tv, 0.5 * np.abs(p - q).sum(-1), rtol=1e-12)


def test_argument_checks(rng):
  s, t = _logits(rng)
  with pytest.raises(ValueError, match=r"generalized_jsd\(beta=...\) must be in \[0.0, 1.0\]"):
    jaxloss.generalized_jsd(s, t, beta=1.5)
  with pytest.raises(ValueError, match=r"reverse_kl_divergence\(temperature=...\) must be > 0"):
    jaxloss.reverse_kl_divergence(s, t, temperature=0.0)
  with pytest.raises(ValueError, match=r"teacher_logits.shape=\(5, 10\)"):
    jaxloss.total_variation_distance(s, t[:, :10])

