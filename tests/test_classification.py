"""Cross-entropy family: optax agreement, PyTorch vectors, identities, masks, bad input."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

import jaxloss
from _reference import assert_close, torch_cases

B, C = 6, 5


def f32(x):
  return jnp.asarray(x, jnp.float32)


def _logits(rng, shape=(B, C), scale=2.0):
  return f32(rng.normal(size=shape) * scale)


def _probs(rng, shape=(B, C)):
  return jax.nn.softmax(f32(rng.normal(size=shape)))


def _int_labels(rng, n=B, classes=C):
  return jnp.asarray(rng.integers(0, classes, size=n), jnp.int32)


def _value_and_grad(fn, x, *args, **kwargs):
  return jax.value_and_grad(lambda v: jnp.sum(fn(v, *args, **kwargs)))(x)


def _assert_same_value_and_grad(ours, theirs, x, *args, **kwargs):
  v1, g1 = _value_and_grad(ours, x, *args, **kwargs)
  v2, g2 = _value_and_grad(theirs, x, *args, **kwargs)
  assert_close(v1, v2, rtol=1e-5)
  assert_close(g1, g2, rtol=1e-4)
  np.testing.assert_allclose(ours(x, *args, **kwargs), theirs(x, *args, **kwargs), rtol=1e-5,
                             atol=1e-5)


# ------------------------------------------------------------------------- optax agreement

def test_optax_softmax_cross_entropy(rng):
  x, y = _logits(rng), _probs(rng)
  _assert_same_value_and_grad(jaxloss.softmax_cross_entropy, optax.softmax_cross_entropy, x, y)
  where = f32(rng.uniform(size=(B, C))) > 0.3
  _assert_same_value_and_grad(lambda v, t: jaxloss.softmax_cross_entropy(v, t, where=where),
                              lambda v, t: optax.softmax_cross_entropy(v, t, where=where), x, y)


@pytest.mark.parametrize("axis", [-1, 0])
def test_optax_integer_cross_entropy(rng, axis):
  x = _logits(rng, (B, C) if axis == -1 else (C, B))
  y = _int_labels(rng)
  _assert_same_value_and_grad(jaxloss.softmax_cross_entropy_with_integer_labels,
                              optax.softmax_cross_entropy_with_integer_labels, x, y, axis)


def test_optax_integer_cross_entropy_with_where(rng):
  x, y = _logits(rng), _int_labels(rng)
  where = jnp.ones((B, C), bool).at[:, :].set(f32(rng.uniform(size=(B, C))) > 0.4)
  where = where.at[jnp.arange(B), y].set(True)  # labels point at unmasked classes
  _assert_same_value_and_grad(
      lambda v, t: jaxloss.softmax_cross_entropy_with_integer_labels(v, t, where=where),
      lambda v, t: optax.softmax_cross_entropy_with_integer_labels(v, t, where=where), x, y)
  rows = jnp.asarray([True, False, True, True, False, True])  # batch-shaped: whole rows
  np.testing.assert_allclose(
      jaxloss.softmax_cross_entropy_with_integer_labels(x, y, where=rows),
      optax.softmax_cross_entropy_with_integer_labels(x, y, where=rows), rtol=1e-6)


@pytest.mark.parametrize("labels", ["binary", "soft"])
def test_optax_sigmoid_binary_cross_entropy(rng, labels):
  x = _logits(rng, scale=4.0)
  y = f32(rng.integers(0, 2, size=(B, C)) if labels == "binary" else rng.uniform(size=(B, C)))
  _assert_same_value_and_grad(jaxloss.sigmoid_binary_cross_entropy,
                              optax.sigmoid_binary_cross_entropy, x, y)


@pytest.mark.parametrize("alpha,gamma", [(None, 2.0), (0.25, 2.0), (0.7, 0.5), (None, 0.0),
                                         (0.25, 3.5)])
@pytest.mark.parametrize("labels", ["binary", "soft"])
def test_optax_sigmoid_focal_loss(rng, alpha, gamma, labels):
  x = _logits(rng, scale=4.0)
  y = f32(rng.integers(0, 2, size=(B, C)) if labels == "binary" else rng.uniform(size=(B, C)))
  _assert_same_value_and_grad(
      lambda v, t: jaxloss.sigmoid_focal_loss(v, t, alpha=alpha, gamma=gamma),
      lambda v, t: optax.sigmoid_focal_loss(v, t, alpha=alpha, gamma=gamma), x, y)


def test_optax_kl_smoothing_and_poly(rng):
  lp, t = jax.nn.log_softmax(_logits(rng)), _probs(rng)
  _assert_same_value_and_grad(jaxloss.kl_divergence, optax.losses.kl_divergence, lp, t)
  _assert_same_value_and_grad(jaxloss.kl_divergence_with_log_targets,
                              optax.losses.kl_divergence_with_log_targets, lp, jnp.log(t))
  x = _logits(rng)
  for eps in (2.0, -1.0):
    _assert_same_value_and_grad(
        lambda v, y: jaxloss.poly_loss_cross_entropy(v, y, epsilon=eps),
        lambda v, y: optax.losses.poly_loss_cross_entropy(v, y, epsilon=eps), x, t)
  where = f32(rng.uniform(size=(B, C))) > 0.3
  _assert_same_value_and_grad(
      lambda v, y: jaxloss.poly_loss_cross_entropy(v, y, where=where),
      lambda v, y: optax.losses.poly_loss_cross_entropy(v, y, where=where), x, t)
  onehot = jax.nn.one_hot(_int_labels(rng), C)
  np.testing.assert_allclose(jaxloss.smooth_labels(onehot, 0.1),
                             optax.smooth_labels(onehot, 0.1), rtol=1e-6)
  ours = np.asarray(jaxloss.smooth_labels(onehot, 0.1, where=where))
  m = np.asarray(where)
  # optax's formula on the unmasked classes (optax itself trips strict dtype promotion here).
  expected = 0.9 * np.asarray(onehot) + 0.1 / np.maximum(m.sum(-1, keepdims=True), 1)
  assert_close(ours[m], expected[m])
  assert np.all(ours[~m] == 0)


# ------------------------------------------------------------------------- PyTorch vectors

def _case_arrays(case):
  return [np.asarray(a) for a in case["inputs"]]


@pytest.mark.parametrize("case", torch_cases("cross_entropy"), ids=lambda c: c["name"])
def test_torch_cross_entropy(case):
  x, y = _case_arrays(case)
  kw = case["kwargs"]
  weight = None if "weight" not in kw else f32(kw["weight"])
  smoothing = kw.get("label_smoothing", 0.0)
  axis = 1 if "class_axis1" in case["name"] else -1
  if np.issubdtype(y.dtype, np.integer):
    fn = lambda v: jaxloss.softmax_cross_entropy_with_integer_labels(  # noqa: E731
        v, jnp.asarray(y, jnp.int32), axis, label_smoothing=smoothing,
        ignore_index=kw.get("ignore_index"), class_weights=weight)
  else:
    fn = lambda v: jaxloss.softmax_cross_entropy(  # noqa: E731
        v, f32(y), axis, label_smoothing=smoothing, class_weights=weight)
  value, grad = jax.value_and_grad(lambda v: jnp.sum(fn(v)))(f32(x))
  assert_close(fn(f32(x)), case["loss"])
  assert_close(grad, case["grad"])
  assert_close(value, np.sum(case["loss"]))


def test_torch_nll_loss():
  (case,) = torch_cases("nll_loss")
  lp, y = _case_arrays(case)
  fn = lambda v: jaxloss.nll_loss(v, jnp.asarray(y, jnp.int32), ignore_index=-100,  # noqa: E731
                                  class_weights=f32(case["kwargs"]["weight"]))
  assert_close(fn(f32(lp)), case["loss"])
  assert_close(jax.grad(lambda v: jnp.sum(fn(v)))(f32(lp)), case["grad"])


@pytest.mark.parametrize("case", torch_cases("binary_cross_entropy_with_logits"),
                         ids=lambda c: c["name"])
def test_torch_bce_with_logits(case):
  x, y = _case_arrays(case)
  pw = case["kwargs"].get("pos_weight")
  fn = lambda v: jaxloss.sigmoid_binary_cross_entropy(  # noqa: E731
      v, f32(y), pos_weight=None if pw is None else f32(pw))
  assert_close(fn(f32(x)), case["loss"])
  assert_close(jax.grad(lambda v: jnp.sum(fn(v)))(f32(x)), case["grad"])


def test_torch_binary_cross_entropy():
  (case,) = torch_cases("binary_cross_entropy")
  p, y = _case_arrays(case)
  fn = lambda v: jaxloss.binary_cross_entropy(v, f32(y))  # noqa: E731
  assert_close(fn(f32(p)), case["loss"], rtol=1e-4)
  assert_close(jax.grad(lambda v: jnp.sum(fn(v)))(f32(p)), case["grad"], rtol=1e-4)


def test_torch_kl_div_zero_targets():
  (case,) = torch_cases("kl_div")
  lp, t = _case_arrays(case)
  assert np.any(t == 0)
  out, grad = _value_and_grad(jaxloss.kl_divergence, f32(lp), f32(t))
  assert_close(jaxloss.kl_divergence(f32(lp), f32(t)), np.sum(case["loss"], axis=-1))
  assert_close(grad, case["grad"])  # finite at zero targets (optax PR #1786)


# ------------------------------------------------------------------------------ identities

@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_integer_labels_equal_one_hot(rng, smoothing, weighted):
  x, y = _logits(rng), _int_labels(rng)
  w = f32(rng.uniform(0.5, 2.0, size=C)) if weighted else None
  ours = jaxloss.softmax_cross_entropy_with_integer_labels
  dense = jaxloss.softmax_cross_entropy
  v1, g1 = _value_and_grad(ours, x, y, label_smoothing=smoothing, class_weights=w)
  v2, g2 = _value_and_grad(dense, x, jax.nn.one_hot(y, C), label_smoothing=smoothing,
                           class_weights=w)
  assert_close(v1, v2)
  assert_close(g1, g2)


def test_focal_gamma_zero_is_cross_entropy(rng):
  x = _logits(rng, scale=5.0)
  y = f32(rng.integers(0, 2, size=(B, C)))
  assert_close(jaxloss.sigmoid_focal_loss(x, y, gamma=0.0),
               jaxloss.sigmoid_binary_cross_entropy(x, y))
  labels = _int_labels(rng)
  assert_close(jaxloss.softmax_focal_loss(x, labels, gamma=0.0),
               jaxloss.softmax_cross_entropy_with_integer_labels(x, labels))
  assert_close(jax.grad(lambda v: jnp.sum(jaxloss.softmax_focal_loss(v, labels, gamma=0.0)))(x),
               jax.grad(lambda v: jnp.sum(
                   jaxloss.softmax_cross_entropy_with_integer_labels(v, labels)))(x))


def test_softmax_focal_against_numpy(rng):
  x, y = _logits(rng), _int_labels(rng)
  alpha = f32(rng.uniform(0.2, 1.0, size=C))
  xd = np.float64(x)
  p = np.exp(xd - xd.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  p_y = p[np.arange(B), np.asarray(y)]
  ref = -np.float64(alpha)[np.asarray(y)] * (1 - p_y) ** 1.5 * np.log(p_y)
  assert_close(jaxloss.softmax_focal_loss(x, y, gamma=1.5, alpha=alpha), ref)
  assert_close(jaxloss.softmax_focal_loss(x, y, gamma=1.5, alpha=0.3),
               -0.3 * (1 - p_y) ** 1.5 * np.log(p_y))


@settings(deadline=None, max_examples=15)
@given(st.floats(-50.0, 50.0), st.integers(0, 2**31 - 1))
def test_shift_invariance(shift, seed):
  rng = np.random.default_rng(seed)
  x, y = _logits(rng), _int_labels(rng)
  f = jaxloss.softmax_cross_entropy_with_integer_labels
  assert_close(f(x + shift, y, label_smoothing=0.1), f(x, y, label_smoothing=0.1), rtol=1e-4,
               atol=1e-4 * max(1.0, abs(shift)))
  assert np.all(np.asarray(f(x, y)) >= 0)


# ------------------------------------------------------------------------------------ masks

@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_masked_minus_inf_logits_finite_with_zero_gradient(rng, smoothing):
  # optax #896: -inf logits masked out by `where` gave NaN gradients.
  x, y = _logits(rng), jnp.zeros(B, jnp.int32)
  where = jnp.ones((B, C), bool).at[:, 3:].set(False)
  x = x.at[:, 3:].set(-jnp.inf)
  for fn, labels in ((jaxloss.softmax_cross_entropy_with_integer_labels, y),
                     (jaxloss.softmax_cross_entropy, jax.nn.one_hot(y, C))):
    loss = lambda v: jnp.sum(fn(v, labels, where=where, label_smoothing=smoothing))  # noqa
    value, grad = jax.value_and_grad(loss)(x)
    assert np.isfinite(value)
    assert np.all(np.asarray(grad)[:, 3:] == 0) and np.all(np.isfinite(grad))
    _, tangent = jax.jvp(loss, (x,), (jnp.ones_like(x).at[:, 3:].set(0.0),))
    assert np.isfinite(tangent)
    # Smoothing spreads over the 3 unmasked classes only: same as the 3-class problem.
    small = fn(x[:, :3], labels if labels.ndim == 1 else labels[:, :3],
               label_smoothing=smoothing)
    assert_close(fn(x, labels, where=where, label_smoothing=smoothing), small)


def test_label_pointing_at_masked_class_is_nan_and_empty_row_is_zero(rng):
  x = _logits(rng)
  where = jnp.ones((B, C), bool).at[0, 2].set(False).at[1].set(False)
  y = jnp.asarray([2, 2, 0, 0, 0, 0], jnp.int32)
  out = jaxloss.softmax_cross_entropy_with_integer_labels(x, y, where=where)
  assert np.isnan(out[0]) and out[1] == 0 and np.all(np.isfinite(out[2:]))


# -------------------------------------------------------------------------- integer labels

@pytest.mark.parametrize("bad_label", [C, -1, 100])
def test_out_of_range_labels_nan_and_named_by_checkify(rng, bad_label):
  x = _logits(rng)
  y = _int_labels(rng).at[2].set(bad_label)
  for fn in (jaxloss.softmax_cross_entropy_with_integer_labels, jaxloss.softmax_focal_loss,
             jaxloss.nll_loss):
    out = fn(x, y)
    assert np.isnan(out[2]) and np.all(np.isfinite(np.delete(np.asarray(out), 2)))
    err, _ = checkify.checkify(fn, errors=checkify.user_checks)(x, y)
    with pytest.raises(checkify.JaxRuntimeError, match=rf"`labels` must be in \[0, {C}\), got {bad_label}\b"):
      err.throw()


def test_ignore_index_gives_zero_loss_and_gradient(rng):
  x = _logits(rng)
  y = _int_labels(rng).at[1].set(-100).at[4].set(-100)
  w = f32(rng.uniform(0.5, 2.0, size=C))
  fn = lambda v: jaxloss.softmax_cross_entropy_with_integer_labels(  # noqa: E731
      v, y, ignore_index=-100, label_smoothing=0.1, class_weights=w)
  out, grad = fn(x), jax.grad(lambda v: jnp.sum(fn(v)))(x)
  assert out[1] == 0 and out[4] == 0 and np.all(np.asarray(out)[[0, 2, 3, 5]] > 0)
  assert np.all(np.asarray(grad)[[1, 4]] == 0)
  err, _ = checkify.checkify(fn, errors=checkify.user_checks)(x)
  err.throw()  # an ignored label is not an error


def test_axis_1_segmentation_equals_transposed(rng):
  x = _logits(rng, (2, C, 3, 4))
  y = jnp.asarray(rng.integers(0, C, size=(2, 3, 4)), jnp.int32)
  f = jaxloss.softmax_cross_entropy_with_integer_labels
  moved = jnp.moveaxis(x, 1, -1)
  assert_close(f(x, y, axis=1, label_smoothing=0.1), f(moved, y, label_smoothing=0.1))
  g1 = jax.grad(lambda v: jnp.sum(f(v, y, axis=1)))(x)
  g2 = jax.grad(lambda v: jnp.sum(f(v, y)))(moved)
  assert_close(g1, jnp.moveaxis(g2, -1, 1))


def test_no_logits_sized_one_hot_in_forward_pass():
  x = jax.ShapeDtypeStruct((8, 1000), jnp.float32)
  y = jax.ShapeDtypeStruct((8,), jnp.int32)
  jaxpr = jax.make_jaxpr(jaxloss.softmax_cross_entropy_with_integer_labels)(x, y)

  def one_hot_like(jpr):
    # A one-hot is an integer iota (or integer array) of the logits' shape compared with the
    # labels; the forward pass gathers x_y instead.
    for eqn in jpr.eqns:
      for v in eqn.outvars:
        if v.aval.shape == (8, 1000) and jnp.issubdtype(v.aval.dtype, jnp.integer):
          yield eqn.primitive.name
        if v.aval.shape == (8, 1000) and eqn.primitive.name == "eq" and any(
            jnp.issubdtype(u.aval.dtype, jnp.integer) for u in eqn.invars):
          yield "eq"
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        yield from one_hot_like(sub)

  assert list(one_hot_like(jaxpr.jaxpr)) == []
  # ... while the gradient does compare an iota with the labels (the closed-form tangent).
  grad_jaxpr = jax.make_jaxpr(jax.grad(
      lambda v, t: jnp.sum(jaxloss.softmax_cross_entropy_with_integer_labels(v, t))))(x, y)
  assert "eq" in list(one_hot_like(grad_jaxpr.jaxpr))


def test_bad_inputs_raise():
  x = jnp.zeros((B, C))
  with pytest.raises(TypeError, match="labels"):
    jaxloss.softmax_cross_entropy_with_integer_labels(x, jnp.zeros(B))
  with pytest.raises(TypeError, match="logits"):
    jaxloss.softmax_cross_entropy_with_integer_labels(jnp.zeros((B, C), jnp.int32),
                                                      jnp.zeros(B, jnp.int32))
  with pytest.raises(ValueError, match=r"logits.shape=\(6, 5\).*labels.shape=\(6, 1\)"):
    jaxloss.softmax_cross_entropy_with_integer_labels(x, jnp.zeros((B, 1), jnp.int32))
  with pytest.raises(ValueError, match=r"logits.shape=\(6,\).*labels.shape=\(6, 1\)"):
    jaxloss.sigmoid_binary_cross_entropy(jnp.zeros(B), jnp.zeros((B, 1)))
  with pytest.raises(ValueError, match="class_weights"):
    jaxloss.softmax_cross_entropy_with_integer_labels(x, jnp.zeros(B, jnp.int32),
                                                      class_weights=jnp.ones(C + 1))
  with pytest.raises(ValueError, match=r"label_smoothing=\.\.\.\) must be in \[0.0, 1.0\]"):
    jaxloss.softmax_cross_entropy(x, x, label_smoothing=1.5)
  with pytest.raises(ValueError, match=r"gamma=\.\.\.\) must be >= 0"):
    jaxloss.sigmoid_focal_loss(x, x, gamma=-1.0)


# ------------------------------------------------------------------------- extreme values

@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_cross_entropy_extreme_logits(scale):
  x = f32([[scale, -scale, 0.0], [-scale, scale, 0.0]])
  y = jnp.asarray([0, 0], jnp.int32)
  value, grad = _value_and_grad(jaxloss.softmax_cross_entropy_with_integer_labels, x, y)
  out = jaxloss.softmax_cross_entropy_with_integer_labels(x, y)
  assert_close(out, [0.0, 2 * scale], rtol=1e-6)
  assert np.all(np.isfinite(grad))
  assert_close(grad, [[0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]])


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_focal_extreme_logits_finite(gamma, scale):
  # optax #1267: NaN gradients at saturated logits for gamma < 1.
  x = f32([scale, -scale, scale, -scale, 0.0])
  y = f32([1, 0, 0, 1, 1])
  value, grad = _value_and_grad(jaxloss.sigmoid_focal_loss, x, y, gamma=gamma)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  out = jaxloss.sigmoid_focal_loss(x, y, gamma=gamma)
  assert_close(out[:2], [0.0, 0.0])
  assert_close(out[2:4], [scale, scale], rtol=1e-6)  # (1 − p_t) = 1: the CE, |x|
  labels = jnp.asarray([0, 1], jnp.int32)
  z = f32([[scale, -scale, 0.0], [scale, -scale, 0.0]])
  v2, g2 = _value_and_grad(jaxloss.softmax_focal_loss, z, labels, gamma=gamma)
  assert np.isfinite(v2) and np.all(np.isfinite(g2))
  _, gb = _value_and_grad(jaxloss.sigmoid_binary_cross_entropy, x, y)
  assert np.all(np.isfinite(gb))


def test_binary_cross_entropy_exact_at_zero_and_one():
  p = f32([0.0, 1.0, 0.0, 1.0, 0.5])
  y = f32([0.0, 1.0, 1.0, 0.0, 1.0])
  out = jaxloss.binary_cross_entropy(p, y)
  np.testing.assert_array_equal(out[:2], [0.0, 0.0])
  assert np.all(np.isinf(out[2:4]))  # the true value (PyTorch clamps to 100)
  assert_close(out[4], np.log(2.0))
  g = jax.grad(lambda v: jnp.sum(jaxloss.binary_cross_entropy(v[:2], y[:2])))(p)
  np.testing.assert_array_equal(g[:2], [1.0, -1.0])


def test_kl_zero_targets_with_minus_inf_log_predictions():
  lp = f32([[-jnp.inf, jnp.log(0.5), jnp.log(0.5)]])
  t = f32([[0.0, 0.5, 0.5]])
  value, grad = _value_and_grad(jaxloss.kl_divergence, lp, t)
  assert value == 0 and np.all(np.isfinite(grad))
  value, grad = _value_and_grad(jaxloss.kl_divergence_with_log_targets, lp, jnp.log(t))
  assert value == 0 and np.all(np.isfinite(grad))


# -------------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("name,make_labels", [
    ("softmax_cross_entropy_with_integer_labels", lambda r: jnp.asarray(r.integers(0, C, B))),
    ("softmax_cross_entropy", lambda r: jax.nn.softmax(f32(r.normal(size=(B, C))))),
    ("sigmoid_binary_cross_entropy", lambda r: f32(r.integers(0, 2, (B, C)))),
    ("sigmoid_focal_loss", lambda r: f32(r.integers(0, 2, (B, C)))),
])
def test_bf16_logits_computed_in_float32(rng, name, make_labels):
  x = _logits(rng).astype(jnp.bfloat16)
  y = make_labels(rng)
  if name == "softmax_cross_entropy":
    y = y.astype(jnp.bfloat16)
  fn = getattr(jaxloss, name)
  out = fn(x, y)
  ref = fn(x.astype(jnp.float32), y.astype(jnp.float32) if y.dtype == jnp.bfloat16 else y)
  assert out.dtype == jnp.bfloat16
  assert_close(out.astype(jnp.float32), ref, rtol=1e-2, atol=1e-2)
