"""Large-vocabulary losses: every mode and option of the cross-entropy, the token
log-probabilities/entropies and the distillation divergences against float64 references written
from the maths, bf16 and float64, vmap, the vocabulary-parallel forms on 8 host devices, memory,
and bad input.

The references build the (N, V) logits in numpy float64; every gradient is written in closed
form (softmax − target for the cross-entropy, onehot − p and −p (log p + H) for the
log-probabilities and the entropy, p − q and its relatives for the divergences) except the
ones in the temperature and the soft cap, which are central differences of the float64 value.
The transforms tests in test_transforms.py cannot take these losses (see the note in its
CASES), so vmap, outer jit, no re-tracing and second derivatives are checked here.
"""

import doctest

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from jax.experimental import checkify
from jax.sharding import Mesh

import jaxloss
from _reference import assert_close, trace_count
from jaxloss import large_vocab

N, D, V = 24, 16, 200
IGNORE = -100
lsce = jaxloss.linear_softmax_cross_entropy
vp_lsce = jaxloss.vocab_parallel_linear_softmax_cross_entropy
MODES = ("none", "mean", "sum")


def _problem(rng, n=N, d=D, v=V, dtype=jnp.float32):
  h = rng.normal(size=(n, d))
  w = rng.normal(size=(d, v)) / np.sqrt(d) * 2.0
  b = rng.normal(size=(v,))
  labels = rng.integers(0, v, size=n)
  labels[[1, 5]] = IGNORE  # used by the ignore_index cases; other cases mask them via `where`
  c = rng.uniform(0.5, 1.5, size=n)  # per-token cotangents: the objective is Σ c_i ℓ_i
  arrays = [jnp.asarray(x, dtype) for x in (h, w, b)]
  return arrays, jnp.asarray(labels, jnp.int32), jnp.asarray(c, jnp.float32)


def _logsumexp(z):
  return scipy.special.logsumexp(z, axis=1)


def reference(h, w, labels, c, *, bias=None, kept=None, z_loss=0.0, label_smoothing=0.0,
              logit_soft_cap=None):
  """float64 loss and the closed-form gradients of Σ c_i ℓ_i (hidden, weight, bias)."""
  h, w, c = (np.asarray(x, np.float64) for x in (h, w, c))
  labels = np.asarray(labels)
  v = w.shape[1]
  kept = np.ones(labels.shape, bool) if kept is None else np.asarray(kept)
  raw = h @ w + (0.0 if bias is None else np.asarray(bias, np.float64)[None, :])
  if logit_soft_cap is None:
    z, dcap = raw, np.ones_like(raw)
  else:
    t = np.tanh(raw / logit_soft_cap)
    z, dcap = logit_soft_cap * t, 1 - t * t
  lse = _logsumexp(z)
  q = (1 - label_smoothing) * np.eye(v)[np.where(kept, labels, 0)] + label_smoothing / v
  loss = np.where(kept, lse - np.sum(q * z, axis=1) + z_loss * lse**2, 0.0)
  softmax = np.exp(z - lse[:, None])
  # dℓ/dz = (1 + 2·z_loss·lse)·softmax − q; through the cap: × (1 − tanh²).
  g = ((c * kept)[:, None] * ((1 + 2 * z_loss * lse)[:, None] * softmax - q)) * dcap
  return loss, g @ w.T, h.T @ g, g.sum(axis=0)


def _coefficients(mode, c, kept):
  """The objective's weights per token: the cotangents (none), 1/count (mean), 1 (sum)."""
  kept = np.asarray(kept, np.float64)
  if mode == "none":
    return np.asarray(c, np.float64)
  return kept / max(kept.sum(), 1) if mode == "mean" else kept


def _value_and_grads(fn, h, w, b, labels, c, use_bias, mode="none", **kwargs):
  """The loss (per token or reduced) and the gradients (hidden, weight, bias) of Σ c_i ℓ_i
  (``mode="none"``) or of the reduced loss."""
  def objective(h, w, b):
    loss = fn(h, w, labels, bias=b if use_bias else None, reduction=mode, **kwargs)
    return (jnp.sum(c * loss) if mode == "none" else loss), loss
  # One jit (labels and options closed over): one compilation, not eager autodiff's pieces.
  (_, loss), grads = jax.jit(jax.value_and_grad(objective, argnums=(0, 1, 2),
                                                has_aux=True))(h, w, b)
  return loss, grads


