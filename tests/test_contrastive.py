"""Representation-learning losses (issue 16): margin softmax, SupCon, InfoNCE, CLIP, SigLIP and
their sharded forms, against float64 numpy written from each paper's formula, with the
gradients written from the maths (cos-addition for ArcFace, softmax − target for the rest)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from scipy.special import expit, logsumexp

import jaxloss
from _reference import assert_close
from jaxloss import contrastive

N, C, D = 12, 5, 6  # examples, classes, embedding size
F32_INSIDE = 1.0 - 2.0 ** -24  # the float32 neighbour of 1 inside (−1, 1)


def f32(x):
  return jnp.asarray(x, jnp.float32)


def softmax(x, axis=-1):
  return np.exp(x - logsumexp(x, axis=axis, keepdims=True))


def unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Margin softmax: the target logit ψ(c) and its derivative in c, from each paper.
# --------------------------------------------------------------------------------------------

def psi_arcface(m, easy=False):
  """Deng et al. 2019 in insightface's form: cos(θ + m) = c·cos m − sin θ·sin m, falling back
  to c − m·sin m where c <= cos(π − m) (or to c where c <= 0 with easy_margin)."""
  def psi(c):
    sin = np.sqrt(1 - c * c)
    value = c * np.cos(m) - sin * np.sin(m)
    deriv = np.cos(m) + c * np.sin(m) / sin  # d/dc of the cos-addition formula
    fall = c <= 0 if easy else c <= np.cos(np.pi - m)
    fall_value = c if easy else c - m * np.sin(m)
    return np.where(fall, fall_value, value), np.where(fall, 1.0, deriv)
  return psi


def psi_cosface(m):
  return lambda c: (c - m, np.ones_like(c))


def psi_combined(m1, m2, m3):
  """(−1)^k cos(m1 θ + m2) − 2k − m3 (SphereFace's extension, Liu et al. 2017, Eq. 7)."""
  def psi(c):
    theta = np.arccos(c)
    phi = m1 * theta + m2
    k = np.floor(phi / np.pi)
    value = (-1.0) ** k * np.cos(phi) - 2 * k - m3
    deriv = (-1.0) ** k * m1 * np.sin(phi) / np.sin(theta)  # dψ/dθ · dθ/dc
    return value, deriv
  return psi


def np_margin(x, w, y, s, psi, k=1):
  """Loss and gradients (embeddings, weights) of −log softmax(s·z)_y, z_y = ψ(cos θ_y).

  d cos_ij / d x_i = (ŵ_j − cos_ij x̂_i)/‖x_i‖ and symmetrically for w_j.
  """
  x, w = np.float64(x), np.float64(w)
  n, d = x.shape
  xh, wh = unit(x), unit(w)
  cos_all = (xh @ wh.T).reshape(n, -1, k)
  nearest = np.argmax(cos_all, axis=-1)  # sub-center, lowest on ties
  cos = np.take_along_axis(cos_all, nearest[..., None], -1)[..., 0]
  rows = np.arange(n)
  value, deriv = psi(cos[rows, y])
  z = cos.copy()
  z[rows, y] = value
  logits = s * z
  loss = logsumexp(logits, axis=1) - s * value
  g = s * softmax(logits)
  g[rows, y] -= s
  g[rows, y] *= np.nan_to_num(deriv, posinf=0.0, neginf=0.0)  # × 0 where d cos = 0 (c = ±1)
  wsel = wh.reshape(-1, k, d)[np.arange(cos.shape[1])[None, :], nearest]  # (n, C, d)
  dx = np.einsum("ij,ijd->id", g, wsel - cos[..., None] * xh[:, None, :])
  dx /= np.linalg.norm(x, axis=1, keepdims=True)
  dw = np.zeros_like(w).reshape(-1, k, d)
  for i in range(n):
    for j in range(cos.shape[1]):
      dw[j, nearest[i, j]] += g[i, j] * (xh[i] - cos[i, j] * wsel[i, j])
  dw = dw.reshape(w.shape) / np.linalg.norm(w, axis=1, keepdims=True)
  return loss, dx, dw


def margin_problem(rng, k=1):
  """Rows 0-2 nearly opposite their class weight (the fallback / extension region), rows 3-4
  close to it (cos near 1, where dψ/dc is large), the rest random."""
  w = rng.normal(size=(C * k, D))
  y = rng.integers(0, C, N)
  x = rng.normal(size=(N, D))
  own = unit(w.reshape(C, k, D)[:, 0])[y]
  x[:3] = -own[:3] + 0.15 * rng.normal(size=(3, D))
  x[3:5] = own[3:5] + 0.05 * rng.normal(size=(2, D))
  return x.astype(np.float32), w.astype(np.float32), y


def value_and_grads(fn, *args, argnums=(0, 1)):
  """The per-example values of ``fn`` and the gradients of their sum, in one compilation."""
  def total(*a):
    values = fn(*a)
    return jnp.sum(values), values
  (_, values), grads = jax.jit(jax.value_and_grad(total, argnums=argnums, has_aux=True))(*args)
  return values, grads


MARGIN_CASES = {
    "arcface": (lambda x, w, y: jaxloss.arcface_loss(x, w, y, scale=16.0, margin=0.5),
                psi_arcface(0.5), 1),
    "arcface_easy": (
        lambda x, w, y: jaxloss.arcface_loss(x, w, y, scale=16.0, margin=0.5, easy_margin=True),
        psi_arcface(0.5, easy=True), 1),
    "cosface": (lambda x, w, y: jaxloss.cosface_loss(x, w, y, scale=16.0, margin=0.35),
                psi_cosface(0.35), 1),
    "sphereface": (lambda x, w, y: jaxloss.sphereface_loss(x, w, y, scale=16.0, margin=1.35),
                   psi_combined(1.35, 0.0, 0.0), 1),
    "combined": (lambda x, w, y: jaxloss.margin_softmax_loss(x, w, y, scale=16.0, m1=1.2, m2=0.3,
                                                             m3=0.1),
                 psi_combined(1.2, 0.3, 0.1), 1),
    "subcenter": (lambda x, w, y: jaxloss.subcenter_arcface_loss(x, w, y, num_subcenters=3,
                                                                 scale=16.0, margin=0.5),
                  psi_arcface(0.5), 3),
}


@pytest.mark.parametrize("name", list(MARGIN_CASES))
def test_margin_softmax_value_and_gradients_match_paper_formula(rng, name):
  fn, psi, k = MARGIN_CASES[name]
  x, w, y = margin_problem(rng, k)
  loss, dx, dw = np_margin(x, w, y, 16.0, psi, k)
  c_y = np.sum(unit(np.float64(x)) * unit(np.float64(w)).reshape(C, k, D).max(1)[y], 1)
  assert np.min(np.abs(c_y - np.cos(np.pi - 0.5))) > 1e-3  # away from ArcFace's jump
  value, (gx, gw) = value_and_grads(fn, f32(x), f32(w), jnp.asarray(y))
  assert_close(value, loss)
  assert_close(gx, dx, rtol=1e-4)
  assert_close(gw, dw, rtol=1e-4)


def test_margin_softmax_holds_every_named_loss(rng):
  x, w, y = margin_problem(rng)
  x, w, y = f32(x), f32(w), jnp.asarray(y)
  pairs = [
      (jaxloss.arcface_loss(x, w, y, margin=0.5),
       jaxloss.margin_softmax_loss(x, w, y, m1=1.0, m2=0.5, fallback="arcface")),
      (jaxloss.cosface_loss(x, w, y, margin=0.35), jaxloss.margin_softmax_loss(x, w, y, m3=0.35)),
      (jaxloss.sphereface_loss(x, w, y, margin=1.35),
       jaxloss.margin_softmax_loss(x, w, y, m1=1.35)),
  ]
  for named, combined in pairs:
    assert_close(named, combined, rtol=1e-4)


def test_margin_softmax_hyperparameter_gradients(rng):
  # dℓ/ds = Σ_j p_j z_j − z_y; dℓ/dm = s(p_y − 1)·dψ/dm with ψ = (−1)^k cos(m1θ + m2) − 2k − m3.
  x, w, y = margin_problem(rng)
  xh, wh = unit(np.float64(x)), unit(np.float64(w))
  cos = xh @ wh.T
  rows = np.arange(N)
  theta = np.arccos(cos[rows, y])
  m1, m2, m3, s = 1.2, 0.3, 0.1, 16.0
  phi = m1 * theta + m2
  sign = (-1.0) ** np.floor(phi / np.pi)
  z = cos.copy()
  z[rows, y] = psi_combined(m1, m2, m3)(cos[rows, y])[0]
  p = softmax(s * z)
  dm = s * (p[rows, y] - 1)
  want = [np.sum(p * z, 1) - z[rows, y], dm * -sign * theta * np.sin(phi), dm * -sign * np.sin(phi),
          -dm]
  got = jax.jit(jax.jacrev(lambda *h: jaxloss.margin_softmax_loss(
      f32(x), f32(w), jnp.asarray(y), scale=h[0], m1=h[1], m2=h[2], m3=h[3]),
      argnums=(0, 1, 2, 3)))(*(f32(v) for v in (s, m1, m2, m3)))
  for g, ref in zip(got, want, strict=False):
    assert_close(g, ref, rtol=1e-4)


def test_arcface_margin_gradient_on_both_branches(rng):
  # dℓ/dm = s(p_y − 1)·dψ/dm: −sin(θ + m) where the margin applies, −(sin m + m cos m) on
  # insightface's fallback c − m·sin m (rows 0-2 of the problem lie there).
  x, w, y = margin_problem(rng)
  cos = unit(np.float64(x)) @ unit(np.float64(w)).T
  rows = np.arange(N)
  s, m = 16.0, 0.5
  c = cos[rows, y]
  fall = c <= np.cos(np.pi - m)
  assert fall[:3].all() and not fall[3:].any()
  z = cos.copy()
  z[rows, y] = psi_arcface(m)(c)[0]
  p = softmax(s * z)
  dpsi = np.where(fall, -(np.sin(m) + m * np.cos(m)), -np.sin(np.arccos(c) + m))
  got = jax.jit(jax.jacrev(lambda m: jaxloss.arcface_loss(f32(x), f32(w), jnp.asarray(y),
                                                          scale=s, margin=m)))(f32(m))
  assert_close(got, s * (p[rows, y] - 1) * dpsi, rtol=1e-4)


def test_margin_softmax_finite_at_cosines_of_exactly_plus_minus_one():
  # Axis-aligned vectors give cosines of exactly 1 and −1, where dψ/dc is unbounded; the
  # cosine's own gradient (ŵ − c x̂)/‖x‖ is exactly 0 there, so the closed form's target term
  # vanishes and the rest is the softmax's.
  w = np.eye(C, D, dtype=np.float32) * 2.0
  x = np.stack([3 * np.eye(D)[0], -np.eye(D)[1], np.eye(D)[2], -0.5 * np.eye(D)[3]]).astype(
      np.float32)
  y = np.array([0, 1, 2, 3])
  cases = [(lambda *a: jaxloss.arcface_loss(*a, scale=64.0), psi_arcface(0.5), 1),
           (lambda *a: jaxloss.arcface_loss(*a, scale=64.0, easy_margin=True),
            psi_arcface(0.5, True), 1),
           (lambda *a: jaxloss.cosface_loss(*a, scale=64.0), psi_cosface(0.35), 1),
           (lambda *a: jaxloss.sphereface_loss(*a, scale=64.0), psi_combined(1.35, 0, 0), 1),
           (lambda *a: jaxloss.margin_softmax_loss(*a, m1=1.7, m2=0.3, m3=0.1),
            psi_combined(1.7, 0.3, 0.1), 1),
           (lambda *a: jaxloss.subcenter_arcface_loss(*a, num_subcenters=1), psi_arcface(0.5), 1)]
  with np.errstate(divide="ignore", invalid="ignore"):
    for fn, psi, k in cases:
      loss, dx, dw = np_margin(x, w, y, 64.0, psi, k)
      value, (gx, gw) = value_and_grads(fn, f32(x), f32(w), jnp.asarray(y))
      assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))
      assert_close(value, loss, rtol=1e-4)
      assert_close(gx, dx, rtol=1e-4)
      assert_close(gw, dw, rtol=1e-4)


