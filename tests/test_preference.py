"""Preference and policy-gradient objectives (issue 17).

Each reference is the paper's (or TRL's) formula written again here in numpy float64, in its
original form (−log σ(x), 1 − σ(x), torch.min of the two surrogates, the loop over groups);
each derivative is written from the maths in terms of the log-ratios c = π_c − ρ_c and
r = π_r − ρ_r, with d/dπ = d/dc and d/dρ = −d/dc.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

import jaxloss
from _reference import assert_close
from jaxloss import preference

N = 16
BETA = 0.7


def f32(x):
  return jnp.asarray(x, jnp.float32)


def sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def log_sig(x):
  return -np.logaddexp(0.0, -x)


def dsig(x):  # σ'(x)
  return sig(x) * sig(-x)


def _pairs(rng, scale=3.0):
  """Sequence log-probabilities of policy and reference, chosen and rejected."""
  return [(-rng.uniform(1.0, 30.0, size=N) + rng.normal(size=N) * scale).astype(np.float32)
          for _ in range(4)]


# ------------------------------------------------------------------------------- DPO family

def _np_dpo(loss_type, pc, pr, rc, rr, beta, eps, delta=0.0):
  """TRL DPOTrainer.dpo_loss, written in its own terms (logsigmoid, sigmoid, relu)."""
  pc, pr, rc, rr = map(np.float64, (pc, pr, rc, rr))
  c, r = pc - rc, pr - rr
  logits = (pc - pr) - (rc - rr)
  if loss_type == "sigmoid":
    return -log_sig(beta * logits) * (1 - eps) - log_sig(-beta * logits) * eps
  if loss_type == "robust":
    return (-log_sig(beta * logits) * (1 - eps) + log_sig(-beta * logits) * eps) / (1 - 2 * eps)
  if loss_type == "hinge":
    return np.maximum(0.0, 1 - beta * logits)
  if loss_type == "ipo":
    return (logits - 1 / (2 * beta)) ** 2
  if loss_type == "exo_pair":
    e = 1e-3 if eps == 0 else eps
    return (sig(beta * logits) * (log_sig(beta * logits) - np.log(1 - e))
            + sig(-beta * logits) * (log_sig(-beta * logits) - np.log(e)))
  if loss_type == "nca_pair":
    return -log_sig(c * beta) - 0.5 * log_sig(-c * beta) - 0.5 * log_sig(-r * beta)
  if loss_type == "bco_pair":
    return -log_sig(beta * c - delta) - log_sig(-(beta * r - delta))
  if loss_type == "sppo_hard":
    return (c - 0.5 / beta) ** 2 + (r + 0.5 / beta) ** 2
  if loss_type == "apo_zero":
    return (1 - sig(beta * c)) + sig(beta * r)
  if loss_type == "apo_down":
    return sig(beta * c) + (1 - sig(beta * (c - r)))
  raise AssertionError(loss_type)


def _np_dpo_grad(loss_type, pc, pr, rc, rr, beta, eps, delta=0.0):
  """(dℓ/dc, dℓ/dr) from the maths; z = c − r, u = βz."""
  pc, pr, rc, rr = map(np.float64, (pc, pr, rc, rr))
  c, r = pc - rc, pr - rr
  z = c - r
  u = beta * z
  by_z = {
      "sigmoid": beta * (-(1 - eps) * sig(-u) + eps * sig(u)),
      "robust": beta * (-(1 - eps) * sig(-u) - eps * sig(u)) / (1 - 2 * eps),
      "hinge": np.where(u < 1, -beta, 0.0),
      "ipo": 2 * (z - 1 / (2 * beta)),
      # d/ds [s log s/(1−ε) + (1−s) log (1−s)/ε] = u + log(ε/(1−ε)), ds/du = s(1 − s).
      "exo_pair": beta * dsig(u) * (u + np.log((1e-3 if eps == 0 else eps)
                                                / (1 - (1e-3 if eps == 0 else eps)))),
  }
  if loss_type in by_z:
    return by_z[loss_type], -by_z[loss_type]
  if loss_type == "nca_pair":
    return beta * (-sig(-beta * c) + 0.5 * sig(beta * c)), 0.5 * beta * sig(beta * r)
  if loss_type == "bco_pair":
    return -beta * sig(delta - beta * c), beta * sig(beta * r - delta)
  if loss_type == "sppo_hard":
    return 2 * (c - 0.5 / beta), 2 * (r + 0.5 / beta)
  if loss_type == "apo_zero":
    return -beta * dsig(beta * c), beta * dsig(beta * r)
  if loss_type == "apo_down":
    return beta * dsig(beta * c) - beta * dsig(u), beta * dsig(u)
  raise AssertionError(loss_type)


def _kwargs(loss_type):
  eps = 0.1 if loss_type in ("sigmoid", "robust", "exo_pair") else 0.0
  extra = {"bco_delta": 0.3} if loss_type == "bco_pair" else {}
  return eps, extra


@pytest.mark.parametrize("loss_type", preference.DPO_LOSS_TYPES)
def test_dpo_loss_types_match_trl_and_their_closed_form_gradients(rng, loss_type):
  args = _pairs(rng)
  eps, extra = _kwargs(loss_type)
  delta = extra.get("bco_delta", 0.0)

  def fn(*a):
    return jaxloss.dpo_loss(*a, beta=BETA, label_smoothing=eps, loss_type=loss_type, **extra)

  assert_close(fn(*args), _np_dpo(loss_type, *args, BETA, eps, delta))
  value_and_grad = jax.value_and_grad(lambda *a: jnp.sum(fn(*a)), argnums=(0, 1, 2, 3))
  _, grads = value_and_grad(*map(f32, args))
  dc, dr = _np_dpo_grad(loss_type, *args, BETA, eps, delta)
  for g, expected in zip(grads, (dc, dr, -dc, -dr), strict=True):
    assert_close(g, expected, rtol=1e-4, atol_scale=1e-4)
  # Finite values and gradients for log-probability differences of ±1e4 (same shapes: the
  # compiled function is reused).
  big = np.tile(np.array([1e4, -1e4, 1e4, -1e4], np.float32), N // 4)
  zero = np.zeros(N, np.float32)
  value, grads = value_and_grad(*map(f32, (big - 1e4, zero - 1e4, zero - 1e4,
                                            np.roll(big, 1) - 1e4)))
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_dpo_loss_types_agree_in_float64_to_rounding(rng):
  args = _pairs(rng)
  with jax.enable_x64(True):
    a64 = [jnp.asarray(a, jnp.float64) for a in args]
    for loss_type in preference.DPO_LOSS_TYPES:
      eps, extra = _kwargs(loss_type)
      out = jaxloss.dpo_loss(*a64, beta=BETA, label_smoothing=eps, loss_type=loss_type, **extra)
      assert out.dtype == jnp.float64
      np.testing.assert_allclose(
          out, _np_dpo(loss_type, *args, BETA, eps, extra.get("bco_delta", 0.0)),
          rtol=1e-12, atol=1e-12, err_msg=loss_type)


def test_dpo_hinge_kink_has_zero_subgradient():
  # u = β z = 1 exactly: β = 0.5, z = 2.
  one = jnp.ones(1, jnp.float32)
  g = jax.grad(lambda pc: jnp.sum(jaxloss.dpo_loss(pc, 0 * one, 0 * one, 0 * one, beta=0.5,
                                                   loss_type="hinge")))(2 * one)
  assert g[0] == 0


def test_dpo_checks_its_arguments(rng):
  args = _pairs(rng)
  with pytest.raises(ValueError, match=r"dpo_loss: unknown loss_type='kto_pair'"):
    jaxloss.dpo_loss(*args, loss_type="kto_pair")
  with pytest.raises(ValueError, match=r"dpo_loss\(beta=...\) must be > 0.0, got 0.0"):
    jaxloss.dpo_loss(*args, beta=0.0)
  with pytest.raises(ValueError, match=r"dpo_loss\(label_smoothing=...\) must be in \[0.0, 0.5\)"):
    jaxloss.dpo_loss(*args, label_smoothing=0.5, loss_type="robust")
  with pytest.raises(ValueError, match=r"reference_rejected.shape=\(3,\)"):
    jaxloss.dpo_loss(*args[:3], args[3][:3])


# ----------------------------------------------------------------------------- SimPO, CPO

def test_simpo_and_cpo_match_trl_and_their_gradients(rng):
  pc, pr = -rng.uniform(0.2, 3.0, size=(2, N)).astype(np.float32)
  beta, gamma, eps = 2.0, 0.6, 0.1
  # TRL CPOTrainer (loss_type="simpo"): logits = (π_c − π_r) − γ/β, then cDPO's smoothing.
  logits = (np.float64(pc) - pr) - gamma / beta
  simpo = -log_sig(beta * logits) * (1 - eps) - log_sig(-beta * logits) * eps
  fn = lambda a, b: jaxloss.simpo_loss(a, b, beta=beta, gamma=gamma,
                                       label_smoothing=eps)
  assert_close(fn(pc, pr), simpo)
  u = beta * logits
  d = beta * (-(1 - eps) * sig(-u) + eps * sig(u))
  ga, gb = jax.grad(lambda a, b: jnp.sum(fn(a, b)), argnums=(0, 1))(f32(pc), f32(pr))
  assert_close(ga, d)
  assert_close(gb, -d)
  cpo_logits = np.float64(pc) - pr
  cpo = -log_sig(0.5 * cpo_logits) * (1 - eps) - log_sig(-0.5 * cpo_logits) * eps
  assert_close(jaxloss.cpo_loss(pc, pr, beta=0.5, label_smoothing=eps), cpo)
  with pytest.raises(ValueError, match=r"simpo_loss\(gamma=...\) must be >= 0.0"):
    jaxloss.simpo_loss(pc, pr, gamma=-1.0)


# ------------------------------------------------------------------------------------ ORPO

def _np_orpo(a, b, beta):
  a, b = np.float64(a), np.float64(b)
  # Hong et al. Eq. 6-7 with odds(p) = p / (1 − p), in float64 (no cancellation at these a).
  log_odds = (a - b) - (np.log1p(-np.exp(a)) - np.log1p(-np.exp(b)))
  return -beta * log_sig(log_odds), log_odds


def test_orpo_matches_the_paper_and_its_gradient(rng):
  a = -rng.uniform(0.05, 4.0, size=N).astype(np.float32)
  b = -rng.uniform(0.05, 4.0, size=N).astype(np.float32)
  value, log_odds = _np_orpo(a, b, BETA)
  assert_close(jaxloss.orpo_loss(a, b, beta=BETA), value)
  ga, gb = jax.grad(lambda x, y: jnp.sum(jaxloss.orpo_loss(x, y, beta=BETA)), argnums=(0, 1))(
      f32(a), f32(b))
  # dℓ/dL = −β σ(−L); dL/da = 1/(1 − eᵃ); dL/db = −1/(1 − eᵇ).
  s = sig(-log_odds)
  assert_close(ga, -BETA * s / (1 - np.exp(np.float64(a))), rtol=1e-4)
  assert_close(gb, BETA * s / (1 - np.exp(np.float64(b))), rtol=1e-4)


def test_orpo_stable_as_the_chosen_log_prob_goes_to_zero():
  a = np.array([-1e-3, -1e-7, -1e-20, -1e-30, 0.0], np.float32)
  b = np.full(5, -0.7, np.float32)
  # The naive float32 form loses the odds: log1p(−exp(−1e-8)) = log1p(−1) = −inf in float32.
  with np.errstate(divide="ignore"):
    assert np.isneginf(np.log1p(-np.exp(np.float32(-1e-8))))
  out = jaxloss.orpo_loss(a, b, beta=1.0)
  ga, gb = jax.grad(lambda x, y: jnp.sum(jaxloss.orpo_loss(x, y, beta=1.0)), argnums=(0, 1))(
      f32(a), f32(b))
  assert np.all(np.isfinite(out)) and np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
  # Near 0 the reference in float64 through log(−expm1(a)) (exact there).
  a64, b64 = np.float64(a[:4]), np.float64(b[:4])
  log_odds = (a64 - np.log(-np.expm1(a64))) - (b64 - np.log(-np.expm1(b64)))
  assert_close(out[:4], -log_sig(log_odds), atol=1e-6)
  # At a = 0 exactly: the odds are infinite, loss 0, d/da its limit −odds(e^b), d/db 0.
  odds_b = np.exp(-0.7) / (1 - np.exp(-0.7))
  assert out[4] == 0
  np.testing.assert_allclose(ga[4], -odds_b, rtol=1e-5)
  assert gb[4] == 0
  # The rejected log-prob at exactly 0 is a true infinity (documented).
  assert jaxloss.orpo_loss(np.float32([-0.5]), np.float32([0.0]))[0] == np.inf


def test_orpo_finite_for_differences_of_1e4():
  a = np.array([-1e-4, -1e4, -1e4, -3.0], np.float32)
  b = np.array([-1e4, -1e-4, -1e4 + 1, -1e4], np.float32)
  value, grads = jax.value_and_grad(
      lambda x, y: jnp.sum(jaxloss.orpo_loss(x, y)), argnums=(0, 1))(f32(a), f32(b))
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


# ------------------------------------------------------------------------------------- KTO

def test_kto_matches_trl_clamps_and_stops_the_reference_point(rng):
  pol, ref = _pairs(rng)[:2]
  good = rng.random(N) < 0.5
  lam_d, lam_u, kl = 1.3, 0.8, 0.4
  r = np.float64(pol) - ref
  # TRL: chosen 1 − σ(β(r − KL)), rejected 1 − σ(β(KL − r)), times the weights.
  expected = np.where(good, lam_d * (1 - sig(BETA * (r - kl))), lam_u * (1 - sig(BETA * (kl - r))))
  fn = lambda p, q, k: jaxloss.kto_loss(p, q, good, beta=BETA, kl=k,
                                        desirable_weight=lam_d, undesirable_weight=lam_u)
  assert_close(fn(pol, ref, kl), expected)
  gp, gk = jax.grad(lambda p, k: jnp.sum(fn(p, f32(ref), k)), argnums=(0, 1))(
      f32(pol), jnp.float32(kl))
  x_d, x_u = BETA * (r - kl), BETA * (kl - r)
  assert_close(gp, np.where(good, -lam_d * BETA * dsig(x_d), lam_u * BETA * dsig(x_u)))
  assert gk == 0  # z0 is not differentiated (the paper, TRL's .detach())
  # A negative KL estimate is clamped to 0, as TRL's clamp(min=0).
  assert_close(fn(pol, ref, -0.3), fn(pol, ref, 0.0), rtol=0, atol=0)
  with pytest.raises(TypeError, match="kto_loss: `desirable` must be a boolean array"):
    jaxloss.kto_loss(pol, ref, good.astype(np.int32))


# ------------------------------------------------------------------- clipped policy losses

def _np_clipped(lp, old, adv, el, eh):
  """TRL GRPOTrainer: coef_1 = exp(lp − old), coef_2 = clamp, −min(coef_1 A, coef_2 A)."""
  coef_1 = np.exp(np.float64(lp) - old)
  coef_2 = np.clip(coef_1, 1 - el, 1 + eh)
  return -np.minimum(coef_1 * adv, coef_2 * adv), coef_1


def _rollout(rng, b=4, t=6):
  lp = np.log(rng.uniform(0.05, 1.0, size=(b, t))).astype(np.float32)
  old = (lp + rng.normal(size=(b, t)) * 0.3).astype(np.float32)
  adv = rng.normal(size=b).astype(np.float32)
  mask = np.arange(t)[None, :] < np.array([6, 3, 1, 0])[:, None]
  return lp, old, adv, mask


def test_clipped_policy_loss_matches_ppo_and_dapo_with_its_gradient(rng):
  lp, old, adv, mask = _rollout(rng)
  el, eh = 0.2, 0.28
  expected, ratio = _np_clipped(lp, old, adv[:, None], el, eh)
  fn = lambda x, a: jaxloss.clipped_policy_loss(x, old, a, epsilon_low=el,
                                                epsilon_high=eh, where=mask)
  out = fn(lp, adv)
  assert_close(out, np.where(mask, expected, 0))
  a = adv[:, None]
  unclipped = ((a > 0) & (ratio < 1 + eh)) | ((a < 0) & (ratio > 1 - el))
  assert 0 < np.sum(unclipped & mask) < np.sum(mask)  # both branches are exercised
  g_lp, g_adv = jax.grad(lambda x, a: jnp.sum(fn(x, a)), argnums=(0, 1))(f32(lp), f32(adv))
  assert_close(g_lp, np.where(mask & unclipped, -a * ratio, 0))
  chosen = np.where(unclipped, ratio, np.clip(ratio, 1 - el, 1 + eh))
  assert_close(g_adv, np.sum(np.where(mask, -chosen, 0), -1))
  # One advantage per sequence is the same as that advantage on every token.
  per_token = jaxloss.clipped_policy_loss(lp, old, np.repeat(a, lp.shape[1], 1),
                                          epsilon_low=el, epsilon_high=eh, where=mask)
  np.testing.assert_array_equal(per_token, out)


def test_clipped_policy_loss_kinks_overflow_and_masks():
  d = np.float32(0.25)
  r = np.asarray(jnp.exp(jnp.float32(d)))
  eh = float(np.float32(r) - np.float32(1))  # 1 + ε_h == exp(d) exactly in float32
  assert np.float32(1) + np.float32(eh) == r
  lp = np.array([d, d, 1e4, 1e4, 0.0, np.nan], np.float32)
  adv = np.array([1.0, -1.0, 2.0, -2.0, 0.0, 1.0], np.float32)
  where = np.array([True, True, True, True, True, False])
  zero = np.zeros(6, np.float32)
  fn = lambda x: jaxloss.clipped_policy_loss(x, zero, adv, epsilon_high=eh,
                                             where=where)
  out = fn(lp)
  g = jax.grad(lambda x: jnp.sum(jnp.where(np.isfinite(out), fn(x), 0.0)))(f32(lp))
  assert g[0] == 0  # the kink r = 1 + ε_h with A > 0: sub-gradient 0
  assert_close(g[1], np.float64(r))  # A < 0, r > 1 − ε_l: −A r
  assert out[2] == -2.0 * (1 + np.float32(eh)) and g[2] == 0  # r = inf, clipped: finite, 0
  assert out[3] == np.inf  # r = inf, A < 0: the true value
  assert out[4] == 0 and g[4] == 0  # A = 0
  assert out[5] == 0 and g[5] == 0  # masked NaN: exactly 0, zero gradient


def test_the_three_normalisations_are_reduce_calls(rng):
  """DAPO's token mean, GRPO's sequence mean and Dr. GRPO's constant, against TRL's formulas
  (bnpo/dapo, grpo, dr_grpo) written on the masked per-token loss."""
  lp, old, adv, mask = _rollout(rng)
  loss = jaxloss.clipped_policy_loss(lp, old, adv, where=mask)
  per_token = np.where(mask, _np_clipped(lp, old, adv[:, None], 0.2, 0.2)[0], 0)
  m = mask.astype(np.float64)
  dapo = (per_token * m).sum() / max(m.sum(), 1.0)
  grpo = ((per_token * m).sum(-1) / np.maximum(m.sum(-1), 1.0))[m.sum(-1) > 0].mean()
  dr_grpo = (per_token * m).sum() / (m.shape[0] * m.shape[1])
  assert_close(jaxloss.reduce(loss, "mean", where=mask), dapo)
  weights = m / np.maximum(m.sum(-1, keepdims=True), 1.0)
  assert_close(jaxloss.reduce(loss, "mean", weights=f32(weights)), grpo)
  assert_close(jaxloss.reduce(loss, "mean"), dr_grpo)


def test_sequence_clipped_policy_loss_is_gspo(rng):
  lp, old, adv, mask = _rollout(rng)
  lp[1] = old[1] + 2e-4  # a sequence whose ratio is clipped at these ε (A may have either sign)
  old_nan = old.copy()
  old_nan[~mask] = np.nan  # padding must not reach the ratio
  el, eh = 3e-4, 4e-4
  out = jaxloss.sequence_clipped_policy_loss(lp, old_nan, adv, mask, epsilon_low=el,
                                             epsilon_high=eh)
  m = mask.astype(np.float64)
  n = np.maximum(m.sum(-1), 1.0)
  log_s = (np.where(mask, np.float64(lp) - old, 0)).sum(-1) / n
  s = np.exp(log_s)[:, None]
  a = adv[:, None].astype(np.float64)
  expected = -np.minimum(s * a, np.clip(s, 1 - el, 1 + eh) * a)
  assert_close(out, np.where(mask, expected, 0))
  # GSPO's objective is the sequence mean; its gradient −A s_i ∇(mean log-ratio) where
  # unclipped.
  grpo = lambda x: jaxloss.reduce(
      jaxloss.sequence_clipped_policy_loss(x, old_nan, adv, mask, epsilon_low=el,
                                           epsilon_high=eh), "mean", weights=f32(m / n[:, None]))
  g = jax.grad(grpo)(f32(lp))
  unclipped = ((a > 0) & (s < 1 + eh)) | ((a < 0) & (s > 1 - el))
  n_seq = np.sum(m.sum(-1) > 0)
  assert_close(g, np.where(mask & unclipped, -a * s / n[:, None] / n_seq, 0))
  assert np.all(np.isfinite(g)) and np.all(np.asarray(out)[3] == 0)


def test_gspo_token_gradient_matches_trls_sequence_broadcast(rng):
  """TRL's importance_sampling_level="sequence" broadcasts s_i (gradient through every token);
  under a reduction that weighs a sequence's tokens equally the gradients agree."""
  lp, old, adv, mask = _rollout(rng)
  el, eh = 0.2, 0.2

  def trl(x):
    log_w = jnp.sum(jnp.where(mask, x - old, 0), -1, keepdims=True) / jnp.maximum(
        mask.sum(-1, keepdims=True), 1).astype(jnp.float32)
    coef_1 = jnp.exp(log_w)
    coef_2 = jnp.clip(coef_1, 1 - el, 1 + eh)
    per_token = -jnp.minimum(coef_1 * adv[:, None], coef_2 * adv[:, None])
    return jnp.sum(jnp.where(mask, per_token, 0)) / mask.sum().astype(jnp.float32)

  ours = lambda x: jaxloss.reduce(jaxloss.sequence_clipped_policy_loss(
      x, old, adv, mask, epsilon_low=el, epsilon_high=eh), "mean", where=mask)
  np.testing.assert_allclose(ours(f32(lp)), trl(f32(lp)), rtol=1e-6)
  np.testing.assert_allclose(jax.grad(ours)(f32(lp)), jax.grad(trl)(f32(lp)), rtol=1e-5,
                             atol=1e-7)