def _assert_matches(loss, grads, ref, use_bias, mode="none", coef=None, rtol=1e-4):
  if mode == "none":
    assert loss.shape == (N,) and loss.dtype == jnp.float32
    assert_close(loss, ref[0])
  else:
    assert loss.shape == () and loss.dtype == jnp.float32
    assert_close(loss, np.sum(coef * ref[0]))
  for got, want in zip(grads[:2], ref[1:3], strict=False):
    assert_close(got, want, rtol=rtol)
  if use_bias:
    assert_close(grads[2], ref[3], rtol=rtol)
  else:
    np.testing.assert_array_equal(grads[2], 0.0)


# (name, use_bias, kwargs, chunk_size, token_chunk_size, modes). 64 divides neither V = 200
# nor 7 N = 24 (shifted last chunk and block); None is the default tiling (one tile here).
# "sum" differs from "mean" only in the reduction's coefficients: checked in two configs.
CONFIGS = [
    ("plain", False, {}, 64, 7, MODES),
    ("everything", True, {"z_loss": 1e-3, "label_smoothing": 0.2, "logit_soft_cap": 4.0,
                          "ignore_index": IGNORE}, 64, 7, MODES),
    ("where-default-tiles", True, {"label_smoothing": 0.1, "z_loss": 1e-2,
                                   "logit_soft_cap": 3.0}, None, None, ("none", "mean")),
]


@pytest.mark.parametrize("name,use_bias,kwargs,chunk_size,token_chunk_size,modes", CONFIGS,
                         ids=[c[0] for c in CONFIGS])
def test_every_mode_matches_float64_reference(rng, name, use_bias, kwargs, chunk_size,
                                              token_chunk_size, modes):
  # Liger-Kernel #1298 shipped a wrong weight gradient in one mode: every mode x option is
  # checked against the naive loss, values and gradients in hidden, weight and bias.
  (h, w, b), labels, c = _problem(rng)
  kept = labels != IGNORE
  if "ignore_index" not in kwargs:
    labels = jnp.where(kept, labels, 0)
    kwargs = {**kwargs, "where": kept}  # the same tokens dropped through the mask
  ref_kwargs = {k: v for k, v in kwargs.items() if k not in ("where", "ignore_index")}
  results = {}
  for mode in modes:
    coef = _coefficients(mode, c, kept)
    loss, grads = _value_and_grads(lsce, h, w, b, labels, c, use_bias, mode,
                                   chunk_size=chunk_size, token_chunk_size=token_chunk_size,
                                   **kwargs)
    ref = reference(h, w, labels, coef, bias=b if use_bias else None, kept=kept, **ref_kwargs)
    _assert_matches(loss, grads, ref, use_bias, mode, coef)
    results[mode] = loss, grads
  # The modes against each other, tighter than against the reference.
  per_token = jnp.where(kept, results["none"][0], 0.0)
  assert_close(float(results["mean"][0]) * float(np.sum(kept)), jnp.sum(per_token), rtol=1e-6)
  if "sum" in results:
    assert_close(results["sum"][0], jnp.sum(per_token), rtol=1e-6)


def test_hyperparameter_gradients_agree_across_modes(rng):
  (h, w, b), labels, _ = _problem(rng)
  labels = jnp.abs(labels) % V

  def objective(mode):
    def f(cap, z, eps):
      loss = lsce(h, w, labels, bias=b, logit_soft_cap=cap, z_loss=z, label_smoothing=eps,
                  chunk_size=64, token_chunk_size=7, reduction=mode)
      return jnp.mean(loss) if mode == "none" else loss
    return jax.grad(f, argnums=(0, 1, 2))(jnp.float32(3.0), jnp.float32(1e-2), jnp.float32(0.1))

  def ref(cap, z, eps):
    return np.mean(reference(h, w, labels, np.ones(N), bias=b, z_loss=z, label_smoothing=eps,
                             logit_soft_cap=cap)[0])

  # d/d(cap, z_loss, ε) of the float64 reference by central differences (smooth in each).
  point, step = np.array([3.0, 1e-2, 0.1]), 1e-6
  numeric = [(ref(*(point + step * e)) - ref(*(point - step * e))) / (2 * step)
             for e in np.eye(3)]
  for mode in ("none", "mean"):
    assert_close(objective(mode), numeric, rtol=1e-3)


def test_matches_optax_on_explicit_logits(rng):
  import optax
  (h, w, _), labels, _ = _problem(rng)
  labels = jnp.abs(labels) % V
  assert_close(lsce(h, w, labels, chunk_size=64),
               optax.softmax_cross_entropy_with_integer_labels(h @ w, labels), rtol=1e-5)