def test_target_logit_derivative_at_plus_minus_one_is_its_neighbours():
  # The documented sub-gradient: dψ/dc at c = ±1 is dψ/dc at ±(1 − 2⁻²⁴), the neighbouring
  # float32 inside (−1, 1); the closed form (−1)^k m1 sin(m1θ + m2)/sin θ evaluated there
  # (ArcFace's margin applies at c = 1, below π − m).
  m1, m2, c = (np.array(v, np.float32) for v in zip(
      (1.0, 0.5, 1.0), (1.35, 0.0, -1.0), (1.35, 0.0, 1.0), (1.0, 0.0, 1.0), (1.7, 0.3, -1.0),
      (1.7, 0.3, 1.0), strict=False))
  grad = jax.jit(jax.vmap(jax.grad(lambda c, m1, m2: contrastive._target_logit(
      c, m1, m2, f32(0.0), "sphereface"))))
  got = grad(c, m1, m2)
  want = psi_combined(np.float64(m1), np.float64(m2), 0.0)(np.float64(c) * F32_INSIDE)[1]
  assert np.all(np.isfinite(got))
  assert_close(got, want, rtol=1e-3)


def test_margin_softmax_cosine_rounded_to_one_has_bounded_gradient():
  # x̂·ŵ rounds to exactly 1 in float32 for an angle of 1e-5: dψ/dc is then the neighbour's
  # (~1e3·s) and d cos/dx ~ θ, so the gradient stays of the order of s·sin m, never inf/NaN.
  w = np.eye(C, D, dtype=np.float32)
  x = np.eye(D, dtype=np.float32)[:1] + 1e-5 * np.eye(D, dtype=np.float32)[1:2]
  _, (g,) = value_and_grads(lambda x: jaxloss.arcface_loss(x, f32(w), jnp.array([0])), f32(x),
                            argnums=(0,))
  assert np.all(np.isfinite(g)) and np.max(np.abs(g)) < 64.0


