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
        lambda v, y, eps=eps: jaxloss.poly_loss_cross_entropy(v, y, epsilon=eps),
        lambda v, y, eps=eps: optax.losses.poly_loss_cross_entropy(v, y, epsilon=eps), x, t)
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
    fn = lambda v: jaxloss.softmax_cross_entropy_with_integer_labels(
        v, jnp.asarray(y, jnp.int32), axis, label_smoothing=smoothing,
        ignore_index=kw.get("ignore_index"), class_weights=weight)
  else:
    fn = lambda v: jaxloss.softmax_cross_entropy(
        v, f32(y), axis, label_smoothing=smoothing, class_weights=weight)
  value, grad = jax.value_and_grad(lambda v: jnp.sum(fn(v)))(f32(x))
  assert_close(fn(f32(x)), case["loss"])
  assert_close(grad, case["grad"])
  assert_close(value, np.sum(case["loss"]))


def test_torch_nll_loss():
  (case,) = torch_cases("nll_loss")
  lp, y = _case_arrays(case)
  fn = lambda v: jaxloss.nll_loss(v, jnp.asarray(y, jnp.int32), ignore_index=-100,
                                  class_weights=f32(case["kwargs"]["weight"]))
  assert_close(fn(f32(lp)), case["loss"])
  assert_close(jax.grad(lambda v: jnp.sum(fn(v)))(f32(lp)), case["grad"])


@pytest.mark.parametrize("case", torch_cases("binary_cross_entropy_with_logits"),
                         ids=lambda c: c["name"])
def test_torch_bce_with_logits(case):
  x, y = _case_arrays(case)
  pw = case["kwargs"].get("pos_weight")
  fn = lambda v: jaxloss.sigmoid_binary_cross_entropy(
      v, f32(y), pos_weight=None if pw is None else f32(pw))
  assert_close(fn(f32(x)), case["loss"])
  assert_close(jax.grad(lambda v: jnp.sum(fn(v)))(f32(x)), case["grad"])


def test_torch_binary_cross_entropy():
  (case,) = torch_cases("binary_cross_entropy")
  p, y = _case_arrays(case)
  fn = lambda v: jaxloss.binary_cross_entropy(v, f32(y))
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
    loss = lambda v: jnp.sum(fn(v, labels, where=where, label_smoothing=smoothing))
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
    message = rf"{fn.__name__}: every label in `labels` must be in \[0, {C}\), got {bad_label}\b"
    with pytest.raises(checkify.JaxRuntimeError, match=message):
      err.throw()


def test_ignore_index_gives_zero_loss_and_gradient(rng):
  x = _logits(rng)
  y = _int_labels(rng).at[1].set(-100).at[4].set(-100)
  w = f32(rng.uniform(0.5, 2.0, size=C))
  fn = lambda v: jaxloss.softmax_cross_entropy_with_integer_labels(
      v, y, ignore_index=-100, label_smoothing=0.1, class_weights=w)
  out, grad = fn(x), jax.grad(lambda v: jnp.sum(fn(v)))(x)
  assert out[1] == 0 and out[4] == 0 and np.all(np.asarray(out)[[0, 2, 3, 5]] > 0)
  assert np.all(np.asarray(grad)[[1, 4]] == 0)
  err, _ = checkify.checkify(fn, errors=checkify.user_checks)(x)
  err.throw()  # an ignored label is not an error


# The bad-label rule (issue 14): NaN value and zero gradient for the row, so that masking the
# row out afterwards, the pattern the README recommends for padded labels, trains on the rest.
W = np.linspace(0.5, 2.0, C).astype(np.float32)
LABELLED = {
    "integer_ce": (jaxloss.softmax_cross_entropy_with_integer_labels, {}),
    "integer_ce_smoothed_weighted": (jaxloss.softmax_cross_entropy_with_integer_labels,
                                     {"label_smoothing": 0.1, "class_weights": W}),
    "nll_weighted": (jaxloss.nll_loss, {"class_weights": W}),
    "softmax_focal": (jaxloss.softmax_focal_loss, {}),
    "softmax_focal_per_class_alpha": (jaxloss.softmax_focal_loss, {"alpha": W / 2, "gamma": 1.5}),
}
PADDED = jnp.asarray([0, -100, 2, 1, C + 3, 4], jnp.int32)  # −100 padding and a label ≥ C
GOOD = np.asarray([0, 2, 3, 5])