@pytest.mark.parametrize("mode", ("none", "mean"))
def test_bfloat16_within_bfloat16_tolerance(rng, mode):
  (h, w, b), labels, c = _problem(rng, dtype=jnp.bfloat16)
  labels = jnp.abs(labels) % V
  loss, grads = _value_and_grads(lsce, h, w, b, labels, c, True, mode, chunk_size=64,
                                 token_chunk_size=7, z_loss=1e-3)
  assert loss.dtype == jnp.float32
  assert [g.dtype for g in grads] == [jnp.bfloat16] * 3
  coef = _coefficients(mode, c, np.ones(N, bool))
  ref = reference(h.astype(jnp.float32), w.astype(jnp.float32), labels, coef,
                  bias=b.astype(jnp.float32), z_loss=1e-3)
  # The products of bf16 inputs are exact in float32.
  assert_close(loss, ref[0] if mode == "none" else np.sum(coef * ref[0]), rtol=1e-4)
  for got, want in zip(grads, ref[1:], strict=False):
    assert_close(got, want, rtol=2e-2, atol_scale=2e-2)  # dlogits rounded to bf16 (2⁻⁸)


def test_float64_inputs_are_computed_in_float64(rng):
  # Issue 20 item 8: float64 in, float64 out, computed in float64 (the docstring's promise).
  (h, w, b), labels, c = _problem(rng)
  labels = jnp.abs(labels) % V
  h64, w64, b64 = (np.asarray(x, np.float64) for x in (h, w, b))
  ref = reference(h64, w64, labels, np.ones(N), bias=b64, z_loss=1e-3)
  with jax.enable_x64(True):
    args = [jnp.asarray(x, jnp.float64) for x in (h64, w64, b64)]
    for mode in ("none", "mean"):
      loss, grads = _value_and_grads(lsce, *args, labels, jnp.ones(N, jnp.float64), True, mode,
                                     chunk_size=64, token_chunk_size=7, z_loss=1e-3)
      assert loss.dtype == jnp.float64 and all(g.dtype == jnp.float64 for g in grads)
      scale = 1.0 if mode == "none" else 1 / N
      np.testing.assert_allclose(loss, ref[0] if mode == "none" else np.mean(ref[0]),
                                 rtol=1e-12)
      for got, want in zip(grads, ref[1:], strict=False):
        np.testing.assert_allclose(got, scale * want, rtol=1e-10, atol=1e-13)
    logp = jaxloss.linear_token_log_probs(args[0], args[1], labels, chunk_size=64)
    assert logp.dtype == jnp.float64
  x = h64 @ w64
  want = np.take_along_axis(x, np.asarray(labels)[:, None], 1)[:, 0] - _logsumexp(x)
  np.testing.assert_allclose(logp, want, rtol=1e-12)