def test_margin_softmax_bfloat16_and_mixed_dtypes(rng):
  x, w, y = margin_problem(rng)
  xb, wb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
  ref = jaxloss.arcface_loss(xb.astype(jnp.float32), wb.astype(jnp.float32), y)
  out = jaxloss.arcface_loss(xb, wb, y)
  assert out.dtype == jnp.bfloat16
  assert_close(out, ref, rtol=1e-2, atol_scale=1e-2)
  mixed = jaxloss.arcface_loss(xb, wb.astype(jnp.float32), y)
  assert mixed.dtype == jnp.float32
  assert_close(mixed, ref)


def test_margin_softmax_bad_label_is_nan_with_zero_gradient_and_checkified(rng):
  x, w, y = margin_problem(rng)
  y = y.copy()
  y[[1, 4]] = [-1, C]
  bad = np.isin(np.arange(N), [1, 4])
  # The bad rows masked out after the loss (as reduce(where=...) does) leave a finite gradient.
  loss, (g,) = value_and_grads(lambda x: jnp.where(bad, 0.0, jaxloss.cosface_loss(
      x, f32(w), jnp.asarray(y))), f32(x), argnums=(0,))
  assert np.all(np.isfinite(loss))
  assert np.all(np.isnan(jaxloss.cosface_loss(f32(x), f32(w), jnp.asarray(y))) == bad)
  g = np.asarray(g)
  assert np.all(g[[1, 4]] == 0) and np.all(np.isfinite(g))
  err, _ = checkify.checkify(lambda: jaxloss.arcface_loss(f32(x), f32(w), jnp.asarray(y)),
                             errors=checkify.user_checks)()
  with pytest.raises(checkify.JaxRuntimeError, match=r"arcface_loss: every label in `labels` "
                                                     r"must be in \[0, 5\), got -1"):
    err.throw()


def test_subcenter_tie_sends_the_gradient_to_the_lowest_subcenter(rng):
  x, w, y = margin_problem(rng)
  w3 = np.repeat(w, 2, axis=0)  # sub-centers 0 and 1 of every class coincide
  loss, (g,) = value_and_grads(lambda w: jaxloss.subcenter_arcface_loss(
      f32(x), w, jnp.asarray(y), num_subcenters=2), f32(w3), argnums=(0,))
  g = np.asarray(g)
  assert np.all(g[1::2] == 0) and np.any(g[0::2] != 0)
  assert_close(loss, jaxloss.arcface_loss(f32(x), f32(w), y))