@pytest.mark.parametrize("case", LABELLED)
def test_masked_bad_label_rows_have_zero_gradient(rng, case):
  fn, kwargs = LABELLED[case]
  x = _logits(rng)
  keep = (PADDED >= 0) & (PADDED < C)
  masked = lambda v: jaxloss.reduce(fn(v, PADDED, **kwargs), where=keep)
  grad = np.asarray(jax.grad(masked)(x))
  assert np.all(np.isfinite(grad))
  assert np.all(grad[[1, 4]] == 0)
  # The other rows get exactly the gradient of the loss without the bad rows.
  clean = jax.grad(lambda v: jaxloss.reduce(fn(v, PADDED[GOOD], **kwargs)))(x[GOOD])
  assert_close(grad[GOOD], clean)
  _, tangent = jax.jvp(masked, (x,), (jnp.ones_like(x),))
  assert np.isfinite(tangent)
  # The value stays loud: NaN at the bad rows, so an unmasked mean is NaN.
  out = np.asarray(fn(x, PADDED, **kwargs))
  assert np.all(np.isnan(out[[1, 4]])) and np.all(np.isfinite(out[GOOD]))
  assert np.isnan(jaxloss.reduce(fn(x, PADDED, **kwargs)))


@pytest.mark.parametrize("smoothing,weights", [(0.0, None), (0.2, W)])
def test_label_at_masked_class_has_zero_gradient_when_row_is_masked(rng, smoothing, weights):
  fn = jaxloss.softmax_cross_entropy_with_integer_labels
  x, y = _logits(rng), _int_labels(rng)
  where = jnp.ones((B, C), bool).at[3, y[3]].set(False)  # row 3's label points at it
  kwargs = {"where": where, "label_smoothing": smoothing, "class_weights": weights}
  keep = jnp.arange(B) != 3
  grad = np.asarray(jax.grad(lambda v: jaxloss.reduce(fn(v, y, **kwargs), where=keep))(x))
  assert np.all(np.isfinite(grad)) and np.all(grad[3] == 0)
  assert np.isnan(fn(x, y, **kwargs)[3])


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.int8])
def test_narrow_integer_labels_are_read_as_numbers(rng, dtype):
  # 300 classes: a range check in the labels' own dtype would wrap 300 (uint8: to 44).
  x = _logits(rng, (3, 300))
  y = np.asarray([5, 120, 127])
  for fn in (jaxloss.softmax_cross_entropy_with_integer_labels, jaxloss.nll_loss,
             jaxloss.softmax_focal_loss):
    assert_close(fn(x, jnp.asarray(y, dtype)), fn(x, jnp.asarray(y, jnp.int32)))
  assert_close(jaxloss.nll_loss(x, jnp.asarray([5, 200, 250], jnp.uint8)),
               -np.asarray(x)[np.arange(3), [5, 200, 250]])


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


@pytest.mark.parametrize("name,args,argument", [
    ("softmax_cross_entropy", lambda x: (x, x), "logits"),
    ("softmax_cross_entropy_with_integer_labels", lambda x: (x, jnp.zeros(B, jnp.int32)),
     "logits"),
    ("poly_loss_cross_entropy", lambda x: (x, x), "logits"),
    ("smooth_labels", lambda x: (x, 0.1), "labels"),
    ("kl_divergence", lambda x: (x, x), "log_predictions"),
    ("kl_divergence_with_log_targets", lambda x: (x, x), "log_predictions"),
])
def test_where_of_wrong_shape_names_both_arguments(name, args, argument):
  x = jnp.zeros((B, C))
  with pytest.raises(ValueError, match=rf"`where` must have the shape of `{argument}`.*"
                                       rf"where.shape=\(6, 4\) and {argument}.shape=\(6, 5\)"):
    getattr(jaxloss, name)(*args(x), where=jnp.ones((B, C - 1), bool))


