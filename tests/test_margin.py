"""Margin losses: values against numpy float64, optax, PyTorch's formulas and vectors; bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.experimental import checkify

import jaxloss
from _reference import assert_close, torch_cases

N, C = 12, 5
BINARY = ["zero_one_loss", "hinge_loss", "squared_hinge_loss", "perceptron_loss",
          "logistic_loss", "exponential_loss"]
MULTICLASS = ["multiclass_zero_one_loss", "multiclass_hinge_loss", "multiclass_perceptron_loss",
              "multi_margin_loss"]


def f32(x):
  return jnp.asarray(x, jnp.float32)


def _binary(rng, scale=2.0):
  s = (rng.normal(size=(N, 3)) * scale).astype(np.float32)
  y = rng.choice([-1, 1], size=(N, 3)).astype(np.int32)
  return s, y


def _multiclass(rng):
  return (rng.normal(size=(N, C)) * 2).astype(np.float32), rng.integers(0, C, size=N)


def np_binary(name, s, y):
  m = np.float64(s) * y
  return {
      "zero_one_loss": (m <= 0).astype(np.float64),
      "hinge_loss": np.maximum(0, 1 - m),
      "squared_hinge_loss": np.maximum(0, 1 - m) ** 2,
      "perceptron_loss": np.maximum(0, -m),
      "logistic_loss": np.logaddexp(0, -m),
      "exponential_loss": np.exp(-m),
  }[name]


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("label_dtype", [np.int32, np.float32])
def test_binary_values_against_numpy(rng, name, label_dtype):
  s, y = _binary(rng)
  out = getattr(jaxloss, name)(f32(s), jnp.asarray(y.astype(label_dtype)))
  assert out.shape == s.shape and out.dtype == jnp.float32
  assert_close(out, np_binary(name, s, y))


def test_scalar_label_allowed(rng):
  s, _ = _binary(rng)
  np.testing.assert_array_equal(jaxloss.hinge_loss(f32(s), -1),
                                jaxloss.hinge_loss(f32(s), -jnp.ones(s.shape, jnp.int32)))


def test_zero_one_counts_a_zero_score_as_a_mistake():
  out = jaxloss.zero_one_loss(f32([0.0, -0.0, 1e-30, -1e-30, 5.0]), jnp.asarray([1, -1, 1, 1, -1]))
  np.testing.assert_array_equal(out, [1, 1, 0, 1, 1])


def test_logistic_is_pytorch_soft_margin_loss_formula(rng):
  # PyTorch: soft_margin_loss(x, y) = log(1 + exp(−y·x)) per element (reduction="none").
  s, y = _binary(rng, scale=10.0)
  assert_close(jaxloss.logistic_loss(f32(s), f32(y)), np.log1p(np.exp(-np.float64(s) * y)))


@pytest.mark.parametrize("case", torch_cases("soft_margin_loss"), ids=lambda c: c["name"])
def test_logistic_against_pytorch_vectors(case):
  s, y = (f32(np.asarray(a)) for a in case["inputs"])
  value, grad = jax.value_and_grad(lambda x: jnp.sum(jaxloss.logistic_loss(x, y)))(s)
  assert_close(jaxloss.logistic_loss(s, y), np.asarray(case["loss"]))
  assert_close(grad, np.asarray(case["grad"]), rtol=1e-4)
  assert np.isfinite(value)


def test_logistic_stable_at_large_margins():
  # log(1 + exp(−m)) written naively overflows at m = −89 and loses everything at m = 1e4.
  s = f32([-1e4, -100.0, -30.0, 30.0, 100.0, 1e4])
  y = jnp.ones((6,), jnp.int32)
  value, grad = jax.vmap(jax.value_and_grad(jaxloss.logistic_loss))(s, y)
  ms = np.float64(s)
  assert_close(value, np.logaddexp(0, -ms))
  assert_close(grad, -np.exp(-np.logaddexp(0, ms)))  # −σ(−m), without overflow
  assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))


def test_exponential_overflows_to_inf_where_the_maths_does():
  # exp(100) > float32 max: documented inf, not NaN; the finite side stays finite.
  value = jaxloss.exponential_loss(f32([-100.0, 80.0, 100.0]), jnp.asarray([1, -1, 1]))
  assert np.isposinf(value[0]) and np.isfinite(value[1]) and value[2] == np.float32(np.exp(-100))


# ------------------------------------------------------------------------------ optax

OPTAX_BINARY = ["hinge_loss", "perceptron_loss"]


def _assert_optax_agreement(name, s, y):
  """Value and gradient of jaxloss's ``name`` equal optax's on scores ``s``, labels ``y``."""
  ours = getattr(jaxloss, name)
  theirs = getattr(optax.losses, name)
  np.testing.assert_allclose(ours(f32(s), y), theirs(f32(s), y), rtol=1e-6, atol=1e-6)
  g_ours = jax.grad(lambda x: jnp.sum(ours(x, y)))(f32(s))
  g_theirs = jax.grad(lambda x: jnp.sum(theirs(x, y)))(f32(s))
  np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", OPTAX_BINARY)
def test_binary_optax_agreement_away_from_kinks(rng, name):
  s, y = _binary(rng)
  _assert_optax_agreement(name, s, f32(y))


@pytest.mark.parametrize("name", ["multiclass_hinge_loss", "multiclass_perceptron_loss"])
def test_multiclass_optax_agreement_away_from_kinks(rng, name):
  s, y = _multiclass(rng)
  _assert_optax_agreement(name, s, y)


def test_documented_differences_from_optax_at_kinks_and_bad_labels():
  # DESIGN contract 9: optax's jnp.maximum splits the gradient 0.5/0.5 at the kink; contract 4
  # asks for the sub-gradient 0 there. Both agree in value.
  y = f32([1.0, -1.0])
  for name, kink in (("hinge_loss", f32([1.0, -1.0])), ("perceptron_loss", f32([0.0, 0.0]))):
    ours = jax.grad(lambda x: jnp.sum(getattr(jaxloss, name)(x, y)))(kink)
    theirs = jax.grad(lambda x: jnp.sum(getattr(optax.losses, name)(x, y)))(kink)
    np.testing.assert_array_equal(ours, [0.0, 0.0])
    np.testing.assert_array_equal(np.abs(theirs), [0.5, 0.5])
  # A 0/1 label (a common mix-up) is accepted by optax as a finite loss; here it is NaN.
  s = f32([2.0, -3.0])
  assert np.all(np.isfinite(optax.losses.hinge_loss(s, f32([0.0, 1.0]))))
  assert np.isnan(jaxloss.hinge_loss(s, f32([0.0, 1.0]))[0])
  # Multiclass: the label tied with the best other class is the kink; optax splits jnp.max.
  scores = f32([[1.0, 1.0, 0.0]])
  g = jax.grad(lambda x: jnp.sum(jaxloss.multiclass_perceptron_loss(x, jnp.asarray([1]))))(scores)
  np.testing.assert_array_equal(g, [[0.0, 0.0, 0.0]])
  g_optax = jax.grad(lambda x: jnp.sum(optax.losses.multiclass_perceptron_loss(
      x, jnp.asarray([1]))))(scores)
  np.testing.assert_array_equal(g_optax, [[0.5, -0.5, 0.0]])


def test_multiclass_out_of_range_label_optax_is_finite_ours_nan(rng):
  s, _ = _multiclass(rng)
  labels = jnp.full((N,), C)  # one past the last class: optax's one-hot is all zeros
  assert np.all(np.isfinite(optax.losses.multiclass_hinge_loss(f32(s), labels)))
  assert np.all(np.isnan(jaxloss.multiclass_hinge_loss(f32(s), labels)))


# ------------------------------------------------------------------------------ multiclass

def np_crammer_singer(s, y, margin):
  s = np.float64(s)
  sy = s[np.arange(len(y)), y]
  others = np.where(np.arange(s.shape[1]) == y[:, None], -np.inf, s)
  return np.maximum(0, margin + others.max(1) - sy)


def np_multi_margin(s, y, p=1, margin=1.0, weight=None):
  # PyTorch's multi_margin_loss kernel: Σ_{j≠y} w_y·max(0, margin − s_y + s_j)^p / C.
  s = np.float64(s)
  n, c = s.shape
  sy = s[np.arange(n), y][:, None]
  h = np.maximum(0, margin - sy + s) ** p
  h[np.arange(n), y] = 0
  w = np.ones(c) if weight is None else np.asarray(weight, np.float64)
  return w[y] * h.sum(1) / c


def test_multiclass_values_against_numpy(rng):
  s, y = _multiclass(rng)
  assert_close(jaxloss.multiclass_hinge_loss(f32(s), y), np_crammer_singer(s, y, 1.0))
  assert_close(jaxloss.multiclass_perceptron_loss(f32(s), y), np_crammer_singer(s, y, 0.0))
  assert_close(jaxloss.multiclass_zero_one_loss(f32(s), y),
               (np.argmax(s, axis=1) != y).astype(np.float64))


def test_multiclass_zero_one_ties_go_to_the_lowest_class():
  logits = f32([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
  out = jaxloss.multiclass_zero_one_loss(logits, jnp.asarray([0, 1, 2]))
  np.testing.assert_array_equal(out, [0.0, 1.0, 1.0])


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("margin", [1.0, 0.3, 2.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_multi_margin_against_pytorch_formula(rng, p, margin, weighted):
  s, y = _multiclass(rng)
  w = rng.uniform(0.2, 2.0, size=C).astype(np.float32) if weighted else None
  out = jaxloss.multi_margin_loss(f32(s), y, p=p, margin=margin,
                                  class_weights=None if w is None else f32(w))
  assert_close(out, np_multi_margin(s, y, p, margin, w))


@pytest.mark.parametrize("case", torch_cases("multi_margin_loss"), ids=lambda c: c["name"])
def test_multi_margin_against_pytorch_vectors(case):
  s = f32(np.asarray(case["inputs"][0]))
  y = jnp.asarray(case["inputs"][1], jnp.int32)
  kwargs = dict(case["kwargs"])
  if "weight" in kwargs:
    kwargs["class_weights"] = f32(kwargs.pop("weight"))
  grad = jax.grad(lambda x: jnp.sum(jaxloss.multi_margin_loss(x, y, **kwargs)))(s)
  assert_close(jaxloss.multi_margin_loss(s, y, **kwargs), np.asarray(case["loss"]))
  assert_close(grad, np.asarray(case["grad"]), rtol=1e-4)


@pytest.mark.parametrize("name", MULTICLASS)
def test_class_axis(rng, name):
  s, y = _multiclass(rng)
  fn = getattr(jaxloss, name)
  np.testing.assert_allclose(fn(f32(s.T), y, axis=0), fn(f32(s), y), rtol=1e-6)


def test_one_class_crammer_singer_is_zero():
  s = f32([[3.0], [-2.0]])
  np.testing.assert_array_equal(jaxloss.multiclass_hinge_loss(s, jnp.asarray([0, 0])), [0, 0])


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("name", BINARY)
def test_bad_pm1_label_is_nan_for_its_example_and_checkified(rng, name):
  s, y = _binary(rng)
  y = y.copy()
  y[2, 1] = 0  # a 0/1 label mixed in
  fn = getattr(jaxloss, name)
  out = np.asarray(fn(f32(s), jnp.asarray(y)))
  assert np.isnan(out[2, 1])
  assert np.isfinite(np.delete(out.reshape(-1), 2 * 3 + 1)).all()
  err, _ = checkify.checkify(fn, errors=checkify.user_checks)(f32(s), jnp.asarray(y))
  with pytest.raises(checkify.JaxRuntimeError, match=rf"{name}.*-1 or \+1, got 0"):
    err.throw()
  err, _ = checkify.checkify(fn, errors=checkify.user_checks)(f32(s), jnp.asarray(np.sign(s)))
  assert err.get() is None


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("bad", [-1, C, 100])
def test_bad_class_label_is_nan_for_its_example_and_checkified(rng, name, bad):
  # optax wraps −1 to the last class through its one-hot; here it is an error (contract 6).
  s, y = _multiclass(rng)
  y = y.copy()
  y[3] = bad
  fn = getattr(jaxloss, name)
  out = np.asarray(fn(f32(s), jnp.asarray(y)))
  assert np.isnan(out[3]) and np.isfinite(np.delete(out, 3)).all()
  err, _ = checkify.checkify(fn, errors=checkify.user_checks)(f32(s), jnp.asarray(y))
  with pytest.raises(checkify.JaxRuntimeError, match=rf"in \[0, {C}\), got {bad}"):
    err.throw()


@pytest.mark.parametrize("name", BINARY)
def test_binary_shape_mismatch_and_integer_scores(name):
  fn = getattr(jaxloss, name)
  with pytest.raises(ValueError, match=r"\(4,\).*\(4, 1\)"):
    fn(jnp.zeros((4,), jnp.float32), jnp.ones((4, 1), jnp.int32))
  with pytest.raises(TypeError, match="floating"):
    fn(jnp.arange(4), jnp.ones((4,), jnp.int32))


@pytest.mark.parametrize("name", MULTICLASS)
def test_multiclass_label_type_and_shape(name):
  fn = getattr(jaxloss, name)
  s = jnp.zeros((4, C), jnp.float32)
  with pytest.raises(TypeError, match="integer"):
    fn(s, jnp.zeros((4,), jnp.float32))
  with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 1\)"):
    fn(s, jnp.zeros((4, 1), jnp.int32))


def test_multi_margin_rejects_unsupported_p_and_bad_weights():
  s, y = jnp.zeros((2, C), jnp.float32), jnp.zeros((2,), jnp.int32)
  with pytest.raises(ValueError, match=r"multi_margin_loss\(p=\.\.\.\)"):
    jaxloss.multi_margin_loss(s, y, p=3)
  with pytest.raises(ValueError, match=r"class_weights.shape=\(4,\)"):
    jaxloss.multi_margin_loss(s, y, class_weights=jnp.ones((4,), jnp.float32))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_returns_input_dtype(rng, dtype):
  s, y = _binary(rng)
  for name in BINARY:
    out = getattr(jaxloss, name)(jnp.asarray(s, dtype), y)
    ref = getattr(jaxloss, name)(jnp.asarray(s, dtype).astype(jnp.float32), y)
    assert out.dtype == dtype
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(np.float32(out), ref, rtol=eps, atol=eps * float(jnp.max(ref)))
  sm, ym = _multiclass(rng)
  for name in MULTICLASS:
    assert getattr(jaxloss, name)(jnp.asarray(sm, dtype), ym).dtype == dtype


# ------------------------------------------------------------------------------ properties

SCORES = hnp.arrays(np.float32, (16,), elements=st.floats(-30.0, 30.0, width=32))
SIGNS = hnp.arrays(np.int32, (16,), elements=st.sampled_from([-1, 1]))


@settings(deadline=None, max_examples=25, derandomize=True)
@given(s=SCORES, y=SIGNS)
def test_property_surrogates_bound_the_zero_one_loss(s, y):
  # The survey's point: each convex surrogate is an upper bound on the 0-1 loss (the logistic
  # loss in bits, log2(1 + e^{−m}) >= 1 at m <= 0).
  zero_one = np.asarray(jaxloss.zero_one_loss(f32(s), y))
  for name, scale in (("hinge_loss", 1.0), ("squared_hinge_loss", 1.0),
                      ("exponential_loss", 1.0), ("logistic_loss", 1 / np.log(2.0))):
    bound = np.asarray(getattr(jaxloss, name)(f32(s), y)) * scale
    assert np.all(bound >= zero_one * (1 - 1e-6)), name


# The bad-label rule: NaN value, zero gradient, so a row masked by `reduce` cannot poison it.

@pytest.mark.parametrize("name", ["zero_one_loss", "hinge_loss", "squared_hinge_loss",
                                  "perceptron_loss", "logistic_loss", "exponential_loss"])
def test_bad_pm1_label_gives_nan_value_and_zero_gradient(name):
  fn = getattr(jaxloss, name)
  s = jnp.asarray([0.3, -1.2, 2.0, 0.1], jnp.float32)
  y = jnp.asarray([1, 0, -1, 3])  # 0 and 3 are neither −1 nor +1
  out = np.asarray(fn(s, y))
  assert np.all(np.isnan(out[[1, 3]])) and np.all(np.isfinite(out[[0, 2]]))
  keep = (y == 1) | (y == -1)
  g = np.asarray(jax.grad(lambda x: jaxloss.reduce(fn(x, y), where=keep))(s))
  assert np.all(np.isfinite(g)) and np.all(g[[1, 3]] == 0)


@pytest.mark.parametrize("name, kwargs", [("multiclass_hinge_loss", {}),
                                          ("multiclass_perceptron_loss", {}),
                                          ("multi_margin_loss", {"p": 2}),
                                          ("multiclass_zero_one_loss", {})])
def test_bad_class_label_gives_nan_value_and_zero_gradient(name, kwargs, rng):
  fn = getattr(jaxloss, name)
  s = f32(rng.normal(size=(4, 3)))
  y = jnp.asarray([0, -100, 2, 3])
  out = np.asarray(fn(s, y, **kwargs))
  assert np.all(np.isnan(out[[1, 3]])) and np.all(np.isfinite(out[[0, 2]]))
  g = np.asarray(jax.grad(lambda x: jaxloss.reduce(fn(x, y, **kwargs),
                                                   where=(y >= 0) & (y < 3)))(s))
  assert np.all(np.isfinite(g)) and np.all(g[[1, 3]] == 0)


def test_small_integer_label_dtypes_hold_every_class(rng):
  s = rng.normal(size=(3, 300))
  labels = np.array([5, 200, 250])
  truth = (np.argmax(s, -1) != labels).astype(np.float64)
  for dtype in (jnp.uint8, jnp.int16, jnp.uint16, jnp.int32):
    out = jaxloss.multiclass_zero_one_loss(f32(s), jnp.asarray(labels, dtype))
    np.testing.assert_array_equal(np.asarray(out), truth)
  hinge = jaxloss.multiclass_hinge_loss(f32(s), jnp.asarray(labels, jnp.uint8))
  assert np.all(np.isfinite(np.asarray(hinge)))


def test_multi_margin_squared_does_not_overflow_before_the_mean():
  s = jnp.asarray([[-1e19, 9e18, 9e18, 9e18]], jnp.float32)
  out = jaxloss.multi_margin_loss(s, jnp.asarray([0]), p=2)
  s64 = np.asarray(s, np.float64)[0]
  truth = np.sum(np.maximum(0.0, 1.0 - s64[0] + s64[1:]) ** 2) / 4
  assert np.isfinite(float(out[0]))
  np.testing.assert_allclose(float(out[0]), truth, rtol=1e-5)


@pytest.mark.parametrize("name", ["zero_one_loss", "hinge_loss", "squared_hinge_loss",
                                  "perceptron_loss", "logistic_loss", "exponential_loss"])
def test_boolean_labels_mean_plus_and_minus_one(name, rng):
  fn = getattr(jaxloss, name)
  s = f32(rng.normal(size=6))
  y = rng.integers(0, 2, size=6).astype(bool)
  np.testing.assert_array_equal(np.asarray(fn(s, jnp.asarray(y))),
                                np.asarray(fn(s, jnp.asarray(np.where(y, 1, -1)))))


# PyTorch's and Keras's pairwise and multilabel margins, against their documented formulas.

def test_margin_ranking_value_and_closed_form_gradient(rng):
  x1, x2 = rng.normal(size=8), rng.normal(size=8)
  y = rng.choice([-1, 1], size=8)
  m = 0.3
  h = -y * (x1 - x2) + m
  assert_close(jaxloss.margin_ranking_loss(f32(x1), f32(x2), jnp.asarray(y), margin=m),
               np.maximum(0.0, h))
  g1, g2 = jax.grad(lambda a, b: jnp.sum(jaxloss.margin_ranking_loss(a, b, jnp.asarray(y),
                                                                     margin=m)),
                    argnums=(0, 1))(f32(x1), f32(x2))
  assert_close(g1, np.where(h > 0, -y, 0.0))
  assert_close(g2, np.where(h > 0, y, 0.0))
  # At the kink (h = 0) the sub-gradient is 0.
  g = jax.grad(lambda a: jaxloss.margin_ranking_loss(a, f32(0.0), 1, margin=0.5))(f32(0.5))
  assert float(g) == 0.0


def test_hinge_embedding_value_and_closed_form_gradient(rng):
  x = np.abs(rng.normal(size=8)) * 2
  y = rng.choice([-1, 1], size=8)
  truth = np.where(y == 1, x, np.maximum(0.0, 1.0 - x))
  assert_close(jaxloss.hinge_embedding_loss(f32(x), jnp.asarray(y)), truth)
  g = jax.grad(lambda d: jnp.sum(jaxloss.hinge_embedding_loss(d, jnp.asarray(y))))(f32(x))
  assert_close(g, np.where(y == 1, 1.0, np.where(x < 1.0, -1.0, 0.0)))
  bad = jaxloss.hinge_embedding_loss(f32([0.5, 0.5]), jnp.asarray([1, 0]))
  assert np.isfinite(float(bad[0])) and np.isnan(float(bad[1]))


def test_categorical_hinge_matches_keras_formula(rng):
  s = rng.normal(size=(6, 4))
  y = np.eye(4)[rng.integers(0, 4, 6)]
  pos = np.sum(y * s, -1)
  neg = np.max((1 - y) * s, -1)
  truth = np.maximum(0.0, neg - pos + 1.0)
  assert_close(jaxloss.categorical_hinge_loss(f32(s), f32(y)), truth)
  g = jax.grad(lambda v: jnp.sum(jaxloss.categorical_hinge_loss(v, f32(y))))(f32(s))
  k = np.argmax((1 - y) * s, -1)
  expected = np.where((truth > 0)[:, None], (1 - y) * np.eye(4)[k] - y, 0.0)
  assert_close(g, expected)


def _np_multilabel_margin(x, y):
  out = []
  for xs, ys in zip(x, y, strict=True):
    targets = []
    for t in ys:
      if t == -1:
        break
      targets.append(t)
    c = len(xs)
    others = [i for i in range(c) if i not in targets]
    out.append(sum(max(0.0, 1 - (xs[j] - xs[i])) for j in targets for i in others) / c)
  return np.array(out)


def test_multilabel_margin_matches_pytorch_definition(rng):
  x = rng.normal(size=(5, 4))
  y = np.array([[3, 0, -1, 1], [1, -1, 2, 2], [-1, 0, 1, 2], [0, 1, 2, 3], [2, 2, -1, 0]])
  assert_close(jaxloss.multilabel_margin_loss(f32(x), jnp.asarray(y)),
               _np_multilabel_margin(x, y))
  # PyTorch's documented example: 0.85.
  doc = jaxloss.multilabel_margin_loss(f32([[0.1, 0.2, 0.4, 0.8]]), jnp.asarray([[3, 0, -1, 1]]))
  np.testing.assert_allclose(float(doc[0]), 0.85, rtol=1e-6)


def test_multilabel_margin_closed_form_gradient(rng):
  x = rng.normal(size=(3, 5))
  y = np.array([[1, 3, -1, 0, 0], [4, -1, -1, -1, -1], [0, 1, 2, 3, -1]])
  g = np.asarray(jax.grad(lambda v: jnp.sum(jaxloss.multilabel_margin_loss(v, jnp.asarray(y))))(
      f32(x)))
  expected = np.zeros_like(x)
  for r in range(3):
    targets = list(y[r][:list(y[r]).index(-1)]) if -1 in y[r] else list(y[r])
    for j in targets:
      for i in range(5):
        if i not in targets and 1 - (x[r, j] - x[r, i]) > 0:
          expected[r, i] += 1 / 5
          expected[r, j] -= 1 / 5
  assert_close(g, expected)


def test_multilabel_margin_bad_target_gives_nan_and_zero_gradient(rng):
  # Before the first −1 a target must be a class in [0, C): C = 3 and 5 are too large, −7 is
  # negative but not the padding. After the −1 anything goes (row 1's 7), as in PyTorch.
  # One compilation each, reused for every bad value.
  fn = jaxloss.multilabel_margin_loss
  x = f32(rng.normal(size=(2, 3)))
  grad = jax.jit(jax.grad(lambda v, y: jaxloss.reduce(fn(v, y), where=jnp.asarray([False, True]))))
  checked = jax.jit(checkify.checkify(fn, errors=checkify.user_checks))
  for bad in (5, 3, -7):
    y = jnp.asarray([[0, bad, -1], [1, -1, 7]], jnp.int32)
    out = np.asarray(fn(x, y))
    assert np.isnan(out[0]) and np.isfinite(out[1])
    g = np.asarray(grad(x, y))
    assert np.all(g[0] == 0) and np.all(np.isfinite(g))
    err, _ = checked(x, y)
    with pytest.raises(checkify.JaxRuntimeError, match=rf"multilabel_margin_loss.*targets.*{bad}"):
      err.throw()


def test_multilabel_margin_float_targets_raise_type_error_naming_targets():
  with pytest.raises(TypeError, match="multilabel_margin_loss: `targets` must have an integer"):
    jaxloss.multilabel_margin_loss(f32([[0.5, 1.0]]), f32([[0.0, -1.0]]))


@pytest.mark.parametrize("name, torch_function", [
    ("margin_ranking_loss", "margin_ranking_loss"),
    ("hinge_embedding_loss", "hinge_embedding_loss"),
    ("multilabel_margin_loss", "multilabel_margin_loss"),
])
def test_pairwise_and_multilabel_margins_match_pytorch_vectors(name, torch_function):
  cases = torch_cases(torch_function)
  assert cases, torch_function
  fn = getattr(jaxloss, name)
  for case in cases:
    x, *rest = case["inputs"]
    rest = [jnp.asarray(np.asarray(r), jnp.int32) if name == "multilabel_margin_loss" else f32(r)
            for r in rest]
    loss, grad = jax.value_and_grad(lambda v: jnp.sum(fn(v, *rest, **case["kwargs"])))(f32(x))
    assert_close(fn(f32(x), *rest, **case["kwargs"]), case["loss"])
    assert_close(grad, case["grad"])