@pytest.mark.parametrize("mode", ("none", "mean"))
def test_large_logits_stay_finite(rng, mode):
  (h, w, b), labels, c = _problem(rng)
  labels = jnp.abs(labels) % V
  h = h * 2e3  # logits of magnitude ~1e4: exp would overflow without the running max
  loss, grads = _value_and_grads(lsce, h, w, b, labels, c, False, mode, chunk_size=64)
  coef = _coefficients(mode, c, np.ones(N, bool))
  ref = reference(h, w, labels, coef)
  assert_close(loss, ref[0] if mode == "none" else np.sum(coef * ref[0]))
  assert all(np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize("mode", ("none", "mean"))
def test_dropped_tokens_with_nan_hidden_give_zero_and_finite_gradients(rng, mode):
  (h, w, b), labels, c = _problem(rng)
  h = h.at[1].set(jnp.nan)  # token 1 has label IGNORE
  loss, grads = _value_and_grads(lsce, h, w, b, labels, c, True, mode, ignore_index=IGNORE,
                                 chunk_size=64, token_chunk_size=7)
  assert np.all(np.isfinite(loss)) and (mode != "none" or loss[1] == 0)
  assert all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_array_equal(grads[0][1], 0.0)


def test_fully_masked_mean_is_zero_with_zero_gradient(rng):
  (h, w, _), labels, _ = _problem(rng)
  loss, grads = jax.value_and_grad(
      lambda h, w: lsce(h, w, labels, where=jnp.zeros(N, bool), reduction="mean"), (0, 1))(h, w)
  assert loss == 0
  for g in grads:
    np.testing.assert_array_equal(g, 0.0)


def test_bad_label_gives_nan_and_checkify_names_it(rng):
  (h, w, _), labels, _ = _problem(rng)
  labels = (jnp.abs(labels) % V).at[3].set(V + 7).at[4].set(-3)
  loss = lsce(h, w, labels)
  assert np.isnan(loss[3]) and np.isnan(loss[4])
  assert np.all(np.isfinite(np.delete(np.asarray(loss), [3, 4])))
  err, _ = checkify.checkify(lambda *a: lsce(*a), errors=checkify.user_checks)(h, w, labels)
  with pytest.raises(checkify.JaxRuntimeError, match=str(V + 7)):
    err.throw()
  # The fused mode: a NaN sum, a zero gradient at the bad tokens, the others' unchanged.
  value, grads = jax.value_and_grad(
      lambda h, w: lsce(h, w, labels, reduction="sum", chunk_size=64), (0, 1))(h, w)
  assert np.isnan(value)
  good = np.ones(N, bool)
  good[[3, 4]] = False
  ref = reference(h, w, jnp.where(jnp.asarray(good), labels, 0), np.ones(N), kept=good)
  np.testing.assert_array_equal(grads[0][3:5], 0.0)
  for got, want in zip(grads, ref[1:3], strict=False):
    assert_close(got, want, rtol=1e-4)


def test_return_lse_in_every_mode(rng):
  (h, w, b), labels, _ = _problem(rng)
  lse_ref = _logsumexp(np.float64(h) @ np.float64(w) + np.float64(b))
  kept = labels != IGNORE
  for mode in ("none", "mean"):
    _, lse = lsce(h, w, labels, bias=b, ignore_index=IGNORE, reduction=mode, return_lse=True,
                  chunk_size=64)
    assert_close(lse, np.where(kept, lse_ref, 0.0))
  # Differentiable with reduction="none": d lse / dz = softmax.
  grad = jax.grad(lambda h: jnp.sum(lsce(h, w, labels, bias=b, ignore_index=IGNORE,
                                         return_lse=True, chunk_size=64)[1]))(h)
  p = np.exp(np.float64(h) @ np.float64(w) + np.float64(b) - lse_ref[:, None])
  assert_close(grad, (np.asarray(kept)[:, None] * p) @ np.float64(w).T, rtol=1e-4)


def test_vmap_over_batch_and_time_matches_reshape(rng):
  (h, w, _), labels, _ = _problem(rng)
  labels = jnp.abs(labels) % V
  h3, labels2 = h.reshape(4, 6, D), labels.reshape(4, 6)

  def mean_vmapped(h3, w):
    return jnp.mean(jax.vmap(lambda x, y: lsce(x, w, y, chunk_size=64))(h3, labels2))

  def mean_flat(h3, w):
    return lsce(h3.reshape(-1, D), w, labels2.reshape(-1), chunk_size=64, reduction="mean")

  chex.assert_trees_all_close(jax.jit(jax.value_and_grad(mean_vmapped, (0, 1)))(h3, w),
                              jax.jit(jax.value_and_grad(mean_flat, (0, 1)))(h3, w), rtol=1e-5,
                              atol=1e-7)
  # Per-example gradients (weight mapped too) against a Python loop.
  per_example = jax.jit(jax.vmap(jax.grad(lambda x, w, y: jnp.sum(lsce(x, w, y, chunk_size=64)),
                                          argnums=1), in_axes=(0, None, 0)))(h3, w, labels2)
  per_token_sum = jax.jit(jax.grad(lambda w, x, y: jnp.sum(lsce(x, w, y, chunk_size=64))))
  looped = jnp.stack([per_token_sum(w, h3[i], labels2[i]) for i in range(4)])
  chex.assert_trees_all_close(per_example, looped, rtol=1e-5, atol=1e-6)


def test_outer_jit_and_no_retrace_on_new_values(rng):
  (h, w, b), labels, _ = _problem(rng)
  labels = jnp.abs(labels) % V
  kwargs = {"chunk_size": 64, "z_loss": 1e-3, "label_smoothing": 0.1, "reduction": "mean"}
  first = lsce(h, w, labels, bias=b, **kwargs)
  chex.assert_trees_all_close(jax.jit(lambda *a: lsce(*a, bias=b, **kwargs))(h, w, labels),
                              first, rtol=1e-6)
  traces = trace_count(lsce)
  lsce(h + 0.5, w * 2, labels[::-1], bias=b, **{**kwargs, "z_loss": 2e-3,
                                                 "label_smoothing": 0.3})
  assert trace_count(lsce) == traces  # float hyper-parameters are traced


def test_second_derivative_reverse_over_reverse(rng):
  # Reverse mode only (custom_vjp): a Hessian-vector product by grad of grad, the building
  # block of jax.jacrev(jax.grad(...)), against explicit logits.
  (h, w, _), labels, _ = _problem(rng, n=6, d=4, v=10)
  labels = jnp.abs(labels) % 10
  u = jnp.asarray(rng.normal(size=h.shape), jnp.float32)

  def naive(x):
    z = x @ w
    return jnp.sum(jax.nn.logsumexp(z, axis=1) - jnp.take_along_axis(z, labels[:, None], 1)[:, 0])

  def hvp(f):
    return jax.jit(jax.grad(lambda x: jnp.vdot(jax.grad(f)(x), u)))(h)

  assert_close(hvp(lambda x: jnp.sum(lsce(x, w, labels, chunk_size=4))), hvp(naive), rtol=1e-4)
  # The distillation's first pass (both log-sum-exps) runs inside its custom_vjp's forward
  # rule, so the second derivative sees how they depend on the student.
  ht = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)
  wt = jnp.asarray(rng.normal(size=(3, 10)), jnp.float32)
  assert_close(hvp(lambda x: jnp.sum(jaxloss.linear_distillation_loss(x, w, ht, wt, beta=0.3,
                                                                      chunk_size=4))),
               hvp(lambda x: jnp.sum(jaxloss.generalized_jsd(x @ w, ht @ wt, beta=0.3))),
               rtol=1e-4, atol_scale=1e-4)