def test_shape_and_axis_errors_name_the_argument_as_written():
  lp, y = jnp.zeros((B, C)), jnp.zeros(B, jnp.int32)
  with pytest.raises(ValueError, match=r"`labels` must have the shape of `log_probs`.*"
                                       r"log_probs.shape=\(6, 5\)"):
    jaxloss.nll_loss(lp, jnp.zeros((B, 1), jnp.int32))
  with pytest.raises(ValueError, match=r"axis=2 is out of range for `log_probs` of rank 2"):
    jaxloss.nll_loss(lp, y, axis=2)
  with pytest.raises(ValueError, match=r"axis=-3 is out of range for `log_predictions`"):
    jaxloss.kl_divergence(lp, lp, axis=-3)
  with pytest.raises(ValueError, match=r"`alpha` must have shape \(5,\)"):
    jaxloss.softmax_focal_loss(lp, y, alpha=jnp.ones(C + 1))
  with pytest.raises(ValueError, match=r"`pos_weight` must broadcast.*pos_weight.shape=\(4,\)"):
    jaxloss.sigmoid_binary_cross_entropy(lp, lp, pos_weight=jnp.ones(C - 1))


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
  # The result type of the floating inputs (as optax): bf16 with integer or bf16 labels; the
  # sigmoid losses' float32 labels make it float32.
  assert out.dtype == (jnp.float32 if name.startswith("sigmoid") else jnp.bfloat16)
  assert_close(out.astype(jnp.float32), ref, rtol=1e-2, atol=1e-2)
  if name.startswith("sigmoid"):
    assert fn(x, y.astype(jnp.bfloat16)).dtype == jnp.bfloat16


# ---------------------------------------------------------------- forward-only fast paths

def test_fused_or_exact_recomputes_only_when_the_fast_form_is_nan():
  from jaxloss import _numerics
  # fast and exact differ here (2v against 3v) only to show which one ran.
  f = jax.jit(lambda v: _numerics.fused_or_exact(
      lambda: jnp.where(v > 0, 2.0 * v, jnp.nan), lambda: 3.0 * v))
  np.testing.assert_array_equal(f(f32([1.0, 2.0])), [2.0, 4.0])
  np.testing.assert_array_equal(f(f32([1.0, -2.0])), [3.0, -6.0])  # the whole batch
  # Under vmap the cond is a select: each example is decided on its own.
  np.testing.assert_array_equal(jax.vmap(f)(f32([[1.0], [-2.0]])), [[2.0], [-6.0]])


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "kl_divergence_with_log_targets"])
def test_fast_forward_equals_the_exact_form(rng, name):
  # The value under value_and_grad comes from the derivative rule, which computes the exact
  # form; the plain call takes the fast path. They must agree on ordinary rows and on the rows
  # whose guards matter (a zero target at a −inf logit; a log target of −inf).
  fn = getattr(jaxloss, name)
  x, t = _logits(rng), _probs(rng)
  if name == "softmax_cross_entropy":
    x = x.at[0, 0].set(-jnp.inf)
    t = t.at[0, :].set(jnp.asarray([0.0, 0.5, 0.5, 0.0, 0.0]))
  else:
    x, t = jax.nn.log_softmax(x), jnp.log(t).at[0, 1].set(-jnp.inf)
  for rows in (slice(1, None), slice(None)):  # without (fast path) and with the special row
    target = t[rows]
    value, _ = jax.value_and_grad(lambda v, target=target: jnp.sum(fn(v, target)))(x[rows])
    out = fn(x[rows], target)
    assert np.all(np.isfinite(out))
    assert_close(jnp.sum(out), value, rtol=1e-6)


@pytest.mark.parametrize("delta", [1.0, 1e-3, 3e38, np.inf])
def test_huber_fast_forward_equals_the_select_form(delta):
  # huber_loss's undifferentiated value is the select-free ½q² + δ(|x| − q), q = min(|x|, δ)
  # (regression.py); its derivative rule computes the select form. Same numbers everywhere.
  x = f32([0.0, 0.5, -1.0, 3.0, -3e38, 1e30, np.inf, -np.inf, np.nan])
  fast = np.asarray(jaxloss.huber_loss(x, delta=delta))
  rule = np.asarray(jax.jvp(lambda v: jaxloss.huber_loss(v, delta=delta), (x,),
                            (jnp.ones_like(x),))[0])
  xd, d = np.float64(x), np.float64(delta)
  with np.errstate(invalid="ignore", over="ignore"):
    ref = np.where(np.abs(xd) <= d, 0.5 * xd * xd, d * (np.abs(xd) - 0.5 * d)).astype(np.float32)
  np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
  assert_close(fast[:-1], ref[:-1], atol=0)
  assert_close(rule[:-1], ref[:-1], atol=0)