# ------------------------------------------------------------------------------- kl_penalty

def test_kl_penalty_estimators_and_gradients(rng):
  lp = np.log(rng.uniform(0.05, 1.0, size=(3, 5))).astype(np.float32)
  ref = (lp + rng.normal(size=(3, 5)) * np.array([[1.0], [1e-2], [1e-4]])).astype(np.float32)
  d = np.float64(ref) - lp  # log r, r = π_ref / π_θ
  expected = {"k1": -d, "k2": 0.5 * d ** 2, "k3": np.expm1(d) - d}
  dlp = {"k1": np.ones_like(d), "k2": -d, "k3": -np.expm1(d)}
  for k in preference.KL_ESTIMATORS:
    fn = lambda x, y, k=k: jaxloss.kl_penalty(x, y, estimator=k)
    out = fn(lp, ref)
    # k3 near d = 0 is 1e-9 small: the relative tolerance holds there (series, not expm1 − d).
    np.testing.assert_allclose(out, expected[k], rtol=2e-5, atol=0, err_msg=k)
    g_lp, g_ref = jax.grad(lambda x, y: jnp.sum(fn(x, y)), argnums=(0, 1))(f32(lp), f32(ref))
    np.testing.assert_allclose(g_lp, dlp[k], rtol=2e-5, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(g_ref, -dlp[k], rtol=2e-5, atol=1e-7, err_msg=k)


@settings(deadline=None, max_examples=30)
@given(st.floats(-30.0, 30.0, width=32), st.floats(-1.0, 1.0, width=32))
def test_k3_is_never_negative(lp, step):
  ref = np.float32(lp + step * 10.0 ** np.float32(-abs(lp) % 7))
  assert jaxloss.kl_penalty(np.float32([lp]), np.float32([ref]))[0] >= 0


def test_kl_penalty_extremes_and_masks():
  lp = np.array([0.0, 0.0, 0.0, np.nan], np.float32)
  ref = np.array([1e4, -1e4, 0.0, 0.0], np.float32)
  where = np.array([True, True, True, False])
  out = jaxloss.kl_penalty(lp, ref, where=where)
  assert out[0] == np.inf and out[1] == 1e4 - 1 and out[2] == 0 and out[3] == 0
  # d/d log π_θ = 1 − eᵈ: 1 at d = −1e4, 0 at d = 0 and at the masked NaN. (At d = 1e4 the
  # value and the derivative are infinite, the true values; it is masked out here.)
  keep = np.array([False, True, True, False])
  g = jax.grad(lambda x: jnp.sum(jaxloss.kl_penalty(x, ref, where=keep)))(f32(lp))
  np.testing.assert_array_equal(g, [0.0, 1.0, 0.0, 0.0])
  with pytest.raises(ValueError, match="kl_penalty: unknown estimator='k4'"):
    jaxloss.kl_penalty(lp, ref, estimator="k4")


# ------------------------------------------------------------------------ group_advantages

def test_group_advantages_match_grpo_and_dr_grpo(rng):
  g = np.array([0, 0, 0, 1, 1, 1, 1, 2, 3, 3], np.int32)  # 2: one completion; 3: equal rewards
  r = rng.normal(size=g.size).astype(np.float32)
  r[8:] = 0.5
  std_a, dr_a = np.zeros(g.size), np.zeros(g.size)
  for k in range(4):
    idx = g == k
    mean = np.float64(r[idx]).mean()
    std = np.float64(r[idx]).std(ddof=1) if idx.sum() > 1 else 0.0  # torch.std, unbiased
    std_a[idx] = (r[idx] - mean) / (std + 1e-4)
    dr_a[idx] = r[idx] - mean
  assert_close(jaxloss.group_advantages(r, g, num_groups=4), std_a)
  assert_close(jaxloss.group_advantages(r, g, num_groups=4, scale=None), dr_a)
  out = jaxloss.group_advantages(r, g, num_groups=4)
  assert out[7] == 0 and np.all(np.asarray(out)[8:] == 0)
  grad = jax.grad(lambda x: jnp.sum(jaxloss.group_advantages(x, g, num_groups=4) ** 2))(f32(r))
  assert np.all(np.isfinite(grad))  # sqrt guarded at σ = 0


def test_group_advantages_bad_group_ids():
  r = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
  g = np.array([0, 0, 5, 1], np.int32)
  out = jaxloss.group_advantages(r, g, num_groups=2, scale=None)
  assert np.isnan(out[2]) and np.all(np.isfinite(np.delete(np.asarray(out), 2)))
  np.testing.assert_allclose(np.asarray(out)[[0, 1, 3]], [-0.5, 0.5, 0.0])
  fn = lambda x: jaxloss.group_advantages(x, g, num_groups=2)
  grad = jax.grad(lambda x: jnp.sum(jnp.where(g < 2, fn(x), 0.0)))(f32(r))
  assert grad[2] == 0
  err, _ = checkify.checkify(fn, errors=checkify.user_checks)(f32(r))
  with pytest.raises(checkify.JaxRuntimeError, match=r"group_ids` must be in \[0, 2\), got 5"):
    err.throw()
  with pytest.raises(TypeError, match="group_advantages: `group_ids` must have an integer"):
    jaxloss.group_advantages(r, r, num_groups=2)
  with pytest.raises(ValueError, match="group_advantages: unknown scale='mean'"):
    jaxloss.group_advantages(r, g, num_groups=2, scale="mean")


# ------------------------------------------------------------ transforms, dtypes, doctests

def test_vmap_jit_and_batched_calls_agree(rng):
  pc, pr, rc, rr = map(f32, _pairs(rng))
  lp, old, adv, mask = map(jnp.asarray, _rollout(rng))
  cases = [
      (lambda a, b, c, d: jaxloss.dpo_loss(a, b, c, d, beta=BETA), (pc, pr, rc, rr)),
      (lambda a, b: jaxloss.orpo_loss(-jnp.abs(a) / 30, -jnp.abs(b) / 30), (pc, pr)),
      (lambda a, b, c, m: jaxloss.clipped_policy_loss(a, b, c, where=m), (lp, old, adv, mask)),
      (lambda a, b, c, m: jaxloss.sequence_clipped_policy_loss(a, b, c, m, epsilon_low=0.2,
                                                               epsilon_high=0.2),
       (lp, old, adv, mask)),
      (lambda a, b: jaxloss.kl_penalty(a, b), (lp, old)),
  ]
  for i, (fn, args) in enumerate(cases):
    batched = fn(*args)
    np.testing.assert_allclose(jax.vmap(fn)(*args), batched, rtol=1e-6, atol=1e-6)
    if i == 0:  # jit of the (already jitted) loss inside a user's function
      np.testing.assert_allclose(jax.jit(fn)(*args), batched, rtol=1e-6, atol=1e-6)
    total = lambda a, *rest, fn=fn: jnp.sum(fn(a, *rest))
    np.testing.assert_allclose(jax.vmap(jax.grad(total))(*args), jax.grad(total)(*args),
                               rtol=1e-6, atol=1e-6)
    direction = jnp.ones_like(args[0])
    _, tangent = jax.jvp(lambda a, fn=fn, args=args: jnp.sum(fn(a, *args[1:])), (args[0],),
                         (direction,))
    np.testing.assert_allclose(tangent, jnp.sum(jax.grad(total)(*args)), rtol=1e-5)


def test_low_precision_inputs_follow_the_dtype_rule(rng):
  pc, pr, rc, rr = _pairs(rng)
  bf = [jnp.asarray(a, jnp.bfloat16) for a in (pc, pr, rc, rr)]
  out = jaxloss.dpo_loss(*bf, beta=BETA)
  assert out.dtype == jnp.bfloat16
  ref = _np_dpo("sigmoid", *[np.asarray(a.astype(jnp.float32)) for a in bf], BETA, 0.0)
  np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=1e-2, atol=1e-2)
  # bf16 with float32 inputs promotes to float32 (jnp.result_type under the default
  # promotion; the test suite's strict mode refuses the mix).
  with jax.numpy_dtype_promotion("standard"):
    assert jaxloss.dpo_loss(bf[0], bf[1], f32(rc), f32(rr)).dtype == jnp.float32
  lp, old, adv, mask = _rollout(rng)
  assert jaxloss.clipped_policy_loss(jnp.asarray(lp, jnp.bfloat16),
                                     jnp.asarray(old, jnp.bfloat16),
                                     jnp.asarray(adv, jnp.bfloat16)).dtype == jnp.bfloat16
  assert jaxloss.orpo_loss(bf[0] / 30, bf[1] / 30).dtype == jnp.bfloat16