def test_no_n_by_v_temporary():
  # Structural, not timing: forward + backward compiled (never run) at N=2048, D=64, V=65536
  # needs a temporary far below one (N, V) float32 array (512 MiB) in every mode (the fused
  # one holds a block's (T, V) logits, 64 MiB, and the float32 (D, V) weight gradient, 16
  # MiB); the naive one needs more.
  n, d, v = 2048, 64, 65536
  specs = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((d, v), jnp.float32),
           jax.ShapeDtypeStruct((n,), jnp.int32))

  def temp(loss):
    step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    return step.lower(*specs).compile().memory_analysis().temp_size_in_bytes

  assert temp(lambda h, w, y: jnp.mean(lsce(h, w, y))) < n * v * 4 / 4
  assert temp(lambda h, w, y: lsce(h, w, y, reduction="mean")) < n * v * 4 / 2
  assert temp(lambda h, w, y: jnp.mean(jax.nn.logsumexp(h @ w, axis=1))) >= n * v * 4


# ------------------------------------------------------------------- vocabulary-parallel


# Each mesh shape in one mode (a shard_map compilation is the file's most expensive): both
# modes and both shapes are covered.
@pytest.mark.parametrize("shape,axes,use_bias,mode", [
    ((2, 4), ("data", "model"), True, "none"),
    ((4, 2), ("batch", "vocab"), False, "mean")], ids=["2x4-none", "4x2-other-names-no-bias-mean"])
def test_vocab_parallel_matches_reference(rng, shape, axes, use_bias, mode):
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(shape), axes)
  (h, w, b), labels, c = _problem(rng)
  kept = labels != IGNORE
  # 16 divides neither V/4 = 50 nor V/2 = 100; 5 tokens per block divides neither 12 nor 6.
  options = {"z_loss": 1e-3, "label_smoothing": 0.1, "logit_soft_cap": 4.0}
  kwargs = {**options, "ignore_index": IGNORE, "chunk_size": 16, "token_chunk_size": 5,
            "batch_axis": axes[0], "vocab_axis": axes[1]}
  loss, grads = _value_and_grads(lambda *a, **k: vp_lsce(*a, mesh=mesh, **k), h, w, b, labels,
                                 c, use_bias, mode, **kwargs)
  coef = _coefficients(mode, c, kept)
  ref = reference(h, w, labels, coef, bias=b if use_bias else None, kept=kept, **options)
  _assert_matches(loss, grads, ref, use_bias, mode, coef)


def test_vocab_parallel_indivisible_vocabulary_names_both_numbers(rng):
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  (h, w, _), labels, _ = _problem(rng, v=202)
  with pytest.raises(ValueError, match=r"V=202.*\b4 shards"):
    vp_lsce(h, w, jnp.abs(labels) % 202, mesh=mesh)


# ------------------------------------------------------------------- token log-probabilities

TEMP = 0.8


