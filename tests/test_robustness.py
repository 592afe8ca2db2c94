"""Robustness: every public loss against extreme values, masks, dtypes and bad input.

The shared tests read ``bench/registry.py`` (how to build each loss's inputs, what they mean,
what the maths promises); an entry opts out of a shared test only with a written reason, which
pytest shows as the skip reason. Each test cites the public bug report that shows it matters
and reuses one shape per loss, so that each function compiles a handful of times only. The
tests below the shared ones concern a few losses each (zero targets, probabilities 0 and 1,
boundary hyper-parameters), with references from the maths in numpy float64.
"""

from __future__ import annotations

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.experimental import checkify
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import jaxloss
from _reference import assert_close, entries, f32, sampled_out, value_and_grad_of_sum
from bench import registry
from bench.registry import C, N, np_log_softmax, np_masked_logsumexp

BY_NAME = registry.BY_NAME


def _sum_and_grad(entry, args, kwargs):
  """Σ loss and its gradient with respect to the prediction ``args[0]``."""
  return value_and_grad_of_sum(entry.fn, args[0], *args[1:], **kwargs)


def _hessian_vector_product(entry, args, kwargs, v):
  """Forward-over-reverse; reverse-over-reverse for the reverse-mode-only (custom_vjp) losses."""
  grad = jax.grad(lambda p: jnp.sum(entry.fn(p, *args[1:], **kwargs)))
  if entry.reverse_only:
    return jax.grad(lambda p: jnp.vdot(grad(p), v))(args[0])
  return jax.jvp(grad, (args[0],), (v,))[1]


def _replace(args, i, x):
  return tuple(x if j == i else a for j, a in enumerate(args))


def _is_float(a):
  return jnp.issubdtype(a.dtype, jnp.floating)


def _np64(a):
  """A jax array as numpy: floats in float64 (for the references), integers as they are."""
  return np.asarray(a, np.float64) if _is_float(a) else np.asarray(a)


def _extreme(entry, shape, v):
  """Predictions of magnitude ``v``: constant for elementwise losses; alternating signs along
  the class (or hidden) axis for class-axis losses, so that both saturated directions occur."""
  if entry.kind_info.class_axis:
    signs = np.where(np.arange(shape[-1]) % 2 == 0, 1.0, -1.0)
    return f32(np.broadcast_to(v * signs, shape))
  return jnp.full(shape, v, jnp.float32)


def test_every_public_docstring_has_an_edge_cases_paragraph():
  # Each public docstring states what happens at the boundaries.
  for name in jaxloss.__all__:
    fn = getattr(jaxloss, name)
    if callable(fn):
      assert "\n  Edge cases:\n" in fn.__doc__, name


# ---------------------------------------------------------------- extreme predictions
# optax #1267: focal loss NaN gradients at large logits; every loss must stay finite wherever
# the true value is below float32's maximum, and say inf where the maths overflows.

EXTREMES = [100.0, -100.0, 1e4, -1e4, 1e30, -1e30]


@pytest.mark.parametrize("entry", entries("extreme_predictions"))
def test_extreme_predictions_stay_finite(entry):
  args, kwargs = entry.inputs()
  # Compiled once per loss, reused for every extreme value.
  sum_and_grad = jax.jit(lambda *a: _sum_and_grad(entry, a, kwargs))
  hvp = jax.jit(lambda *a: _hessian_vector_product(entry, a, kwargs, jnp.ones_like(a[0])))
  for v in EXTREMES:
    a = _replace(args, 0, _extreme(entry, args[0].shape, v))
    value, grad = sum_and_grad(*a)
    if entry.expect_inf(v):
      assert np.isposinf(value), (entry.id, v, value)
      continue
    assert np.isfinite(value), (entry.id, v, value)
    assert np.all(np.isfinite(grad)), (entry.id, v)
    if entry.twice_differentiable:
      assert np.all(np.isfinite(hvp(*a))), (entry.id, v, "Hessian-vector product")


# ---------------------------------------------------------------- masked −inf logits
# optax #896 (NaN gradient of softmax_cross_entropy with −inf logits under `where`), optax PR
# #1762 (masked classes in the integer-label loss), jax #19490 (NaN in forward mode through a
# masked softmax). Masked logits are −inf; the value must match the entry's numpy reference
# over the unmasked classes, the gradient must be exactly 0 at masked entries, and jax.jvp must
# be finite and agree with it.

def _class_mask():
  """Every row masks two classes; the last row keeps one class only (the label's)."""
  m = np.ones((N, C), bool)
  for i in range(N):
    m[i, i % C] = m[i, (i + 2) % C] = False
  m[N - 1] = False
  m[N - 1, N % C] = True
  return m


MASK = _class_mask()
LABELS = (np.arange(N) + 1) % C  # never masked by MASK