def test_margin_softmax_vmap_jit_and_forward_mode(rng):
  x, w, y = margin_problem(rng)
  xs = f32(np.stack([x, x[::-1]]))
  ys = jnp.asarray(np.stack([y, y[::-1]]))
  batched = jaxloss.sphereface_loss(xs, f32(w), ys)
  mapped = jax.jit(jax.vmap(jaxloss.sphereface_loss, in_axes=(0, None, 0)))(xs, f32(w), ys)
  assert_close(mapped, batched)
  # forward mode (custom_jvp) against reverse mode, and a finite Hessian-vector product
  v = f32(rng.normal(size=x.shape))
  f = lambda x: jnp.sum(jaxloss.margin_softmax_loss(x, f32(w), y, m1=1.2, m2=0.3))

  @jax.jit
  def modes(x):
    return (jax.jvp(f, (x,), (v,))[1], jnp.sum(jax.grad(f)(x) * v),
            jax.jvp(jax.grad(f), (x,), (v,))[1])

  forward, reverse, hvp = modes(f32(x))
  assert_close(forward, reverse, rtol=1e-4)
  assert np.all(np.isfinite(hvp))


def test_margin_softmax_input_errors(rng):
  x, w, y = margin_problem(rng)
  with pytest.raises(ValueError, match=r"class_weights.*must have shape \(num_classes, D\)"):
    jaxloss.arcface_loss(f32(x), f32(w[:, :3]), y)
  with pytest.raises(ValueError, match="labels.*must have the shape"):
    jaxloss.cosface_loss(f32(x), f32(w), y[:3])
  with pytest.raises(TypeError, match="integer dtype"):
    jaxloss.cosface_loss(f32(x), f32(w), f32(y))
  with pytest.raises(ValueError, match="not divisible by num_subcenters=3"):
    jaxloss.subcenter_arcface_loss(f32(x), f32(w), y, num_subcenters=3)
  with pytest.raises(ValueError, match=r"arcface_loss\(margin=\.\.\.\) must be in \[0\.0, 3\.14"):
    jaxloss.arcface_loss(f32(x), f32(w), y, margin=4.0)
  with pytest.raises(ValueError, match=r"sphereface_loss\(margin=\.\.\.\) must be >= 1\.0"):
    jaxloss.sphereface_loss(f32(x), f32(w), y, margin=0.5)
  with pytest.raises(ValueError, match="fallback"):
    jaxloss.margin_softmax_loss(f32(x), f32(w), y, fallback="other")


# --------------------------------------------------------------------------------------------
# SupCon, InfoNCE, CLIP, SigLIP.
# --------------------------------------------------------------------------------------------

def np_supcon(z, y, tau, tau_b, keep):
  """Khosla et al. 2020, Eq. 2 (L_out), anchor by anchor; dℓ/dL = (τ/τ_b)(softmax − 1_P/|P|).

  Returns the losses, the gradient of their sum in z and in τ.
  """
  z = np.float64(z)
  n = len(z)
  sim = z @ z.T
  logits = sim / tau
  loss, g, dtau = np.zeros(n), np.zeros((n, n)), 0.0
  for i in range(n):
    others = [a for a in range(n) if a != i and keep[a]]
    pos = [p for p in others if y[p] == y[i]]
    if not keep[i] or not pos:
      continue
    lse = logsumexp(logits[i, others])
    mean = np.mean(logits[i, pos]) - lse
    loss[i] = -(tau / tau_b) * mean
    soft = softmax(logits[i, others])
    g[i, others] += (tau / tau_b) * soft
    g[i, pos] -= (tau / tau_b) / len(pos)
    d_mean = -np.mean(sim[i, pos]) / tau ** 2 + np.sum(soft * sim[i, others]) / tau ** 2
    dtau += -mean / tau_b - (tau / tau_b) * d_mean
  return loss, (g + g.T) @ z / tau, dtau


def supcon_problem(rng, n=N):
  z = unit(rng.normal(size=(n, D))).astype(np.float32)
  y = rng.integers(0, 3, n)
  y[0] = 7  # a class of one: no positive
  keep = np.ones(n, bool)
  keep[[2, 5]] = False
  return z, y, keep


def test_supcon_matches_khosla_formula_with_mask_and_lonely_anchor(rng):
  z, y, keep = supcon_problem(rng)
  z[5] = np.nan  # masked: must reach nothing
  tau, tau_b = 0.2, 0.07
  loss, dz, dtau = np_supcon(np.nan_to_num(z), y, tau, tau_b, keep)
  f = lambda z, t: jaxloss.supervised_contrastive_loss(
      z, jnp.asarray(y), temperature=t, base_temperature=tau_b, where=jnp.asarray(keep))
  value, (gz, gt) = value_and_grads(f, f32(z), f32(tau))
  assert_close(value, loss)
  assert loss[0] == 0 and loss[2] == 0 and loss[5] == 0
  assert np.all(gz[5] == 0)
  assert_close(gz, dz, rtol=1e-4)
  assert_close(gt, dtau, rtol=1e-4)