def log_prob_reference(h, w, b, labels, u, r, temperature=TEMP, kept=None):
  """float64 log p(label), entropy, and the closed-form gradients of Σ u·log p + r·H."""
  h, w, b, u, r = (np.asarray(x, np.float64) for x in (h, w, b, u, r))
  labels = np.asarray(labels)
  kept = np.ones(labels.shape, bool) if kept is None else kept
  x = (h @ w + b) / temperature
  log_p = x - _logsumexp(x)[:, None]
  p = np.exp(log_p)
  entropy = -np.sum(p * log_p, axis=1)
  onehot = np.eye(w.shape[1])[np.where(kept, labels, 0)]
  # d log p_y / dx = onehot − p; dH/dx = −p (log p + H); then dx/d(hW + b) = 1/T.
  g = (u[:, None] * (onehot - p) - r[:, None] * p * (log_p + entropy[:, None]))
  g = kept[:, None] * g / temperature
  log_p_y = np.take_along_axis(log_p, np.where(kept, labels, 0)[:, None], 1)[:, 0]
  return (np.where(kept, log_p_y, 0.0), np.where(kept, entropy, 0.0), g @ w.T, h.T @ g,
          g.sum(axis=0))


def test_token_log_probs_and_entropy_match_float64_reference(rng):
  (h, w, b), labels, u = _problem(rng)
  r = jnp.asarray(rng.normal(size=N), jnp.float32)
  where = jnp.arange(N) % 5 != 3  # padding, besides the two IGNORE labels
  kept = (labels != IGNORE) & where

  def objective(h, w, b, t):
    log_p, entropy = jaxloss.linear_token_log_probs(
        h, w, labels, bias=b, where=where, temperature=t, return_entropy=True,
        ignore_index=IGNORE, chunk_size=64, token_chunk_size=7)
    return jnp.sum(u * log_p + r * entropy), (log_p, entropy)

  (_, (log_p, entropy)), grads = jax.jit(jax.value_and_grad(objective, (0, 1, 2, 3), has_aux=True))(
      h, w, b, jnp.float32(TEMP))
  ref = log_prob_reference(h, w, b, labels, u, r, kept=np.asarray(kept))
  assert log_p.dtype == entropy.dtype == jnp.float32
  assert_close(log_p, ref[0])
  assert_close(entropy, ref[1])
  for got, want in zip(grads[:3], ref[2:], strict=False):
    assert_close(got, want, rtol=1e-4)

  def value(t):  # the temperature's gradient: central differences of the float64 value
    lp, ent = log_prob_reference(h, w, b, labels, u, r, t, kept=np.asarray(kept))[:2]
    return np.sum(np.float64(u) * lp + np.float64(r) * ent)
  assert_close(grads[3], (value(TEMP + 1e-6) - value(TEMP - 1e-6)) / 2e-6, rtol=1e-3)
  # Explicit logits through jaxloss.token_log_probs / token_entropy give the same numbers.
  x = (h @ w + b[None, :]) / TEMP
  y = jnp.where(kept, labels, 0)
  assert_close(log_p, jnp.where(kept, jaxloss.token_log_probs(x, y), 0.0), rtol=1e-5)
  assert_close(entropy, jnp.where(kept, jaxloss.token_entropy(x), 0.0), rtol=1e-5)


def test_token_log_probs_bad_label_gives_nan_with_zero_gradient(rng):
  (h, w, _), labels, u = _problem(rng)
  labels = (jnp.abs(labels) % V).at[3].set(V)
  log_p, grad = jax.value_and_grad(
      lambda h: jnp.sum(jnp.where(jnp.arange(N) == 3, 0.0,
                                  jaxloss.linear_token_log_probs(h, w, labels, chunk_size=64))))(h)
  assert np.isfinite(log_p)
  np.testing.assert_array_equal(grad[3], 0.0)
  assert np.isnan(jaxloss.linear_token_log_probs(h, w, labels, chunk_size=64)[3])
  err, _ = checkify.checkify(lambda *a: jaxloss.linear_token_log_probs(*a),
                             errors=checkify.user_checks)(h, w, labels)
  with pytest.raises(checkify.JaxRuntimeError, match=str(V)):
    err.throw()


# ------------------------------------------------------------------- distillation

DT = 12  # the teacher's hidden width