# ---------------------------------------------------------------- output dtype rule

_MIXED_DTYPE_LOSSES = [
    ("softmax_cross_entropy", "probs"),
    ("poly_loss_cross_entropy", "probs"),
    ("kl_divergence", "probs"),
    ("kl_divergence_with_log_targets", "log_probs"),
    ("sigmoid_binary_cross_entropy", "binary"),
    ("sigmoid_focal_loss", "binary"),
    ("binary_cross_entropy", "binary"),
]


@pytest.mark.parametrize("name,kind", _MIXED_DTYPE_LOSSES)
@pytest.mark.parametrize("x_dtype,y_dtype", [(jnp.bfloat16, jnp.float32),
                                             (jnp.float32, jnp.bfloat16),
                                             (jnp.bfloat16, jnp.bfloat16)])
def test_output_dtype_is_the_result_type_of_the_floating_inputs(rng, name, kind, x_dtype,
                                                                y_dtype):
  x = _logits(rng, (2, 3))
  if name.startswith("kl"):
    x = jax.nn.log_softmax(x)
  if name == "binary_cross_entropy":
    x = jax.nn.sigmoid(x)
  y = {"probs": _probs(rng, (2, 3)), "log_probs": jax.nn.log_softmax(_logits(rng, (2, 3))),
       "binary": f32(rng.integers(0, 2, (2, 3)))}[kind]
  out = getattr(jaxloss, name)(x.astype(x_dtype), y.astype(y_dtype))
  with jax.numpy_dtype_promotion("standard"):
    expected = jnp.result_type(x_dtype, y_dtype)
  assert out.dtype == expected


def test_smooth_labels_keeps_the_labels_dtype():
  y = jnp.eye(3, dtype=jnp.bfloat16)
  assert jaxloss.smooth_labels(y, 0.1).dtype == jnp.bfloat16
  assert jaxloss.smooth_labels(y, jnp.float32(0.1)).dtype == jnp.bfloat16


# ---------------------------------------------------------------- accuracy (issue 20)

def _np_log_sigmoid(x):
  x = np.asarray(x, np.float64)
  return np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))


def test_sigmoid_cross_entropy_keeps_relative_accuracy_for_confident_correct_logits(rng):
  x = np.concatenate([[10.0, 15.0, 50.0], rng.uniform(5.0, 80.0, 9)]).astype(np.float32)
  x64 = x.astype(np.float64)
  for sign, label in ((1.0, 1.0), (-1.0, 0.0)):
    xs = sign * x
    ref = -_np_log_sigmoid(x64)  # −log σ(|x|): the loss of the correct label
    out = jaxloss.sigmoid_binary_cross_entropy(f32(xs), jnp.full(x.shape, label))
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=2e-6)
    focal = jaxloss.sigmoid_focal_loss(f32(xs), jnp.full(x.shape, label), gamma=0.0)
    np.testing.assert_allclose(np.asarray(focal, np.float64), ref, rtol=2e-6)


def test_binary_cross_entropy_accurate_at_small_probabilities(rng):
  p = np.concatenate([[3.15e-7], 10.0 ** rng.uniform(-12, -3, 7)]).astype(np.float32)
  out = jaxloss.binary_cross_entropy(f32(p), jnp.zeros(p.shape))
  np.testing.assert_allclose(np.asarray(out, np.float64), -np.log1p(-p.astype(np.float64)),
                             rtol=2e-6)


@pytest.mark.parametrize("label", [0.0, 1.0])
def test_binary_cross_entropy_label_derivative_at_hard_labels(label):
  p = np.array([0.3, 0.75, 0.01], np.float32)
  grad = jax.grad(lambda y: jnp.sum(jaxloss.binary_cross_entropy(f32(p), y)))(
      jnp.full(p.shape, label, jnp.float32))
  p64 = p.astype(np.float64)
  np.testing.assert_allclose(grad, np.log((1 - p64) / p64), rtol=1e-5)  # p = 0.3: 0.847


