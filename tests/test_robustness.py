"""Robustness sweep: every public loss against extreme values, masks, dtypes and bad input.

One table (``SPECS``) describes every public loss: how to build a representative batch, what
its inputs mean, and which cases apply; a loss opts out of a case only with a written reason
(``optout``). The cases are numbered as in the robustness issue; each cites the public bug
report that shows it matters. Every case reuses one shape per loss so that each function
compiles a handful of times only. Cases that concern a few losses (masks, zero targets, kinks,
boundary hyper-parameters) are small tables of their own, with references from the maths in
numpy float64.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

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
from _reference import assert_close

N, C = 8, 5  # batch and class counts of every representative input (N divisible by 8 devices)
D, V = 4, 12  # hidden size and vocabulary of the large-vocabulary losses (chunk 5: shifted last)
F32_MAX = float(np.finfo(np.float32).max)
VOCAB_MESH = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))


def f32(x):
  return jnp.asarray(x, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Spec:
  """One public loss in the sweep.

  ``make(rng)`` returns ``(args, kwargs)`` at the representative shape; ``args[0]`` is the
  prediction (the input every case differentiates and perturbs); its leading axis is the batch.
  ``expect_inf(v)``: whether the true loss is infinite (above float32's maximum) when the
  predictions are ``extreme(v)`` in the extreme-value case, so the test expects inf there.
  """
  name: str
  make: Callable[[np.random.Generator], tuple[tuple[Any, ...], dict]]
  kind: str  # "elementwise", "pm1", "binary01", "probs", "class_int", "class_prob", "pair",
  #            "large_vocab", "helper"
  nonnegative: bool = True
  twice_differentiable: bool = False
  reverse_only: bool = False  # custom_vjp: Hessians by reverse-over-reverse (DESIGN contract 3)
  expect_inf: Callable[[float], bool] = lambda v: False
  batch_argnums: tuple[int, ...] | None = None  # the positional args with a batch axis (None: all)
  label_argnum: int | None = None  # the integer labels / ±1 targets, for the bad-label cases
  n_classes: int = C
  out_dtype: Any = None  # the output dtype for bf16/fp16 input (None: the input dtype)
  optout: dict = dataclasses.field(default_factory=dict)  # case -> written reason

  @property
  def fn(self):
    return getattr(jaxloss, self.name)

  def inputs(self, seed=0):
    return self.make(np.random.default_rng(seed))

  def batched(self, i):
    return self.batch_argnums is None or i in self.batch_argnums

  def extreme(self, shape, v):
    """Predictions of magnitude ``v``: constant for elementwise losses; alternating signs along
    the class (or hidden) axis for class-axis losses, so that both saturated directions occur."""
    if self.kind in ("class_int", "class_prob", "large_vocab"):
      signs = np.where(np.arange(shape[-1]) % 2 == 0, 1.0, -1.0)
      return f32(np.broadcast_to(v * signs, shape))
    return jnp.full(shape, v, jnp.float32)


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
  return Spec(name, make, "pm1", twice_differentiable=twice, expect_inf=expect_inf,
              label_argnum=1)


def _classes(name, twice=False, log_probs=False, expect_inf=lambda v: False, **kwargs):
  def make(r):
    x = r.normal(size=(N, C))
    if log_probs:
      x = _log_softmax(x)
    return (f32(x), jnp.asarray(r.integers(0, C, N))), dict(kwargs)
  return Spec(name, make, "class_int", twice_differentiable=twice, expect_inf=expect_inf,
              label_argnum=1)


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
    # Alternating ±v scores: (margin + 2|v|)² is above float32's maximum at |v| = 1e30.
    _classes("multi_margin_loss", p=2, margin=0.7,
             expect_inf=lambda v: (2 * abs(v)) ** 2 > F32_MAX),
    Spec("center_loss", _center_make, "class_int", twice_differentiable=True,
         expect_inf=_squares_overflow, label_argnum=1, n_classes=3),
    Spec("triplet_margin_loss", _triplet_make, "pair"),
    # ½d² of the similar pairs is above float32's maximum when |x1| = 1e30.
    Spec("contrastive_loss", _pairs_make, "pair", expect_inf=_squares_overflow),
]


# cross-entropy family (issue 3): probability targets, integer labels, 0/1 labels, probabilities.
def _log_softmax(x):
  x = np.asarray(x, np.float64)
  top = np.max(x, axis=-1, keepdims=True)
  return x - top - np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


def _dirichlet(r):
  return r.dirichlet(np.ones(C), size=N)


def _class_probs(name, log_inputs=False, log_targets=False, **kwargs):
  def make(r):
    x = r.normal(size=(N, C))
    t = _dirichlet(r)
    return ((f32(_log_softmax(x) if log_inputs else x),
             f32(np.log(t) if log_targets else t)), dict(kwargs))
  return Spec(name, make, "class_prob", twice_differentiable=True)


def _binary(name, **kwargs):
  def make(r):
    return (f32(r.normal(size=(N, C))), f32(r.integers(0, 2, (N, C)))), dict(kwargs)
  return Spec(name, make, "binary01", twice_differentiable=True)


def _bce_make(r):
  return (f32(r.uniform(0.05, 0.95, (N, C))), f32(r.integers(0, 2, (N, C)))), {}


SPECS += [
    _class_probs("softmax_cross_entropy", label_smoothing=0.1),
    _classes("softmax_cross_entropy_with_integer_labels", twice=True, label_smoothing=0.1),
    _binary("sigmoid_binary_cross_entropy"),
    Spec("binary_cross_entropy", _bce_make, "probs", twice_differentiable=True,
         optout={"1": "its input is a probability in [0, 1]: the extreme inputs are exactly 0 "
                      "and 1, case 5 (test_5_binary_cross_entropy_at_zero_and_one)"}),
    _binary("sigmoid_focal_loss", alpha=0.25, gamma=2.0),
    _classes("softmax_focal_loss", twice=True, gamma=2.0),
    _classes("nll_loss", twice=True, log_probs=True),
    _class_probs("kl_divergence", log_inputs=True),
    _class_probs("kl_divergence_with_log_targets", log_inputs=True, log_targets=True),
    _class_probs("poly_loss_cross_entropy", epsilon=2.0),
]


# large vocabulary (issue 5): hidden (N, D) is the prediction; the weight (D, V) is shared.
def _large_vocab_make(r, **kwargs):
  return ((f32(r.normal(size=(N, D))), f32(r.normal(size=(D, V)) / 2),
           jnp.asarray(r.integers(0, V, N))), {"chunk_size": 5, **kwargs})


_LARGE_VOCAB_OPTOUT = {
    "vmap": "takes (N, D) hidden states only, so a per-example call is refused by contract; "
            "test_property_vmap_over_blocks_of_tokens maps blocks of tokens instead",
    "2": "`where` masks tokens, not classes: no class can be masked out of its softmax "
         "(fully masked batches are case 3, test_3_where_and_ignore_index_drop_every_token)",
}

SPECS += [
    Spec("linear_softmax_cross_entropy", _large_vocab_make, "large_vocab",
         twice_differentiable=True, reverse_only=True, batch_argnums=(0, 2), label_argnum=2,
         n_classes=V, out_dtype=jnp.float32, optout=_LARGE_VOCAB_OPTOUT),
    Spec("vocab_parallel_linear_softmax_cross_entropy",
         lambda r: _large_vocab_make(r, mesh=VOCAB_MESH), "large_vocab",
         twice_differentiable=True, reverse_only=True, batch_argnums=(0, 2), label_argnum=2,
         n_classes=V, out_dtype=jnp.float32, optout=_LARGE_VOCAB_OPTOUT),
]

BY_NAME = {s.name: s for s in SPECS}

# Public functions that are not per-example losses, with inputs for the hyper-parameter and
# axis checks; their other tests live in the named modules.
HELPERS = {
    "smooth_labels": Spec("smooth_labels", lambda r: ((f32(_dirichlet(r)),), {"alpha": 0.1}),
                          "helper"),
    "update_centers": Spec(
        "update_centers", lambda r: ((f32(np.linspace(-1, 1, 3 * C).reshape(3, C)),
                                      f32(r.normal(size=(N, C))),
                                      jnp.asarray(r.integers(0, 3, N))), {}), "helper"),
}

NOT_LOSSES = {
    "smooth_labels": "a label transform: masks in case 2, alpha in cases 7 and 10",
    "update_centers": "tests/test_embedding.py::test_update_centers_*; alpha in case 10",
    "l1_penalty": "tests/test_regularizers.py",
    "l2_penalty": "tests/test_regularizers.py",
    "elastic_net_penalty": "tests/test_regularizers.py",
    "structural_risk": "tests/test_regularizers.py",
}


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
            if n not in ("__version__", "reduce") and callable(getattr(jaxloss, n))}
  missing = public - set(BY_NAME) - set(NOT_LOSSES)
  assert not missing, f"add these losses to SPECS: {sorted(missing)}"
  for spec in SPECS:
    for case, reason in spec.optout.items():
      assert isinstance(reason, str) and len(reason) > 20, (spec.name, case)
    # Case 2 is a table of its own: every loss with a `where` is in it or opts out.
    if "where" in inspect.signature(spec.fn).parameters:
      assert spec.name in {n for n, _ in MASKED_CASES} or "2" in spec.optout, spec.name


def test_every_public_docstring_has_an_edge_cases_paragraph():
  # The last point: each public docstring states what happens at the boundaries.
  for name in jaxloss.__all__:
    fn = getattr(jaxloss, name)
    if callable(fn):
      assert "\n  Edge cases:\n" in fn.__doc__, name


def value_and_grad_of_sum(spec, args, kwargs):
  def total(x):
    return jnp.sum(spec.fn(x, *args[1:], **kwargs))
  return jax.value_and_grad(total)(args[0])


def hessian_vector_product(spec, args, kwargs, v):
  """Forward-over-reverse; reverse-over-reverse for the reverse-mode-only (custom_vjp) losses."""
  grad = jax.grad(lambda p: jnp.sum(spec.fn(p, *args[1:], **kwargs)))
  if spec.reverse_only:
    return jax.grad(lambda p: jnp.vdot(grad(p), v))(args[0])
  return jax.jvp(grad, (args[0],), (v,))[1]


def _with_prediction(args, x):
  return (x,) + tuple(args[1:])


def _replace(args, i, x):
  return tuple(x if j == i else a for j, a in enumerate(args))


def _is_float(a):
  return jnp.issubdtype(a.dtype, jnp.floating)


# ---------------------------------------------------------------- 1. extreme predictions
# optax #1267: focal loss NaN gradients at large logits; every loss must stay finite wherever
# the true value is below float32's maximum, and say inf where the maths overflows.

EXTREMES = [100.0, -100.0, 1e4, -1e4, 1e30, -1e30]


@pytest.mark.parametrize("spec", applicable("1"))
def test_1_extreme_predictions(spec):
  args, kwargs = spec.inputs()
  # Compiled once per loss, reused for every extreme value.
  value_and_grad = jax.jit(lambda *a: value_and_grad_of_sum(spec, a, kwargs))
  hvp = jax.jit(lambda *a: hessian_vector_product(spec, a, kwargs, jnp.ones_like(a[0])))
  for v in EXTREMES:
    a = _with_prediction(args, spec.extreme(args[0].shape, v))
    value, grad = value_and_grad(*a)
    if spec.expect_inf(v):
      assert np.isposinf(value), (spec.name, v, value)
      continue
    assert np.isfinite(value), (spec.name, v, value)
    assert np.all(np.isfinite(grad)), (spec.name, v)
    if spec.twice_differentiable:
      assert np.all(np.isfinite(hvp(*a))), (spec.name, v, "Hessian-vector product")


# ---------------------------------------------------------------- 2. masked −inf logits
# optax #896 (NaN gradient of softmax_cross_entropy with −inf logits under `where`), optax PR
# #1762 (masked classes in the integer-label loss), jax #19490 (NaN in forward mode through a
# masked softmax). Masked logits are −inf; the value must match numpy over the unmasked classes,
# the gradient must be exactly 0 at masked entries, and jax.jvp must be finite and agree with it.

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


def _np_masked_lse(x, m):
  x = np.where(m, x, -np.inf)
  top = np.max(x, axis=-1, keepdims=True)
  return top + np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


def _smoothed(y, m, eps):
  return np.where(m, (1 - eps) * y + eps / m.sum(-1, keepdims=True), 0.0)


def _masked_problem(name, kwargs, mask, rng):
  """(prediction, other args, float64 reference) with −inf predictions at masked classes."""
  x = rng.normal(size=(N, C))
  y = _dirichlet(rng)
  x_inf = np.where(mask, x, -np.inf)
  lse = _np_masked_lse(x, mask)
  eps = kwargs.get("label_smoothing", 0.0)
  if name == "softmax_cross_entropy":
    t = _smoothed(y, mask, eps)
    ref = np.sum(np.where(mask, t * (lse - x), 0.0), -1)
    return x_inf, (f32(y),), ref
  if name == "softmax_cross_entropy_with_integer_labels":
    t = _smoothed(np.eye(C)[LABELS], mask, eps)
    ref = np.sum(np.where(mask, t * (lse - x), 0.0), -1)
    return x_inf, (jnp.asarray(LABELS),), ref
  if name == "poly_loss_cross_entropy":
    p = np.where(mask, np.exp(x - lse), 0.0)
    ym = np.where(mask, y, 0.0)
    ref = np.sum(ym * (lse - np.where(mask, x, 0.0)), -1) + kwargs["epsilon"] * np.sum(
        ym * (1 - p), -1)
    return x_inf, (f32(y),), ref
  if name == "kl_divergence":
    lp = _log_softmax(x)
    ref = np.sum(np.where(mask, y * (np.log(y) - lp), 0.0), -1)
    return np.where(mask, lp, -np.inf), (f32(y),), ref
  if name == "kl_divergence_with_log_targets":
    lp = _log_softmax(x)
    ref = np.sum(np.where(mask, y * (np.log(y) - lp), 0.0), -1)
    return np.where(mask, lp, -np.inf), (f32(np.log(y)),), ref
  if name == "smooth_labels":
    return y, (), _smoothed(y, mask, kwargs["alpha"])
  raise AssertionError(name)


MASKED_CASES = [
    ("softmax_cross_entropy", {}),
    ("softmax_cross_entropy", {"label_smoothing": 0.2}),
    ("softmax_cross_entropy_with_integer_labels", {}),
    ("softmax_cross_entropy_with_integer_labels", {"label_smoothing": 0.2}),
    ("poly_loss_cross_entropy", {"epsilon": 2.0}),
    ("kl_divergence", {}),
    ("kl_divergence_with_log_targets", {}),
    ("smooth_labels", {"alpha": 0.3}),
]
_MASKED_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in MASKED_CASES]


@pytest.mark.parametrize("name,kwargs", MASKED_CASES, ids=_MASKED_IDS)
def test_2_masked_minus_inf_logits(name, kwargs, rng):
  x, rest, ref = _masked_problem(name, kwargs, MASK, rng)
  fn = getattr(jaxloss, name)
  where = jnp.asarray(MASK)

  def loss(p):
    return fn(p, *rest, where=where, **kwargs)

  x = f32(x)
  out = loss(x)
  assert_close(out, ref)
  grad = jax.grad(lambda p: jnp.sum(loss(p)))(x)
  assert np.all(np.isfinite(grad)), name
  np.testing.assert_array_equal(np.asarray(grad)[~MASK], 0.0)
  # Forward mode (jax #19490): finite, and per row the sum of that row's gradient (the rows
  # are independent; for smooth_labels every output entry depends on its own row only).
  primal, tangent = jax.jvp(loss, (x,), (jnp.ones_like(x),))
  assert np.all(np.isfinite(primal)) and np.all(np.isfinite(tangent)), name
  if name == "smooth_labels":
    np.testing.assert_array_equal(np.asarray(tangent)[~MASK], 0.0)
  else:
    np.testing.assert_allclose(tangent, np.sum(grad, -1), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 3. empty and masked batches
# An empty batch (shape (0, C)) gives an empty loss, a mean of 0 and zero gradients.

@pytest.mark.parametrize("spec", applicable("3"))
def test_3_empty_batch(spec):
  args, kwargs = spec.inputs()
  empty = tuple(jnp.zeros((0,) + a.shape[1:], a.dtype) if spec.batched(i) and a.ndim else a
                for i, a in enumerate(args))
  out = spec.fn(*empty, **kwargs)
  assert out.shape[0] == 0
  value, grad = jax.value_and_grad(lambda x: jaxloss.reduce(spec.fn(x, *empty[1:], **kwargs)))(
      empty[0])
  assert value == 0.0 and grad.shape == empty[0].shape


WHERE_LOSSES = {"softmax_cross_entropy": {}, "softmax_cross_entropy_with_integer_labels": {},
                "poly_loss_cross_entropy": {"epsilon": 2.0}, "kl_divergence": {},
                "kl_divergence_with_log_targets": {}}


@pytest.mark.parametrize("name", sorted(WHERE_LOSSES))
def test_3_fully_masked_rows_and_batch_give_zero(name, rng):
  # optax's rule: a row with no unmasked class gives 0; a mean over a fully masked batch is 0
  # with zero gradient (DESIGN contract 8), even with −inf logits in the masked rows.
  mask = MASK.copy()
  mask[0] = False
  kwargs = WHERE_LOSSES[name]
  with np.errstate(invalid="ignore", divide="ignore"):  # its reference (unused) is 0/0 there
    x, rest, _ = _masked_problem(name, kwargs, mask, rng)
  fn = getattr(jaxloss, name)
  x = f32(x)
  for m in (mask, np.zeros((N, C), bool)):
    where = jnp.asarray(m)

    def loss(p, where=where):
      return fn(p, *rest, where=where, **kwargs)

    empty = ~m.any(-1)
    out = np.asarray(loss(x))
    np.testing.assert_array_equal(out[empty], 0.0)
    assert np.all(np.isfinite(out)), name
    value, grad = jax.value_and_grad(lambda p: jaxloss.reduce(loss(p), where=jnp.asarray(
        ~empty)))(x)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), name
    np.testing.assert_array_equal(np.asarray(grad)[empty], 0.0)
    np.testing.assert_array_equal(np.asarray(grad)[~m], 0.0)
    _, tangent = jax.jvp(loss, (x,), (jnp.ones_like(x),))
    np.testing.assert_array_equal(np.asarray(tangent)[empty], 0.0)
    if not m.any():
      assert value == 0.0


IGNORE = -100
IGNORE_LOSSES = ["softmax_cross_entropy_with_integer_labels", "nll_loss",
                 "linear_softmax_cross_entropy", "vocab_parallel_linear_softmax_cross_entropy"]


@pytest.mark.parametrize("name", IGNORE_LOSSES)
def test_3_ignore_index_on_every_label_gives_zero(name):
  # PyTorch's ignore_index: every token ignored gives 0 and zero gradients (a mean over no
  # token is 0, not 0/0 = NaN as in PyTorch's reduction="mean").
  spec = BY_NAME[name]
  args, kwargs = spec.inputs()
  args = _replace(args, spec.label_argnum, jnp.full((N,), IGNORE, jnp.int32))
  kwargs = {**kwargs, "ignore_index": IGNORE}
  out = spec.fn(*args, **kwargs)
  np.testing.assert_array_equal(out, np.zeros(N, np.float32))
  n_float = 2 if spec.kind == "large_vocab" else 1  # hidden and weight, or the prediction

  def mean(*floats):
    return jaxloss.reduce(spec.fn(*floats, *args[n_float:], **kwargs))

  grads = jax.grad(mean, argnums=tuple(range(n_float)))(*args[:n_float])
  for g in grads:
    np.testing.assert_array_equal(g, np.zeros(g.shape, np.float32))


@pytest.mark.parametrize("name", ["linear_softmax_cross_entropy",
                                  "vocab_parallel_linear_softmax_cross_entropy"])
def test_3_where_and_ignore_index_drop_every_token(name):
  # `where` masks tokens here: all False gives 0 and zero gradients for hidden and weight.
  spec = BY_NAME[name]
  args, kwargs = spec.inputs()
  kwargs = {**kwargs, "where": jnp.zeros((N,), bool)}
  out = spec.fn(*args, **kwargs)
  np.testing.assert_array_equal(out, np.zeros(N, np.float32))
  gh, gw = jax.grad(lambda h, w: jaxloss.reduce(spec.fn(h, w, args[2], **kwargs)),
                    argnums=(0, 1))(args[0], args[1])
  np.testing.assert_array_equal(gh, np.zeros(gh.shape, np.float32))
  np.testing.assert_array_equal(gw, np.zeros(gw.shape, np.float32))


# ---------------------------------------------------------------- 4. zero targets
# optax PR #1786: KL and cross-entropy with zero targets, 0·log 0 = 0; the gradient with respect
# to the (log-)predictions stays finite, also where a zero-target class has (log-)prediction
# −inf. (The derivative with respect to a zero target is −∞ mathematically; the docstrings say
# so and it is not differentiated here.)

ONE_HOT = np.eye(C)[LABELS]
ZERO_TARGET_LOSSES = ["kl_divergence", "kl_divergence_with_log_targets", "softmax_cross_entropy",
                      "poly_loss_cross_entropy"]


@pytest.mark.parametrize("name", ZERO_TARGET_LOSSES)
def test_4_zero_targets_with_minus_inf_predictions(name, rng):
  x = rng.normal(size=(N, C))
  fn = getattr(jaxloss, name)
  # −inf at the zero-target classes that MASK drops (never the label); no `where` here.
  if name.startswith("kl"):
    lp = _log_softmax(x)
    pred = np.where(MASK, lp, -np.inf)
    ref = -lp[np.arange(N), LABELS]  # Σ_c t_c (log t_c − log q_c) with one-hot t
    target = ONE_HOT if name == "kl_divergence" else np.where(ONE_HOT > 0, 0.0, -np.inf)
    expected_grad = -ONE_HOT  # d/d(log q_c) = −t_c
  else:
    pred = np.where(MASK, x, -np.inf)
    lse = _np_masked_lse(x, MASK)[:, 0]
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


# ---------------------------------------------------------------- 5. probabilities 0 and 1,
# zero distances. BCE on probabilities is exact at p ∈ {0, 1} (PyTorch clamps the log at −100);
# its gradient is finite wherever the loss is: d/dp = (1 − y)/(1 − p) − y/p without the terms
# whose coefficient is 0.

def test_5_binary_cross_entropy_at_zero_and_one():
  p = f32([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5])
  y = f32([0.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.3])
  inf = np.inf
  np.testing.assert_allclose(jaxloss.binary_cross_entropy(p, y),
                             [0.0, inf, inf, 0.0, inf, inf, -np.log(0.5)], rtol=1e-6)
  grad = np.asarray(jax.grad(lambda q: jnp.sum(jaxloss.binary_cross_entropy(q, y)))(p))
  np.testing.assert_allclose(grad[[0, 3, 6]], [1.0, -1.0, 0.7 / 0.5 - 0.3 / 0.5], rtol=1e-6)


@pytest.mark.parametrize("swap", [False, True])
def test_5_triplet_zero_distances_have_zero_gradient(swap):
  # a = p = n with eps = 0: every distance vector is exactly 0, whose norm's sub-differential
  # contains 0 (DESIGN contract 4); the plain formula gives 0/0 = NaN.
  a = f32(np.ones((N, C)))
  out, grads = jax.value_and_grad(
      lambda *x: jnp.sum(jaxloss.triplet_margin_loss(*x, margin=1.0, eps=0.0, swap=swap)),
      argnums=(0, 1, 2))(a, a, a)
  assert out == N * 1.0  # max(0, margin + 0 − 0) per triplet
  for g in grads:
    np.testing.assert_array_equal(g, np.zeros((N, C), np.float32))


def test_5_contrastive_zero_distance_has_finite_gradient():
  x = f32(np.ones((N, C)))
  same = jnp.asarray(np.arange(N) % 2)
  out = jaxloss.contrastive_loss(x, x, same, margin=2.0)
  np.testing.assert_allclose(out, np.where(np.arange(N) % 2, 0.0, 0.5 * 2.0**2))
  grads = jax.grad(lambda a, b: jnp.sum(jaxloss.contrastive_loss(a, b, same, margin=2.0)),
                   argnums=(0, 1))(x, x)
  for g in grads:  # d = 0: the push direction is undefined; 0 is in the sub-differential
    np.testing.assert_array_equal(g, np.zeros((N, C), np.float32))


# ---------------------------------------------------------------- 6. kinks exactly hit
# DESIGN contract 4: where 0 is a sub-gradient the gradient is 0; ties go to the lowest class
# index. optax's jnp.maximum gives −0.5 at hinge's kink. Expected gradients from the maths.

KINKS = [
    # (loss, kwargs, predictions, other args, expected d(Σ loss)/d(predictions))
    # Huber at |x| = δ: both branches give x = δ·sign(x); 0 at x = 0.
    ("huber_loss", {"delta": 0.5}, [0.75, -0.25, 0.25], (0.25,), [0.5, -0.5, 0.0]),
    # smooth L1 at |x| = β: x/β = sign(x); 0 at x = 0.
    ("smooth_l1_loss", {"beta": 0.5}, [0.75, -0.25, 0.25], (0.25,), [1.0, -1.0, 0.0]),
    # β = 0 is L1: sign(x), and 0 at x = 0 (no 0/0).
    ("smooth_l1_loss", {"beta": 0.0}, [0.75, -0.25, 0.25], (0.25,), [1.0, -1.0, 0.0]),
    ("l1_loss", {}, [0.25], (0.25,), [0.0]),
    ("quantile_loss", {"quantile": 0.3}, [0.25, 1.0, -1.0], (0.25,), [0.0, 0.7, -0.3]),
    # hinge at m = 1 (0, optax −y/2), and inside the margin (−y).
    ("hinge_loss", {}, [1.0, -1.0, 0.5], (jnp.asarray([1, -1, 1]),), [0.0, 0.0, -1.0]),
    ("squared_hinge_loss", {}, [1.0, -1.0], (jnp.asarray([1, -1]),), [0.0, 0.0]),
    ("perceptron_loss", {}, [0.0, 0.0], (jnp.asarray([1, -1]),), [0.0, 0.0]),
    # Crammer–Singer at s_y = 1 + max_{j≠y} s_j: 0; a tie among the others: lowest index.
    ("multiclass_hinge_loss", {}, [[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]], (jnp.asarray([0, 0]),),
     [[0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]]),
    ("multiclass_perceptron_loss", {}, [[1.0, 1.0, 0.0]], (jnp.asarray([0]),), [[0.0] * 3]),
    # Weston–Watkins at h = margin − s_y + s_j = 0 for j = 1.
    ("multi_margin_loss", {"margin": 1.0}, [[1.0, 0.0, -5.0]], (jnp.asarray([0]),), [[0.0] * 3]),
    # triplet at margin + d(a, p) = d(a, n); contrastive at d = margin (3-4-5).
    ("triplet_margin_loss", {"margin": 1.0, "eps": 0.0}, [[0.0, 0.0]],
     (f32([[1.0, 0.0]]), f32([[2.0, 0.0]])), [[0.0, 0.0]]),
    ("contrastive_loss", {"margin": 5.0}, [[3.0, 4.0]], (f32([[0.0, 0.0]]), jnp.asarray([0])),
     [[0.0, 0.0]]),
]


@pytest.mark.parametrize("name,kwargs,pred,others,expected", KINKS,
                         ids=[f"{k[0]}-{i}" for i, k in enumerate(KINKS)])
def test_6_subgradient_at_kinks(name, kwargs, pred, others, expected):
  fn = getattr(jaxloss, name)
  others = tuple(f32(o) if isinstance(o, float) else o for o in others)
  grad = jax.grad(lambda p: jnp.sum(fn(p, *others, **kwargs)))(f32(pred))
  np.testing.assert_allclose(grad, np.asarray(expected, np.float32), rtol=1e-6, atol=0)


# ---------------------------------------------------------------- 7. boundary hyper-parameters
# optax #1267: focal loss with 0 < γ < 1 has a NaN gradient at saturated logits. Each boundary
# value gives finite values and gradients, and the maths identity where there is one.

EDGE_LOGITS = f32(np.array([[0.0, 1.5, -2.0, 100.0, -100.0],
                            [1e4, -1e4, 30.0, -30.0, 0.5]] * (N // 2)))
EDGE_BINARY = f32(np.tile([[1.0, 0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 1.0]], (N // 2, 1)))
EDGE_CLASSES = jnp.asarray(np.arange(N) % C)


def _value_and_grad(fn, x, *args, **kwargs):
  value, grad = jax.value_and_grad(lambda p: jnp.sum(fn(p, *args, **kwargs)))(x)
  out = fn(x, *args, **kwargs)
  assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad)), (fn.__name__, kwargs)
  return out, grad


def _np_sigmoid_focal(x, y, gamma):
  x = np.asarray(x, np.float64)
  ce = np.logaddexp(0, x) - y * x
  p = scipy.special.expit(x)
  return (y * (1 - p) + (1 - y) * p) ** gamma * ce


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_7_sigmoid_focal_gamma(gamma):
  out, grad = _value_and_grad(jaxloss.sigmoid_focal_loss, EDGE_LOGITS, EDGE_BINARY, gamma=gamma)
  assert_close(out, _np_sigmoid_focal(EDGE_LOGITS, np.asarray(EDGE_BINARY), gamma))
  if gamma == 0.0:  # γ = 0 is the cross-entropy, value and gradient
    ce, ce_grad = _value_and_grad(jaxloss.sigmoid_binary_cross_entropy, EDGE_LOGITS,
                                  EDGE_BINARY)
    np.testing.assert_allclose(out, ce, rtol=1e-6)
    np.testing.assert_allclose(grad, ce_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_7_sigmoid_focal_alpha(alpha):
  out, grad = _value_and_grad(jaxloss.sigmoid_focal_loss, EDGE_LOGITS, EDGE_BINARY, alpha=alpha,
                              gamma=0.5)
  plain, plain_grad = _value_and_grad(jaxloss.sigmoid_focal_loss, EDGE_LOGITS, EDGE_BINARY,
                                      gamma=0.5)
  weight = np.asarray(EDGE_BINARY) if alpha == 1.0 else 1 - np.asarray(EDGE_BINARY)
  np.testing.assert_allclose(out, weight * plain, rtol=1e-6)
  np.testing.assert_allclose(grad, weight * plain_grad, rtol=1e-6)


def _np_softmax_focal(x, y, gamma):
  lp = _log_softmax(x)[np.arange(len(y)), y]
  return -(-np.expm1(lp)) ** gamma * lp


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_7_softmax_focal_gamma(gamma):
  out, grad = _value_and_grad(jaxloss.softmax_focal_loss, EDGE_LOGITS, EDGE_CLASSES, gamma=gamma)
  assert_close(out, _np_softmax_focal(EDGE_LOGITS, np.asarray(EDGE_CLASSES), gamma))
  if gamma == 0.0:
    ce, ce_grad = _value_and_grad(jaxloss.softmax_cross_entropy_with_integer_labels,
                                  EDGE_LOGITS, EDGE_CLASSES)
    np.testing.assert_allclose(out, ce, rtol=1e-6)
    np.testing.assert_allclose(grad, ce_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_7_softmax_focal_alpha(alpha):
  out, grad = _value_and_grad(jaxloss.softmax_focal_loss, EDGE_LOGITS, EDGE_CLASSES, alpha=alpha,
                              gamma=0.5)
  plain, plain_grad = _value_and_grad(jaxloss.softmax_focal_loss, EDGE_LOGITS, EDGE_CLASSES,
                                      gamma=0.5)
  np.testing.assert_allclose(out, alpha * plain, rtol=1e-6)
  np.testing.assert_allclose(grad, alpha * plain_grad, rtol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 1.0])
def test_7_label_smoothing_zero_and_one(eps, rng):
  # ε = 0: −log p_y; ε = 1: the uniform target, lse(x) − mean_c x_c, whatever the label.
  x = rng.normal(size=(N, C))
  y = np.asarray(EDGE_CLASSES)
  lse = _np_masked_lse(x, np.ones((N, C), bool))[:, 0]
  ref = lse - (x[np.arange(N), y] if eps == 0.0 else x.mean(-1))
  out, _ = _value_and_grad(jaxloss.softmax_cross_entropy_with_integer_labels, f32(x),
                           EDGE_CLASSES, label_smoothing=eps)
  assert_close(out, ref)
  out, _ = _value_and_grad(jaxloss.softmax_cross_entropy, f32(x), f32(np.eye(C)[y]),
                           label_smoothing=eps)
  assert_close(out, ref)
  smoothed = jaxloss.smooth_labels(f32(np.eye(C)[y]), eps)
  np.testing.assert_allclose(smoothed, np.eye(C)[y] if eps == 0.0 else np.full((N, C), 1 / C),
                             rtol=1e-6)
  # The large-vocabulary loss, on logits h @ W.
  (h, w, labels), kwargs = BY_NAME["linear_softmax_cross_entropy"].inputs()
  z = np.asarray(h, np.float64) @ np.asarray(w, np.float64)
  lse = _np_masked_lse(z, np.ones(z.shape, bool))[:, 0]
  ref = lse - (z[np.arange(N), np.asarray(labels)] if eps == 0.0 else z.mean(-1))
  out, _ = _value_and_grad(jaxloss.linear_softmax_cross_entropy, h, w, labels,
                           label_smoothing=eps, **kwargs)
  assert_close(out, ref)


@pytest.mark.parametrize("q", [0.0, 1.0])
def test_7_quantile_zero_and_one(q, rng):
  # q = 0: max(p − t, 0), gradient [p > t]; q = 1: max(t − p, 0), gradient −[p < t].
  p, t = rng.normal(size=(2, N, C))
  out, grad = _value_and_grad(jaxloss.quantile_loss, f32(p), f32(t), quantile=q)
  e = np.float32(p) - np.float32(t)
  assert_close(out, np.maximum(e, 0) if q == 0.0 else np.maximum(-e, 0))
  np.testing.assert_array_equal(grad, (e > 0).astype(np.float32) if q == 0.0
                                else -(e < 0).astype(np.float32))


# ---------------------------------------------------------------- 8. bf16 and fp16
# optax #1020 and flax #677: low-precision inputs must be computed in float32 and returned in
# the input dtype (the large-vocabulary losses return float32: a reduction over V). Tolerance:
# one rounding of the float32 result to the input dtype, relative to the batch's largest loss
# (entries near zero carry only absolute error).

@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("spec", applicable("8"))
def test_8_low_precision(spec, dtype):
  args, kwargs = spec.inputs()
  low = tuple(a.astype(dtype) if _is_float(a) else a for a in args)
  out = spec.fn(*low, **kwargs)
  assert out.dtype == (spec.out_dtype or dtype)
  ref = spec.fn(*(a.astype(jnp.float32) if _is_float(a) else a for a in low), **kwargs)
  eps = float(jnp.finfo(dtype).eps)
  scale = float(jnp.max(jnp.abs(ref))) + 1e-30
  np.testing.assert_allclose(np.float32(out), ref, rtol=eps, atol=eps * scale)


# ---------------------------------------------------------------- 9. NaN propagates
# A NaN in one example's prediction makes that example's loss NaN, and only that one (a NaN
# in a whole row: nll_loss, say, reads only the label's entry).

@pytest.mark.parametrize("spec", applicable("9"))
def test_9_nan_propagates_to_its_example_only(spec):
  args, kwargs = spec.inputs()
  x = args[0].at[0].set(jnp.nan)
  out = np.asarray(spec.fn(*_with_prediction(args, x), **kwargs))
  assert np.all(np.isnan(out[0])), spec.name
  assert np.all(np.isfinite(out[1:])), spec.name


# ---------------------------------------------------------------- 10. bad input
# optax 0.2.8 broadcasts (N,) against (N, 1) into an (N, N) loss for huber_loss and
# sigmoid_binary_cross_entropy; here every mismatch raises naming both shapes.

@pytest.mark.parametrize("spec", applicable("10", kinds=("elementwise", "pm1", "binary01",
                                                         "probs")))
def test_10_shape_mismatch_names_both_shapes(spec):
  args, kwargs = spec.inputs()
  bad = (args[0][:, 0],) + tuple(a[:, :1] if a.ndim == 2 else a for a in args[1:])
  with pytest.raises(ValueError, match=rf"\({N},\).*\({N}, 1\)|\({N}, 1\).*\({N},\)"):
    spec.fn(*bad, **kwargs)


@pytest.mark.parametrize("spec", applicable("10", kinds=("class_int", "class_prob", "pair",
                                                         "large_vocab")))
def test_10_second_input_shape_mismatch_names_both_shapes(spec):
  args, kwargs = spec.inputs()
  i = spec.label_argnum or 1
  bad = _replace(args, i, args[i][:-1])
  with pytest.raises(ValueError) as info:
    spec.fn(*bad, **kwargs)
  assert str(args[0].shape) in str(info.value) and str(bad[i].shape) in str(info.value)


@pytest.mark.parametrize("spec", applicable("10"))
def test_10_integer_predictions_raise_type_error(spec):
  args, kwargs = spec.inputs()
  with pytest.raises(TypeError):
    spec.fn(*_with_prediction(args, args[0].astype(jnp.int32)), **kwargs)


@pytest.mark.parametrize("spec", applicable("10", kinds=("class_int", "large_vocab")))
def test_10_float_labels_raise_type_error(spec):
  args, kwargs = spec.inputs()
  bad = _replace(args, spec.label_argnum, args[spec.label_argnum].astype(jnp.float32))
  with pytest.raises(TypeError, match="labels"):
    spec.fn(*bad, **kwargs)


AXIS_FUNCTIONS = [s for s in SPECS + list(HELPERS.values())
                  if "axis" in inspect.signature(s.fn).parameters]


@pytest.mark.parametrize("spec", AXIS_FUNCTIONS, ids=[s.name for s in AXIS_FUNCTIONS])
def test_10_axis_out_of_range(spec):
  args, kwargs = spec.inputs()
  for axis in (2, -3):
    with pytest.raises(ValueError, match=rf"axis={axis}"):
      spec.fn(*args, **{**kwargs, "axis": axis})


NEGATIVE_HYPERPARAMETERS = [
    ("huber_loss", "delta", -1.0), ("huber_loss", "delta", 0.0),
    ("smooth_l1_loss", "beta", -1.0),
    ("quantile_loss", "quantile", -1.0), ("quantile_loss", "quantile", 1.5),
    ("poisson_nll_loss", "eps", -1.0), ("gaussian_nll_loss", "eps", -1.0),
    ("sigmoid_focal_loss", "gamma", -1.0), ("sigmoid_focal_loss", "alpha", -0.5),
    ("sigmoid_focal_loss", "alpha", 1.5), ("softmax_focal_loss", "gamma", -1.0),
    ("softmax_cross_entropy", "label_smoothing", -0.1),
    ("softmax_cross_entropy", "label_smoothing", 1.5),
    ("softmax_cross_entropy_with_integer_labels", "label_smoothing", 1.5),
    ("smooth_labels", "alpha", -0.1), ("smooth_labels", "alpha", 1.5),
    ("contrastive_loss", "margin", -1.0), ("triplet_margin_loss", "eps", -1.0),
    ("update_centers", "alpha", 1.5),
    ("linear_softmax_cross_entropy", "z_loss", -1.0),
    ("linear_softmax_cross_entropy", "label_smoothing", 1.5),
    ("linear_softmax_cross_entropy", "logit_soft_cap", 0.0),
    ("vocab_parallel_linear_softmax_cross_entropy", "logit_soft_cap", -1.0),
]


@pytest.mark.parametrize("name,kwarg,value", NEGATIVE_HYPERPARAMETERS,
                         ids=[f"{n}-{k}={v}" for n, k, v in NEGATIVE_HYPERPARAMETERS])
def test_10_hyperparameter_out_of_range_eager_and_traced(name, kwarg, value):
  # DESIGN contract 1: ValueError before tracing for a Python number, checkify when traced.
  spec = BY_NAME.get(name) or HELPERS[name]
  args, kwargs = spec.inputs()
  with pytest.raises(ValueError, match=rf"{name}\({kwarg}=\.\.\.\)"):
    spec.fn(*args, **{**kwargs, kwarg: value})
  checked = checkify.checkify(lambda v: spec.fn(*args, **{**kwargs, kwarg: v}),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(jnp.float32(value))
  with pytest.raises(checkify.JaxRuntimeError, match=rf"{name}\({kwarg}=\.\.\.\)"):
    err.throw()


def test_10_unknown_reduction():
  with pytest.raises(ValueError, match="reduction='median'"):
    jaxloss.reduce(jnp.ones((3,), jnp.float32), "median")


# ---------------------------------------------------------------- 11. bad labels
# optax wraps −1 to the last class (optax #1077-style silent errors) and accepts ±1 labels of
# 0 or 2; here a bad label gives NaN for its example only (DESIGN contract 6), and under
# checkify an error that names the value.

def _bad_labels(spec):
  if spec.kind == "pm1":
    return [0, 2, -3, 0.5]
  return [-1, -7, spec.n_classes, 99]


def _checkify_names(fn, args, kwargs, value):
  err, _ = checkify.checkify(lambda *a: fn(*a, **kwargs), errors=checkify.user_checks)(*args)
  with pytest.raises(checkify.JaxRuntimeError) as info:
    err.throw()
  message = str(info.value)
  assert fn.__name__ in message and re.search(rf"(?<![\d.]){re.escape(str(value))}(?![\d.])",
                                              message), message


@pytest.mark.parametrize("spec", applicable("11", kinds=("pm1", "class_int", "large_vocab")))
def test_11_bad_labels_nan_per_example_and_named_by_checkify(spec):
  args, kwargs = spec.inputs()
  i = spec.label_argnum
  for value in _bad_labels(spec):
    labels = args[i] if isinstance(value, int) else args[i].astype(jnp.float32)
    bad = _replace(args, i, labels.at[0].set(value))
    out = np.asarray(spec.fn(*bad, **kwargs))
    assert np.all(np.isnan(out[0].reshape(-1)[:1])), (spec.name, value)
    assert np.all(np.isfinite(out[1:])), (spec.name, value)
    grad = value_and_grad_of_sum(spec, bad, kwargs)[1]
    assert np.all(np.isfinite(np.asarray(grad)[1:])), (spec.name, value, "other examples")
    _checkify_names(spec.fn, bad, kwargs, value)


def test_11_label_pointing_at_a_masked_class(rng):
  # optax PR #1762: a label whose class `where` masks out has no probability: NaN, named.
  fn = jaxloss.softmax_cross_entropy_with_integer_labels
  x = f32(rng.normal(size=(N, C)))
  labels = jnp.asarray(LABELS).at[0].set(0)  # MASK[0, 0] is False
  out = np.asarray(fn(x, labels, where=jnp.asarray(MASK)))
  assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))
  _checkify_names(fn, (x, labels), {"where": jnp.asarray(MASK)}, 0)


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
  mesh = Mesh(devices, ("data",))
  args, kwargs = spec.inputs()

  def shard(i, a):
    if a.ndim == 0 or not spec.batched(i):
      return a
    return jax.device_put(a, NamedSharding(mesh, PartitionSpec("data")))

  sharded = tuple(shard(i, a) for i, a in enumerate(args))
  out = jax.jit(lambda *a: spec.fn(*a, **kwargs))(*sharded)
  np.testing.assert_allclose(out, spec.fn(*args, **kwargs), rtol=1e-6, atol=1e-6)
  g_sharded = jax.jit(lambda *a: value_and_grad_of_sum(spec, a, kwargs)[1])(*sharded)
  np.testing.assert_allclose(g_sharded, value_and_grad_of_sum(spec, args, kwargs)[1],
                             rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- properties (hypothesis)

FLOATS = st.floats(-50.0, 50.0, allow_nan=False, width=32)
VECTORS = hnp.arrays(np.float32, (16,), elements=FLOATS)
LOGITS = hnp.arrays(np.float32, (4, C), elements=st.floats(-30.0, 30.0, width=32))
SETTINGS = settings(deadline=None, max_examples=25, derandomize=True)
FEW = settings(deadline=None, max_examples=5, derandomize=True)
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


def _assert_convex(mid, chord):
  assert np.all(np.asarray(mid) <= np.asarray(chord) * (1 + 1e-5) + 1e-4)


@pytest.mark.parametrize("name", CONVEX)
@SETTINGS
@given(a=VECTORS, b=VECTORS, lam=st.floats(0.0, 1.0))
def test_property_convex_along_segments(name, a, b, lam):
  fn = getattr(jaxloss, name)
  a, b = f32(a), f32(b)
  t = jnp.zeros((16,), jnp.float32)
  _assert_convex(fn(lam * a + (1 - lam) * b, t), lam * fn(a, t) + (1 - lam) * fn(b, t))


# Cross-entropy is convex in the logits (the log-sum-exp is convex, the rest linear).
CE_IN_LOGITS = {
    "softmax_cross_entropy": f32(np.random.default_rng(4).dirichlet(np.ones(C), 4)),
    "softmax_cross_entropy_with_integer_labels": jnp.asarray([0, 1, 2, 4]),
}


@pytest.mark.parametrize("name", sorted(CE_IN_LOGITS))
@SETTINGS
@given(a=LOGITS, b=LOGITS, lam=st.floats(0.0, 1.0))
def test_property_cross_entropy_convex_in_logits(name, a, b, lam):
  fn, labels = getattr(jaxloss, name), CE_IN_LOGITS[name]
  a, b = f32(a), f32(b)
  _assert_convex(fn(lam * a + (1 - lam) * b, labels),
                 lam * fn(a, labels) + (1 - lam) * fn(b, labels))


@SETTINGS
@given(a=VECTORS, b=VECTORS, lam=st.floats(0.0, 1.0))
def test_property_sigmoid_cross_entropy_convex_in_logits(a, b, lam):
  fn, ones = jaxloss.sigmoid_binary_cross_entropy, jnp.ones((16,), jnp.float32)
  a, b = f32(a), f32(b)
  _assert_convex(fn(lam * a + (1 - lam) * b, ones), lam * fn(a, ones) + (1 - lam) * fn(b, ones))


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


SHIFT_INVARIANT = {
    "softmax_cross_entropy": CE_IN_LOGITS["softmax_cross_entropy"],
    "softmax_cross_entropy_with_integer_labels": CE_IN_LOGITS[
        "softmax_cross_entropy_with_integer_labels"],
    "softmax_focal_loss": CE_IN_LOGITS["softmax_cross_entropy_with_integer_labels"],
    "poly_loss_cross_entropy": CE_IN_LOGITS["softmax_cross_entropy"],
}


@pytest.mark.parametrize("name", sorted(SHIFT_INVARIANT))
@SETTINGS
@given(x=LOGITS, shift=hnp.arrays(np.float32, (4, 1), elements=FLOATS))
def test_property_softmax_losses_shift_invariant(name, x, shift):
  # softmax(x + c) = softmax(x): adding a per-row constant to the logits changes nothing
  # (up to the rounding of x + c in float32, |x + c| <= 80: an ulp of 8e-6).
  fn, labels = getattr(jaxloss, name), SHIFT_INVARIANT[name]
  x = f32(x)
  shifted = x + jnp.broadcast_to(f32(shift), x.shape)
  np.testing.assert_allclose(fn(shifted, labels), fn(x, labels), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("spec", applicable("vmap"))
def test_property_vmap_equals_python_loop(spec):
  args, kwargs = spec.inputs(seed=3)
  batched = jax.vmap(lambda *a: spec.fn(*a, **kwargs))(*args)
  looped = jnp.stack([spec.fn(*(a[i] for a in args), **kwargs) for i in range(N)])
  np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name) for s in SPECS
                                  if s.kind == "large_vocab"])
def test_property_vmap_over_blocks_of_tokens(spec):
  # The (N, D) contract: vmap maps blocks of tokens (B, N/B, D), the weight unmapped.
  args, kwargs = spec.inputs(seed=3)
  blocks = tuple(a.reshape((2, N // 2) + a.shape[1:]) if spec.batched(i) else a
                 for i, a in enumerate(args))
  axes = tuple(0 if spec.batched(i) else None for i in range(len(args)))
  batched = jax.vmap(lambda *a: spec.fn(*a, **kwargs), in_axes=axes)(*blocks)
  looped = jnp.stack([spec.fn(*(a[k] if ax == 0 else a for a, ax in zip(blocks, axes)),
                              **kwargs) for k in range(2)])
  np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", applicable("nonneg", predicate=lambda s: s.nonnegative))
@FEW
@given(seed=st.integers(0, 2**16))
def test_property_nonnegative_on_random_batches(spec, seed):
  args, kwargs = spec.inputs(seed=seed)
  assert np.all(np.asarray(spec.fn(*args, **kwargs)) >= 0), spec.name