def _masked_problem(entry, mask):
  """(predictions with −inf where ``mask`` drops a class, other inputs, numpy inputs)."""
  args, _ = entry.inputs()
  if entry.kind_info.integer_labels:  # labels at classes the mask keeps
    args = _replace(args, entry.label_argnum, jnp.asarray(LABELS, jnp.int32))
  x = np.asarray(args[0], np.float64)
  # Logits and log-probabilities are −inf where masked; a label transform keeps its inputs.
  x_in = np.where(mask, x, -np.inf) if entry.kind_info.class_axis else x
  return f32(x_in), args[1:], [x] + [_np64(a) for a in args[1:]]


def _with_defaults(entry):
  """The entry's keyword arguments, and the same without those that have a default."""
  kwargs = entry.keywords()
  params = inspect.signature(entry.fn).parameters
  defaults = {k: v for k, v in kwargs.items() if params[k].default is inspect.Parameter.empty}
  return [kwargs] + ([defaults] if defaults != kwargs else [])


MASKED_CASES = [pytest.param(p.values[0], kw, id=f"{p.id}-{'-'.join(map(str, kw.items()))}",
                             marks=p.marks)
                for p in entries("masked_classes", losses_only=False,
                                 where=lambda e: e.masked_reference is not None)
                for kw in _with_defaults(p.values[0])]


@pytest.mark.parametrize("entry,kwargs", MASKED_CASES)
def test_masked_minus_inf_logits_match_numpy(entry, kwargs):
  x, rest, np_inputs = _masked_problem(entry, MASK)
  where = jnp.asarray(MASK)

  def loss(p):
    return entry.fn(p, *rest, where=where, **kwargs)

  out = loss(x)
  assert_close(out, entry.masked_reference(*np_inputs, where=MASK, **kwargs))
  grad = jax.grad(lambda p: jnp.sum(loss(p)))(x)
  assert np.all(np.isfinite(grad)), entry.id
  np.testing.assert_array_equal(np.asarray(grad)[~MASK], 0.0)
  # Forward mode (jax #19490): finite, and per row the sum of that row's gradient (the rows
  # are independent; for a label transform every output entry depends on its own row only).
  primal, tangent = jax.jvp(loss, (x,), (jnp.ones_like(x),))
  assert np.all(np.isfinite(primal)) and np.all(np.isfinite(tangent)), entry.id
  if entry.kind_info.loss:
    np.testing.assert_allclose(tangent, np.sum(grad, -1), rtol=1e-5, atol=1e-5)
  else:
    np.testing.assert_array_equal(np.asarray(tangent)[~MASK], 0.0)


# ---------------------------------------------------------------- empty and masked batches

@pytest.mark.parametrize("entry", entries("fully_masked_rows",
                                          where=lambda e: e.masked_reference is not None))
def test_fully_masked_rows_and_batch_give_zero(entry):
  # optax's rule: a row with no unmasked class gives 0; a mean over a fully masked batch is 0
  # with zero gradient, even with −inf logits in the masked rows.
  mask = MASK.copy()
  mask[0] = False
  x, rest, _ = _masked_problem(entry, mask)
  kwargs = entry.keywords()
  for m in (mask, np.zeros((N, C), bool)):
    where = jnp.asarray(m)

    def loss(p, where=where):
      return entry.fn(p, *rest, where=where, **kwargs)

    empty = ~m.any(-1)
    out = np.asarray(loss(x))
    np.testing.assert_array_equal(out[empty], 0.0)
    assert np.all(np.isfinite(out)), entry.id
    value, grad = jax.value_and_grad(lambda p: jaxloss.reduce(loss(p), where=jnp.asarray(
        ~empty)))(x)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), entry.id
    np.testing.assert_array_equal(np.asarray(grad)[empty], 0.0)
    np.testing.assert_array_equal(np.asarray(grad)[~m], 0.0)
    _, tangent = jax.jvp(loss, (x,), (jnp.ones_like(x),))
    np.testing.assert_array_equal(np.asarray(tangent)[empty], 0.0)
    if not m.any():
      assert value == 0.0


@pytest.mark.parametrize("entry", entries("empty_batch"))
def test_empty_batch_gives_an_empty_loss_and_zero_mean(entry):
  # An empty batch (shape (0, ...)) gives an empty loss, a mean of 0 and zero gradients.
  args, kwargs = entry.inputs()
  empty = tuple(jnp.zeros((0,) + a.shape[1:], a.dtype) if entry.batched(i) and a.ndim else a
                for i, a in enumerate(args))
  out = entry.fn(*empty, **kwargs)
  assert out.shape[0] == 0
  value, grad = jax.value_and_grad(lambda x: jaxloss.reduce(entry.fn(x, *empty[1:], **kwargs)))(
      empty[0])
  assert value == 0.0 and grad.shape == empty[0].shape