def np_info_nce(q, k, tau, neg):
  q, k = np.float64(q), np.float64(k)
  n = len(q)
  if neg is None:
    logits = q @ k.T / tau
    target = np.arange(n)
  else:
    neg = np.float64(neg)
    negative = q @ neg.T if neg.ndim == 2 else np.einsum("nd,nmd->nm", q, neg)
    logits = np.concatenate([np.sum(q * k, 1, keepdims=True), negative], 1) / tau
    target = np.zeros(n, int)
  loss = logsumexp(logits, 1) - logits[np.arange(n), target]
  g = softmax(logits)  # dℓ/dlogits = softmax − onehot
  g[np.arange(n), target] -= 1
  if neg is None:
    return loss, (g @ k / tau, g.T @ q / tau, None)
  g0, gn = g[:, :1], g[:, 1:]
  if neg.ndim == 2:
    dn = gn.T @ q / tau
    dq = (g0 * k + gn @ neg) / tau
  else:
    dn = gn[..., None] * q[:, None, :] / tau
    dq = (g0 * k + np.einsum("nm,nmd->nd", gn, neg)) / tau
  return loss, (dq, g0 * q / tau, dn)


@pytest.mark.parametrize("negatives", [None, (7, D), (N, 4, D)], ids=["in-batch", "shared",
                                                                      "paired"])
def test_info_nce_matches_oord_formula(rng, negatives):
  q, k = rng.normal(size=(2, N, D)).astype(np.float32)
  neg = None if negatives is None else rng.normal(size=negatives).astype(np.float32)
  loss, grads = np_info_nce(q, k, 0.3, neg)
  if neg is None:
    f = lambda q, k: jaxloss.info_nce_loss(q, k, temperature=0.3)
    args = (f32(q), f32(k))
  else:
    f = lambda q, k, n: jaxloss.info_nce_loss(q, k, temperature=0.3, negatives=n)
    args = (f32(q), f32(k), f32(neg))
  value, got = value_and_grads(f, *args, argnums=tuple(range(len(args))))
  assert_close(value, loss)
  for g, ref in zip(got, grads, strict=False):
    assert_close(g, ref, rtol=1e-4)


def np_clip(x, y, t, keep):
  """Radford et al. 2021, Figure 3, per pair; dΣℓ/dL = ½(P − I) + ½(Q − I) on the kept block."""
  x, y = np.float64(x)[keep], np.float64(y)[keep]
  te = min(t, 100.0)
  sim = x @ y.T
  logits = te * sim
  n = len(x)
  diag = np.diag(logits)
  loss = 0.5 * (logsumexp(logits, 1) - diag + logsumexp(logits, 0) - diag)
  g = 0.5 * (softmax(logits, 1) - np.eye(n)) + 0.5 * (softmax(logits, 0) - np.eye(n))
  full = np.zeros(len(keep))
  full[keep] = loss
  dx, dy = np.zeros((len(keep), D)), np.zeros((len(keep), D))
  dx[keep], dy[keep] = te * g @ y, te * g.T @ x
  return full, dx, dy, np.sum(g * sim) if t <= 100 else 0.0


@pytest.mark.parametrize("t", [3.0, 150.0], ids=["scale", "clamped-scale"])
def test_clip_matches_radford_formula_with_mask(rng, t):
  x, y = (unit(rng.normal(size=(N, D))).astype(np.float32) for _ in range(2))
  keep = np.ones(N, bool)
  keep[[3, 8]] = False
  loss, dx, dy, dt = np_clip(x, y, t, keep)
  f = lambda x, y, t: jaxloss.clip_loss(x, y, logit_scale=t, where=jnp.asarray(keep))
  value, (gx, gy, gt) = value_and_grads(f, f32(x), f32(y), f32(t), argnums=(0, 1, 2))
  assert_close(value, loss)
  assert_close(gx, dx, rtol=1e-4)
  assert_close(gy, dy, rtol=1e-4)
  assert_close(gt, dt, rtol=1e-4, atol=1e-5)


def np_siglip(x, y, t, b):
  """Zhai et al. 2023, Eq. 1 per image; dℓ/dL = −z·σ(−zL)."""
  x, y = np.float64(x), np.float64(y)
  sim = x @ y.T
  logits = t * sim + b
  z = 2 * np.eye(len(x)) - 1
  loss = np.sum(np.logaddexp(0, -z * logits), 1)
  g = -z * expit(-z * logits)
  return loss, t * g @ y, t * g.T @ x, np.sum(g * sim), np.sum(g)


def test_siglip_matches_zhai_formula(rng):
  x, y = (unit(rng.normal(size=(N, D))).astype(np.float32) for _ in range(2))
  loss, *grads = np_siglip(x, y, 10.0, -5.0)
  f = lambda x, y, t, b: jaxloss.siglip_loss(x, y, logit_scale=t, logit_bias=b)
  args = (f32(x), f32(y), f32(10.0), f32(-5.0))
  value, got = value_and_grads(f, *args, argnums=(0, 1, 2, 3))
  assert_close(value, loss)
  for g, ref in zip(got, grads, strict=False):
    assert_close(g, ref, rtol=1e-4)


def test_contrastive_losses_stable_at_temperature_001_and_cosines_of_plus_minus_one():
  # Duplicated and antipodal unit vectors: similarities exactly ±1, logits ±100.
  e = np.eye(D, dtype=np.float32)
  z = np.stack([e[0], e[0], -e[0], e[1], e[1], -e[1]])
  y = np.array([0, 0, 1, 2, 2, 3])
  cases = [
      (lambda z: jaxloss.supervised_contrastive_loss(z, y, temperature=0.01),
       np_supcon(z, y, 0.01, 0.07, np.ones(6, bool))[0]),
      (lambda z: jaxloss.info_nce_loss(z, z, temperature=0.01, negatives=-z),
       np_info_nce(z, z, 0.01, -z)[0]),
      (lambda z: jaxloss.info_nce_loss(z, z[::-1], temperature=0.01),
       np_info_nce(z, z[::-1], 0.01, None)[0]),
      (lambda z: jaxloss.clip_loss(z, z, logit_scale=100.0),
       np_clip(z, z, 100.0, np.ones(6, bool))[0]),
      (lambda z: jaxloss.siglip_loss(z, -z, logit_scale=100.0, logit_bias=-10.0),
       np_siglip(z, -z, 100.0, -10.0)[0]),
  ]
  for fn, ref in cases:
    value, (g,) = value_and_grads(fn, f32(z), argnums=(0,))
    assert_close(value, ref, rtol=1e-5, atol_scale=1e-6)
    assert np.all(np.isfinite(g))