def distillation_reference(hs, ws, ht, wt, divergence, beta, temperature, u, kept=None):
  """float64 per-token divergence and the closed-form gradients of Σ u·D (student hidden,
  weight), and, for the JSD, d/dβ = KL(q ‖ m) − KL(p ‖ m)."""
  hs, ws, ht, wt, u = (np.asarray(x, np.float64) for x in (hs, ws, ht, wt, u))
  kept = np.ones(hs.shape[0], bool) if kept is None else kept
  zs, zt = hs @ ws / temperature, ht @ wt / temperature
  lp, lq = zs - _logsumexp(zs)[:, None], zt - _logsumexp(zt)[:, None]
  p, q = np.exp(lp), np.exp(lq)
  d_beta = np.zeros(hs.shape[0])
  if divergence == "forward_kl" or (divergence == "jsd" and beta == 0):
    value = np.sum(q * (lq - lp), axis=1)
    g = p - q  # cross-entropy's gradient
  elif divergence == "reverse_kl" or (divergence == "jsd" and beta == 1):
    value = np.sum(p * (lp - lq), axis=1)
    g = p * (lp - lq - value[:, None])  # p ⊙ (g − ⟨p, g⟩), g = log p − log q + 1
  else:
    lm = np.log((1 - beta) * p + beta * q)
    kq, kp = np.sum(q * (lq - lm), axis=1), np.sum(p * (lp - lm), axis=1)
    value = beta * kq + (1 - beta) * kp
    g = (1 - beta) * p * (lp - lm - kp[:, None])  # the terms through m cancel
    d_beta = kq - kp
  g = (u * kept)[:, None] * g / temperature
  return np.where(kept, value, 0.0), g @ ws.T, hs.T @ g, np.sum(u * kept * d_beta)


def _distillation_problem(rng):
  (hs, ws, _), _, u = _problem(rng)
  ht = jnp.asarray(rng.normal(size=(N, DT)), jnp.float32)
  wt = jnp.asarray(rng.normal(size=(DT, V)) / np.sqrt(DT) * 3.0, jnp.float32)
  return hs, ws, ht, wt, u


@pytest.mark.parametrize("divergence,betas", [("jsd", (0.3, 0.0, 1.0)), ("forward_kl", (0.5,)),
                                              ("reverse_kl", (0.5,))])
def test_distillation_matches_float64_reference(rng, divergence, betas):
  hs, ws, ht, wt, u = _distillation_problem(rng)
  kept = np.ones(N, bool)
  kept[[2, 9]] = False
  ht_nan = ht.at[2].set(jnp.nan)  # a dropped token: no NaN may leak

  def objective(hs, ws, ht, wt, beta, t):
    value = jaxloss.linear_distillation_loss(hs, ws, ht, wt, divergence=divergence, beta=beta,
                                             temperature=t, where=jnp.asarray(kept),
                                             chunk_size=64, token_chunk_size=7)
    return jnp.sum(u * value), value

  for beta in betas:  # one compilation: β is traced
    (_, value), grads = jax.jit(jax.value_and_grad(objective, (0, 1, 2, 3, 4, 5), has_aux=True))(
        hs, ws, ht_nan, wt, jnp.float32(beta), jnp.float32(TEMP))
    ref = distillation_reference(hs, ws, ht, wt, divergence, beta, TEMP, u, kept)
    assert_close(value, ref[0], rtol=2e-5)
    assert_close(grads[0], ref[1], rtol=1e-4)
    assert_close(grads[1], ref[2], rtol=1e-4)
    for g in grads[2:4]:  # the teacher is not differentiated
      np.testing.assert_array_equal(g, 0.0)
    assert_close(grads[4], ref[3], rtol=1e-4, atol=1e-5)

    def total(t, beta=beta):  # the temperature: central differences of the float64 value
      return np.sum(np.float64(u) * distillation_reference(hs, ws, ht, wt, divergence, beta, t,
                                                           u, kept)[0])
    assert_close(grads[5], (total(TEMP + 1e-6) - total(TEMP - 1e-6)) / 2e-6, rtol=1e-3)
  # The explicit logits through jaxloss.generalized_jsd give the same numbers.
  if divergence == "jsd":
    explicit = jaxloss.generalized_jsd(hs @ ws, ht @ wt, beta=betas[-1], temperature=TEMP)
    assert_close(value, np.where(kept, explicit, 0.0), rtol=1e-5)


def test_distillation_on_a_mesh_matches_reference(rng):
  # Both weights sharded over the vocabulary (4 shards: 16 divides no shard's 50 columns), the
  # hidden states over the tokens (2 shards of 12, blocks of 5).
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  hs, ws, ht, wt, u = _distillation_problem(rng)
  value, grads = jax.value_and_grad(lambda hs, ws: jnp.sum(u * jaxloss.linear_distillation_loss(
      hs, ws, ht, wt, beta=0.4, temperature=TEMP, chunk_size=16, token_chunk_size=5,
      mesh=mesh)), (0, 1))(hs, ws)
  ref = distillation_reference(hs, ws, ht, wt, "jsd", 0.4, TEMP, u)
  assert_close(value, np.sum(np.float64(u) * ref[0]))
  for got, want in zip(grads, ref[1:3], strict=False):
    assert_close(got, want, rtol=1e-4)