IGNORE = -100


@pytest.mark.parametrize("entry", entries(
    "ignore_index", where=lambda e: "ignore_index" in inspect.signature(e.fn).parameters))
def test_ignore_index_on_every_label_gives_zero(entry):
  # PyTorch's ignore_index: every token ignored gives 0 and zero gradients (a mean over no
  # token is 0, not 0/0 = NaN as in PyTorch's reduction="mean").
  args, kwargs = entry.inputs()
  args = _replace(args, entry.label_argnum, jnp.full((N,), IGNORE, jnp.int32))
  kwargs = {**kwargs, "ignore_index": IGNORE}
  out = entry.fn(*args, **kwargs)
  np.testing.assert_array_equal(out, np.zeros(N, np.float32))
  floats = tuple(i for i, a in enumerate(args) if _is_float(a))  # logits; or hidden and weight

  def mean(*xs):
    return jaxloss.reduce(entry.fn(*(xs[floats.index(i)] if i in floats else a
                                     for i, a in enumerate(args)), **kwargs))

  for g in jax.grad(mean, argnums=tuple(range(len(floats))))(*(args[i] for i in floats)):
    np.testing.assert_array_equal(g, np.zeros(g.shape, np.float32))


@pytest.mark.parametrize("entry", entries(None, kinds=("large_vocab",)))
def test_where_and_ignore_index_drop_every_token(entry):
  # `where` masks tokens here: all False gives 0 and zero gradients for hidden and weight.
  (h, w, labels), kwargs = entry.inputs()
  kwargs = {**kwargs, "where": jnp.zeros((N,), bool)}
  out = entry.fn(h, w, labels, **kwargs)
  np.testing.assert_array_equal(out, np.zeros(N, np.float32))
  gh, gw = jax.grad(lambda h, w: jaxloss.reduce(entry.fn(h, w, labels, **kwargs)),
                    argnums=(0, 1))(h, w)
  np.testing.assert_array_equal(gh, np.zeros(gh.shape, np.float32))
  np.testing.assert_array_equal(gw, np.zeros(gw.shape, np.float32))


# ---------------------------------------------------------------- zero targets
# optax PR #1786: KL and cross-entropy with zero targets, 0·log 0 = 0; the gradient with respect
# to the (log-)predictions stays finite, also where a zero-target class has (log-)prediction
# −inf. (The derivative with respect to a zero target is −∞ mathematically; the docstrings say
# so and it is not differentiated here.)

ONE_HOT = np.eye(C)[LABELS]
ZERO_TARGET_LOSSES = ["kl_divergence", "kl_divergence_with_log_targets", "softmax_cross_entropy",
                      "poly_loss_cross_entropy"]


@pytest.mark.parametrize("name", ZERO_TARGET_LOSSES)
def test_zero_targets_with_minus_inf_predictions(name, rng):
  x = rng.normal(size=(N, C))
  fn = getattr(jaxloss, name)
  # −inf at the zero-target classes that MASK drops (never the label); no `where` here.
  if name.startswith("kl"):
    lp = np_log_softmax(x)
    pred = np.where(MASK, lp, -np.inf)
    ref = -lp[np.arange(N), LABELS]  # Σ_c t_c (log t_c − log q_c) with one-hot t
    target = ONE_HOT if name == "kl_divergence" else np.where(ONE_HOT > 0, 0.0, -np.inf)
    expected_grad = -ONE_HOT  # d/d(log q_c) = −t_c
  else:
    pred = np.where(MASK, x, -np.inf)
    lse = np_masked_logsumexp(x, MASK)[:, 0]
    p_y = np.exp(x[np.arange(N), LABELS] - lse)
    ref = lse - x[np.arange(N), LABELS]
    expected_grad = np.where(MASK, np.exp(x - lse[:, None]), 0.0) - ONE_HOT  # softmax − onehot
    if name == "poly_loss_cross_entropy":
      ref = ref + 2.0 * (1 - p_y)  # ε (1 − p_y), ε = 2 (the default)
      expected_grad = expected_grad * (1 + 2.0 * p_y[:, None])
    target = ONE_HOT
  pred, target = f32(pred), f32(target)
  assert_close(fn(pred, target), ref)
  grads = jax.grad(lambda p, t: jnp.sum(fn(p, t)), argnums=(0, 1) if "log_targets" in name
                   else 0)(pred, target)
  grad = grads[0] if isinstance(grads, tuple) else grads
  assert_close(grad, expected_grad)
  if "log_targets" in name:  # a log-target of −inf contributes 0 and gets gradient 0
    assert np.all(np.isfinite(grads[1]))
    np.testing.assert_array_equal(np.asarray(grads[1])[ONE_HOT == 0], 0.0)
  primal, tangent = jax.jvp(lambda p: fn(p, target), (pred,), (jnp.ones_like(pred),))
  assert np.all(np.isfinite(primal)) and np.all(np.isfinite(tangent)), name