def test_contrastive_vmap_and_forward_mode(rng):
  x, y = rng.normal(size=(2, 3, N, D)).astype(np.float32)
  batched = jax.jit(jax.vmap(lambda a, b: jaxloss.clip_loss(a, b, logit_scale=5.0)))(f32(x),
                                                                                    f32(y))
  for i in range(3):
    assert_close(batched[i], jaxloss.clip_loss(f32(x[i]), f32(y[i]), logit_scale=5.0))
  labels = jnp.asarray(rng.integers(0, 3, N))
  v = f32(rng.normal(size=(N, D)))
  for f in (lambda a: jaxloss.supervised_contrastive_loss(a, labels, temperature=0.5),
            lambda a: jaxloss.info_nce_loss(a, f32(y[0])),
            lambda a: jaxloss.siglip_loss(a, f32(y[0]), logit_scale=3.0, logit_bias=-1.0)):
    def modes(a, f=f):
      total = lambda a: jnp.sum(f(a))
      return jax.jvp(total, (a,), (v,))[1], jnp.sum(jax.grad(total)(a) * v)
    forward, reverse = jax.jit(modes)(f32(x[0]))
    assert_close(forward, reverse, rtol=1e-4)


def test_contrastive_input_errors(rng):
  x = f32(rng.normal(size=(N, D)))
  with pytest.raises(ValueError, match=r"`image_embeddings` and `text_embeddings` must both"):
    jaxloss.clip_loss(x, x[:4], logit_scale=1.0)
  with pytest.raises(ValueError, match=r"clip_loss\(logit_scale=\.\.\.\) must be >= 0\.0"):
    jaxloss.clip_loss(x, x, logit_scale=-1.0)
  with pytest.raises(ValueError, match=r"must be a scalar"):
    jaxloss.siglip_loss(x, x, logit_scale=jnp.ones(2), logit_bias=0.0)
  with pytest.raises(ValueError, match=r"info_nce_loss\(temperature=\.\.\.\) must be > 0\.0"):
    jaxloss.info_nce_loss(x, x, temperature=0.0)
  with pytest.raises(ValueError, match=r"`negatives` must have shape \(M, D\) or \(N, M, D\)"):
    jaxloss.info_nce_loss(x, x, negatives=x[:, :3])
  with pytest.raises(TypeError, match="boolean mask"):
    jaxloss.supervised_contrastive_loss(x, jnp.zeros(N, jnp.int32), where=jnp.ones(N))
  with pytest.raises(ValueError, match=r"`labels` must have shape \(N,\)"):
    jaxloss.supervised_contrastive_loss(x, jnp.zeros(3, jnp.int32))
  with pytest.raises(TypeError, match=r"`labels` must have an integer dtype"):
    jaxloss.supervised_contrastive_loss(x, jnp.zeros(N, jnp.float32))


# --------------------------------------------------------------------------------------------
# Sharded forms.
# --------------------------------------------------------------------------------------------

B = 16


def _sharded_case(name):
  """(sharded loss of (args, mesh), unsharded loss of args, args): every float argument is
  differentiated, the embeddings and the learnable scale, bias or temperature."""
  rng = np.random.default_rng(1)
  x, y = (f32(unit(rng.normal(size=(B, D)))) for _ in range(2))
  keep = jnp.asarray(np.arange(B) % 5 != 3)
  labels = jnp.asarray(rng.integers(0, 4, B))
  if name == "clip":
    return (lambda x, y, t, mesh: jaxloss.sharded_clip_loss(x, y, logit_scale=t, where=keep,
                                                            mesh=mesh),
            lambda x, y, t: jaxloss.clip_loss(x, y, logit_scale=t, where=keep),
            (x, y, f32(7.0)))
  if name == "siglip":
    return (lambda x, y, t, b, mesh: jaxloss.sharded_siglip_loss(x, y, logit_scale=t,
                                                                 logit_bias=b, mesh=mesh),
            lambda x, y, t, b: jaxloss.siglip_loss(x, y, logit_scale=t, logit_bias=b),
            (x, y, f32(10.0), f32(-3.0)))
  return (lambda x, t, mesh: jaxloss.sharded_supervised_contrastive_loss(
              x, labels, temperature=t, where=keep, mesh=mesh),
          lambda x, t: jaxloss.supervised_contrastive_loss(x, labels, temperature=t, where=keep),
          (x, f32(0.2)))


@functools.cache
def _unsharded(name):
  """The unsharded loss's values and gradients, computed once per loss."""
  _, plain, args = _sharded_case(name)
  return value_and_grads(plain, *args, argnums=tuple(range(len(args))))


@pytest.mark.parametrize("shards", [2, 4, 8])
@pytest.mark.parametrize("name", ["clip", "siglip", "supcon"])
def test_sharded_forms_equal_unsharded_values_and_gradients(name, shards):
  sharded, _, args = _sharded_case(name)
  mesh = Mesh(np.array(jax.devices()[:shards]), ("data",))
  value, grads = value_and_grads(functools.partial(sharded, mesh=mesh), *args,
                                 argnums=tuple(range(len(args))))
  ref_value, ref_grads = _unsharded(name)
  assert_close(value, ref_value, rtol=1e-5)
  for g, ref in zip(grads, ref_grads, strict=False):
    assert_close(g, ref, rtol=1e-5, atol_scale=1e-5)


