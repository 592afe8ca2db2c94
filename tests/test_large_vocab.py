"""Large-vocabulary cross-entropy: values and gradients against a float64 reference written from
the maths, bf16, vmap, the vocabulary-parallel form on 8 host devices, memory, and bad input.

The transforms tests in test_transforms.py cannot take these losses (see the note in its
CASES), so vmap, outer jit, no re-tracing and second derivatives are checked here.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from jax.experimental import checkify
from jax.sharding import Mesh

import jaxloss
from _reference import assert_close

N, D, V = 24, 16, 200
IGNORE = -100
lsce = jaxloss.linear_softmax_cross_entropy
vp_lsce = jaxloss.vocab_parallel_linear_softmax_cross_entropy


def _problem(rng, n=N, d=D, v=V, dtype=jnp.float32):
  h = rng.normal(size=(n, d))
  w = rng.normal(size=(d, v)) / np.sqrt(d) * 2.0
  b = rng.normal(size=(v,))
  labels = rng.integers(0, v, size=n)
  labels[[1, 5]] = IGNORE  # used by the ignore_index cases; other cases mask them via `where`
  c = rng.uniform(0.5, 1.5, size=n)  # per-token cotangents: the objective is Σ c_i ℓ_i
  arrays = [jnp.asarray(x, dtype) for x in (h, w, b)]
  return arrays, jnp.asarray(labels, jnp.int32), jnp.asarray(c, jnp.float32)


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
  lse = scipy.special.logsumexp(z, axis=1)
  q = (1 - label_smoothing) * np.eye(v)[np.where(kept, labels, 0)] + label_smoothing / v
  loss = np.where(kept, lse - np.sum(q * z, axis=1) + z_loss * lse**2, 0.0)
  softmax = np.exp(z - lse[:, None])
  # dℓ/dz = (1 + 2·z_loss·lse)·softmax − q; through the cap: × (1 − tanh²).
  g = ((c * kept)[:, None] * ((1 + 2 * z_loss * lse)[:, None] * softmax - q)) * dcap
  return loss, g @ w.T, h.T @ g, g.sum(axis=0)


def _value_and_grads(fn, h, w, b, labels, c, use_bias, **kwargs):
  def objective(h, w, b):
    loss = fn(h, w, labels, bias=b if use_bias else None, **kwargs)
    return jnp.sum(c * loss), loss
  (_, loss), grads = jax.value_and_grad(objective, argnums=(0, 1, 2), has_aux=True)(h, w, b)
  return loss, grads


def _assert_matches(loss, grads, ref, use_bias):
  assert loss.shape == (N,) and loss.dtype == jnp.float32
  assert_close(loss, ref[0])
  for got, want in zip(grads[:2], ref[1:3]):
    assert_close(got, want, rtol=1e-4)
  if use_bias:
    assert_close(grads[2], ref[3], rtol=1e-4)
  else:
    np.testing.assert_array_equal(grads[2], 0.0)


CONFIGS = [
    ("plain", False, {}),
    ("bias", True, {}),
    ("z_loss", True, {"z_loss": 1e-2}),
    ("soft_cap", True, {"logit_soft_cap": 3.0}),
    ("smoothing", False, {"label_smoothing": 0.1}),
    ("ignore_index", True, {"ignore_index": IGNORE}),
    ("everything", True, {"z_loss": 1e-3, "label_smoothing": 0.2, "logit_soft_cap": 4.0,
                          "ignore_index": IGNORE}),
]
# Every option with a chunk that does not divide V = 200 (64), the plain and the full case
# also with one that does (50) and with the default (one chunk of 200 here).
CHUNKED = ([(*c, 64) for c in CONFIGS]
           + [(*c, chunk) for c in (CONFIGS[0], CONFIGS[-1]) for chunk in (50, None)])


@pytest.mark.parametrize("name,use_bias,kwargs,chunk_size", CHUNKED,
                         ids=[f"{c[0]}-chunk{c[3]}" for c in CHUNKED])
def test_value_and_gradients_match_float64_reference(rng, name, use_bias, kwargs, chunk_size):
  (h, w, b), labels, c = _problem(rng)
  kept = labels != IGNORE
  if "ignore_index" not in kwargs:
    labels = jnp.where(kept, labels, 0)
    kwargs = {**kwargs, "where": kept}  # the same tokens dropped through the mask
  loss, grads = _value_and_grads(lsce, h, w, b, labels, c, use_bias, chunk_size=chunk_size,
                                 **kwargs)
  ref_kwargs = {k: v for k, v in kwargs.items() if k not in ("where", "ignore_index")}
  _assert_matches(loss, grads, reference(h, w, labels, c, bias=b if use_bias else None,
                                         kept=kept, **ref_kwargs), use_bias)


def test_matches_optax_on_explicit_logits(rng):
  import optax
  (h, w, _), labels, _ = _problem(rng)
  labels = jnp.abs(labels) % V
  assert_close(lsce(h, w, labels, chunk_size=64),
               optax.softmax_cross_entropy_with_integer_labels(h @ w, labels), rtol=1e-5)


def test_soft_cap_gradient(rng):
  (h, w, b), labels, c = _problem(rng)
  labels = jnp.abs(labels) % V

  def objective(cap):
    return jnp.sum(c * lsce(h, w, labels, bias=b, logit_soft_cap=cap, chunk_size=64))

  # d/dcap of the float64 reference by central differences (the loss is smooth in the cap).
  def ref(cap):
    return np.sum(np.asarray(c, np.float64) * reference(h, w, labels, c, bias=b,
                                                        logit_soft_cap=cap)[0])
  numeric = (ref(3.0 + 1e-5) - ref(3.0 - 1e-5)) / 2e-5
  assert_close(jax.grad(objective)(jnp.float32(3.0)), numeric, rtol=1e-3)


def test_bfloat16_within_bfloat16_tolerance(rng):
  (h, w, b), labels, c = _problem(rng, dtype=jnp.bfloat16)
  labels = jnp.abs(labels) % V
  loss, grads = _value_and_grads(lsce, h, w, b, labels, c, True, chunk_size=64, z_loss=1e-3)
  assert loss.dtype == jnp.float32
  assert [g.dtype for g in grads] == [jnp.bfloat16] * 3
  ref = reference(h.astype(jnp.float32), w.astype(jnp.float32), labels, c,
                  bias=b.astype(jnp.float32), z_loss=1e-3)
  assert_close(loss, ref[0], rtol=1e-4)  # the products of bf16 inputs are exact in float32
  for got, want in zip(grads, ref[1:]):
    assert_close(got, want, rtol=2e-2, atol_scale=2e-2)  # dlogits rounded to bf16 (2⁻⁸)


def test_large_logits_stay_finite(rng):
  (h, w, b), labels, c = _problem(rng)
  labels = jnp.abs(labels) % V
  h = h * 2e3  # logits of magnitude ~1e4: exp would overflow without the running max
  loss, grads = _value_and_grads(lsce, h, w, b, labels, c, False, chunk_size=64)
  ref = reference(h, w, labels, c)
  assert_close(loss, ref[0])
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_dropped_tokens_with_nan_hidden_give_zero_and_finite_gradients(rng):
  (h, w, b), labels, c = _problem(rng)
  h = h.at[1].set(jnp.nan)  # token 1 has label IGNORE
  loss, grads = _value_and_grads(lsce, h, w, b, labels, c, True, ignore_index=IGNORE,
                                 chunk_size=64)
  assert loss[1] == 0 and np.all(np.isfinite(loss))
  assert all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_array_equal(grads[0][1], 0.0)


def test_bad_label_gives_nan_and_checkify_names_it(rng):
  (h, w, _), labels, _ = _problem(rng)
  labels = (jnp.abs(labels) % V).at[3].set(V + 7).at[4].set(-3)
  loss = lsce(h, w, labels)
  assert np.isnan(loss[3]) and np.isnan(loss[4])
  assert np.all(np.isfinite(np.delete(np.asarray(loss), [3, 4])))
  err, _ = checkify.checkify(lambda *a: lsce(*a), errors=checkify.user_checks)(h, w, labels)
  with pytest.raises(checkify.JaxRuntimeError, match=str(V + 7)):
    err.throw()


def test_vmap_over_batch_and_time_matches_reshape(rng):
  (h, w, _), labels, _ = _problem(rng)
  labels = jnp.abs(labels) % V
  h3, labels2 = h.reshape(4, 6, D), labels.reshape(4, 6)

  def mean_vmapped(h3, w):
    return jnp.mean(jax.vmap(lambda x, y: lsce(x, w, y, chunk_size=64))(h3, labels2))

  def mean_flat(h3, w):
    return jnp.mean(lsce(h3.reshape(-1, D), w, labels2.reshape(-1), chunk_size=64))

  chex.assert_trees_all_close(jax.value_and_grad(mean_vmapped, (0, 1))(h3, w),
                              jax.value_and_grad(mean_flat, (0, 1))(h3, w), rtol=1e-5,
                              atol=1e-7)
  # Per-example gradients (weight mapped too) against a Python loop.
  per_example = jax.vmap(jax.grad(lambda x, w, y: jnp.sum(lsce(x, w, y, chunk_size=64)),
                                  argnums=1), in_axes=(0, None, 0))(h3, w, labels2)
  per_token_sum = jax.grad(lambda w, x, y: jnp.sum(lsce(x, w, y, chunk_size=64)))
  looped = jnp.stack([per_token_sum(w, h3[i], labels2[i]) for i in range(4)])
  chex.assert_trees_all_close(per_example, looped, rtol=1e-5, atol=1e-6)


def test_outer_jit_and_no_retrace_on_new_values(rng):
  (h, w, b), labels, _ = _problem(rng)
  labels = jnp.abs(labels) % V
  kwargs = {"chunk_size": 64, "z_loss": 1e-3, "label_smoothing": 0.1}
  first = lsce(h, w, labels, bias=b, **kwargs)
  chex.assert_trees_all_close(jax.jit(lambda *a: lsce(*a, bias=b, **kwargs))(h, w, labels),
                              first, rtol=1e-6)
  size = lsce.jitted._cache_size()
  lsce(h + 0.5, w * 2, labels[::-1], bias=b, **{**kwargs, "z_loss": 2e-3,
                                                 "label_smoothing": 0.3})
  assert lsce.jitted._cache_size() == size  # float hyper-parameters are traced


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
    return jax.grad(lambda x: jnp.vdot(jax.grad(f)(x), u))(h)

  assert_close(hvp(lambda x: jnp.sum(lsce(x, w, labels, chunk_size=4))), hvp(naive), rtol=1e-4)


def test_no_n_by_v_temporary():
  # Structural, not timing: forward + backward compiled (never run) at N=512, D=64, V=65536
  # needs a temporary far below one (N, V) float32 array (128 MiB); the naive one needs more.
  n, d, v = 512, 64, 65536
  specs = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((d, v), jnp.float32),
           jax.ShapeDtypeStruct((n,), jnp.int32))

  def temp(loss):
    step = jax.jit(jax.value_and_grad(lambda h, w, y: jnp.mean(loss(h, w, y)), argnums=(0, 1)))
    return step.lower(*specs).compile().memory_analysis().temp_size_in_bytes

  assert temp(lambda h, w, y: lsce(h, w, y)) < n * v * 4 / 4
  assert temp(lambda h, w, y: jax.nn.logsumexp(h @ w, axis=1)) >= n * v * 4


# 16 divides neither V/4 = 50 nor V/8 = 25; None is one chunk per shard here.
@pytest.mark.parametrize("shape,chunk_size", [((2, 4), 16), ((1, 8), 16), ((2, 4), None)],
                         ids=["2x4-chunk16", "1x8-chunk16", "2x4-default"])
def test_vocab_parallel_matches_unsharded(rng, shape, chunk_size):
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(shape), ("data", "model"))
  (h, w, b), labels, c = _problem(rng)
  kwargs = {"z_loss": 1e-3, "label_smoothing": 0.1, "logit_soft_cap": 4.0,
            "ignore_index": IGNORE, "chunk_size": chunk_size}
  loss, grads = _value_and_grads(lambda *a, **k: vp_lsce(*a, mesh=mesh, **k), h, w, b, labels,
                                 c, True, **kwargs)
  ref_loss, ref_grads = _value_and_grads(lsce, h, w, b, labels, c, True, **kwargs)
  assert_close(loss, ref_loss)
  for got, want in zip(grads, ref_grads):
    assert_close(got, want, rtol=1e-4)


def test_vocab_parallel_other_axis_names_and_no_bias(rng):
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("batch", "vocab"))
  (h, w, b), labels, c = _problem(rng)
  labels = jnp.abs(labels) % V
  loss, grads = _value_and_grads(
      lambda *a, **k: vp_lsce(*a, mesh=mesh, vocab_axis="vocab", batch_axis="batch", **k),
      h, w, b, labels, c, False)
  _assert_matches(loss, grads, reference(h, w, labels, c), False)


def test_vocab_parallel_indivisible_vocabulary_names_both_numbers(rng):
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 4), ("data", "model"))
  (h, w, _), labels, _ = _problem(rng, v=202)
  with pytest.raises(ValueError, match=r"V=202.*\b4 shards"):
    vp_lsce(h, w, jnp.abs(labels) % 202, mesh=mesh)


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
    (lambda h, w, y: lsce(h, w, y, z_loss=-1.0), ValueError, r"z_loss=\.\.\.\) must be >= 0"),
    (lambda h, w, y: lsce(h, w, y, label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda h, w, y: lsce(h, w, y, logit_soft_cap=0.0), ValueError, "logit_soft_cap"),
])
def test_bad_input_raises(rng, call, error, match):
  (h, w, _), labels, _ = _problem(rng)
  with pytest.raises(error, match=match):
    call(h, w, jnp.abs(labels) % V)