# ---------------------------------------------------------------- probabilities 0 and 1,
# zero distances. BCE on probabilities is exact at p ∈ {0, 1} (PyTorch clamps the log at −100);
# its gradient is finite wherever the loss is: d/dp = (1 − y)/(1 − p) − y/p without the terms
# whose coefficient is 0.

def test_binary_cross_entropy_at_zero_and_one():
  p = f32([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5])
  y = f32([0.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.3])
  inf = np.inf
  np.testing.assert_allclose(jaxloss.binary_cross_entropy(p, y),
                             [0.0, inf, inf, 0.0, inf, inf, -np.log(0.5)], rtol=1e-6)
  grad = np.asarray(jax.grad(lambda q: jnp.sum(jaxloss.binary_cross_entropy(q, y)))(p))
  np.testing.assert_allclose(grad[[0, 3, 6]], [1.0, -1.0, 0.7 / 0.5 - 0.3 / 0.5], rtol=1e-6)


@pytest.mark.parametrize("swap", [False, True])
def test_triplet_zero_distances_have_zero_gradient(swap):
  # a = p = n with eps = 0: every distance vector is exactly 0, whose norm's sub-differential
  # contains 0; the plain formula gives 0/0 = NaN.
  a = f32(np.ones((N, C)))
  out, grads = jax.value_and_grad(
      lambda *x: jnp.sum(jaxloss.triplet_margin_loss(*x, margin=1.0, eps=0.0, swap=swap)),
      argnums=(0, 1, 2))(a, a, a)
  assert out == N * 1.0  # max(0, margin + 0 − 0) per triplet
  for g in grads:
    np.testing.assert_array_equal(g, np.zeros((N, C), np.float32))


def test_contrastive_zero_distance_has_finite_gradient():
  x = f32(np.ones((N, C)))
  same = jnp.asarray(np.arange(N) % 2)
  out = jaxloss.contrastive_loss(x, x, same, margin=2.0)
  np.testing.assert_allclose(out, np.where(np.arange(N) % 2, 0.0, 0.5 * 2.0**2))
  grads = jax.grad(lambda a, b: jnp.sum(jaxloss.contrastive_loss(a, b, same, margin=2.0)),
                   argnums=(0, 1))(x, x)
  for g in grads:  # d = 0: the push direction is undefined; 0 is in the sub-differential
    np.testing.assert_array_equal(g, np.zeros((N, C), np.float32))


# ---------------------------------------------------------------- boundary hyper-parameters
# optax #1267: focal loss with 0 < γ < 1 has a NaN gradient at saturated logits. Each boundary
# value gives finite values and gradients, and the maths identity where there is one.