def test_sharded_forms_on_a_two_axis_mesh_with_other_names(rng):
  # The batch over "batch" (4 shards), replicated over "model" (2): the ring's parameter
  # gradients are summed over the ring only.
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("batch", "model"))
  x, y = (f32(unit(rng.normal(size=(B, D)))) for _ in range(2))
  sharded = lambda x, y, t, b: jaxloss.sharded_siglip_loss(
      x, y, logit_scale=t, logit_bias=b, mesh=mesh, batch_axis="batch")
  plain = lambda x, y, t, b: jaxloss.siglip_loss(x, y, logit_scale=t, logit_bias=b)
  args = (x, y, f32(4.0), f32(-1.0))
  value, grads = value_and_grads(sharded, *args, argnums=(0, 1, 2, 3))
  ref_value, ref_grads = value_and_grads(plain, *args, argnums=(0, 1, 2, 3))
  assert_close(value, ref_value)
  for g, ref in zip(grads, ref_grads, strict=False):
    assert_close(g, ref)


def test_sharded_forms_reject_indivisible_batches_and_unknown_axes(rng):
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  x = f32(rng.normal(size=(12, D)))
  with pytest.raises(ValueError, match=r"B=12 is not divisible by the 8 shards of mesh axis"):
    jaxloss.sharded_siglip_loss(x, x, logit_scale=1.0, logit_bias=0.0, mesh=mesh)
  with pytest.raises(ValueError, match=r"batch_axis='batch' is not an axis of the mesh"):
    jaxloss.sharded_clip_loss(x[:8], x[:8], logit_scale=1.0, mesh=mesh, batch_axis="batch")
  with pytest.raises(ValueError, match=r"N=12 is not divisible|B=12 is not divisible"):
    jaxloss.sharded_supervised_contrastive_loss(x, jnp.zeros(12, jnp.int32), mesh=mesh)


def test_ring_siglip_temporary_memory_is_local_block_squared():
  # Compiled, never run, at B = 8 × 1024 on 8 devices: forward + backward per-device temporary
  # memory of the ring is a few B_local × B_local float32 blocks (4 MiB each); the unsharded
  # loss on the same sharded inputs, which XLA's partitioner runs by gathering the texts (as
  # open_clip's gathered loss does), needs B_local × B (32 MiB) and more.
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  b, d = 1024, 64
  spec = jax.ShapeDtypeStruct((8 * b, d), jnp.float32,
                              sharding=NamedSharding(mesh, P("data", None)))

  def temp(loss):
    step = jax.jit(jax.value_and_grad(lambda x, y: jnp.mean(loss(x, y)), argnums=(0, 1)))
    return step.lower(spec, spec).compile().memory_analysis().temp_size_in_bytes

  ring = temp(lambda x, y: jaxloss.sharded_siglip_loss(x, y, logit_scale=10.0, logit_bias=-10.0,
                                                       mesh=mesh))
  gathered = temp(lambda x, y: jaxloss.siglip_loss(x, y, logit_scale=10.0, logit_bias=-10.0))
  block = b * b * 4
  assert ring <= 3 * block
  assert gathered >= 8 * block


# --------------------------------------------------------------------------------------------
# Circle loss and Multi-Similarity loss: the papers' formulas pair by pair, in float64.
# --------------------------------------------------------------------------------------------

def cosine_chain(z, g):
  """d/dz of Σ_ij g_ij S_ij with S_ij = ẑ_i·ẑ_j: (I − ẑ_i ẑ_iᵀ)((g + gᵀ) ẑ)_i / ‖z_i‖."""
  norm = np.linalg.norm(z, axis=1, keepdims=True)
  u = z / norm
  du = (g + g.T) @ u
  return (du - np.sum(du * u, 1, keepdims=True) * u) / norm


def pair_sets(y, i):
  others = [k for k in range(len(y)) if k != i]
  return [k for k in others if y[k] == y[i]], [k for k in others if y[k] != y[i]]


def np_circle(z, y, m, gamma):
  """Sun et al. 2020, Eq. 4 over every (negative, positive) pair of each anchor:
  ℓ = log(1 + Σ_n Σ_p exp(γα_n(s_n − m) − γα_p(s_p − 1 + m))), α held constant in the gradient.

  Returns the losses and the gradient of their sum in z.
  """
  z = np.float64(z)
  s = unit(z) @ unit(z).T
  loss, g = np.zeros(len(z)), np.zeros_like(s)
  for i in range(len(z)):
    pos, neg = pair_sets(y, i)
    if not pos or not neg:
      continue  # an empty double sum: log(1 + 0) = 0
    a_n, a_p = np.maximum(s[i, neg] + m, 0), np.maximum(1 + m - s[i, pos], 0)
    pairs = (gamma * a_n * (s[i, neg] - m))[:, None] - (gamma * a_p * (s[i, pos] - 1 + m))[None]
    loss[i] = logsumexp(np.concatenate([[0.0], pairs.ravel()]))
    w = np.exp(pairs - loss[i])  # dℓ/d(pair term)
    g[i, neg] += w.sum(1) * gamma * a_n
    g[i, pos] -= w.sum(0) * gamma * a_p
  return loss, cosine_chain(z, g)