def test_softmax_focal_near_tied_huge_logits():
  x = f32([[1e30, 1e30, 0.0], [1e7, 1e7 + 1.0, 0.0]])
  out = jaxloss.softmax_focal_loss(x, jnp.array([0, 0]), gamma=1.0)
  # Row 0: p_y = ½; row 1: p_y = 1/(1 + e).
  p = np.array([0.5, 1.0 / (1.0 + np.e)])
  np.testing.assert_allclose(out, -(1.0 - p) * np.log(p), rtol=1e-5)


# ---------------------------------------------------------------- KL edge cases (issue 14)

def test_kl_nan_log_prediction_at_zero_target_propagates():
  out = jaxloss.kl_divergence(f32([[jnp.nan, -0.69, -0.69]]), f32([[0.0, 0.5, 0.5]]))
  assert np.isnan(out).all()


@pytest.mark.parametrize("garbage", [1e30, -1e30, np.inf, -np.inf])
@pytest.mark.parametrize("log_targets", [False, True])
def test_kl_masked_garbage_gives_zero_gradients(rng, garbage, log_targets):
  lp = jax.nn.log_softmax(_logits(rng, (3, 4)))
  t = _probs(rng, (3, 4))
  mask = jnp.array([[True, True, False, True], [True] * 4, [False] * 4])
  lp_bad = jnp.where(mask, lp, garbage)
  target = jnp.log(t) if log_targets else t
  t_bad = jnp.where(mask, target, garbage)
  fn = jaxloss.kl_divergence_with_log_targets if log_targets else jaxloss.kl_divergence
  value, grads = jax.value_and_grad(lambda a, b: jnp.sum(fn(a, b, where=mask)), (0, 1))(
      lp_bad, t_bad)
  assert np.isfinite(value)
  for g in grads:
    assert np.isfinite(g).all()
    np.testing.assert_array_equal(np.asarray(g)[~np.asarray(mask)], 0.0)
  # Unmasked entries: d/dlog q = −t.
  np.testing.assert_allclose(np.asarray(grads[0])[np.asarray(mask)],
                             -np.asarray(t)[np.asarray(mask)], rtol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_sigmoid_focal_gradient_and_hessian_finite_at_extreme_logits(gamma):
  x = f32([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4, 100.0, -100.0, 75.0, -75.0])
  y = f32([0, 1, 0, 1, 1, 0, 1, 0.9, 0.1, 0.8, 0.2])

  def f(v):
    return jnp.sum(jaxloss.sigmoid_focal_loss(v, y, gamma=gamma))

  assert np.isfinite(jax.grad(f)(x)).all()
  assert np.isfinite(jax.hessian(f)(x)).all()


def test_sigmoid_cross_entropy_accepts_boolean_labels(rng):
  x, y = _logits(rng, (2, 3)), jnp.asarray(rng.integers(0, 2, (2, 3)), bool)
  out = jaxloss.sigmoid_binary_cross_entropy(x, y)
  assert out.dtype == jnp.float32
  assert_close(out, optax.sigmoid_binary_cross_entropy(x, y), rtol=1e-5)


# ------------------------------------------- issue 13: tuple and None axes, optax's last names

def _np_merge(a, axes):
  """a with the batch axes first and ``axes`` (in the order given) flattened last."""
  a = np.asarray(a, np.float64)
  axes = tuple(x % a.ndim for x in axes)
  batch = tuple(i for i in range(a.ndim) if i not in axes)
  a = np.transpose(a, batch + axes)
  return a.reshape(a.shape[:len(batch)] + (-1,))


def _np_log_softmax(x):
  top = np.max(x, -1, keepdims=True)
  return x - top - np.log(np.sum(np.exp(x - top), -1, keepdims=True))


def test_tuple_axis_reduces_over_those_axes_together(rng):
  # optax types axis as int | tuple[int, ...] | None; jaxloss raised TypeError (issue 13).
  shape, axis = (2, 3, 2, 4), (3, -3)
  x = _logits(rng, shape)
  lq = jnp.log(jax.nn.softmax(_logits(rng, shape), axis=axis))
  t = jax.nn.softmax(_logits(rng, shape), axis=axis)
  xm, lqm, tm = (_np_merge(a, axis) for a in (x, lq, t))
  lsm = _np_log_softmax(xm)
  ce = -np.sum(tm * lsm, -1)
  assert_close(jaxloss.softmax_cross_entropy(x, t, axis), ce)
  assert_close(jaxloss.poly_loss_cross_entropy(x, t, axis=axis),
               ce + 2.0 * np.sum(tm * (1 - np.exp(lsm)), -1))
  assert_close(jaxloss.kl_divergence(lq, t, axis), np.sum(tm * (np.log(tm) - lqm), -1))
  assert_close(jaxloss.kl_divergence_with_log_targets(lq, jnp.log(t), axis),
               np.sum(tm * (np.log(tm) - lqm), -1))
  assert_close(jaxloss.generalized_kl_divergence(x, t, axis),
               np.sum(tm * (np.log(tm) - xm) + np.exp(xm) - tm, -1))
  n_classes = shape[axis[0]] * shape[axis[1]]
  assert_close(jaxloss.smooth_labels(t, 0.2, axis=axis), 0.8 * np.asarray(t) + 0.2 / n_classes)


@pytest.mark.parametrize("axis", [(3, 1), (-2, -1, 0)])
def test_integer_labels_with_tuple_axis_index_the_slice_in_the_given_order(rng, axis):
  # optax's rule (its test_axes): a label is the row-major flat index into the slice over
  # `axis`, the axes taken in the order given, (3, 1) on (N, A, B, D): label = d·A + a.
  shape = (2, 3, 2, 4)
  x = _logits(rng, shape)
  canon = tuple(a % 4 for a in axis)
  batch = tuple(shape[i] for i in range(4) if i not in canon)
  n_classes = int(np.prod([shape[i] for i in canon]))
  labels = jnp.asarray(rng.integers(0, n_classes, batch), jnp.int32)
  xm = _np_merge(x, axis)
  lsm = _np_log_softmax(xm)
  expected = -np.take_along_axis(lsm, np.asarray(labels)[..., None], -1)[..., 0]
  out = jaxloss.softmax_cross_entropy_with_integer_labels(x, labels, axis)
  assert out.shape == batch
  assert_close(out, expected)


def test_tuple_axis_where_masks_classes_of_the_full_shape(rng):
  # A `where` of the logits' shape is merged with them: masked classes leave the softmax.
  shape, axis = (2, 3, 4), (0, 2)
  x, t = _logits(rng, shape), _probs(rng, shape)
  where = jnp.asarray(rng.random(shape) > 0.3).at[0, :, 0].set(True)
  labels = jnp.zeros((3,), jnp.int32)  # class (0, 0) of every row, kept unmasked
  xm, tm, wm = _np_merge(x, axis), _np_merge(t, axis), _np_merge(where, axis) > 0
  top = np.max(np.where(wm, xm, -np.inf), -1, keepdims=True)
  lse = top + np.log(np.sum(np.where(wm, np.exp(xm - top), 0.0), -1, keepdims=True))
  assert_close(jaxloss.softmax_cross_entropy(x, t, axis, where),
               np.sum(np.where(wm, tm * (lse - xm), 0.0), -1))
  assert_close(jaxloss.softmax_cross_entropy_with_integer_labels(x, labels, axis, where),
               lse[:, 0] - xm[:, 0])
  # A row-shaped `where` (the batch shape) masks whole rows: 0 there.
  rows = jnp.asarray([True, False, True])
  np.testing.assert_array_equal(jaxloss.kl_divergence(x, t, axis, rows)[1], 0.0)


def test_axis_none_reduces_every_axis(rng):
  x, t = _logits(rng, (3, 4)), _probs(rng, (3, 4))
  flat_x, flat_t = x.reshape(-1), t.reshape(-1) / 3.0
  out = jaxloss.softmax_cross_entropy(x, t / 3.0, None)
  assert out.shape == ()
  assert_close(out, jaxloss.softmax_cross_entropy(flat_x, flat_t))
  smoothed = jaxloss.smooth_labels(t, 0.1, axis=None)
  assert smoothed.shape == (3, 4)
  assert_close(smoothed, 0.9 * np.asarray(t) + 0.1 / 12)


def test_bad_tuple_axes_are_named():
  x, t = jnp.zeros((2, 3, 4)), jnp.full((2, 3, 4), 1 / 12)
  with pytest.raises(ValueError, match=r"axis=\(1, -2\) names an axis twice"):
    jaxloss.softmax_cross_entropy(x, t, (1, -2))
  with pytest.raises(ValueError, match="axis=5"):
    jaxloss.kl_divergence(x, t, (1, 5))
  with pytest.raises(TypeError, match="an int or a tuple of ints, got None"):
    jaxloss.softmax_cross_entropy_with_integer_labels(x, jnp.zeros((2,), jnp.int32), None)
  with pytest.raises(ValueError, match=r"where.shape=\(3, 3\)"):
    jaxloss.softmax_cross_entropy(x, t, (1, 2), jnp.ones((3, 3), bool))


def test_int_axis_path_has_no_transpose():
  # The tuple path merges axes with a transpose; an int axis must not pay for it.
  x, t = jnp.zeros((2, 3, 4)), jnp.full((2, 3, 4), 0.25)
  labels = jnp.zeros((2, 4), jnp.int32)
  for jaxpr in (jax.make_jaxpr(lambda a: jaxloss.softmax_cross_entropy(a, t, 1))(x),
                jax.make_jaxpr(lambda a: jaxloss.softmax_cross_entropy_with_integer_labels(
                    a, labels, 1))(x)):
    assert "transpose" not in str(jaxpr)


def _np_generalized_kl(lq, t):
  lq, t = np.asarray(lq, np.float64), np.asarray(t, np.float64)
  xlogx = np.where(t == 0, 0.0, t * np.log(np.where(t == 0, 1.0, t)))
  return np.sum(xlogx - t * lq + np.exp(lq) - t, -1)


def test_generalized_kl_matches_numpy_and_optax(rng):
  lq = _logits(rng, scale=1.0)  # unnormalised: q need not sum to 1
  t = _probs(rng) * 1.5
  out = jaxloss.generalized_kl_divergence(lq, t)
  assert_close(out, _np_generalized_kl(lq, t))
  assert_close(out, optax.losses.generalized_kl_divergence(lq, t))
  assert np.all(np.asarray(out) >= 0)
  # q = t: zero.
  assert_close(jaxloss.generalized_kl_divergence(jnp.log(t), t), np.zeros(B), atol=1e-6)


def test_generalized_kl_closed_form_gradient_and_zero_targets(rng):
  # d/d(log q) = exp(log q) − t, d/dt = log t − log q (closed forms of the Bregman divergence
  # of u log u − u), at random points and at zero targets, also where log q = −inf.
  lq = _logits(rng, scale=1.0).at[0, 0].set(-jnp.inf)
  t = _probs(rng).at[0, 0].set(0.0).at[1, 2].set(0.0)
  g_lq, g_t = jax.grad(lambda a, b: jnp.sum(jaxloss.generalized_kl_divergence(a, b)),
                       (0, 1))(lq, t)
  lq64, t64 = np.asarray(lq, np.float64), np.asarray(t, np.float64)
  assert_close(g_lq, np.exp(lq64) - t64)
  assert np.isfinite(jaxloss.generalized_kl_divergence(lq, t)).all()
  positive = t64 > 0
  assert_close(np.asarray(g_t)[positive], np.log(t64[positive]) - lq64[positive])
  np.testing.assert_array_equal(np.asarray(g_t)[~positive], 0.0)  # documented: −∞ taken as 0


def test_convex_kl_divergence_is_the_deprecated_alias(rng):
  lq, t = _logits(rng, scale=1.0), _probs(rng)
  with pytest.warns(DeprecationWarning, match="use generalized_kl_divergence"):
    out = jaxloss.convex_kl_divergence(lq, t, axis=-1)
  np.testing.assert_array_equal(out, jaxloss.generalized_kl_divergence(lq, t))


def test_safe_softmax_cross_entropy_values_and_closed_form_gradient(rng):
  x = _logits(rng).at[0, 1].set(-jnp.inf).at[1, :].set(jnp.asarray([-jnp.inf, 0., -jnp.inf,
                                                                      1., 2.]))
  t = _probs(rng).at[0, :].set(jnp.asarray([0.5, 0.0, 0.5, 0.0, 0.0]))
  t = t.at[1, :].set(jnp.asarray([0.0, 0.25, 0.0, 0.25, 0.5]))
  x64, t64 = np.asarray(x, np.float64), np.asarray(t, np.float64)
  lsm = _np_log_softmax(x64)
  expected = -np.sum(np.where(t64 == 0, 0.0, t64 * np.where(t64 == 0, 0.0, lsm)), -1)
  value, grad = _value_and_grad(jaxloss.safe_softmax_cross_entropy, x, t)
  assert_close(jaxloss.safe_softmax_cross_entropy(x, t), expected)
  # d/dx = (Σ t)·softmax − t, 0 at the −inf logits (zero labels there).
  assert_close(grad, np.sum(t64, -1, keepdims=True) * np.exp(lsm) - t64)
  assert np.isfinite(value)
  # A −inf logit with a positive label: +inf, the true value.
  assert np.isposinf(jaxloss.safe_softmax_cross_entropy(x[1], t[0]))


def test_safe_softmax_cross_entropy_forward_mode_finite_at_minus_inf_logits():
  # optax PR #1762: forward-mode tangents of 0·log 0 were 0·(−inf) = NaN, even for a zero
  # tangent. Here the label derivative at a −inf logit is taken as 0 (documented).
  x = jnp.asarray([[-jnp.inf, 0.0, 0.0], [1.0, -jnp.inf, 2.0]])
  t = jnp.asarray([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
  _, tangent = jax.jvp(jaxloss.safe_softmax_cross_entropy, (x, t),
                       (jnp.zeros_like(x), jnp.zeros_like(t)))
  np.testing.assert_array_equal(tangent, 0.0)
  jac_x, jac_t = jax.jacfwd(jaxloss.safe_softmax_cross_entropy, (0, 1))(x, t)
  assert np.isfinite(jac_x).all() and np.isfinite(jac_t).all()
  lsm = _np_log_softmax(np.asarray(x, np.float64))
  rows = np.arange(2)
  assert_close(jac_t[rows, rows], np.where(np.isinf(lsm), 0.0, -lsm))


# -------------------------------------------------------------------------- categorical focal

def test_categorical_focal_loss_matches_the_formula_softmax_focal_and_cross_entropy(rng):
  x = rng.normal(size=(6, 5)) * 3
  y = rng.dirichlet(np.ones(5), size=6)
  alpha = rng.uniform(0.2, 2.0, size=5)
  p = np.exp(x - x.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  expected = np.sum(alpha * y * (1 - p) ** 0.5 * -np.log(p), -1)
  assert_close(jaxloss.categorical_focal_loss(f32(x), f32(y), alpha=f32(alpha), gamma=0.5),
               expected)
  labels = rng.integers(0, 5, size=6)
  one_hot = np.eye(5)[labels]
  assert_close(jaxloss.categorical_focal_loss(f32(x), f32(one_hot), alpha=0.25),
               jaxloss.softmax_focal_loss(f32(x), jnp.asarray(labels), alpha=0.25))
  assert_close(jaxloss.categorical_focal_loss(f32(x), f32(y), gamma=0.0),
               jaxloss.softmax_cross_entropy(f32(x), f32(y)))


def test_categorical_focal_loss_finite_at_saturated_and_masked_logits():
  # u = 0 exactly at a 1e4 gap (γ < 1: the factor held constant); a −inf logit with y = 0.
  x = jnp.array([[1e4, 0.0, -jnp.inf], [0.0, 0.0, 0.0]])
  y = jnp.array([[0.7, 0.3, 0.0], [1.0, 0.0, 0.0]])
  value, grad = jax.value_and_grad(
      lambda v: jnp.sum(jaxloss.categorical_focal_loss(v, y, gamma=0.5)))(x)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  # Row 0: A = (0, 0.3, 0) (class 0's factor u^γ = 0, held), so d/dx = p Σ A − A.
  np.testing.assert_allclose(grad[0], [0.3, -0.3, 0.0], atol=1e-6)
