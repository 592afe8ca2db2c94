"""Robustness sweep: every public loss against extreme values, masks, dtypes and bad input.

One table (``SPECS``) describes every public loss: how to build a representative batch, what
its inputs mean, and which cases apply; a loss opts out of a case only with a written reason
(``optout``). The cases are numbered as in the robustness issue; each cites the public bug
report that shows it matters. Every case reuses one shape per loss so that each function
compiles a handful of times only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify
from jax.sharding import NamedSharding, PartitionSpec

import jaxloss

N, C = 8, 5  # batch and class counts of every representative input (N divisible by 8 devices)
F32_MAX = float(np.finfo(np.float32).max)


def f32(x):
  return jnp.asarray(x, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Spec:
  """One public loss in the sweep.

  ``make(rng)`` returns ``(args, kwargs)`` at the representative shape; ``args[0]`` is the
  prediction (the input every case differentiates and perturbs); its leading axis is the batch.
  ``with_prediction(args, x)`` replaces the prediction (default: ``args[0]`` by ``x``).
  ``expect_inf(v)``: whether the true loss is infinite (above float32's maximum) when every
  prediction equals ``v`` in the extreme-value case, so the test expects inf there.
  """
  name: str
  make: Callable[[np.random.Generator], tuple[tuple[Any, ...], dict]]
  kind: str  # "elementwise", "pm1", "binary01", "class_int", "class_prob", "pair", "probs"
  nonnegative: bool = True
  twice_differentiable: bool = False
  expect_inf: Callable[[float], bool] = lambda v: False
  optout: dict = dataclasses.field(default_factory=dict)  # case -> written reason

  @property
  def fn(self):
    return getattr(jaxloss, self.name)

  def inputs(self, seed=0):
    return self.make(np.random.default_rng(seed))


def _regression(name, twice=False, expect_inf=lambda v: False, target=None, **kwargs):
  def make(r):
    t = f32(r.normal(size=(N, C))) if target is None else target(r)
    return (f32(r.normal(size=(N, C))), t), dict(kwargs)
  return Spec(name, make, "elementwise", twice_differentiable=twice, expect_inf=expect_inf)


def _squares_overflow(v):
  return abs(v) ** 2 > F32_MAX  # (p − t)² with |p| = 1e30 is 1e60


def _counts(r):
  return f32(r.poisson(2.0, size=(N, C)))


def _gaussian_make(r):
  return ((f32(r.normal(size=(N, C))), f32(r.normal(size=(N, C))),
           f32(r.uniform(0.5, 2.0, size=(N, C)))), {})


SPECS = [
    _regression("l1_loss"),
    _regression("squared_error", twice=True, expect_inf=_squares_overflow),
    _regression("l2_loss", twice=True, expect_inf=_squares_overflow),
    _regression("smooth_l1_loss", beta=0.5),
    _regression("huber_loss", delta=0.7),
    _regression("log_cosh", twice=True),
    _regression("quantile_loss", quantile=0.3),
    # exp(log-rate) overflows for log-rates above ~88.7: the true value is above float32's max.
    dataclasses.replace(_regression("poisson_nll_loss", twice=True, target=_counts),
                        nonnegative=False, expect_inf=lambda v: v > 88.0),
    Spec("gaussian_nll_loss", _gaussian_make, "elementwise", nonnegative=False,
         twice_differentiable=True, expect_inf=_squares_overflow),
]



# margin and embedding (issue 4): ±1 labels, integer classes, feature vectors.
def _pm1(name, twice=False, expect_inf=lambda v: False):
  def make(r):
    return (f32(r.normal(size=(N, C))), jnp.asarray(r.choice([-1, 1], (N, C)))), {}
  return Spec(name, make, "pm1", twice_differentiable=twice, expect_inf=expect_inf)


def _classes(name, **kwargs):
  def make(r):
    return (f32(r.normal(size=(N, C))), jnp.asarray(r.integers(0, C, N))), dict(kwargs)
  return Spec(name, make, "class_int")


def _center_make(r):
  # The centers are a keyword: every case perturbs and batches the features only.
  return ((f32(r.normal(size=(N, C))), jnp.asarray(r.integers(0, 3, N))),
          {"centers": f32(np.linspace(-1, 1, 3 * C).reshape(3, C))})


def _pairs_make(r):
  return (f32(r.normal(size=(N, C))), f32(r.normal(size=(N, C))),
          jnp.asarray(np.arange(N) % 2)), {"margin": 2.0}


def _triplet_make(r):
  return tuple(f32(r.normal(size=(N, C))) for _ in range(3)), {"swap": True}


SPECS += [
    _pm1("zero_one_loss"),
    _pm1("hinge_loss"),
    _pm1("squared_hinge_loss", expect_inf=_squares_overflow),
    _pm1("perceptron_loss"),
    _pm1("logistic_loss", twice=True),
    # exp(−y·s) overflows for y·s below ~−88.7 (labels are mixed, so for |s| above it).
    _pm1("exponential_loss", twice=True, expect_inf=lambda v: abs(v) > 88.0),
    _classes("multiclass_zero_one_loss"),
    _classes("multiclass_hinge_loss"),
    _classes("multiclass_perceptron_loss"),
    _classes("multi_margin_loss", p=2, margin=0.7),
    Spec("center_loss", _center_make, "class_int", twice_differentiable=True,
         expect_inf=_squares_overflow),
    Spec("triplet_margin_loss", _triplet_make, "pair"),
    # ½d² of the similar pairs is above float32's maximum when |x1| = 1e30.
    Spec("contrastive_loss", _pairs_make, "pair", expect_inf=_squares_overflow),
]

BY_NAME = {s.name: s for s in SPECS}


def applicable(case, kinds=None, predicate=lambda s: True):
  """The specs a case runs on: right kind, passing ``predicate``, and not opted out."""
  out = []
  for spec in SPECS:
    if kinds is not None and spec.kind not in kinds:
      continue
    if not predicate(spec):
      continue
    if case in spec.optout:
      out.append(pytest.param(spec, id=spec.name,
                              marks=pytest.mark.skip(reason=spec.optout[case])))
    else:
      out.append(pytest.param(spec, id=spec.name))
  return out


def test_every_public_loss_is_in_the_table():
  public = {n for n in jaxloss.__all__
            if n not in ("__version__", "reduce", "smooth_labels")
            and callable(getattr(jaxloss, n))}
  missing = public - set(BY_NAME) - set(NOT_LOSSES)
  assert not missing, f"add these losses to SPECS: {sorted(missing)}"


# Public functions that are not per-example losses, each with the test that covers it instead.
NOT_LOSSES = {
    "update_centers": "tests/test_embedding.py::test_update_centers_*",
    "l1_penalty": "tests/test_regularizers.py",
    "l2_penalty": "tests/test_regularizers.py",
    "elastic_net_penalty": "tests/test_regularizers.py",
    "structural_risk": "tests/test_regularizers.py",
}


def value_and_grad_of_sum(spec, args, kwargs):
  def total(x):
    return jnp.sum(spec.fn(x, *args[1:], **kwargs))
  return jax.value_and_grad(total)(args[0])


def _with_prediction(args, x):
  return (x,) + tuple(args[1:])


# ---------------------------------------------------------------- 1. extreme predictions
# optax #1267: focal loss NaN gradients at large logits; every loss must stay finite wherever
# the true value is below float32's maximum, and say inf where the maths overflows.

EXTREMES = [100.0, -100.0, 1e4, -1e4, 1e30, -1e30]


@pytest.mark.parametrize("spec", applicable("1"))
def test_1_extreme_predictions(spec):
  args, kwargs = spec.inputs()
  for v in EXTREMES:
    x = jnp.full(args[0].shape, v, jnp.float32)
    a = _with_prediction(args, x)
    value, grad = value_and_grad_of_sum(spec, a, kwargs)
    if spec.expect_inf(v):
      assert np.isposinf(value), (spec.name, v, value)
      continue
    assert np.isfinite(value), (spec.name, v, value)
    assert np.all(np.isfinite(grad)), (spec.name, v)
    if spec.twice_differentiable:
      hvp = jax.jvp(jax.grad(lambda p: jnp.sum(spec.fn(p, *a[1:], **kwargs))), (x,),
                    (jnp.ones_like(x),))[1]
      assert np.all(np.isfinite(hvp)), (spec.name, v, "Hessian-vector product")


# ---------------------------------------------------------------- 3. empty batch
# An empty batch (shape (0, C)) gives an empty loss, a mean of 0 and zero gradients.

@pytest.mark.parametrize("spec", applicable("3"))
def test_3_empty_batch(spec):
  args, kwargs = spec.inputs()
  empty = tuple(jnp.zeros((0,) + a.shape[1:], a.dtype) if a.ndim else a for a in args)
  out = spec.fn(*empty, **kwargs)
  assert out.shape[0] == 0
  value, grad = jax.value_and_grad(lambda x: jaxloss.reduce(spec.fn(x, *empty[1:], **kwargs)))(
      empty[0])
  assert value == 0.0 and grad.shape == empty[0].shape


# ---------------------------------------------------------------- 8. bf16 and fp16
# optax #1020 and flax #677: low-precision inputs must be computed in float32 and returned in
# the input dtype. Tolerance: one rounding of the float32 result to the input dtype, relative
# to the batch's largest loss (entries near zero carry only absolute error).

@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("spec", applicable("8"))
def test_8_low_precision(spec, dtype):
  args, kwargs = spec.inputs()
  low = tuple(a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in args)
  out = spec.fn(*low, **kwargs)
  assert out.dtype == dtype
  ref = spec.fn(*(a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a
                  for a in low), **kwargs)
  eps = float(jnp.finfo(dtype).eps)
  scale = float(jnp.max(jnp.abs(ref))) + 1e-30
  np.testing.assert_allclose(np.float32(out), ref, rtol=eps, atol=eps * scale)


# ---------------------------------------------------------------- 9. NaN propagates
# A NaN in one example's prediction makes that example's loss NaN, and only that one.

@pytest.mark.parametrize("spec", applicable("9"))
def test_9_nan_propagates_to_its_example_only(spec):
  args, kwargs = spec.inputs()
  x = args[0].at[(0,) * args[0].ndim].set(jnp.nan)
  out = np.asarray(spec.fn(*_with_prediction(args, x), **kwargs))
  assert np.all(np.isnan(out[0].reshape(-1)[:1])), spec.name
  assert np.all(np.isfinite(out[1:])), spec.name


# ---------------------------------------------------------------- 10. bad input
# optax 0.2.8 broadcasts (N,) against (N, 1) into an (N, N) loss for huber_loss and
# sigmoid_binary_cross_entropy; here every mismatch raises naming both shapes.

@pytest.mark.parametrize("spec", applicable("10", kinds=("elementwise", "pm1", "binary01")))
def test_10_shape_mismatch_names_both_shapes(spec):
  args, kwargs = spec.inputs()
  bad = (args[0][:, 0],) + tuple(a[:, :1] if a.ndim == 2 else a for a in args[1:])
  with pytest.raises(ValueError, match=rf"\({N},\).*\({N}, 1\)|\({N}, 1\).*\({N},\)"):
    spec.fn(*bad, **kwargs)


@pytest.mark.parametrize("spec", applicable("10"))
def test_10_integer_predictions_raise_type_error(spec):
  args, kwargs = spec.inputs()
  with pytest.raises(TypeError):
    spec.fn(*_with_prediction(args, args[0].astype(jnp.int32)), **kwargs)


NEGATIVE_HYPERPARAMETERS = [("huber_loss", "delta"), ("smooth_l1_loss", "beta"),
                            ("quantile_loss", "quantile"), ("poisson_nll_loss", "eps"),
                            ("gaussian_nll_loss", "eps")]


@pytest.mark.parametrize("name,kwarg", NEGATIVE_HYPERPARAMETERS,
                         ids=[f"{n}-{k}" for n, k in NEGATIVE_HYPERPARAMETERS])
def test_10_negative_hyperparameter_eager_and_traced(name, kwarg):
  spec = BY_NAME[name]
  args, kwargs = spec.inputs()
  kwargs = {**kwargs, kwarg: -1.0}
  with pytest.raises(ValueError, match=rf"{name}\({kwarg}=\.\.\.\)"):
    spec.fn(*args, **kwargs)
  checked = checkify.checkify(lambda v: spec.fn(*args, **{**kwargs, kwarg: v}),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(jnp.float32(-1.0))
  with pytest.raises(checkify.JaxRuntimeError, match=rf"{name}\({kwarg}=\.\.\.\)"):
    err.throw()


def test_10_unknown_reduction():
  with pytest.raises(ValueError, match="reduction='median'"):
    jaxloss.reduce(jnp.ones((3,), jnp.float32), "median")


# ---------------------------------------------------------------- 12. no re-tracing

@pytest.mark.parametrize("spec", applicable("12"))
def test_12_no_retrace_with_new_values(spec):
  args, kwargs = spec.inputs(seed=1)
  spec.fn(*args, **kwargs)
  size = spec.fn.jitted._cache_size()
  args2, _ = spec.inputs(seed=2)
  spec.fn(*args2, **kwargs)
  assert spec.fn.jitted._cache_size() == size


# ---------------------------------------------------------------- 13. multi-device
# Inputs sharded over 8 host devices along the batch axis give the unsharded numbers.

@pytest.mark.parametrize("spec", applicable("13"))
def test_13_sharded_batch_matches_unsharded(spec):
  devices = np.array(jax.devices())
  assert devices.size == 8, "tests/conftest.py sets 8 host devices"
  mesh = jax.sharding.Mesh(devices, ("data",))
  args, kwargs = spec.inputs()

  def shard(a):
    if a.ndim == 0:
      return a
    return jax.device_put(a, NamedSharding(mesh, PartitionSpec("data")))

  sharded = tuple(shard(a) for a in args)
  out = jax.jit(lambda *a: spec.fn(*a, **kwargs))(*sharded)
  np.testing.assert_allclose(out, spec.fn(*args, **kwargs), rtol=1e-6, atol=1e-6)
  g_sharded = jax.jit(lambda *a: value_and_grad_of_sum(spec, a, kwargs)[1])(*sharded)
  np.testing.assert_allclose(g_sharded, value_and_grad_of_sum(spec, args, kwargs)[1],
                             rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- properties (hypothesis)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

FLOATS = st.floats(-50.0, 50.0, allow_nan=False, width=32)
VECTORS = hnp.arrays(np.float32, (16,), elements=FLOATS)
SETTINGS = settings(deadline=None, max_examples=25, derandomize=True)
REGRESSION = ["l1_loss", "squared_error", "l2_loss", "smooth_l1_loss", "huber_loss", "log_cosh"]


@pytest.mark.parametrize("name", REGRESSION)
@SETTINGS
@given(p=VECTORS, t=VECTORS)
def test_property_regression_nonnegative_symmetric_zero_at_perfect(name, p, t):
  fn = getattr(jaxloss, name)
  p, t = f32(p), f32(t)
  out = fn(p, t)
  assert np.all(out >= 0)
  np.testing.assert_array_equal(fn(p, p), np.zeros(16, np.float32))
  np.testing.assert_allclose(fn(t, p), out, rtol=1e-6)  # symmetric in the residual


CONVEX = ["l1_loss", "squared_error", "l2_loss", "smooth_l1_loss", "huber_loss", "log_cosh",
          "quantile_loss"]


@pytest.mark.parametrize("name", CONVEX)
@SETTINGS
@given(a=VECTORS, b=VECTORS, lam=st.floats(0.0, 1.0))
def test_property_convex_along_segments(name, a, b, lam):
  fn = getattr(jaxloss, name)
  a, b = f32(a), f32(b)
  t = jnp.zeros((16,), jnp.float32)
  mid = fn(lam * a + (1 - lam) * b, t)
  chord = lam * fn(a, t) + (1 - lam) * fn(b, t)
  assert np.all(np.asarray(mid) <= np.asarray(chord) * (1 + 1e-5) + 1e-4)


@pytest.mark.parametrize("spec", applicable("vmap"))
def test_property_vmap_equals_python_loop(spec):
  args, kwargs = spec.inputs(seed=3)
  batched = jax.vmap(lambda *a: spec.fn(*a, **kwargs))(*args)
  looped = jnp.stack([spec.fn(*(a[i] for a in args), **kwargs) for i in range(N)])
  np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", applicable("nonneg", predicate=lambda s: s.nonnegative))
def test_property_nonnegative_on_random_batches(spec):
  for seed in range(3):
    args, kwargs = spec.inputs(seed=seed)
    assert np.all(np.asarray(spec.fn(*args, **kwargs)) >= 0), spec.name