def np_multi_similarity(z, y, alpha, beta, lam, eps=None):
  """Wang et al. 2019, Eq. 6-7 (mining with ε) and Eq. 10, anchor by anchor; the gradient is
  the pair weights of Eq. 8-9 on the kept pairs. Returns losses, gradient in z, kept counts."""
  z = np.float64(z)
  s = unit(z) @ unit(z).T
  loss, g, kept = np.zeros(len(z)), np.zeros_like(s), []
  for i in range(len(z)):
    pos, neg = pair_sets(y, i)
    if eps is not None:
      neg_kept = [k for k in neg if pos and s[i, k] > min(s[i, pos]) - eps]
      pos_kept = [k for k in pos if neg and s[i, k] < max(s[i, neg]) + eps]
      pos, neg = (pos_kept, neg_kept) if pos_kept and neg_kept else ([], [])
    kept.append(len(pos) + len(neg))
    e_p, e_n = np.exp(-alpha * (s[i, pos] - lam)), np.exp(beta * (s[i, neg] - lam))
    loss[i] = np.log1p(e_p.sum()) / alpha + np.log1p(e_n.sum()) / beta
    g[i, pos] -= e_p / (1 + e_p.sum())
    g[i, neg] += e_n / (1 + e_n.sum())
  return loss, cosine_chain(z, g), np.array(kept)


def pair_problem(rng, n=N):
  """Random (not normalised) embeddings; classes 0-2 and a class of one at anchor 0."""
  z = (rng.normal(size=(n, D)) * rng.uniform(0.5, 2.0, size=(n, 1))).astype(np.float32)
  y = rng.integers(0, 3, n)
  y[0] = 7
  return z, y


def test_circle_loss_matches_sun_formula_and_its_gradient(rng):
  z, y = pair_problem(rng)
  loss, dz = np_circle(z, y, 0.25, 256.0)
  value, (gz,) = value_and_grads(lambda z: jaxloss.circle_loss(z, jnp.asarray(y)), f32(z),
                                 argnums=(0,))
  assert loss[0] == 0 and value[0] == 0  # anchor 0 has no positive: log(1 + 0)
  assert_close(value, loss)
  assert_close(gz, dz, rtol=1e-4)


def values_and_grads_of_each(fns, *xs):
  """[(per-example values, gradient of their sum)] of each fn at each x, in one compilation."""
  def each(x):
    return [jax.value_and_grad(lambda x, f=f: (jnp.sum(f(x)), f(x)), has_aux=True)(x)
            for f in fns]
  out = jax.jit(lambda xs: [each(x) for x in xs])(xs)
  return [[(values, g) for (_, values), g in row] for row in out]


def test_multi_similarity_matches_wang_formula_and_its_gradient(rng):
  z, y = pair_problem(rng)
  y[1] = 8  # a second class of one
  modes = (None, 0.1)  # all pairs, and the paper's mining with ε = 0.1
  fns = [lambda z, e=e: jaxloss.multi_similarity_loss(z, jnp.asarray(y), epsilon=e)
         for e in modes]
  for eps, (value, gz) in zip(modes, values_and_grads_of_each(fns, f32(z))[0], strict=True):
    loss, dz, kept = np_multi_similarity(z, y, 2.0, 50.0, 0.5, eps)
    if eps is not None:  # mining drops pairs here, and empties the lonely anchors
      assert kept.sum() < N * (N - 1) and kept[0] == kept[1] == 0
      assert value[0] == 0 and value[1] == 0
    assert_close(value, loss)
    assert_close(gz, dz, rtol=1e-4)


def test_circle_and_multi_similarity_stable_at_cosines_of_plus_minus_one():
  # Duplicated and antipodal rows: cosines of exactly ±1, where an identical negative has the
  # logit γ(1 + m)(1 − m) = 240 and an antipodal positive γ(2 + m)(1 + m) = 1008 at γ = 256;
  # and a batch of one embedding repeated (every cosine 1).
  e = np.eye(D, dtype=np.float32)
  z = np.stack([e[0], 2 * e[0], -e[0], e[1], -3 * e[1], e[1]])
  y = np.array([0, 1, 0, 2, 2, 3])
  same = np.tile(e[2], (6, 1))
  fns = [lambda z: jaxloss.circle_loss(z, jnp.asarray(y), margin=0.25, gamma=256.0),
         lambda z: jaxloss.multi_similarity_loss(z, jnp.asarray(y), alpha=2.0, beta=50.0)]
  got = values_and_grads_of_each(fns, f32(z), f32(same))
  for x, row in zip((z, same), got, strict=True):
    refs = (np_circle(x, y, 0.25, 256.0)[0], np_multi_similarity(x, y, 2.0, 50.0, 0.5)[0])
    for ref, (value, g) in zip(refs, row, strict=True):
      assert np.all(np.isfinite(value)) and np.all(np.isfinite(g))
      assert_close(value, ref, atol_scale=1e-6)


def test_circle_and_multi_similarity_forward_mode_matches_reverse(rng):
  # Contract 3: jax.jvp works; with α held constant and the mined sets fixed, the tangent is
  # the same linear map as the gradient.
  z, y = pair_problem(rng)
  v = f32(rng.normal(size=z.shape))
  fns = (lambda a: jaxloss.circle_loss(a, jnp.asarray(y)),
         lambda a: jaxloss.multi_similarity_loss(a, jnp.asarray(y)),
         lambda a: jaxloss.multi_similarity_loss(a, jnp.asarray(y), epsilon=0.1))

  def modes(a):
    out = []
    for f in fns:
      total = lambda a, f=f: jnp.sum(f(a))
      out.append((jax.jvp(total, (a,), (v,))[1], jnp.sum(jax.grad(total)(a) * v)))
    return out

  for forward, reverse in jax.jit(modes)(f32(z)):
    assert np.isfinite(forward)
    assert_close(forward, reverse, rtol=1e-4)