def test_memory_of_fused_log_probs_and_distillation_is_tiled():
  # Compiled only: at N=2048, V=65536 neither keeps an (N, V) float32 array (512 MiB), only
  # a few (T, c) = (2048, 4096) float32 tiles (32 MiB each: 3 for the entropy's, 4 for two
  # heads' divergence).
  n, d, v = 2048, 64, 65536
  f32 = jnp.float32
  h, w = jax.ShapeDtypeStruct((n, d), f32), jax.ShapeDtypeStruct((d, v), f32)
  y = jax.ShapeDtypeStruct((n,), jnp.int32)

  def log_probs(h, w, y):
    log_p, entropy = jaxloss.linear_token_log_probs(h, w, y, return_entropy=True)
    return jnp.sum(log_p + entropy)

  def distill(h, w):
    return jnp.sum(jaxloss.linear_distillation_loss(h, w, h, w))

  for fn, specs in ((log_probs, (h, w, y)), (distill, (h, w))):
    compiled = jax.jit(jax.value_and_grad(fn, (0, 1))).lower(*specs).compile()
    assert compiled.memory_analysis().temp_size_in_bytes < n * v * 4 / 3


# ------------------------------------------------------------------- bad input, docs


@pytest.mark.parametrize("call,error,match", [
    (lambda h, w, y: lsce(h, w[:-1], y), ValueError, r"hidden.shape=\(24, 16\).*weight.shape"),
    (lambda h, w, y: lsce(h, w, y[:-1]), ValueError, r"hidden.shape.*labels.shape=\(23,\)"),
    (lambda h, w, y: lsce(h[None], w, y), ValueError, "hidden.shape"),
    (lambda h, w, y: lsce(h, w, y, bias=w[:, 0]), ValueError,
     r"weight.shape=\(16, 200\) and bias.shape=\(16,\)"),
    (lambda h, w, y: lsce(h, w, y, where=y), TypeError, "where"),
    (lambda h, w, y: lsce(h, w, y.astype(jnp.float32)), TypeError, "labels"),
    (lambda h, w, y: lsce(y[:, None], w[:1], y), TypeError, "hidden"),
    (lambda h, w, y: lsce(h, w, y, chunk_size=0), ValueError, "chunk_size"),
    (lambda h, w, y: lsce(h, w, y, token_chunk_size=-2), ValueError, "token_chunk_size"),
    (lambda h, w, y: lsce(h, w, y, reduction="avg"), ValueError, r"reduction=\.\.\.\)"),
    (lambda h, w, y: lsce(h, w, y, z_loss=-1.0), ValueError, r"z_loss=\.\.\.\) must be >= 0"),
    (lambda h, w, y: lsce(h, w, y, label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda h, w, y: lsce(h, w, y, logit_soft_cap=0.0), ValueError, "logit_soft_cap"),
    (lambda h, w, y: jaxloss.linear_token_log_probs(h, w, y, temperature=0.0), ValueError,
     "temperature"),
    (lambda h, w, y: jaxloss.linear_distillation_loss(h, w, h, w, divergence="kl"), ValueError,
     "divergence"),
    (lambda h, w, y: jaxloss.linear_distillation_loss(h, w, h[:-1], w), ValueError,
     r"teacher_hidden.shape=\(23, 16\)"),
    (lambda h, w, y: jaxloss.linear_distillation_loss(h, w, h, w, beta=1.5), ValueError, "beta"),
])
def test_bad_input_raises(rng, call, error, match):
  (h, w, _), labels, _ = _problem(rng)
  with pytest.raises(error, match=match):
    call(h, w, jnp.abs(labels) % V)


def test_docstring_examples():
  result = doctest.testmod(large_vocab, optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0


def test_empty_batch_gives_empty_losses_and_zero_gradients():
  h, w, y = jnp.zeros((0, 4)), jnp.ones((4, 12)), jnp.zeros((0,), jnp.int32)
  for mode in MODES:
    value, grad = jax.value_and_grad(lambda h, mode=mode: jnp.sum(
        lsce(h, w, y, reduction=mode, chunk_size=5)))(h)
    assert value == 0 and grad.shape == (0, 4)
  log_p, entropy = jaxloss.linear_token_log_probs(h, w, y, return_entropy=True)
  assert log_p.shape == entropy.shape == (0,)
  assert jaxloss.linear_distillation_loss(h, w, h, w).shape == (0,)