EDGE_LOGITS = f32(np.array([[0.0, 1.5, -2.0, 100.0, -100.0],
                            [1e4, -1e4, 30.0, -30.0, 0.5]] * (N // 2)))
EDGE_BINARY = f32(np.tile([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 1.0]], (N // 2, 1)))
EDGE_CLASSES = jnp.asarray(np.arange(N) % C)


def _finite_loss_and_grad(fn, x, *args, **kwargs):
  """The per-example loss and the gradient of its sum, both asserted finite."""
  out = fn(x, *args, **kwargs)
  _, grad = value_and_grad_of_sum(fn, x, *args, **kwargs)
  assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad)), (fn.__name__, kwargs)
  return out, grad


def _np_sigmoid_focal(x, y, gamma):
  x = np.asarray(x, np.float64)
  ce = np.logaddexp(0, x) - y * x
  p = scipy.special.expit(x)
  return (y * (1 - p) + (1 - y) * p) ** gamma * ce


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_sigmoid_focal_gamma_zero_and_below_one(gamma):
  out, grad = _finite_loss_and_grad(jaxloss.sigmoid_focal_loss, EDGE_LOGITS, EDGE_BINARY,
                                    gamma=gamma)
  assert_close(out, _np_sigmoid_focal(EDGE_LOGITS, np.asarray(EDGE_BINARY), gamma))
  if gamma == 0.0:  # γ = 0 is the cross-entropy, value and gradient
    ce, ce_grad = _finite_loss_and_grad(jaxloss.sigmoid_binary_cross_entropy, EDGE_LOGITS,
                                        EDGE_BINARY)
    np.testing.assert_allclose(out, ce, rtol=1e-6)
    np.testing.assert_allclose(grad, ce_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_sigmoid_focal_alpha_zero_and_one_keep_one_class(alpha):
  out, grad = _finite_loss_and_grad(jaxloss.sigmoid_focal_loss, EDGE_LOGITS, EDGE_BINARY,
                                    alpha=alpha, gamma=0.5)
  plain, plain_grad = _finite_loss_and_grad(jaxloss.sigmoid_focal_loss, EDGE_LOGITS,
                                            EDGE_BINARY, gamma=0.5)
  weight = np.asarray(EDGE_BINARY) if alpha == 1.0 else 1 - np.asarray(EDGE_BINARY)
  np.testing.assert_allclose(out, weight * plain, rtol=1e-6)
  np.testing.assert_allclose(grad, weight * plain_grad, rtol=1e-6)


def _np_softmax_focal(x, y, gamma):
  lp = np_log_softmax(x)[np.arange(len(y)), y]
  return -(-np.expm1(lp)) ** gamma * lp


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_softmax_focal_gamma_zero_and_below_one(gamma):
  out, grad = _finite_loss_and_grad(jaxloss.softmax_focal_loss, EDGE_LOGITS, EDGE_CLASSES,
                                    gamma=gamma)
  assert_close(out, _np_softmax_focal(EDGE_LOGITS, np.asarray(EDGE_CLASSES), gamma))
  if gamma == 0.0:
    ce, ce_grad = _finite_loss_and_grad(jaxloss.softmax_cross_entropy_with_integer_labels,
                                        EDGE_LOGITS, EDGE_CLASSES)
    np.testing.assert_allclose(out, ce, rtol=1e-6)
    np.testing.assert_allclose(grad, ce_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_softmax_focal_scalar_alpha_scales_value_and_gradient(alpha):
  out, grad = _finite_loss_and_grad(jaxloss.softmax_focal_loss, EDGE_LOGITS, EDGE_CLASSES,
                                    alpha=alpha, gamma=0.5)
  plain, plain_grad = _finite_loss_and_grad(jaxloss.softmax_focal_loss, EDGE_LOGITS,
                                            EDGE_CLASSES, gamma=0.5)
  np.testing.assert_allclose(out, alpha * plain, rtol=1e-6)
  np.testing.assert_allclose(grad, alpha * plain_grad, rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 1.0])
def test_label_smoothing_zero_and_one(eps, rng):
  # ε = 0: −log p_y; ε = 1: the uniform target, lse(x) − mean_c x_c, whatever the label.
  x = rng.normal(size=(N, C))
  y = np.asarray(EDGE_CLASSES)
  lse = np_masked_logsumexp(x, np.ones((N, C), bool))[:, 0]
  ref = lse - (x[np.arange(N), y] if eps == 0.0 else x.mean(-1))
  out, _ = _finite_loss_and_grad(jaxloss.softmax_cross_entropy_with_integer_labels, f32(x),
                                 EDGE_CLASSES, label_smoothing=eps)
  assert_close(out, ref)
  out, _ = _finite_loss_and_grad(jaxloss.softmax_cross_entropy, f32(x), f32(np.eye(C)[y]),
                                 label_smoothing=eps)
  assert_close(out, ref)
  smoothed = jaxloss.smooth_labels(f32(np.eye(C)[y]), eps)
  np.testing.assert_allclose(smoothed, np.eye(C)[y] if eps == 0.0 else np.full((N, C), 1 / C),
                             rtol=1e-6)
  # The large-vocabulary loss, on logits h @ W.
  (h, w, labels), kwargs = BY_NAME["linear_softmax_cross_entropy"].inputs()
  z = np.asarray(h, np.float64) @ np.asarray(w, np.float64)
  lse = np_masked_logsumexp(z, np.ones(z.shape, bool))[:, 0]
  ref = lse - (z[np.arange(N), np.asarray(labels)] if eps == 0.0 else z.mean(-1))
  out, _ = _finite_loss_and_grad(jaxloss.linear_softmax_cross_entropy, h, w, labels,
                                 label_smoothing=eps, **kwargs)
  assert_close(out, ref)


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_quantile_zero_and_one(q, rng):
  # q = 0: max(p − t, 0), gradient [p > t]; q = 1: max(t − p, 0), gradient −[p < t].
  p, t = rng.normal(size=(2, N, C))
  out, grad = _finite_loss_and_grad(jaxloss.quantile_loss, f32(p), f32(t), quantile=q)
  e = np.float32(p) - np.float32(t)
  assert_close(out, np.maximum(e, 0) if q == 0.0 else np.maximum(-e, 0))
  np.testing.assert_array_equal(grad, (e > 0).astype(np.float32) if q == 0.0
                                else -(e < 0).astype(np.float32))


# ---------------------------------------------------------------- bf16 and fp16
# optax #1020 and flax #677: low-precision inputs must be computed in float32 and returned in
# the input dtype (the large-vocabulary losses return float32: a reduction over V). Tolerance:
# one rounding of the float32 result to the input dtype, relative to the batch's largest loss
# (entries near zero carry only absolute error).

@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("entry", entries("low_precision"))
def test_low_precision_is_computed_in_float32(entry, dtype):
  args, kwargs = entry.inputs()
  low = tuple(a.astype(dtype) if _is_float(a) else a for a in args)
  out = entry.fn(*low, **kwargs)
  assert out.dtype == (entry.out_dtype or dtype)
  ref = entry.fn(*(a.astype(jnp.float32) if _is_float(a) else a for a in low), **kwargs)
  eps = float(jnp.finfo(dtype).eps)
  scale = float(jnp.max(jnp.abs(ref))) + 1e-30
  np.testing.assert_allclose(np.float32(out), ref, rtol=eps, atol=eps * scale)


# ---------------------------------------------------------------- NaN propagates
# A NaN in one example's prediction makes that example's loss NaN, and only that one (a NaN
# in a whole row: nll_loss, say, reads only the label's entry).

@pytest.mark.parametrize("entry", entries("nan_propagates"))
def test_nan_propagates_to_its_example_only(entry):
  args, kwargs = entry.inputs()
  out = np.asarray(entry.fn(*_replace(args, 0, args[0].at[0].set(jnp.nan)), **kwargs))
  assert np.all(np.isnan(out[0])), entry.id
  assert np.all(np.isfinite(out[1:])), entry.id


# ---------------------------------------------------------------- bad input
# optax 0.2.8 broadcasts (N,) against (N, 1) into an (N, N) loss for huber_loss and
# sigmoid_binary_cross_entropy; here every mismatch raises naming both shapes.

@pytest.mark.parametrize("entry", entries("shape_mismatch",
                                          where=lambda e: e.kind_info.same_shape))
def test_shape_mismatch_names_both_shapes(entry):
  args, kwargs = entry.inputs()
  bad = (args[0][:, 0],) + tuple(a[:, :1] if a.ndim == 2 else a for a in args[1:])
  with pytest.raises(ValueError, match=rf"\({N},\).*\({N}, 1\)|\({N}, 1\).*\({N},\)"):
    entry.fn(*bad, **kwargs)


@pytest.mark.parametrize("entry", entries("shape_mismatch",
                                          where=lambda e: not e.kind_info.same_shape))
def test_second_input_shape_mismatch_names_both_shapes(entry):
  args, kwargs = entry.inputs()
  i = entry.label_argnum or 1
  bad = _replace(args, i, args[i][:-1])
  with pytest.raises(ValueError) as info:
    entry.fn(*bad, **kwargs)
  assert str(args[0].shape) in str(info.value) and str(bad[i].shape) in str(info.value)


@pytest.mark.parametrize("entry", entries("integer_predictions"))
def test_integer_predictions_raise_type_error(entry):
  args, kwargs = entry.inputs()
  with pytest.raises(TypeError):
    entry.fn(*_replace(args, 0, args[0].astype(jnp.int32)), **kwargs)


@pytest.mark.parametrize("entry", entries("float_labels",
                                          where=lambda e: e.kind_info.integer_labels))
def test_float_labels_raise_type_error(entry):
  args, kwargs = entry.inputs()
  bad = _replace(args, entry.label_argnum, args[entry.label_argnum].astype(jnp.float32))
  with pytest.raises(TypeError, match="labels"):
    entry.fn(*bad, **kwargs)


@pytest.mark.parametrize("entry", entries(
    "axis_out_of_range", losses_only=False,
    where=lambda e: not e.variant and "axis" in inspect.signature(e.fn).parameters))
def test_axis_out_of_range_names_the_axis(entry):
  args, kwargs = entry.inputs()
  for axis in (2, -3):
    with pytest.raises(ValueError, match=rf"axis={axis}"):
      entry.fn(*args, **{**kwargs, "axis": axis})


BOUNDED = [pytest.param(entry, name, values, id=f"{entry.id}-{name}")
           for entry in registry.LOSSES if not entry.variant
           for name, values in entry.bounds.items()]


@pytest.mark.parametrize("entry,name,values", BOUNDED)
def test_out_of_range_hyperparameters_are_named_eager_and_traced(entry, name, values):
  # A Python number raises ValueError before tracing; a traced value raises under checkify;
  # both messages name the function and the argument, `huber_loss(delta=...) must be ...`.
  args, kwargs = entry.inputs()
  params = list(inspect.signature(entry.fn).parameters)
  position = params.index(name) if params.index(name) < len(args) else None

  def call(value, traced):
    if position is None:
      return entry.fn(*args, **{**kwargs, name: value})
    array = jnp.full(args[position].shape, value, args[position].dtype) if traced else value
    return entry.fn(*_replace(args, position, array), **kwargs)

  message = rf"{entry.name}\({name}=\.\.\.\)"
  for value in values:
    with pytest.raises(ValueError, match=message):
      call(value, False)
  if sampled_out("traced_bounds", entry):  # one compilation per bound: sampled
    return
  checked = jax.jit(checkify.checkify(lambda v: call(v, True), errors=checkify.user_checks))
  for value in values:
    err, _ = checked(jnp.float32(value))
    with pytest.raises(checkify.JaxRuntimeError, match=message):
      err.throw()


def test_reduce_names_an_unknown_reduction():
  with pytest.raises(ValueError, match="reduction='median'"):
    jaxloss.reduce(jnp.ones((3,), jnp.float32), "median")


# ---------------------------------------------------------------- bad labels
# optax wraps −1 to the last class (optax #1077-style silent errors) and accepts ±1 labels of
# 0 or 2; here a bad label gives NaN for its example only, and under checkify an error that
# names the value.

def _bad_labels(entry):
  if entry.kind == "pm1":
    return [0, 2, -3, 0.5]
  return [-1, -7, entry.n_classes, 99]


def _assert_checkify_names(fn, checked, args, value):
  err, _ = checked(*args)
  with pytest.raises(checkify.JaxRuntimeError) as info:
    err.throw()
  message = str(info.value)
  assert fn.__name__ in message and re.search(rf"(?<![\d.]){re.escape(str(value))}(?![\d.])",
                                              message), message


@pytest.mark.parametrize("entry", entries("bad_labels",
                                          where=lambda e: e.label_argnum is not None))
def test_bad_labels_give_nan_and_are_named_by_checkify(entry):
  args, kwargs = entry.inputs()
  i = entry.label_argnum
  # Compiled once per label dtype, reused for every bad value.
  loss = jax.jit(lambda *a: entry.fn(*a, **kwargs))
  grad = jax.jit(lambda *a: _sum_and_grad(entry, a, kwargs)[1])
  checked = jax.jit(checkify.checkify(lambda *a: entry.fn(*a, **kwargs),
                                      errors=checkify.user_checks))
  for value in _bad_labels(entry):
    # ±1 labels may be integer or floating: integer values go in integer labels.
    labels = args[i].astype(jnp.int32 if isinstance(value, int) else jnp.float32)
    bad = _replace(args, i, labels.at[0].set(value))
    out = np.asarray(loss(*bad))
    assert np.all(np.isnan(out[0].reshape(-1)[:1])), (entry.id, value)
    assert np.all(np.isfinite(out[1:])), (entry.id, value)
    assert np.all(np.isfinite(np.asarray(grad(*bad))[1:])), (entry.id, value, "other examples")
    _assert_checkify_names(entry.fn, checked, bad, value)


def test_label_pointing_at_a_masked_class_is_nan_and_named(rng):
  # optax PR #1762: a label whose class `where` masks out has no probability: NaN, named.
  fn = jaxloss.softmax_cross_entropy_with_integer_labels
  x = f32(rng.normal(size=(N, C)))
  labels = jnp.asarray(LABELS).at[0].set(0)  # MASK[0, 0] is False
  where = jnp.asarray(MASK)
  out = np.asarray(fn(x, labels, where=where))
  assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))
  checked = jax.jit(checkify.checkify(lambda *a: fn(*a, where=where),
                                      errors=checkify.user_checks))
  _assert_checkify_names(fn, checked, (x, labels), 0)


# ---------------------------------------------------------------- multi-device
# Inputs sharded over 8 host devices along the batch axis give the unsharded numbers.

@pytest.mark.parametrize("entry", entries("sharded_batch"))
def test_sharded_batch_matches_unsharded(entry):
  devices = np.array(jax.devices())
  assert devices.size == 8, "tests/conftest.py sets 8 host devices"
  mesh = Mesh(devices, ("data",))
  args, kwargs = entry.inputs()

  def shard(i, a):
    if a.ndim == 0 or not entry.batched(i):
      return a
    return jax.device_put(a, NamedSharding(mesh, PartitionSpec("data")))

  sharded = tuple(shard(i, a) for i, a in enumerate(args))
  out = jax.jit(lambda *a: entry.fn(*a, **kwargs))(*sharded)
  np.testing.assert_allclose(out, entry.fn(*args, **kwargs), rtol=1e-6, atol=1e-6)
  g_sharded = jax.jit(lambda *a: _sum_and_grad(entry, a, kwargs)[1])(*sharded)
  np.testing.assert_allclose(g_sharded, _sum_and_grad(entry, args, kwargs)[1],
                             rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- properties (hypothesis)
# The registry's ``traits``: what the maths promises, drawn at the entry's test shapes.

SETTINGS = settings(deadline=None, max_examples=25, derandomize=True)
FEW = settings(deadline=None, max_examples=5, derandomize=True)


def _draw(data, entry, shape):
  """float32 predictions of ``shape``: |x| <= 30 on a class axis (logits), else <= 50."""
  bound = 30.0 if entry.kind_info.class_axis else 50.0
  return f32(data.draw(hnp.arrays(np.float32, shape, elements=st.floats(
      -bound, bound, allow_nan=False, width=32))))


def _with_trait(trait):
  return entries(None, where=lambda e: trait in e.traits)


@pytest.mark.parametrize("entry", _with_trait("symmetric"))
@SETTINGS
@given(data=st.data())
def test_symmetric_losses_are_nonnegative_and_symmetric_in_the_residual(entry, data):
  (p, _), kwargs = entry.inputs()
  p, t = _draw(data, entry, p.shape), _draw(data, entry, p.shape)
  out = entry.fn(p, t, **kwargs)
  assert np.all(out >= 0)
  np.testing.assert_allclose(entry.fn(t, p, **kwargs), out, rtol=1e-6)


@pytest.mark.parametrize("entry", _with_trait("zero_at_perfect"))
@SETTINGS
@given(data=st.data())
def test_zero_at_a_perfect_prediction(entry, data):
  (p, _), kwargs = entry.inputs()
  t = _draw(data, entry, p.shape)
  np.testing.assert_array_equal(entry.fn(t, t, **kwargs), np.zeros(p.shape, np.float32))


@pytest.mark.parametrize("entry", _with_trait("convex"))
@SETTINGS
@given(data=st.data(), lam=st.floats(0.0, 1.0))
def test_convex_along_segments(entry, data, lam):
  args, kwargs = entry.inputs()
  a, b = _draw(data, entry, args[0].shape), _draw(data, entry, args[0].shape)

  def loss(x):
    return np.asarray(entry.fn(x, *args[1:], **kwargs))

  mid, chord = loss(lam * a + (1 - lam) * b), lam * loss(a) + (1 - lam) * loss(b)
  assert np.all(mid <= chord + 1e-5 * np.abs(chord) + 1e-4), entry.id


@pytest.mark.parametrize("entry", _with_trait("shift_invariant"))
@SETTINGS
@given(data=st.data())
def test_softmax_losses_are_shift_invariant(entry, data):
  # softmax(x + c) = softmax(x): adding a per-row constant to the logits changes nothing
  # (up to the rounding of x + c in float32, |x + c| <= 80: an ulp of 8e-6).
  args, kwargs = entry.inputs()
  x = _draw(data, entry, args[0].shape)
  shift = f32(data.draw(hnp.arrays(np.float32, (x.shape[0], 1), elements=st.floats(
      -50.0, 50.0, allow_nan=False, width=32))))
  shifted = x + jnp.broadcast_to(shift, x.shape)
  np.testing.assert_allclose(entry.fn(shifted, *args[1:], **kwargs),
                             entry.fn(x, *args[1:], **kwargs), rtol=1e-5, atol=1e-4)


def test_l2_on_a_sigmoid_output_is_not_convex():
  # The survey's point: g(x) = (σ(x) − 1)² has g''(x) = −2σ'(x)(1 − σ)(1 − 3σ) < 0 where
  # σ(x) < 1/3, i.e. x < −log 2, so the segment [−6, −2] breaks convexity at its midpoint,
  # while the sigmoid cross-entropy on the same segment keeps it.
  def l2_sigmoid(x):
    return jaxloss.squared_error(jax.nn.sigmoid(x), jnp.ones_like(x))

  def ce(x):
    return jaxloss.sigmoid_binary_cross_entropy(x, jnp.ones_like(x))

  a, b = f32(-6.0), f32(-2.0)
  mid, chord = l2_sigmoid(0.5 * a + 0.5 * b), 0.5 * l2_sigmoid(a) + 0.5 * l2_sigmoid(b)
  assert float(mid) > float(chord) + 1e-3  # g(−4) ≈ 0.9643 > 0.9108
  assert float(jax.grad(jax.grad(l2_sigmoid))(f32(-4.0))) < 0
  assert float(ce(0.5 * a + 0.5 * b)) <= float(0.5 * ce(a) + 0.5 * ce(b))


@pytest.mark.parametrize("entry", entries("nonnegative", where=lambda e: e.nonnegative))
@FEW
@given(seed=st.integers(0, 2**16))
def test_nonnegative_on_random_batches(entry, seed):
  args, kwargs = entry.inputs(seed=seed)
  assert np.all(np.asarray(entry.fn(*args, **kwargs)) >= 0), entry.id
