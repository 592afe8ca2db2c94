"""The registry: one entry per public function of ``jaxloss``, read by the tests and the bench.

Every cross-cutting suite reads this table and nothing else: ``tests/test_robustness.py``
(extreme and bad input, masks, dtypes, sharding), ``tests/test_transforms.py`` (jit, vmap,
grad, no re-tracing, second derivatives), ``tests/test_gradients.py`` (documented
sub-gradients at kinks, closed-form gradients), ``tests/test_registry.py`` (every public name
has an entry; every opt-out has a reason; every float hyper-parameter is either bounded or
declared unbounded) and ``python -m bench`` (inputs at the "quick" and "full" sizes, the optax
and torch counterparts, the speed targets). It lives in ``bench/`` because both the bench
(``python -m bench``) and the tests (``from bench import registry``; the repository root is on
pytest's ``pythonpath``) import it; it imports only jax and numpy.

How to add a loss to the tests and the bench
============================================

1. Write the function and its docstring in its family module and export it from
   ``jaxloss/__init__.py``. From then on ``tests/test_registry.py`` fails until step 2 is done.
2. Add ONE entry to ``LOSSES`` below, in its family's section. Start from the family's preset
   (``regression``, ``margin_pm1``, ``classes``, ``class_probs``, ``sigmoid`` ...), which fixes
   the ``kind``, the input builder ``make`` and the ``sizes``; give the keyword arguments the
   tests call it with (non-default values, so that a dropped argument shows); the bounded
   hyper-parameters with out-of-range values; the kinks with their documented sub-gradient;
   and what the maths promises (``twice_differentiable``, ``traits``, ``expect_inf``). If a
   shared test cannot apply, opt out of it in ``optout`` with the reason, keyed by the shared
   test's name (``SHARED_TESTS``). A new input layout is a new builder (a few lines, written
   with the ``Sampler`` methods, so that one builder serves the tests' numpy generator and the
   bench's jax key) and, where no ``KINDS`` entry describes it, a new kind.
3. Write the loss-specific tests (references from the maths in numpy float64, optax or PyTorch
   parity) in ``tests/test_<module>.py``. Nothing else changes: every shared suite and the
   bench pick the entry up.

Worked example: ``huber_loss(predictions, targets=None, *, delta=1.0)`` is::

    regression("huber_loss", kwargs={"delta": 0.7}, bounds={"delta": (-1.0, 0.0)},
               kinks=(Kink(([0.75, -0.25, 0.25], 0.25), [0.5, -0.5, 0.0], {"delta": 0.5},
                           "at |x| = delta both branches give delta*sign(x); 0 at x = 0"),),
               traits={"convex", "symmetric", "zero_at_perfect"}, floor_target=FLOOR_TARGET,
               bench_kwargs={"delta": 1.0},
               torch=lambda F, p, t: F.huber_loss(p, t, reduction="none", delta=1.0)),

``regression`` gives it the kind "elementwise", two standard-normal inputs of shape (8, 5) in
the tests and 2^18 / 2^24 elements in the bench. The tests then call ``huber_loss(p, t,
delta=0.7)`` under every shared check; check that ``delta=-1.0`` and ``delta=0.0`` raise
``ValueError`` naming ``huber_loss(delta=...)`` and, traced under ``checkify``, an error naming
the same; check the gradient at the kink; and run the convexity, symmetry and zero-at-a-perfect-
prediction properties. The bench times it against ``optax.losses.huber_loss`` (the same name,
found automatically; ``optax=`` names another reference) with ``delta=1.0``, and against
``torch.nn.functional.huber_loss``.

Conventions
===========

- ``make(sample, **dims)`` returns the positional inputs; ``args[0]`` is the prediction, the
  input every shared test perturbs and differentiates; ``batch_argnums`` says which inputs have
  the leading batch axis (all of them by default). Keyword arguments that are configuration
  (``chunk_size``, a mesh) go in ``kwargs`` too; a value that needs the runtime (a device
  mesh) is wrapped in ``Deferred`` so that importing the registry touches no device.
- Float keyword arguments are hyper-parameters (traced: a new value must not re-trace); pass
  static configuration (``p``, ``norm_degree``, ``axis``) as Python ints, strings or bools.
  The no-re-tracing test halves every float keyword, which keeps it inside every bound of the
  forms [0, b], (0, b) and [0, inf).
- Sizes: ``"test"`` (N = 8 examples, divisible by the tests' 8 host devices, C = 5 classes)
  and the bench's ``"quick"`` and ``"full"``; an entry without the bench sizes says why in
  ``not_timed``. The bench times the first entry of each name only (``variant`` entries, a
  second configuration of the same loss, are for the tests).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------------------------
# What the tables below are made of.
# --------------------------------------------------------------------------------------------

N, C = 8, 5  # the tests' batch (divisible by 8 host devices) and class counts
F32_MAX = float(np.finfo(np.float32).max)
# The bench's targets (issue 7): forward+backward ÷ optax for a loss optax has under the same
# name, and ÷ the bandwidth floor for the elementwise losses at the full size.
SHARED_WITH_OPTAX_TARGET = 1.05
FLOOR_TARGET = 3.0


@dataclasses.dataclass(frozen=True)
class Kind:
  """A family of input layouts; the shared tests choose their checks by these flags."""
  description: str
  loss: bool = True  # per-example values: the robustness suite applies
  per_example: bool = True  # a leading batch axis that vmap maps over
  same_shape: bool = False  # prediction and targets of one shape (elementwise shape rule)
  class_axis: bool = False  # a class (or hidden) axis last: extremes alternate sign along it
  integer_labels: bool = False  # labels must be integers (float labels: TypeError)


KINDS: dict[str, Kind] = {
    "elementwise": Kind("predictions and targets of one shape; a loss of that shape",
                        same_shape=True),
    "pm1": Kind("scores and labels in {-1, +1} (integer or floating) of one shape",
                same_shape=True),
    "binary01": Kind("logits and 0/1 labels of one shape (the sigmoid losses)", same_shape=True),
    "probs": Kind("probabilities in [0, 1] and 0/1 labels of one shape", same_shape=True),
    "class_int": Kind("(N, C) scores, logits or log-probabilities and (N,) integer labels; "
                      "a loss of shape (N,)", class_axis=True, integer_labels=True),
    "class_prob": Kind("(N, C) logits or log-probabilities and (N, C) probability targets; "
                       "a loss of shape (N,)", class_axis=True),
    "pair": Kind("embeddings (N, D) compared pairwise or in triplets; a loss of shape (N,)"),
    "multilabel": Kind("(N, C) scores and (N, C) integer class lists padded with -1 (PyTorch's "
                       "multilabel targets); a loss of shape (N,)", class_axis=True,
                       integer_labels=True),
    "large_vocab": Kind("hidden (N, D), a shared weight (D, V) and (N,) integer labels; a loss "
                        "of shape (N,)", class_axis=True, integer_labels=True),
    "regularizer": Kind("a scalar penalty of a parameter pytree (tests/test_regularizers.py)",
                        loss=False, per_example=False),
    "helper": Kind("a public function that is not a loss (a label transform, a center update)",
                   loss=False),
    # language-model post-training (issue 17)
    "logits": Kind("(N, C) logits alone; a value of shape (N,) (an entropy)", class_axis=True),
    "logit_pair": Kind("(N, C) student and teacher logits; a divergence of shape (N,)",
                       class_axis=True),
    "tokens": Kind("(N, T) per-token values and an (N, T) boolean mask; a value of shape (N,)",
                   same_shape=True),
    "pairs": Kind("per-sequence log-probabilities of one shape (policy, reference, chosen, "
                  "rejected); a loss of that shape", same_shape=True),
    "token_pair": Kind("(N, T) per-token log-probabilities of two models; per-token values",
                       same_shape=True),
    "rollout": Kind("(N, T) log-probabilities of the current and the sampling policy and (N,) "
                    "advantages (and an (N, T) mask); per-token values (N, T)"),
    "groups": Kind("(N,) rewards and (N,) integer group ids: statistics across the batch; "
                   "values of shape (N,)", loss=False, per_example=False),
    # representation learning (issue 16)
    "contrast": Kind("embeddings (N, D) contrasted across the batch (each row's loss depends on "
                     "every example's embedding); a loss of shape (N,)", per_example=False),
    # segmentation, detection, robust regression (issues 13, 15)
    "segmentation": Kind("(N, P, C) logits (or a binary (N, P) map) and targets of that shape, "
                         "overlaps summed over each image's pixels; a loss of shape (N,)",
                         class_axis=True),
    "segmentation_labels": Kind("(N, P, C) logits and (N, P) integer labels; one value per "
                                "image (N,)", class_axis=True, integer_labels=True),
    "binary_map": Kind("(N, P) logits and 0/1 labels of that shape; one value per image (N,)",
                       same_shape=True),
    "batch_scalar": Kind("(N, P, C) logits and targets; one scalar over the whole batch (an optax "
                         "drop-in name that optax returns reduced)", loss=False,
                         per_example=False),
    "boxes": Kind("(N, 4) boxes (x1, y1, x2, y2) and (N, 4) boxes; a loss of shape (N,)"),
    "residuals": Kind("residuals alone, any shape; a loss of that shape"),
    # sequence and similarity losses (issue 13)
    "sequence": Kind("(B, T, K) logits, (B, T) frame paddings, (B, N) integer labels and (B, N) "
                     "label paddings (CTC); a loss of shape (B,)", class_axis=True,
                     integer_labels=True),
    "sequence_probs": Kind("CTC's inputs; the loss (B,) and the forward log-probabilities "
                           "(T, B, N + 1) and (T, B, N) as a tuple", loss=False),
    "contrast_scalar": Kind("embeddings (N, D) and (N,) labels; one scalar over the batch (an "
                            "optax drop-in name that optax returns reduced)", loss=False,
                            per_example=False),
    # large vocabulary: a student's and a teacher's hidden states and output weights (issue 18)
    "two_heads": Kind("student hidden (N, D) and weight (D, V), teacher hidden (N, D) and "
                      "weight (D, V); a divergence per token (N,)", class_axis=True),
}

# The shared tests an entry can opt out of (``optout`` keys), and where each one lives.
SHARED_TESTS: dict[str, str] = {
    "extreme_predictions": "test_robustness::test_extreme_predictions_stay_finite",
    "masked_classes": "test_robustness::test_masked_minus_inf_logits_match_numpy",
    "fully_masked_rows": "test_robustness::test_fully_masked_rows_and_batch_give_zero",
    "empty_batch": "test_robustness::test_empty_batch_gives_an_empty_loss_and_zero_mean",
    "ignore_index": "test_robustness::test_ignore_index_on_every_label_gives_zero",
    "low_precision": "test_robustness::test_low_precision_is_computed_in_float32",
    "nan_propagates": "test_robustness::test_nan_propagates_to_its_example_only",
    "shape_mismatch": "test_robustness::test_*shape_mismatch_names_both_shapes",
    "integer_predictions": "test_robustness::test_integer_predictions_raise_type_error",
    "float_labels": "test_robustness::test_float_labels_raise_type_error",
    "axis_out_of_range": "test_robustness::test_axis_out_of_range_names_the_axis",
    "bad_labels": "test_robustness::test_bad_labels_give_nan_and_are_named_by_checkify",
    "sharded_batch": "test_robustness::test_sharded_batch_matches_unsharded",
    "nonnegative": "test_robustness::test_nonnegative_on_random_batches",
    "vmap_over_examples": "test_transforms::test_vmap_matches_batched_call_and_python_loop, "
                          "test_transforms::test_grad_of_sum_matches_per_example_grads",
    "outer_jit": "test_transforms::test_outer_jit_matches_eager_call",
    "no_retrace": "test_transforms::test_new_values_and_hyperparameters_do_not_retrace",
    "second_derivatives": "test_transforms::test_second_derivatives_match_finite_differences",
}

# Opt-in properties of the mathematics, each checked by a hypothesis test in test_robustness.
TRAITS: dict[str, str] = {
    "convex": "convex in the prediction along segments",
    "symmetric": "loss(p, t) = loss(t, p) (elementwise, a function of the residual's size)",
    "zero_at_perfect": "loss(t, t) = 0 (elementwise)",
    "shift_invariant": "adding a per-row constant to the logits changes nothing (softmax)",
}

# Public names that are not entries, with the reason; everything else in ``jaxloss.__all__``
# must have an entry (tests/test_registry.py).
NON_LOSSES: dict[str, str] = {
    "__version__": "not a function",
    "reduce": "the batch reduction (tests/test_reduce.py), timed inside every loss's mean",
    "convex_kl_divergence": "optax's deprecated alias of generalized_kl_divergence (its entry "
                            "covers the numbers): it warns and calls it; "
                            "tests/test_classification.py checks the warning and the numbers",
    "make_fenchel_young_loss": "a factory that returns a loss from a max function "
                               "(tests/test_fenchel_young.py checks the loss it builds from "
                               "logsumexp against softmax cross-entropy, and optax's)",
}


def _never(v: float) -> bool:
  del v
  return False


def squares_overflow(v: float) -> bool:
  """(p − t)² with |p| = 1e30 is 1e60: above float32's maximum, so the true loss is inf."""
  return abs(v) ** 2 > F32_MAX


@dataclasses.dataclass(frozen=True)
class Deferred:
  """A keyword value built on first use (a device mesh: importing the registry needs none)."""
  build: Callable[[], Any]

  def get(self) -> Any:
    return _deferred_value(self.build)


@functools.cache
def _deferred_value(build: Callable[[], Any]) -> Any:
  return build()


@dataclasses.dataclass(frozen=True)
class Kink:
  """A point where the loss is not differentiable, and the sub-gradient its docstring promises.

  ``inputs`` are the positional inputs (the prediction first) as nested Python lists or
  numbers: floats become float32 and ints int32 arrays. ``grad`` is d(Σ loss)/d(inputs[0]).
  """
  inputs: tuple[Any, ...]
  grad: Any
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  why: str = ""

  def arrays(self) -> tuple[jax.Array, ...]:
    return tuple(_as_array(x) for x in self.inputs)


def _as_array(x: Any) -> jax.Array:
  a = np.asarray(x)
  return jnp.asarray(a, jnp.int32 if np.issubdtype(a.dtype, np.integer) else jnp.float32)


class Sampler:
  """Random inputs from a numpy ``Generator`` (the tests) or a jax key (the bench, under jit).

  Every method returns a jax array: floats in ``dtype`` (float32 unless asked), integers in
  int32. One builder written with these methods serves both sources.
  """

  def __init__(self, source: np.random.Generator | jax.Array, dtype: Any = jnp.float32):
    self._numpy = isinstance(source, np.random.Generator)
    self._source = source
    self._count = 0
    self.dtype = dtype

  def _key(self) -> jax.Array:
    self._count += 1
    return jax.random.fold_in(self._source, self._count)

  def _float(self, x: Any) -> jax.Array:
    return jnp.asarray(x, self.dtype) if self._numpy else x.astype(self.dtype)

  def normal(self, *shape: int, scale: float = 1.0) -> jax.Array:
    if self._numpy:
      return self._float(scale * self._source.normal(size=shape))
    return self._float(scale * jax.random.normal(self._key(), shape, jnp.float32))

  def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> jax.Array:
    if self._numpy:
      return self._float(self._source.uniform(low, high, size=shape))
    return self._float(jax.random.uniform(self._key(), shape, jnp.float32, low, high))

  def integers(self, *shape: int, high: int) -> jax.Array:
    """Integers in [0, high), int32 (class labels)."""
    if self._numpy:
      return jnp.asarray(self._source.integers(0, high, size=shape), jnp.int32)
    return jax.random.randint(self._key(), shape, 0, high, jnp.int32)

  def bits(self, *shape: int) -> jax.Array:
    """0/1 labels, floating."""
    if self._numpy:
      return self._float(self._source.integers(0, 2, size=shape))
    return self._float(jax.random.bernoulli(self._key(), 0.5, shape).astype(jnp.float32))

  def signs(self, *shape: int) -> jax.Array:
    """±1 labels, floating (as optax's margin losses take them)."""
    if self._numpy:
      return self._float(self._source.choice([-1.0, 1.0], size=shape))
    return self._float(jnp.where(jax.random.bernoulli(self._key(), 0.5, shape), 1.0, -1.0))

  def poisson(self, *shape: int, lam: float) -> jax.Array:
    if self._numpy:
      return self._float(self._source.poisson(lam, size=shape))
    return self._float(jax.random.poisson(self._key(), lam, shape).astype(jnp.float32))

  def probabilities(self, *shape: int) -> jax.Array:
    """Rows on the simplex along the last axis: the softmax of standard normals."""
    return jax.nn.softmax(self.normal(*shape).astype(jnp.float32), axis=-1).astype(self.dtype)

  def log_probabilities(self, *shape: int) -> jax.Array:
    return jax.nn.log_softmax(self.normal(*shape).astype(jnp.float32),
                              axis=-1).astype(self.dtype)


@dataclasses.dataclass(frozen=True)
class Loss:
  """One public function of ``jaxloss`` as the tests and the bench see it.

  Attributes:
    name: its name in ``jaxloss``.
    kind: a key of ``KINDS``.
    make: ``make(sample: Sampler, **dims)``: the positional inputs.
    sizes: ``{"test": dims, "quick": dims, "full": dims}``, the keyword arguments of ``make``.
    kwargs: keyword arguments of every call in the tests (and in the bench, unless
      ``bench_kwargs``).
    variant: a label, for a second entry of the same name (another configuration).
    kinks: points where the loss is not differentiable, with the documented sub-gradient.
    grad: the gradient d(Σ loss)/d(args[0]) from the maths, ``grad(*args, **kwargs)`` on
      numpy float64 arrays; checked at the test inputs and at the kinks.
    masked_reference: for a class-axis ``where``, the loss in numpy float64,
      ``masked_reference(*args, where=mask, **kwargs)`` on finite inputs; the test feeds −inf
      at the masked logits (or log-probabilities) and compares.
    traits: keys of ``TRAITS`` that the maths promises.
    nonnegative: the loss is >= 0 on valid inputs.
    twice_differentiable: at random inputs: Hessian-vector products and order-2 checks.
    reverse_only: a ``custom_vjp`` (no forward mode): Hessians by reverse-over-reverse.
    expect_inf: ``expect_inf(v)``: the true loss is above float32's maximum when the
      predictions have magnitude ``v`` (the extreme-value test then expects inf).
    bounds: ``{hyper-parameter: out-of-range values}`` of every bounded float
      hyper-parameter (or floating array argument).
    unbounded: the float hyper-parameters that take any real value.
    batch_argnums: the positional inputs with the batch axis (None: all).
    label_argnum: the positional input holding integer or ±1 labels.
    out_dtype: the result dtype for bf16/fp16 inputs (None: the input dtype).
    optout: ``{shared test (a key of SHARED_TESTS): why it does not apply}``.
    optax: the bench's optax reference as ``(label, function)``; None: ``optax.losses.<name>``
      where optax has that name.
    torch: ``torch(F, *inputs)``, ``F = torch.nn.functional``: the unreduced loss (bench).
    bench_kwargs: the bench's keyword arguments, passed to jaxloss, optax and torch alike,
      where they differ from ``kwargs`` (a jaxloss-only option tested but not timed).
    argnums: the inputs differentiated in the bench's forward+backward.
    target: the bench's forward+backward ÷optax target, if not the default.
    floor_target: the bench's forward+backward ÷floor target (full size).
    not_timed: why the bench does not time it (then ``sizes`` has "test" only).
  """
  name: str
  kind: str
  make: Callable[..., tuple[Any, ...]]
  sizes: Mapping[str, Mapping[str, Any]]
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  variant: str = ""
  # the mathematics
  kinks: tuple[Kink, ...] = ()
  grad: Callable[..., Any] | None = None
  masked_reference: Callable[..., Any] | None = None
  traits: frozenset[str] | set[str] = frozenset()
  nonnegative: bool = True
  twice_differentiable: bool = False
  reverse_only: bool = False
  expect_inf: Callable[[float], bool] = _never
  # hyper-parameters
  bounds: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
  unbounded: tuple[str, ...] = ()
  # inputs
  batch_argnums: tuple[int, ...] | None = None
  label_argnum: int | None = None
  out_dtype: Any = None
  optout: Mapping[str, str] = dataclasses.field(default_factory=dict)
  # the bench
  optax: tuple[str, Callable[..., Any]] | None = None
  torch: Callable[..., Any] | None = None
  bench_kwargs: Mapping[str, Any] | None = None
  argnums: int | tuple[int, ...] = 0
  target: float | None = None
  floor_target: float | None = None
  not_timed: str = ""

  @property
  def fn(self) -> Callable[..., Any]:
    import jaxloss  # noqa: PLC0415  (the registry is importable before jaxloss grows a name)
    return getattr(jaxloss, self.name)

  @property
  def id(self) -> str:
    return f"{self.name}[{self.variant}]" if self.variant else self.name

  @property
  def kind_info(self) -> Kind:
    return KINDS[self.kind]

  @property
  def n_classes(self) -> int:
    """The class count of the test inputs (the vocabulary for the large-vocabulary losses)."""
    dims = self.sizes["test"]
    return dims.get("c", dims.get("v", 0))

  def batched(self, i: int) -> bool:
    return self.batch_argnums is None or i in self.batch_argnums

  def keywords(self, bench: bool = False) -> dict[str, Any]:
    """The keyword arguments of a call (the bench's with ``bench=True``), deferred ones built."""
    kw = self.kwargs if not bench or self.bench_kwargs is None else self.bench_kwargs
    return {k: v.get() if isinstance(v, Deferred) else v for k, v in kw.items()}

  def inputs(self, seed: int = 0, size: str = "test", dtype: Any = jnp.float32
             ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` from a numpy generator seeded by the entry's id and ``seed``."""
    rng = np.random.default_rng([zlib.crc32(self.id.encode()), seed])
    return self.make(Sampler(rng, dtype), **self.sizes[size]), self.keywords()

  def build(self, key: jax.Array, size: str, dtype: Any = jnp.float32) -> tuple[Any, ...]:
    """The positional inputs from a jax key (traceable: the bench jits it)."""
    return self.make(Sampler(key, dtype), **self.sizes[size])

  @property
  def timed(self) -> bool:
    return not self.not_timed and not self.variant


# --------------------------------------------------------------------------------------------
# numpy float64 helpers for the references (also used by tests/test_robustness.py).
# --------------------------------------------------------------------------------------------

def np_log_softmax(x: Any) -> np.ndarray:
  x = np.asarray(x, np.float64)
  top = np.max(x, axis=-1, keepdims=True)
  return x - top - np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


def np_masked_logsumexp(x: Any, where: Any) -> np.ndarray:
  """log Σ_c exp(x_c) over the classes ``where`` keeps, keeping the last axis (size 1)."""
  x = np.where(where, np.asarray(x, np.float64), -np.inf)
  top = np.max(x, axis=-1, keepdims=True)
  return top + np.log(np.sum(np.exp(x - top), axis=-1, keepdims=True))


def np_smoothed(y: Any, where: Any, eps: float) -> np.ndarray:
  """Label smoothing over the kept classes only: (1 − ε) y + ε / (number kept), 0 elsewhere."""
  return np.where(where, (1 - eps) * np.asarray(y, np.float64)
                  + eps / np.sum(where, -1, keepdims=True), 0.0)


def _masked_ce(x, y, *, where, label_smoothing=0.0):
  t = np_smoothed(y, where, label_smoothing)
  return np.sum(np.where(where, t * (np_masked_logsumexp(x, where) - x), 0.0), -1)


def _masked_integer_ce(x, labels, *, where, label_smoothing=0.0):
  return _masked_ce(x, np.eye(x.shape[-1])[labels], where=where,
                    label_smoothing=label_smoothing)


def _masked_poly(x, y, *, where, epsilon=2.0):
  lse = np_masked_logsumexp(x, where)
  p = np.where(where, np.exp(x - lse), 0.0)
  y = np.where(where, y, 0.0)
  return np.sum(y * (lse - np.where(where, x, 0.0)), -1) + epsilon * np.sum(y * (1 - p), -1)


def _masked_kl(log_q, t, *, where):
  return np.sum(np.where(where, t * (np.log(t) - log_q), 0.0), -1)


def _masked_kl_log_targets(log_q, log_t, *, where):
  return _masked_kl(log_q, np.exp(log_t), where=where)


def _masked_generalized_kl(log_q, t, *, where):
  return np.sum(np.where(where, t * (np.log(t) - log_q) + np.exp(log_q) - t, 0.0), -1)


def _generalized_kl_grad(log_q, t):
  """d/d(log q) of Σ t (log t − log q) + (q − t), q = exp(log q): q − t."""
  return np.exp(log_q) - t


def _probability_xent_grad(x, t):
  """d/dx of −Σ t log softmax(x): (Σ t)·softmax(x) − t."""
  return np.sum(t, -1, keepdims=True) * np.exp(np_log_softmax(x)) - t


def _masked_smooth_labels(y, *, where, alpha):
  return np_smoothed(y, where, alpha)


# --------------------------------------------------------------------------------------------
# Input builders: ``make(sample, **dims)``, written once for numpy generators and jax keys.
# --------------------------------------------------------------------------------------------

def pair(s: Sampler, shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
  """Predictions and targets, both standard normal."""
  return s.normal(*shape), s.normal(*shape)


def _counts(s: Sampler, shape):
  return s.normal(*shape), s.poisson(*shape, lam=2.0)


def _rates(s: Sampler, shape):
  return s.uniform(*shape, low=0.2, high=2.0), s.uniform(*shape, low=0.2, high=2.0)


def _gaussian(s: Sampler, shape):
  return s.normal(*shape), s.normal(*shape), jnp.exp(s.normal(*shape))


def _margin(s: Sampler, shape):
  return s.normal(*shape), s.signs(*shape)


def _sigmoid(s: Sampler, shape):
  return s.normal(*shape, scale=2.0), s.bits(*shape)


def _binary_probabilities(s: Sampler, shape):
  return s.uniform(*shape, low=0.01, high=0.99), s.bits(*shape)


def _multilabel_bits(s: Sampler, n, c):
  """(N, C) logits and (N, C) 0/1 labels (PyTorch's multilabel soft-margin targets)."""
  return s.normal(n, c, scale=2.0), s.bits(n, c)


def _multilabel_soft_margin_grad(x, y, class_weights=None):
  """d/dx_c of the mean over classes of w_c·BCE(x_c, y_c): w_c(σ(x_c) − y_c)/C."""
  w = 1.0 if class_weights is None else np.asarray(class_weights)
  return w * (1 / (1 + np.exp(-x)) - y) / x.shape[-1]


def _categorical_focal_grad(x, y, alpha=None, gamma=2.0):
  """d/dx_j of Σ_c α_c y_c (1 − p_c)^γ (−log p_c): p_j Σ_c A_c − A_j with
  A_c = α_c y_c [u_c^γ + γ u_c^(γ−1) p_c (−log p_c)], u = 1 − p."""
  p = _np_softmax(x)
  u, ce = 1 - p, -np.log(p)
  a = (1.0 if alpha is None else np.asarray(alpha)) * y * (u ** gamma
                                                            + gamma * u ** (gamma - 1) * p * ce)
  return p * a.sum(-1, keepdims=True) - a


def _integer_labels(s: Sampler, n, c):
  return s.normal(n, c, scale=2.0), s.integers(n, high=c)


def _log_probs_integer(s: Sampler, n, c):
  logits, labels = _integer_labels(s, n, c)
  return jax.nn.log_softmax(logits, axis=-1), labels


def _probability_labels(s: Sampler, n, c):
  return s.normal(n, c, scale=2.0), s.probabilities(n, c)


def _log_probs_probabilities(s: Sampler, n, c):
  return s.log_probabilities(n, c), s.probabilities(n, c)


def _log_probs_log_probabilities(s: Sampler, n, c):
  return s.log_probabilities(n, c), s.log_probabilities(n, c)


def _one_hot(s: Sampler, n, c):
  return (jax.nn.one_hot(s.integers(n, high=c), c, dtype=s.dtype),)


def _triplet(s: Sampler, n, d):
  return s.normal(n, d), s.normal(n, d), s.normal(n, d)


def _contrastive(s: Sampler, n, d):
  return s.normal(n, d), s.normal(n, d), s.bits(n)


def _center_loss(s: Sampler, n, d, c):
  return s.normal(n, d), s.integers(n, high=c), s.normal(c, d)


def _update_centers(s: Sampler, n, d, c):
  features, labels, centers = _center_loss(s, n, d, c)
  return centers, features, labels


def _params(s: Sampler, d):
  """A two-layer MLP's parameters, d² weights in all."""
  return {"w1": s.normal(d, d // 2), "b1": jnp.zeros((d // 2,), s.dtype),
          "w2": s.normal(d // 2, d), "b2": s.normal(d)}


def _penalty(s: Sampler, d):
  return (_params(s, d),)


def _structural_risk(s: Sampler, d):
  return jnp.abs(s.normal(16 * d)), _params(s, d)


def _linear(s: Sampler, n, d, v):
  return s.normal(n, d), s.normal(d, v, scale=d ** -0.5), s.integers(n, high=v)


def _naive_linear_cross_entropy(hidden, weight, labels):
  import optax  # noqa: PLC0415  (the bench extra; imported where the reference is used)
  return optax.losses.softmax_cross_entropy_with_integer_labels(hidden @ weight, labels)


def _linear_pair(s: Sampler, n, d, v):
  return (s.normal(n, d), s.normal(d, v, scale=d ** -0.5), s.normal(n, d),
          s.normal(d, v, scale=2 * d ** -0.5))


def _naive_linear_token_log_probs(hidden, weight, labels, temperature=1.0):
  import jaxloss  # noqa: PLC0415
  return jaxloss.token_log_probs(hidden @ weight, labels, temperature=temperature)


def _naive_linear_distillation(hs, ws, ht, wt, beta=0.5, temperature=1.0):
  import jaxloss  # noqa: PLC0415
  return jaxloss.generalized_jsd(hs @ ws, jax.lax.stop_gradient(ht @ wt), beta=beta,
                                 temperature=temperature)


def _vocab_mesh():
  from jax.sharding import Mesh  # noqa: PLC0415
  return Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "model"))


# Sizes (issue 7: elementwise losses at 16M elements, the sigmoid losses at 8M, cross-entropy at
# N=4096, V=32000; the rest at sizes of the same order). "test" is what the tests use.
ELEMENTWISE = {"test": {"shape": (N, C)}, "quick": {"shape": (1 << 18,)},
               "full": {"shape": (1 << 24,)}}
SIGMOID = {"test": {"shape": (N, C)}, "quick": {"shape": (1 << 18,)},
           "full": {"shape": (1 << 23,)}}
VOCAB = {"test": {"n": N, "c": C}, "quick": {"n": 64, "c": 4000}, "full": {"n": 4096, "c": 32000}}
CLASSES = {"test": {"n": N, "c": C}, "quick": {"n": 256, "c": 1000},
           "full": {"n": 16384, "c": 1000}}
EMBEDDING = {"test": {"n": N, "d": C}, "quick": {"n": 1024, "d": 256},
             "full": {"n": 65536, "d": 256}}
CENTERS = {"test": {"n": N, "d": C, "c": 3}, "quick": {"n": 1024, "d": 256, "c": 1000},
           "full": {"n": 65536, "d": 256, "c": 1000}}
PARAMS = {"test": {"d": 4}, "quick": {"d": 512}, "full": {"d": 4096}}
# Vocabulary 12 with chunks of 5 in the tests: the last chunk is shifted.
LINEAR = {"test": {"n": N, "d": 4, "v": 12}, "quick": {"n": 128, "d": 128, "v": 4096},
          "full": {"n": 1024, "d": 256, "v": 16000}}


# Family presets: an entry overrides any of these fields.
regression = functools.partial(Loss, kind="elementwise", make=pair, sizes=ELEMENTWISE)
margin_pm1 = functools.partial(Loss, kind="pm1", make=_margin, sizes=ELEMENTWISE,
                               label_argnum=1)
classes = functools.partial(Loss, kind="class_int", make=_integer_labels, sizes=CLASSES,
                            label_argnum=1)
class_probs = functools.partial(Loss, kind="class_prob", make=_probability_labels, sizes=VOCAB,
                                twice_differentiable=True)
sigmoid = functools.partial(Loss, kind="binary01", make=_sigmoid, sizes=SIGMOID,
                            twice_differentiable=True)
embedding = functools.partial(Loss, kind="pair", sizes=EMBEDDING)
penalty = functools.partial(Loss, kind="regularizer", make=_penalty, sizes=PARAMS)
large_vocab = functools.partial(
    Loss, kind="large_vocab", make=_linear, sizes=LINEAR, twice_differentiable=True,
    reverse_only=True, batch_argnums=(0, 2), label_argnum=2, out_dtype=jnp.float32,
    optout={"vmap_over_examples": "takes (N, D) hidden states only, so a per-example call is "
                                  "refused by contract; test_vmap_over_blocks_of_tokens maps "
                                  "blocks of tokens instead",
            "masked_classes": "`where` masks tokens, not classes: no class can be masked out "
                              "of its softmax (test_where_and_ignore_index_drop_every_token)",
            "second_derivatives": "a custom_vjp: test_large_vocab checks its Hessian-vector "
                                  "products (reverse over reverse) against those of the "
                                  "explicit-logits loss; check_grads here costs ~15 s a loss"})


def _margin_grad(dloss_dm):
  """d/ds of ℓ(y·s) is y·ℓ'(m)."""
  return lambda s, y: y * dloss_dm(s * y)


def _no_grad(x, *rest, **kwargs):
  del rest, kwargs
  return np.zeros_like(x)


CONVEX = frozenset({"convex"})
RESIDUAL = frozenset({"convex", "symmetric", "zero_at_perfect"})


# --------------------------------------------------------------------------------------------
# Language-model post-training (issue 17): builders, numpy references, naive bench references.
# --------------------------------------------------------------------------------------------

def _np_softmax_parts(x, temperature=1.0):
  lp = np_log_softmax(np.asarray(x, np.float64) / temperature)
  return lp, np.exp(lp)


def _np_sig(x):
  return 1.0 / (1.0 + np.exp(-x))


def _token_mask(s: Sampler, n, t):
  """A completion mask: row i keeps its first t − (i mod t) tokens (row 0 keeps all)."""
  del s
  return jnp.arange(t)[None, :] < (t - jnp.arange(n) % t)[:, None]


def _token_values(s: Sampler, n, c):
  return -s.uniform(n, c, low=0.1, high=3.0), _token_mask(s, n, c)


def _logits_only(s: Sampler, n, c):
  return (s.normal(n, c, scale=2.0),)


def _logit_pair(s: Sampler, n, c):
  return s.normal(n, c, scale=2.0), s.normal(n, c, scale=2.0)


def _preference(s: Sampler, shape):
  """Sequence log-probabilities: policy chosen, policy rejected, reference chosen, rejected."""
  return tuple(-s.uniform(*shape, low=1.0, high=30.0) for _ in range(4))


def _policy_only(s: Sampler, shape):
  """Length-averaged log-probabilities (<= 0) of the chosen and the rejected responses."""
  return -s.uniform(*shape, low=0.05, high=3.0), -s.uniform(*shape, low=0.05, high=3.0)


def _unpaired(s: Sampler, shape):
  return (-s.uniform(*shape, low=1.0, high=30.0), -s.uniform(*shape, low=1.0, high=30.0),
          s.bits(*shape) > 0.5)


def _rollout(s: Sampler, n, t):
  """log π_θ, log π_old (n, t) and one advantage per sequence, the first one negative."""
  lp = jnp.log(s.uniform(n, t, low=0.05, high=1.0).astype(jnp.float32)).astype(s.dtype)
  old = lp + s.normal(n, t, scale=0.3)
  adv = s.normal(n)
  return lp, old, jnp.where(jnp.arange(n) == 0, -jnp.abs(adv) - 0.5, adv)


def _masked_rollout(s: Sampler, n, t):
  return _rollout(s, n, t) + (_token_mask(s, n, t),)


def _kl_pair(s: Sampler, n, t):
  lp = jnp.log(s.uniform(n, t, low=0.05, high=1.0).astype(jnp.float32)).astype(s.dtype)
  return lp, lp + s.normal(n, t, scale=0.5)


def _groups(s: Sampler, n, g):
  return s.normal(n), jnp.arange(n, dtype=jnp.int32) % g


def _token_log_probs_grad(x, y, temperature=1.0, **kwargs):
  del kwargs
  _, p = _np_softmax_parts(x, temperature)
  return (np.eye(x.shape[-1])[y] - p) / temperature


def _token_entropy_grad(x, temperature=1.0):
  lp, p = _np_softmax_parts(x, temperature)
  h = -np.sum(p * lp, -1, keepdims=True)
  return -p * (lp + h) / temperature


def _sequence_log_probs_grad(lp, mask, average=False):
  m = np.asarray(mask, np.float64)
  return m / np.maximum(m.sum(-1, keepdims=True), 1.0) if average else m


def _smoothed_logistic_grad(u, beta, eps):
  """d/du of (1 − ε) softplus(−u) + ε softplus(u), times du/dπ_c = β."""
  return beta * (-(1 - eps) * _np_sig(-u) + eps * _np_sig(u))


def _dpo_grad(pc, pr, rc, rr, beta=0.1, label_smoothing=0.0, **kwargs):
  del kwargs
  return _smoothed_logistic_grad(beta * ((pc - rc) - (pr - rr)), beta, label_smoothing)


def _simpo_grad(pc, pr, beta=2.0, gamma=0.5, label_smoothing=0.0):
  return _smoothed_logistic_grad(beta * (pc - pr) - gamma, beta, label_smoothing)


def _cpo_grad(pc, pr, beta=0.1, label_smoothing=0.0):
  return _smoothed_logistic_grad(beta * (pc - pr), beta, label_smoothing)


def _orpo_grad(a, b, beta=0.1):
  log_odds = (a - np.log(-np.expm1(a))) - (b - np.log(-np.expm1(b)))
  return -beta * _np_sig(-log_odds) / -np.expm1(a)  # −β σ(−L) / (1 − eᵃ)


def _kto_grad(pol, ref, good, beta=0.1, kl=0.0, desirable_weight=1.0, undesirable_weight=1.0):
  z = beta * (pol - ref - max(kl, 0.0))
  dsig = _np_sig(z) * _np_sig(-z)
  return np.where(good, -desirable_weight * beta * dsig, undesirable_weight * beta * dsig)


def _clipped_grad(lp, old, adv, epsilon_low=0.2, epsilon_high=0.2, mask=None):
  r = np.exp(lp - old)
  a = adv[..., None] if adv.ndim < lp.ndim else adv
  unclipped = ((a > 0) & (r < 1 + epsilon_high)) | ((a < 0) & (r > 1 - epsilon_low))
  g = np.where(unclipped, -a * r, 0.0)
  return g if mask is None else np.where(mask, g, 0.0)


def _sequence_clipped_grad(lp, old, adv, mask, epsilon_low=3e-4, epsilon_high=4e-4):
  # GSPO-token: each token's value is the sequence's s_i; its gradient −A s_i on its own token.
  n = np.maximum(mask.sum(-1, keepdims=True), 1)
  s = np.exp(np.sum(np.where(mask, lp - old, 0.0), -1, keepdims=True) / n)
  return _clipped_grad(np.log(s) + 0 * lp, 0 * lp, adv, epsilon_low, epsilon_high, mask)


def _kl_penalty_grad(lp, ref, estimator="k3"):
  d = ref - lp
  return {"k1": np.ones_like(d), "k2": -d, "k3": -np.expm1(d)}[estimator]


def _np_masked_log_softmax(x, where):
  with np.errstate(invalid="ignore"):
    return np.where(where, np.asarray(x, np.float64) - np_masked_logsumexp(x, where), -np.inf)


def _np_divergence(kind, s, t, where=None, beta=0.5, temperature=1.0):
  s = np.asarray(s, np.float64) / temperature
  t = np.asarray(t, np.float64) / temperature
  where = np.ones(s.shape, bool) if where is None else where
  lp, lq = _np_masked_log_softmax(s, where), _np_masked_log_softmax(t, where)
  p, q = np.exp(lp), np.exp(lq)

  def kl(a, la, lb):
    with np.errstate(invalid="ignore"):
      return np.sum(np.where(a > 0, a * (la - lb), 0.0), -1)

  if kind == "tv":
    return 0.5 * np.sum(np.abs(p - q), -1)
  if kind == "reverse" or beta == 1:
    return kl(p, lp, lq)
  if beta == 0:
    return kl(q, lq, lp)
  with np.errstate(divide="ignore"):
    lm = np.log(beta * q + (1 - beta) * p)
  return beta * kl(q, lq, lm) + (1 - beta) * kl(p, lp, lm)


def _divergence_grad(kind):
  """d/d(student logits) = p ⊙ (g − ⟨p, g⟩) / T for dV/dp = g (forward KL: (p − q) / T)."""
  def grad(s, t, beta=0.5, temperature=1.0):
    lp, p = _np_softmax_parts(s, temperature)
    lq, q = _np_softmax_parts(t, temperature)
    if kind == "jsd" and beta == 0:
      return (p - q) / temperature
    if kind == "tv":
      g = 0.5 * np.sign(p - q)
    elif kind == "reverse" or beta == 1:
      g = lp - lq
    else:
      g = (1 - beta) * (lp - np.log(beta * q + (1 - beta) * p))
    return p * (g - np.sum(p * g, -1, keepdims=True)) / temperature
  return grad


def _naive_token_log_probs(logits, labels):
  """The jax composition: a log-softmax, then a gather."""
  return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), labels[:, None], -1)[:, 0]


def _naive_token_entropy(logits):
  return -jnp.sum(jax.nn.softmax(logits, -1) * jax.nn.log_softmax(logits, -1), -1)


def _naive_generalized_jsd(student, teacher, beta=0.5):
  """TRL's GKDTrainer.generalized_jsd_loss per row, in jax (0 < beta < 1)."""
  ls, lt = jax.nn.log_softmax(student, -1), jax.nn.log_softmax(teacher, -1)
  lm = jax.nn.logsumexp(jnp.stack([ls + jnp.log(1 - beta), lt + jnp.log(beta)]), axis=0)
  return jnp.sum(beta * jnp.exp(lt) * (lt - lm) + (1 - beta) * jnp.exp(ls) * (ls - lm), -1)


def _naive_reverse_kl(student, teacher):
  ls, lt = jax.nn.log_softmax(student, -1), jax.nn.log_softmax(teacher, -1)
  return jnp.sum(jnp.exp(ls) * (ls - lt), -1)


def _naive_total_variation(student, teacher):
  return 0.5 * jnp.sum(jnp.abs(jax.nn.softmax(student, -1) - jax.nn.softmax(teacher, -1)), -1)


PAIRS = {"test": {"shape": (N, C)}}
TOKENS = {"test": {"n": N, "c": C}}
ROLLOUT = {"test": {"n": N, "t": C}}
PER_PAIR = ("per-pair arithmetic on log-probabilities already computed (O(N) elementwise); "
            "the logits-level cost is token_log_probs', which is timed")
PER_TOKEN = ("per-token arithmetic on log-probabilities already computed (elementwise over "
             "(N, T)); the logits-level cost is token_log_probs', which is timed")


# --------------------------------------------------------------------------------------------
# Representation learning (issue 16): builders, numpy gradients, naive bench references.
# --------------------------------------------------------------------------------------------

def _np_unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_softmax(x, axis=-1):
  e = np.exp(x - np.max(x, axis=axis, keepdims=True))
  return e / np.sum(e, axis=axis, keepdims=True)


def _margin_inputs(s: Sampler, n, d, c, k=1):
  """Embeddings (n, d), class weights (c·k, d) (k sub-centers per class), labels (n,)."""
  return s.normal(n, d), s.normal(c * k, d), s.integers(n, high=c)


def _unit_rows(x):
  x32 = x.astype(jnp.float32)
  return (x32 / jnp.linalg.norm(x32, axis=-1, keepdims=True)).astype(x.dtype)


def _contrast_pair(s: Sampler, n, d):
  """Two L2-normalised (n, d) embeddings, row i of each a positive pair."""
  return _unit_rows(s.normal(n, d)), _unit_rows(s.normal(n, d))


def _contrast_labels(s: Sampler, n, d):
  return _unit_rows(s.normal(n, d)), s.integers(n, high=3)


def _batch_mesh():
  from jax.sharding import Mesh  # noqa: PLC0415
  return Mesh(np.array(jax.devices()[:8]), ("data",))


def _margin_softmax_grad(x, w, y, scale, psi):
  """d/dx of −log softmax(s·z)_y, z_y = ψ(cos θ_y): Σ_j g_j (ŵ_j − cos_j x̂)/‖x‖."""
  xh, wh = _np_unit(x), _np_unit(w)
  cos = xh @ wh.T
  rows = np.arange(len(x))
  value, deriv = psi(cos[rows, y])
  z = cos.copy()
  z[rows, y] = value
  g = scale * _np_softmax(scale * z)
  g[rows, y] -= scale
  g[rows, y] *= deriv
  return (g @ wh - np.sum(g * cos, -1, keepdims=True) * xh) / np.linalg.norm(x, axis=-1,
                                                                             keepdims=True)


def _arcface_grad(x, w, y, scale=64.0, margin=0.5, easy_margin=False):
  def psi(c):  # cos(θ + m) = c cos m − sin θ sin m; insightface's fallback past θ = π − m
    sin = np.sqrt(1 - c * c)
    fall = c <= 0 if easy_margin else c <= np.cos(np.pi - margin)
    # At c = ±1 dψ/dc is unbounded but the cosine's own gradient is 0: any finite value gives
    # the same gradient, so the reference takes 0 there instead of ∞ · 0.
    slope = np.where(sin > 0, c * np.sin(margin) / np.where(sin > 0, sin, 1.0), 0.0)
    return (np.where(fall, c if easy_margin else c - margin * np.sin(margin),
                     c * np.cos(margin) - sin * np.sin(margin)),
            np.where(fall, 1.0, np.cos(margin) + slope))
  return _margin_softmax_grad(x, w, y, scale, psi)


def _cosface_grad(x, w, y, scale=64.0, margin=0.35):
  return _margin_softmax_grad(x, w, y, scale, lambda c: (c - margin, np.ones_like(c)))


def _supcon_grad(z, y, temperature=0.1, base_temperature=0.07, **unused):
  """d/dz of Σ_i L_out: dℓ_i/dL_ia = (τ/τ_b)(softmax over a ≠ i − [a ∈ P(i)]/|P(i)|)."""
  del unused
  z = np.asarray(z, np.float64)
  n = len(z)
  logits = z @ z.T / temperature
  others = ~np.eye(n, dtype=bool)
  pos = others & (y[:, None] == y[None, :])
  npos = pos.sum(1, keepdims=True)
  soft = _np_softmax(np.where(others, logits, -np.inf))
  g = np.where(npos > 0, temperature / base_temperature * (soft - pos / np.maximum(npos, 1)),
               0.0)
  return (g + g.T) @ z / temperature


def _info_nce_grad(q, k, temperature=0.1, **unused):
  """d/dq with in-batch negatives: (softmax(q kᵀ/τ) − I) k / τ."""
  del unused
  q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
  return (_np_softmax(q @ k.T / temperature) - np.eye(len(q))) @ k / temperature


def _clip_grad(x, y, logit_scale, **unused):
  """d/dx: t·(½(P − I) + ½(Q − I)) y, P and Q the row and column softmax of t·x yᵀ."""
  del unused
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  t = min(logit_scale, 100.0)
  logits, eye = t * x @ y.T, np.eye(len(x))
  return t * (0.5 * (_np_softmax(logits, 1) - eye) + 0.5 * (_np_softmax(logits, 0) - eye)) @ y


def _siglip_grad(x, y, logit_scale, logit_bias, **unused):
  """d/dx: t·G y with G = −z σ(−z L), L = t·x yᵀ + b, z = 2I − 1."""
  del unused
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  z = 2 * np.eye(len(x)) - 1
  u = -z * (logit_scale * x @ y.T + logit_bias)
  return logit_scale * (-z / (1 + np.exp(-u))) @ y


def _naive_margin_logits(x, w, y, scale, target):
  xh = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
  wh = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
  cos = jnp.clip(xh @ wh.T, -1.0, 1.0)
  onehot = jax.nn.one_hot(y, w.shape[0], dtype=bool)
  return scale * jnp.where(onehot, target(cos), cos)


def _naive_arcface(x, w, y, scale=64.0, margin=0.5):
  import optax  # noqa: PLC0415  (the bench extra; imported where the reference is used)

  def target(c):  # insightface's ArcFace logit, cos-addition with its fallback
    phi = c * jnp.cos(margin) - jnp.sqrt(1.0 - c * c) * jnp.sin(margin)
    return jnp.where(c > jnp.cos(jnp.pi - margin), phi, c - margin * jnp.sin(margin))
  return optax.losses.softmax_cross_entropy_with_integer_labels(
      _naive_margin_logits(x, w, y, scale, target), y)


def _naive_cosface(x, w, y, scale=64.0, margin=0.35):
  import optax  # noqa: PLC0415
  return optax.losses.softmax_cross_entropy_with_integer_labels(
      _naive_margin_logits(x, w, y, scale, lambda c: c - margin), y)


def _naive_info_nce(q, k, temperature=0.1):
  import optax  # noqa: PLC0415
  return optax.losses.softmax_cross_entropy_with_integer_labels(q @ k.T / temperature,
                                                                jnp.arange(q.shape[0]))


def _naive_clip(x, y, logit_scale):
  import optax  # noqa: PLC0415
  logits = jnp.minimum(logit_scale, 100.0) * x @ y.T
  labels = jnp.arange(x.shape[0])
  ce = optax.losses.softmax_cross_entropy_with_integer_labels
  return 0.5 * (ce(logits, labels) + ce(logits.T, labels))


def _naive_siglip(x, y, logit_scale, logit_bias):
  import optax  # noqa: PLC0415
  logits = logit_scale * x @ y.T + logit_bias
  return jnp.sum(optax.losses.sigmoid_binary_cross_entropy(
      logits, jnp.eye(x.shape[0], dtype=logits.dtype)), axis=-1)


def _unsharded(name):
  """The unsharded jaxloss loss as the reference of its sharded form (the mesh dropped)."""
  def reference(*args, mesh=None, **kwargs):
    del mesh
    import jaxloss  # noqa: PLC0415
    return getattr(jaxloss, name)(*args, **kwargs)
  return (f"jaxloss.{name}, unsharded", reference)


def _margin_kink(c_target):
  """An embedding exactly along (c = 1) or against (c = −1) its class weight: the cosine's own
  gradient (ŵ − c x̂)/‖x‖ is 0 there, so the target term drops out whatever dψ/dc is, and the
  gradient is the other classes' softmax terms: s·p_j (ŵ_j − c_j x̂)."""
  e = np.eye(4)
  w = np.concatenate([e, -e[:1]])  # classes e0, e1, e2, e3, −e0
  label = 0 if c_target > 0 else 1
  x = c_target * e[label] * 2.0
  return w, label, x


def _margin_kink_grad(c_target, scale, psi_value):
  w, label, x = _margin_kink(c_target)
  xh = _np_unit(x)
  cos = w @ xh
  z = cos.copy()
  z[label] = psi_value
  p = _np_softmax(scale * z)
  g = np.where(np.arange(len(w)) == label, 0.0, scale * p)
  return [list((g @ w - np.sum(g * cos) * xh) / np.linalg.norm(x))]


def _margin_kink_inputs(c_target):
  w, label, x = _margin_kink(c_target)
  return ([list(x)], [list(r) for r in w], [label])


CONTRAST_OPTOUT = {
    "nan_propagates": "the batch is coupled: example 0's embedding is in every row's softmax "
                      "(or sum), so its NaN reaches every row, as the maths says",
}
SUPCON_OPTOUT = {
    **CONTRAST_OPTOUT,
    "extreme_predictions": "the similarities are dot products of the embeddings as given "
                           "(normalised upstream, as in the reference code) with themselves: "
                           "at |z| = 1e30 they overflow float32 (1e60) though the loss of equal "
                           "rows is finite; test_contrastive checks similarities of ±1 at "
                           "temperature 0.01",
}
MARGIN = {"test": {"n": N, "d": 4, "c": C}, "quick": {"n": 512, "d": 128, "c": 1000},
          "full": {"n": 4096, "d": 256, "c": 10000}}
SUBCENTERS = {size: {**dims, "k": 2} for size, dims in MARGIN.items()}
CONTRAST = {"test": {"n": N, "d": C}, "quick": {"n": 512, "d": 128},
            "full": {"n": 4096, "d": 256}}
margin_classes = functools.partial(Loss, kind="class_int", make=_margin_inputs, sizes=MARGIN,
                                   batch_argnums=(0, 2), label_argnum=2,
                                   twice_differentiable=True)
contrast = functools.partial(Loss, kind="contrast", make=_contrast_pair, sizes=CONTRAST,
                             twice_differentiable=True, optout=CONTRAST_OPTOUT)


# --------------------------------------------------------------------------------------------
# Segmentation, detection, deviances, robust and relative-error regression (issues 13, 15).
# --------------------------------------------------------------------------------------------

def _segmentation(s: Sampler, n, p, c):
  """(N, P, C) logits and one-hot targets: N images of P pixels (the overlap sums run over P)."""
  return s.normal(n, p, c, scale=2.0), jax.nn.one_hot(s.integers(n, p, high=c), c,
                                                       dtype=s.dtype)


def _binary_masks(s: Sampler, n, p, c):
  del c
  return s.normal(n, p, scale=2.0), s.bits(n, p)


def _pixel_labels(s: Sampler, n, p, c):
  return s.normal(n, p, c, scale=2.0), s.integers(n, p, high=c)


def _boxes(s: Sampler, n):
  """Two sets of valid (x1, y1, x2, y2) boxes that overlap, touch or miss at random."""
  def boxes():
    corner = s.uniform(n, 2, low=0.0, high=5.0)
    return jnp.concatenate([corner, corner + s.uniform(n, 2, low=0.2, high=4.0)], axis=-1)
  return boxes(), boxes()


def _residuals(s: Sampler, shape):
  return (s.normal(*shape, scale=2.0),)


def _probs_integer(s: Sampler, n, c):
  return s.probabilities(n, c), s.integers(n, high=c)


def _np_probs(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _tversky_grad(x, t, alpha=0.5, beta=0.5, smooth=1.0, gamma=1.0, apply_softmax=True):
  """d/dx of Σ_b mean_c (1 − TI_bc)^γ over the pixel axis 1 (softmax over the last); 0 for a
  perfect class (TI = 1), the documented sub-gradient of γ < 1."""
  p = _np_probs(x) if apply_softmax else np.asarray(x, np.float64)
  t = np.asarray(t, np.float64)
  i, ps, ts = (p * t).sum(1), p.sum(1), t.sum(1)
  n = i + smooth
  d = i + alpha * (ps - i) + beta * (ts - i) + smooth
  u = 1 - n / d
  outer = np.where(u > 0, -gamma * np.where(u > 0, u, 1.0) ** (gamma - 1), 0.0) / p.shape[-1]
  dti = (t * d[:, None] - n[:, None] * ((1 - alpha - beta) * t + alpha)) / d[:, None] ** 2
  gp = outer[:, None] * dti
  if not apply_softmax:
    return gp
  return p * (gp - (p * gp).sum(-1, keepdims=True))


def _tweedie_grad(m, y, power=0.0, log_input=False):
  mu = np.exp(m) if log_input else m
  return 2 * mu ** ((1 if log_input else 0) - power) * (mu - y)


def _brier_multiclass_grad(p, y, axis=-1):
  del axis
  scale = 0.5 if p.shape[-1] == 2 else 1.0
  return 2 * scale * (p - np.eye(p.shape[-1])[y])


def _robust_grad(x, alpha, scale):
  z = (x / scale) ** 2
  return x / scale ** 2 * (z / abs(alpha - 2) + 1) ** (alpha / 2 - 1)


def _mape_grad(p, t, eps=1e-7):
  return 100 * np.sign(p - t) / np.maximum(np.abs(t), eps)


def _msle_grad(p, t, eps=1e-7):
  return np.where(p > eps, 2 * (np.log1p(p) - np.log1p(np.maximum(t, eps))) / (1 + p), 0.0)


SEGMENTS = {"test": {"n": N, "p": 6, "c": C}, "quick": {"n": 16, "p": 4096, "c": 5},
            "full": {"n": 32, "p": 65536, "c": 5}}
BOXES = {"test": {"n": N}, "quick": {"n": 1 << 16}, "full": {"n": 1 << 20}}
PER_IMAGE = ("the first axis indexes images and the remaining ones are summed (optax's "
             "axis=None): a single (P, C) image reads P as its batch, so a per-example call "
             "is not the batched one by contract; test_segmentation checks vmap over a leading "
             "image axis")
SEG_AXIS = ("`axis` names the summation (pixel) axes of (N, P, C) inputs, where axis=2 is the "
            "class axis (refused: test_segmentation) and axis=-3 the batch axis (valid)")
PIXEL_IGNORE = ("labels have a pixel axis (N, P): the shared test's (N,) labels do not fit; "
                "test_segmentation checks all-ignored images (0 with zero gradient)")
DOMAIN = ("the prediction is a mean mu > 0 (NaN with a zero gradient outside, by contract): "
          "the negative extremes are outside the domain; the log_input entry covers extremes")
STATIC_POWER = ("power is static (it selects the distribution and the formula, as scikit-learn "
                "branches on it): halving 1.5 gives 0.75, outside the domain; test_deviance "
                "checks its validation")
segmentation = functools.partial(Loss, kind="segmentation", make=_segmentation, sizes=SEGMENTS,
                                 twice_differentiable=True,
                                 optout={"vmap_over_examples": PER_IMAGE,
                                         "axis_out_of_range": SEG_AXIS})
boxes = functools.partial(Loss, kind="boxes", make=_boxes, sizes=BOXES,
                          optout={"integer_predictions": "torchvision computes integer boxes "
                                                         "in float32 (_upcast_non_float), and "
                                                         "so does this; test_detection"})
robust = functools.partial(Loss, kind="residuals", make=_residuals, sizes=ELEMENTWISE,
                           twice_differentiable=True, bounds={"scale": (0.0, -1.0)},
                           optout={"shape_mismatch": "one input (the residuals): there is no "
                                                     "second shape to mismatch"})


# --------------------------------------------------------------------------------------------
# Sequence (CTC), Fenchel-Young, ranking and similarity losses (issue 13).
# --------------------------------------------------------------------------------------------

def _ctc_inputs(s: Sampler, b, t, k, n):
  """(B, T, K) logits, (B, T) frame paddings (0, 1 or 2 padded frames), (B, N) labels in
  [1, K) (0 is the blank) and (B, N) label paddings (0 or 1 padded labels)."""
  frames = t - jnp.arange(b) % 3
  lengths = n - jnp.arange(b) % 2
  logit_pad = (jnp.arange(t)[None, :] >= frames[:, None]).astype(s.dtype)
  label_pad = (jnp.arange(n)[None, :] >= lengths[:, None]).astype(s.dtype)
  labels = s.integers(b, n, high=k - 1) + 1
  return s.normal(b, t, k, scale=2.0), logit_pad, labels, label_pad


def _torch_ctc(F, x, logit_pad, labels, label_pad):
  return F.ctc_loss(x.log_softmax(-1).transpose(0, 1), labels,
                    (1 - logit_pad).sum(1).long(), (1 - label_pad).sum(1).long(),
                    blank=0, reduction="none")


def _two_embeddings(s: Sampler, n, d):
  return s.normal(n, d), s.normal(n, d)


def _np_cosine_grad(a, b, epsilon=0.0, **unused):
  """∂cos/∂a = b/(n_a n_b) − cos·a/n_a² where ‖a‖² > ε (the norm is held at sqrt(ε) below);
  0 at a zero vector with ε = 0."""
  a, b = np.float64(a), np.float64(b)
  na2 = np.sum(a * a, -1, keepdims=True)
  na = np.sqrt(np.maximum(na2, epsilon))
  nb = np.sqrt(np.maximum(np.sum(b * b, -1, keepdims=True), epsilon))
  zero = (na == 0) | (nb == 0)  # a zero vector with ε = 0: the documented sub-gradient 0
  na, nb = np.where(zero, 1.0, na), np.where(zero, 1.0, nb)
  cos = np.sum(a * b, -1, keepdims=True) / (na * nb)
  return np.where(zero, 0.0, b / (na * nb) - np.where(na2 > epsilon, cos * a / na ** 2, 0.0))


def _np_sparsemax(z):
  """The projection onto the simplex along the last axis (sorted scores, Martins & Astudillo
  2016, Alg. 1), in float64."""
  z = np.float64(z)
  zs = -np.sort(-z, axis=-1)
  k = np.arange(1, z.shape[-1] + 1)
  cs = np.cumsum(zs, -1)
  size = np.sum(1 + k * zs > cs, -1, keepdims=True)
  tau = (np.take_along_axis(cs, size - 1, -1) - 1) / size
  return np.maximum(z - tau, 0)


def _relevance(s: Sampler, n, c):
  """(N, L) scores and graded relevance labels in {0, 1, 2}."""
  return s.normal(n, c, scale=2.0), s.integers(n, c, high=3).astype(s.dtype)


def _np_ranking(x, y, where=None, **unused):
  """Per-list ranking softmax loss in float64 over the kept items."""
  x, y = np.float64(x), np.float64(y)
  keep = np.ones(x.shape, bool) if where is None else np.asarray(where)
  y = np.where(keep, y, 0.0)
  z = np.where(keep, x, -np.inf)
  m = np.where(keep.any(-1, keepdims=True), z.max(-1, keepdims=True), 0.0)
  lse = m + np.log(np.sum(np.where(keep, np.exp(np.where(keep, x - m, 0.0)), 0.0), -1,
                          keepdims=True) + (~keep.any(-1, keepdims=True)))
  return np.sum(np.where(y != 0, y * (lse - np.where(keep, x, 0.0)), 0.0), -1)


def _ranking_grad(x, y, **unused):
  """(Σ y)·softmax(x) − y."""
  return np.sum(np.float64(y), -1, keepdims=True) * _np_softmax(x) - np.float64(y)


def _np_ntxent_grad(x, labels, temperature=0.07):
  """d ntxent/dx from the maths: per positive pair (i, j), softplus(LSE_{N(i)} s_i − s_ij)."""
  x = np.float64(x)
  labels = np.asarray(labels)
  eps = np.finfo(np.float32).eps
  norm = np.sqrt(np.maximum(np.sum(x * x, 1, keepdims=True), eps))
  u = x / norm
  s = u @ u.T / temperature
  same = labels[:, None] == labels[None, :]
  pos, neg = same & ~np.eye(len(x), dtype=bool), ~same
  g_s = np.zeros_like(s)
  for i, j in zip(*np.nonzero(pos), strict=True):
    logits = np.concatenate([[s[i, j]], s[i, neg[i]]])
    soft = np.exp(logits - logits.max())
    soft /= soft.sum()
    g_s[i, j] += soft[0] - 1
    g_s[i, neg[i]] += soft[1:]
  g_s /= max(pos.sum(), 1)
  g_u = (g_s + g_s.T) @ u / temperature
  inside = np.sum(x * x, 1, keepdims=True) > eps
  return (g_u - np.where(inside, np.sum(g_u * u, 1, keepdims=True) * u, 0.0)) / norm


def _optax_standard_promotion(name):
  """optax's ``name`` traced under standard dtype promotion: it mixes int (or bool) with
  float arrays, which the tests' strict promotion refuses. The numbers are optax's."""
  def reference(*args, **kwargs):
    import optax  # noqa: PLC0415
    with jax.numpy_dtype_promotion("standard"):
      return getattr(optax.losses, name)(*args, **kwargs)
  return ("optax", reference)


SEQUENCES = {"test": {"b": N, "t": 6, "k": 4, "n": 3}, "quick": {"b": 16, "t": 200, "k": 64,
                                                                 "n": 40},
             "full": {"b": 32, "t": 400, "k": 64, "n": 60}}
PER_SEQUENCE_BATCH = ("(B, T, K) logits by optax's signature: a per-example (T, K) call is "
                      "refused by contract; test_sequence checks vmap over an extra leading axis")
COSINE_WHERE = ("`where` masks feature entries of both vectors (optax's meaning), not classes of "
                "a softmax: a −inf entry is not a masked-out value; test_similarity checks that "
                "masked NaN entries never reach the value or the gradient")
sequence = functools.partial(Loss, kind="sequence", make=_ctc_inputs, sizes=SEQUENCES,
                             label_argnum=2, reverse_only=True,
                             optout={"vmap_over_examples": PER_SEQUENCE_BATCH})
cosine = functools.partial(Loss, kind="pair", make=_two_embeddings, sizes=EMBEDDING,
                           twice_differentiable=True, kwargs={"epsilon": 1e-3},
                           bench_kwargs={}, bounds={"epsilon": (-1.0,)}, grad=_np_cosine_grad,
                           optout={"masked_classes": COSINE_WHERE})


# --------------------------------------------------------------------------------------------
# PyTorch's pairwise and multilabel margins, Keras's categorical hinge, the cosine embedding
# loss and the triplet loss with a distance of the caller's choice (issue 15).
# --------------------------------------------------------------------------------------------

def _ranked_pairs(s: Sampler, shape):
  """Two score arrays and ±1 labels of one shape (y = +1: x1 should rank above x2)."""
  return s.normal(*shape), s.normal(*shape), s.signs(*shape)


def _distances(s: Sampler, shape):
  """Distances in [0, 2), on both sides of the default margin 1, and ±1 labels."""
  return s.uniform(*shape, low=0.0, high=2.0), s.signs(*shape)


def _multilabel_targets(s: Sampler, n, c):
  """(N, C) scores and PyTorch's multilabel targets: row i lists k_i in [1, C) distinct classes,
  then −1, then class indices that the loss ignores (everything after the first −1)."""
  order = jnp.argsort(s.normal(n, c).astype(jnp.float32), axis=-1).astype(jnp.int32)
  listed = s.integers(n, high=c - 1) + 1
  position = jnp.arange(c, dtype=jnp.int32)[None, :]
  return s.normal(n, c, scale=2.0), jnp.where(position == listed[:, None], -1, order)


def _one_hot_targets(s: Sampler, n, c):
  return s.normal(n, c, scale=2.0), jax.nn.one_hot(s.integers(n, high=c), c, dtype=s.dtype)


def _labelled_pairs(s: Sampler, n, d):
  """Two (N, D) embeddings and (N,) ±1 labels (+1: a similar pair)."""
  return s.normal(n, d), s.normal(n, d), s.signs(n)


def _squared_euclidean(x, y):
  """FaceNet's squared distance ‖x − y‖², a ``distance_fn`` for the triplet loss."""
  return jnp.sum(jnp.square(x - y), axis=-1)


def _margin_ranking_grad(x1, x2, y, margin=0.0):
  """d/dx1 of max(0, margin − y(x1 − x2)): −y where the hinge is active, 0 at its kink."""
  return np.where(margin - y * (x1 - x2) > 0, -y, 0.0)


def _hinge_embedding_grad(x, y, margin=1.0):
  """1 for a similar pair; −1 for a dissimilar one below the margin, 0 at and above it."""
  return np.where(y == 1, 1.0, np.where(x < margin, -1.0, 0.0))


def _multilabel_margin_grad(s, t):
  """Each target j (the entries before the first −1) and non-target i with 1 − (s_j − s_i) > 0
  add (e_i − e_j)/C; 0 at the kink s_j − s_i = 1."""
  g = np.zeros(s.shape)
  c = s.shape[-1]
  for row, (scores, listed) in enumerate(zip(s, t, strict=True)):
    targets = []
    for j in listed:
      if j == -1:
        break
      targets.append(int(j))
    for j in targets:
      for i in set(range(c)) - set(targets):
        if 1 - (scores[j] - scores[i]) > 0:
          g[row, i] += 1 / c
          g[row, j] -= 1 / c
  return g


def _categorical_hinge_grad(s, y, axis=-1):
  """(1 − y_k) e_k − y where neg − pos + 1 > 0, with pos = Σ y·s, neg = max_j (1 − y_j) s_j at
  k = its arg max (ties to the lowest index); 0 at the kink neg − pos = −1."""
  del axis
  others = (1 - y) * s
  k = np.argmax(others, axis=-1)
  rows = np.arange(len(s))
  active = others[rows, k] - np.sum(y * s, -1) + 1 > 0
  g = -y.copy()
  g[rows, k] += 1 - y[rows, k]
  return np.where(active[:, None], g, 0.0)


def _cosine_embedding_grad(a, b, y, margin=0.0, eps=1e-8, axis=-1):
  """∂cos/∂a = b/(n_a n_b) − cos·a/n_a², n² = ‖·‖² + ε: −∂cos for y = 1, +∂cos for y = −1
  where cos > margin, 0 at and below it."""
  del axis
  na2 = np.sum(a * a, -1, keepdims=True) + eps
  nb = np.sqrt(np.sum(b * b, -1, keepdims=True) + eps)
  zero = (na2 == 0) | (nb == 0)  # a zero vector with eps = 0: cosine 0, gradient 0
  na2, nb = np.where(zero, 1.0, na2), np.where(zero, 1.0, nb)
  cos = np.where(zero, 0.0, np.sum(a * b, -1, keepdims=True) / (np.sqrt(na2) * nb))
  dcos = np.where(zero, 0.0, b / (np.sqrt(na2) * nb) - cos * a / na2)
  y = y[:, None]
  return np.where(y == 1, -dcos, np.where(cos > margin, dcos, 0.0))


def _triplet_distance_grad(a, p, n, margin=1.0, swap=False, distance_fn=None):
  """d/da of max(0, margin + d(a, p) − d(a, n)): ∇_a d(a, p) − ∇_a d(a, n) where positive;
  with ``swap`` a smaller d(p, n) replaces d(a, n) and takes no gradient in a. d is PyTorch's
  ‖x − y + 1e-6‖₂ (∇ = (x − y + 1e-6)/d) or the squared distance (∇ = 2(x − y))."""
  def distance(x, z):
    if distance_fn is _squared_euclidean:
      return np.sum((x - z) ** 2, -1, keepdims=True), 2 * (x - z)
    diff = x - z + 1e-6
    d = np.sqrt(np.sum(diff * diff, -1, keepdims=True))
    return d, diff / d
  d_pos, g_pos = distance(a, p)
  d_neg, g_neg = distance(a, n)
  if swap:
    d_swap, _ = distance(p, n)
    swapped = d_swap < d_neg
    d_neg, g_neg = np.where(swapped, d_swap, d_neg), np.where(swapped, 0.0, g_neg)
  return np.where(margin + d_pos - d_neg > 0, g_pos - g_neg, 0.0)


PM1_PAIRS = ("its labels are ±1, but the shared test's bad values for the (N, D) pair kind are "
             "class indices (−1 among them, a valid label here); test_embedding checks 0, 2 "
             "and 0.5: NaN with a zero gradient, named by checkify")
SQUARED_OVERFLOW = ("the caller's squared distance overflows float32 on both sides at |a| = "
                    "1e30 (inf − inf), though the true difference is finite; the default-"
                    "distance entry covers extremes")


# --------------------------------------------------------------------------------------------
# The table: one entry per public function (a second for a configuration worth its own run).
# --------------------------------------------------------------------------------------------

LOSSES: list[Loss] = [
    # ---------------------------------------------------------------- regression
    regression("l1_loss", traits=RESIDUAL, floor_target=FLOOR_TARGET,
               kinks=(Kink(([0.25], 0.25), [0.0], why="|x| at x = 0: the sub-gradient 0"),),
               torch=lambda F, p, t: F.l1_loss(p, t, reduction="none")),
    regression("squared_error", traits=RESIDUAL, twice_differentiable=True,
               expect_inf=squares_overflow, floor_target=FLOOR_TARGET,
               grad=lambda p, t: 2 * (p - t),
               torch=lambda F, p, t: F.mse_loss(p, t, reduction="none")),
    regression("l2_loss", traits=RESIDUAL, twice_differentiable=True,
               expect_inf=squares_overflow, floor_target=FLOOR_TARGET, grad=lambda p, t: p - t,
               torch=lambda F, p, t: 0.5 * F.mse_loss(p, t, reduction="none")),
    regression("smooth_l1_loss", kwargs={"beta": 0.5}, bounds={"beta": (-1.0,)},
               traits=RESIDUAL, floor_target=FLOOR_TARGET, bench_kwargs={"beta": 1.0},
               kinks=(Kink(([0.75, -0.25, 0.25], 0.25), [1.0, -1.0, 0.0], {"beta": 0.5},
                           "at |x| = beta, x/beta = sign(x); 0 at x = 0"),
                      Kink(([0.75, -0.25, 0.25], 0.25), [1.0, -1.0, 0.0], {"beta": 0.0},
                           "beta = 0 is L1: sign(x), and 0 at x = 0 (no 0/0)")),
               torch=lambda F, p, t: F.smooth_l1_loss(p, t, reduction="none", beta=1.0)),
    regression("huber_loss", kwargs={"delta": 0.7}, bounds={"delta": (-1.0, 0.0)},
               kinks=(Kink(([0.75, -0.25, 0.25], 0.25), [0.5, -0.5, 0.0], {"delta": 0.5},
                           "at |x| = delta both branches give delta*sign(x); 0 at x = 0"),),
               traits=RESIDUAL, floor_target=FLOOR_TARGET, bench_kwargs={"delta": 1.0},
               torch=lambda F, p, t: F.huber_loss(p, t, reduction="none", delta=1.0)),
    regression("log_cosh", traits=RESIDUAL, twice_differentiable=True),
    regression("quantile_loss", kwargs={"quantile": 0.3}, bounds={"quantile": (-1.0, 1.5)},
               traits={"convex", "zero_at_perfect"}, bench_kwargs={"quantile": 0.9},
               kinks=(Kink(([0.25, 1.0, -1.0], 0.25), [0.0, 0.7, -0.3], {"quantile": 0.3},
                           "0 at p = t; 1 − q above, −q below"),)),
    # exp(log-rate) overflows for log-rates above ~88.7: the true value is above float32's max.
    regression("poisson_nll_loss", make=_counts, nonnegative=False, twice_differentiable=True,
               bounds={"eps": (-1.0,)}, expect_inf=lambda v: v > 88.0,
               torch=lambda F, x, t: F.poisson_nll_loss(x, t, log_input=True,
                                                        reduction="none")),
    regression("poisson_nll_loss", variant="rates", make=_rates,
               kwargs={"log_input": False, "full": True}, nonnegative=False,
               twice_differentiable=True, bounds={"eps": (-1.0,)},
               optout={"extreme_predictions": "with log_input=False the input is a rate, so "
                                              "it must be >= 0: -100 is outside the domain "
                                              "(the log-rate entry covers extremes)"}),
    regression("gaussian_nll_loss", make=_gaussian, kwargs={"full": True}, bench_kwargs={},
               nonnegative=False, twice_differentiable=True, expect_inf=squares_overflow,
               bounds={"eps": (-1.0, 0.0), "variance": (-1.0,)},
               torch=lambda F, m, t, v: F.gaussian_nll_loss(m, t, v, reduction="none")),
    # ---------------------------------------------------------------- cross-entropy
    class_probs("softmax_cross_entropy", kwargs={"label_smoothing": 0.1}, bench_kwargs={},
                bounds={"label_smoothing": (-0.1, 1.5)}, traits={"convex", "shift_invariant"},
                masked_reference=_masked_ce,
                torch=lambda F, x, p: F.cross_entropy(x, p, reduction="none")),
    classes("softmax_cross_entropy_with_integer_labels", sizes=VOCAB,
            kwargs={"label_smoothing": 0.1}, bench_kwargs={},
            bounds={"label_smoothing": (-0.1, 1.5)}, twice_differentiable=True,
            traits={"convex", "shift_invariant"}, masked_reference=_masked_integer_ce,
            torch=lambda F, x, y: F.cross_entropy(x, y, reduction="none"), target=1.0),
    sigmoid("sigmoid_binary_cross_entropy", traits=CONVEX, target=0.8,
            floor_target=FLOOR_TARGET, bounds={"label_smoothing": (-0.1, 1.5)},
            torch=lambda F, x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none")),
    # Keras' label smoothing, ỹ = y(1 − ε) + ε/2: d/dx = σ(x) − ỹ (issue 15).
    sigmoid("sigmoid_binary_cross_entropy", variant="label_smoothing",
            kwargs={"label_smoothing": 0.2}, traits=CONVEX,
            bounds={"label_smoothing": (-0.1, 1.5)},
            grad=lambda x, y, label_smoothing: (
                1 / (1 + np.exp(-x)) - (y * (1 - label_smoothing) + label_smoothing / 2))),
    Loss("binary_cross_entropy", "probs", _binary_probabilities, ELEMENTWISE,
         twice_differentiable=True, floor_target=FLOOR_TARGET,
         bounds={"label_smoothing": (-0.1, 1.5)},
         optout={"extreme_predictions": "its input is a probability in [0, 1]: the extreme "
                                        "inputs are exactly 0 and 1, "
                                        "test_binary_cross_entropy_at_zero_and_one"},
         torch=lambda F, p, y: F.binary_cross_entropy(p, y, reduction="none")),
    # Keras' label smoothing: d/dp = (p − ỹ)/(p(1 − p)) (issue 15).
    Loss("binary_cross_entropy", "probs", _binary_probabilities, ELEMENTWISE,
         variant="label_smoothing", kwargs={"label_smoothing": 0.2},
         twice_differentiable=True, bounds={"label_smoothing": (-0.1, 1.5)},
         grad=lambda p, y, label_smoothing: (
             (p - (y * (1 - label_smoothing) + label_smoothing / 2)) / (p * (1 - p))),
         optout={"extreme_predictions": "its input is a probability in [0, 1], and with "
                                        "label smoothing p in {0, 1} is +inf by design"}),
    class_probs("multilabel_soft_margin_loss", make=_multilabel_bits, sizes=CLASSES,
                traits=CONVEX, grad=_multilabel_soft_margin_grad,
                torch=lambda F, x, y: F.multilabel_soft_margin_loss(x, y, reduction="none")),
    sigmoid("sigmoid_focal_loss", kwargs={"alpha": 0.25, "gamma": 2.0},
            bench_kwargs={"gamma": 2.0}, bounds={"gamma": (-1.0,), "alpha": (-0.5, 1.5)},
            target=0.5),
    classes("softmax_focal_loss", sizes=VOCAB, kwargs={"gamma": 2.0},
            bounds={"gamma": (-1.0,), "alpha": (-0.5,)},
            twice_differentiable=True, traits={"shift_invariant"}),
    class_probs("categorical_focal_loss", kwargs={"alpha": 0.25, "gamma": 2.0},
                bounds={"gamma": (-1.0,), "alpha": (-0.5,)}, traits={"shift_invariant"},
                grad=_categorical_focal_grad),
    classes("nll_loss", make=_log_probs_integer, sizes=VOCAB, twice_differentiable=True,
            torch=lambda F, x, y: F.nll_loss(x, y, reduction="none")),
    class_probs("kl_divergence", make=_log_probs_probabilities, traits=CONVEX,
                masked_reference=_masked_kl,
                torch=lambda F, x, t: F.kl_div(x, t, reduction="none").sum(-1)),
    class_probs("kl_divergence_with_log_targets", make=_log_probs_log_probabilities,
                traits=CONVEX, masked_reference=_masked_kl_log_targets,
                torch=lambda F, x, t: F.kl_div(x, t, reduction="none",
                                               log_target=True).sum(-1)),
    # exp(log q) overflows above ~88.7 (extremes alternate in sign along the class axis).
    class_probs("generalized_kl_divergence", make=_log_probs_probabilities, traits=CONVEX,
                grad=_generalized_kl_grad, masked_reference=_masked_generalized_kl,
                expect_inf=lambda v: abs(v) > 88.0),
    # The bench's optax reference is optax.losses.<name> for both (the same names in optax).
    class_probs("safe_softmax_cross_entropy", traits={"convex", "shift_invariant"},
                grad=_probability_xent_grad,
                torch=lambda F, x, p: F.cross_entropy(x, p, reduction="none")),
    Loss("smooth_labels", "helper", _one_hot, VOCAB, kwargs={"alpha": 0.1},
         bounds={"alpha": (-0.1, 1.5)}, twice_differentiable=True,
         masked_reference=_masked_smooth_labels),
    class_probs("poly_loss_cross_entropy", kwargs={"epsilon": 2.0}, unbounded=("epsilon",),
                traits={"shift_invariant"}, masked_reference=_masked_poly),
    # ---------------------------------------------------------------- margin (labels ±1)
    margin_pm1("zero_one_loss", grad=_no_grad,
               kinks=(Kink(([0.0, 0.0, 1.0], [1, -1, 1]), [0.0, 0.0, 0.0],
                           why="a step: gradient 0 everywhere, also at y·s = 0"),)),
    margin_pm1("hinge_loss", traits=CONVEX, floor_target=FLOOR_TARGET,
               grad=_margin_grad(lambda m: np.where(m < 1, -1.0, 0.0)),
               kinks=(Kink(([1.0, -1.0, 0.5], [1, -1, 1]), [0.0, 0.0, -1.0],
                           why="0 at m = 1 (optax's jnp.maximum gives −y/2), −y inside"),)),
    # max(0, 1 − y·s)² with |s| = 1e30 is 1e60.
    margin_pm1("squared_hinge_loss", traits=CONVEX, expect_inf=squares_overflow,
               grad=_margin_grad(lambda m: -2 * np.maximum(0, 1 - m)),
               kinks=(Kink(([1.0, -1.0], [1, -1]), [0.0, 0.0], why="0 at m = 1"),)),
    margin_pm1("perceptron_loss", traits=CONVEX,
               grad=_margin_grad(lambda m: np.where(m < 0, -1.0, 0.0)),
               kinks=(Kink(([0.0, 0.0], [1, -1]), [0.0, 0.0], why="0 at m = 0"),)),
    margin_pm1("logistic_loss", traits=CONVEX, twice_differentiable=True,
               floor_target=FLOOR_TARGET, grad=_margin_grad(lambda m: -1 / (1 + np.exp(m))),
               torch=lambda F, s, y: F.soft_margin_loss(s, y, reduction="none")),
    # exp(−y·s) overflows for y·s below ~−88.7 (labels are mixed, so for |s| above it).
    margin_pm1("exponential_loss", traits=CONVEX, twice_differentiable=True,
               expect_inf=lambda v: abs(v) > 88.0, grad=_margin_grad(lambda m: -np.exp(-m))),
    # ---------------------------------------------------------------- margin (classes)
    classes("multiclass_zero_one_loss", grad=_no_grad,
            kinks=(Kink(([[1.0, 1.0, 0.0]], [1]), [[0.0] * 3],
                        why="a tie goes to the lowest index; gradient 0 everywhere"),)),
    classes("multiclass_hinge_loss", traits=CONVEX,
            kinks=(Kink(([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]], [0, 0]),
                        [[0.0, 0.0, 0.0], [-1.0, 1.0, 0.0]],
                        why="0 at s_y = 1 + max_(j≠y) s_j; a tie among the others goes to the "
                            "lowest index"),)),
    classes("multiclass_perceptron_loss", traits=CONVEX,
            kinks=(Kink(([[1.0, 1.0, 0.0]], [0]), [[0.0] * 3], why="0 at s_y = max_j s_j"),)),
    # Alternating ±v scores: (margin + 2|v|)² is above float32's maximum at |v| = 1e30.
    classes("multi_margin_loss", kwargs={"p": 2, "margin": 0.7}, unbounded=("margin",),
            bench_kwargs={"p": 1, "margin": 1.0}, expect_inf=lambda v: (2 * abs(v)) ** 2 > F32_MAX,
            kinks=(Kink(([[1.0, 0.0, -5.0]], [0]), [[0.0] * 3], {"margin": 1.0},
                        "max(0, h) at h = margin − s_y + s_j = 0: 0"),),
            torch=lambda F, x, y: F.multi_margin_loss(x, y, p=1, margin=1.0, reduction="none")),
    # ---------------------------------------------------------------- margin (pairs, multilabel)
    margin_pm1("margin_ranking_loss", make=_ranked_pairs, label_argnum=2,
               kwargs={"margin": 0.3}, unbounded=("margin",), traits=CONVEX,
               bench_kwargs={"margin": 0.5}, grad=_margin_ranking_grad,
               kinks=(Kink(([0.5, -0.5, 0.0], [0.0, 0.0, 0.0], [1, -1, 1]), [0.0, 0.0, -1.0],
                           {"margin": 0.5}, "0 at -y(x1 - x2) + margin = 0; -y inside"),),
               torch=lambda F, a, b, y: F.margin_ranking_loss(a, b, y, margin=0.5,
                                                              reduction="none")),
    margin_pm1("hinge_embedding_loss", make=_distances, kwargs={"margin": 1.2},
               unbounded=("margin",), traits=CONVEX, bench_kwargs={"margin": 1.0},
               grad=_hinge_embedding_grad,
               kinks=(Kink(([1.0, 0.5, 0.5], [-1, -1, 1]), [0.0, -1.0, 1.0], {"margin": 1.0},
                           "max(0, margin - x) at x = margin: 0; -1 below it; 1 for y = 1"),),
               torch=lambda F, x, y: F.hinge_embedding_loss(x, y, margin=1.0,
                                                            reduction="none")),
    Loss("multilabel_margin_loss", "multilabel", _multilabel_targets, CLASSES, label_argnum=1,
         traits=CONVEX, grad=_multilabel_margin_grad,
         kinks=(Kink(([[1.0, 0.0, 0.5, -2.0]], [[0, -1, 3, 1]]), [[-0.25, 0.0, 0.25, 0.0]],
                     why="1 - (s_j - s_i) = 0 at i = 1: 0; what follows the -1 is ignored"),),
         optout={"bad_labels": "-1 is the padding that ends a row's class list (valid: the "
                               "shared test's first bad value); test_margin checks indices >= C "
                               "and negative ones other than -1: NaN, zero gradient, checkify",
                 "float_labels": "the class lists are PyTorch's `targets`, and the TypeError "
                                 "names `targets`, not labels (test_margin checks it)"},
         torch=lambda F, s, t: F.multilabel_margin_loss(s, t, reduction="none")),
    class_probs("categorical_hinge_loss", make=_one_hot_targets, sizes=CLASSES,
                twice_differentiable=False, traits=CONVEX, grad=_categorical_hinge_grad,
                kinks=(Kink(([[2.0, 1.0, 0.0], [1.0, 1.0, 0.5]],
                             [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
                            [[0.0, 0.0, 0.0], [1.0, 0.0, -1.0]],
                            why="0 at neg - pos = -1; a tie in neg's max goes to the lowest "
                                "index"),),
                torch=lambda F, s, y: F.relu(((1 - y) * s).amax(-1) - (y * s).sum(-1) + 1)),
    # ---------------------------------------------------------------- embedding
    Loss("center_loss", "class_int", _center_loss, CENTERS, batch_argnums=(0, 1),
         label_argnum=1, twice_differentiable=True, expect_inf=squares_overflow),
    Loss("update_centers", "helper", _update_centers, CENTERS, kwargs={"alpha": 0.5},
         bounds={"alpha": (-0.1, 1.5)}, twice_differentiable=True, batch_argnums=(1, 2),
         optout={"vmap_over_examples": "maps (centers, features, labels) to new centers: no "
                                       "per-example output to map; test_embedding checks the "
                                       "update against the paper's Eq. 4"}),
    embedding("triplet_margin_loss", make=_triplet, kwargs={"norm_degree": 3, "swap": True},
              bounds={"eps": (-1.0,)}, unbounded=("margin",), bench_kwargs={"margin": 1.0},
              kinks=(Kink(([[0.0, 0.0]], [[1.0, 0.0]], [[2.0, 0.0]]), [[0.0, 0.0]],
                          {"margin": 1.0, "eps": 0.0}, "0 at margin + d(a, p) = d(a, n)"),),
              torch=lambda F, a, p, n: F.triplet_margin_loss(a, p, n, margin=1.0,
                                                             reduction="none")),
    # ½d² of the similar pairs is above float32's maximum when |x1| = 1e30.
    embedding("contrastive_loss", make=_contrastive, kwargs={"margin": 2.0},
              bounds={"margin": (-1.0,)}, expect_inf=squares_overflow,
              bench_kwargs={"margin": 1.0},
              kinks=(Kink(([[3.0, 4.0]], [[0.0, 0.0]], [0]), [[0.0, 0.0]], {"margin": 5.0},
                          "the push term max(0, margin − d)² at d = margin (3-4-5): 0"),)),
    embedding("cosine_embedding_loss", make=_labelled_pairs, label_argnum=2,
              kwargs={"margin": 0.2, "eps": 1e-6}, bench_kwargs={"margin": 0.2},
              bounds={"eps": (-1.0,)}, unbounded=("margin",), twice_differentiable=True,
              grad=_cosine_embedding_grad,
              kinks=(Kink(([[1.0, 0.0]], [[0.0, 1.0]], [-1]), [[0.0, 0.0]], {"margin": 0.0},
                          "max(0, cos - margin) at cos = margin: 0"),
                     Kink(([[0.0, 0.0]], [[1.0, 2.0]], [1]), [[0.0, 0.0]], {"eps": 0.0},
                          "a zero vector with eps = 0: the cosine is undefined and unbounded "
                          "nearby; cosine 0, gradient 0")),
              optout={"bad_labels": PM1_PAIRS},
              torch=lambda F, a, b, y: F.cosine_embedding_loss(a, b, y, margin=0.2,
                                                               reduction="none")),
    embedding("triplet_margin_with_distance_loss", make=_triplet,
              kwargs={"margin": 0.7, "swap": True}, unbounded=("margin",),
              bench_kwargs={"margin": 1.0}, grad=_triplet_distance_grad,
              kinks=(Kink(([[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]]), [[0.0, 0.0]],
                          {"margin": 0.0}, "margin + d(a, p) = d(a, n): 0 (equal distances "
                                           "by symmetry, margin 0)"),),
              torch=lambda F, a, p, n: F.triplet_margin_with_distance_loss(
                  a, p, n, margin=1.0, reduction="none")),
    embedding("triplet_margin_with_distance_loss", variant="squared", make=_triplet,
              kwargs={"distance_fn": _squared_euclidean, "margin": 0.7, "swap": True},
              unbounded=("margin",), grad=_triplet_distance_grad,
              optout={"extreme_predictions": SQUARED_OVERFLOW}),
    # ---------------------------------------------------------------- regularizers
    penalty("l1_penalty"),
    penalty("l2_penalty", twice_differentiable=True),
    penalty("elastic_net_penalty", kwargs={"l1_ratio": 0.5}, bounds={"l1_ratio": (-0.1, 1.5)}),
    penalty("structural_risk", make=_structural_risk, kwargs={"l1": 1e-4, "l2": 1e-4},
            bounds={"l1": (-1.0,), "l2": (-1.0,)}, argnums=(0, 1)),
    # ---------------------------------------------------------------- large vocabulary
    # The bench times the default chunk size; the tests use chunks of 5 of a vocabulary of 12.
    large_vocab("linear_softmax_cross_entropy", kwargs={"chunk_size": 5}, bench_kwargs={},
                bounds={"z_loss": (-1.0,), "label_smoothing": (-0.1, 1.5),
                        "logit_soft_cap": (0.0, -1.0)},
                argnums=(0, 1), optax=("optax on h @ w", _naive_linear_cross_entropy),
                torch=lambda F, h, w, y: F.cross_entropy(h @ w, y, reduction="none")),
    large_vocab("vocab_parallel_linear_softmax_cross_entropy", sizes={"test": LINEAR["test"]},
                kwargs={"chunk_size": 5, "mesh": Deferred(_vocab_mesh)},
                bounds={"z_loss": (-1.0,), "label_smoothing": (-0.1, 1.5),
                        "logit_soft_cap": (0.0, -1.0)},
                not_timed="needs a device mesh; see the large-vocabulary section"),
    large_vocab("linear_token_log_probs", kwargs={"chunk_size": 5, "temperature": 0.7},
                bench_kwargs={}, bounds={"temperature": (0.0, -1.0),
                                         "logit_soft_cap": (0.0, -1.0)},
                nonnegative=False, argnums=(0, 1),
                optax=("jaxloss.token_log_probs on h @ w", _naive_linear_token_log_probs)),
    Loss("linear_distillation_loss", "two_heads", _linear_pair, LINEAR,
         kwargs={"chunk_size": 5, "beta": 0.4, "temperature": 0.7}, bench_kwargs={},
         bounds={"beta": (-0.1, 1.5), "temperature": (0.0, -1.0)}, twice_differentiable=True,
         reverse_only=True, batch_argnums=(0, 2), out_dtype=jnp.float32, argnums=(0, 1),
         optout={"vmap_over_examples": "takes (N, D) hidden states only, so a per-example call "
                                       "is refused by contract (as the cross-entropy)"},
         optax=("jaxloss.generalized_jsd on both logits", _naive_linear_distillation)),
    # ---------------------------------------------------------------- language model (issue 17)
    classes("token_log_probs", sizes=VOCAB, kwargs={"temperature": 0.7}, bench_kwargs={},
            bounds={"temperature": (0.0, -1.0)}, nonnegative=False, twice_differentiable=True,
            traits={"shift_invariant"}, grad=_token_log_probs_grad,
            optax=("jax log_softmax + gather", _naive_token_log_probs),
            torch=lambda F, x, y: -F.cross_entropy(x, y, reduction="none")),
    Loss("token_entropy", "logits", _logits_only, VOCAB, kwargs={"temperature": 0.7},
         bench_kwargs={}, bounds={"temperature": (0.0, -1.0)}, twice_differentiable=True,
         traits={"shift_invariant"}, grad=_token_entropy_grad,
         optout={"shape_mismatch": "one input: no second shape to mismatch"},
         optax=("jax softmax · log_softmax", _naive_token_entropy),
         torch=lambda F, x: -(F.softmax(x, -1) * F.log_softmax(x, -1)).sum(-1)),
    Loss("sequence_log_probs", "tokens", _token_values, TOKENS, kwargs={"average": True},
         nonnegative=False, twice_differentiable=True, grad=_sequence_log_probs_grad,
         not_timed=PER_TOKEN),
    # ---------------------------------------------------------------- preference (issue 17)
    Loss("dpo_loss", "pairs", _preference, PAIRS, kwargs={"beta": 0.7, "label_smoothing": 0.1},
         bounds={"beta": (0.0, -1.0), "label_smoothing": (-0.1, 0.5)},
         unbounded=("bco_delta",), twice_differentiable=True, grad=_dpo_grad,
         not_timed=PER_PAIR),
    Loss("simpo_loss", "pairs", _policy_only, PAIRS,
         kwargs={"beta": 2.5, "gamma": 0.8, "label_smoothing": 0.1},
         bounds={"beta": (0.0, -1.0), "gamma": (-1.0,), "label_smoothing": (-0.1, 0.5)},
         twice_differentiable=True, grad=_simpo_grad, not_timed=PER_PAIR),
    Loss("cpo_loss", "pairs", _policy_only, PAIRS, kwargs={"beta": 0.5, "label_smoothing": 0.1},
         bounds={"beta": (0.0, -1.0), "label_smoothing": (-0.1, 0.5)},
         twice_differentiable=True, grad=_cpo_grad, not_timed=PER_PAIR),
    Loss("orpo_loss", "pairs", _policy_only, PAIRS, kwargs={"beta": 0.3},
         bounds={"beta": (0.0, -1.0)}, twice_differentiable=True, grad=_orpo_grad,
         optout={"extreme_predictions": "its inputs are log-probabilities <= 0: +100 and +1e30 "
                                        "are outside the domain (NaN, documented); "
                                        "test_preference checks -1e4 and the approach to 0"},
         not_timed=PER_PAIR),
    Loss("kto_loss", "pairs", _unpaired, PAIRS,
         kwargs={"beta": 0.3, "kl": 0.2, "desirable_weight": 1.3, "undesirable_weight": 0.8},
         bounds={"beta": (0.0, -1.0), "desirable_weight": (-1.0,),
                 "undesirable_weight": (-1.0,)},
         unbounded=("kl",), twice_differentiable=True, grad=_kto_grad, not_timed=PER_PAIR),
    # ---------------------------------------------------------------- policy gradient (issue 17)
    # exp(log π − log π_old) overflows above ~88.7: for the negative advantages the true
    # (unclipped) loss is +inf there.
    Loss("clipped_policy_loss", "rollout", _rollout, ROLLOUT,
         kwargs={"epsilon_low": 0.2, "epsilon_high": 0.28},
         bounds={"epsilon_low": (-0.1, 1.5), "epsilon_high": (-0.1,)}, nonnegative=False,
         twice_differentiable=True, expect_inf=lambda v: v > 88.0, grad=_clipped_grad,
         not_timed=PER_TOKEN),
    Loss("sequence_clipped_policy_loss", "rollout", _masked_rollout, ROLLOUT,
         kwargs={"epsilon_low": 0.2, "epsilon_high": 0.25},
         bounds={"epsilon_low": (-0.1, 1.5), "epsilon_high": (-0.1,)}, nonnegative=False,
         expect_inf=lambda v: v > 88.0, grad=_sequence_clipped_grad, not_timed=PER_TOKEN),
    # k3 = e^d − 1 − d with d = log π_ref − log π: e^100 is above float32's maximum.
    Loss("kl_penalty", "token_pair", _kl_pair, ROLLOUT, kwargs={"estimator": "k3"},
         twice_differentiable=True, expect_inf=lambda v: v < -88.0, grad=_kl_penalty_grad,
         not_timed=PER_TOKEN),
    Loss("group_advantages", "groups", _groups, {"test": {"n": N, "g": 3}},
         kwargs={"num_groups": 3, "scale": "std", "epsilon": 1e-3},
         bounds={"epsilon": (0.0, -1.0)}, nonnegative=False, twice_differentiable=True,
         batch_argnums=(0, 1), label_argnum=1,
         not_timed="a per-batch statistic over (N,) rewards, computed once per rollout"),
    # ---------------------------------------------------------------- distillation (issue 17)
    Loss("generalized_jsd", "logit_pair", _logit_pair, VOCAB,
         kwargs={"beta": 0.3, "temperature": 1.5}, bench_kwargs={"beta": 0.5},
         bounds={"beta": (-0.1, 1.5), "temperature": (0.0, -1.0)}, twice_differentiable=True,
         traits={"shift_invariant"}, grad=_divergence_grad("jsd"),
         masked_reference=functools.partial(_np_divergence, "jsd"),
         optax=("jax, TRL's formula", _naive_generalized_jsd)),
    Loss("reverse_kl_divergence", "logit_pair", _logit_pair, VOCAB, kwargs={"temperature": 1.5},
         bench_kwargs={}, bounds={"temperature": (0.0, -1.0)}, twice_differentiable=True,
         traits={"shift_invariant"}, grad=_divergence_grad("reverse"),
         masked_reference=functools.partial(_np_divergence, "reverse"),
         optax=("jax log_softmax composition", _naive_reverse_kl),
         torch=lambda F, s, t: F.kl_div(F.log_softmax(t, -1), F.log_softmax(s, -1),
                                        reduction="none", log_target=True).sum(-1)),
    Loss("total_variation_distance", "logit_pair", _logit_pair, VOCAB,
         kwargs={"temperature": 1.5}, bench_kwargs={}, bounds={"temperature": (0.0, -1.0)},
         traits={"shift_invariant"}, grad=_divergence_grad("tv"),
         masked_reference=functools.partial(_np_divergence, "tv"),
         optax=("jax softmax composition", _naive_total_variation),
         torch=lambda F, s, t: 0.5 * (F.softmax(s, -1) - F.softmax(t, -1)).abs().sum(-1)),
    # ---------------------------------------------------------------- representation (issue 16)
    margin_classes("margin_softmax_loss", kwargs={"scale": 16.0, "m1": 1.2, "m2": 0.3, "m3": 0.1},
                   bench_kwargs={"m1": 1.0, "m2": 0.3, "m3": 0.2},
                   bounds={"scale": (0.0, -1.0), "m1": (0.0, -1.0), "m2": (-0.1, 4.0),
                           "m3": (-0.1,)}),
    margin_classes("arcface_loss", kwargs={"scale": 16.0, "margin": 0.4}, bench_kwargs={},
                   bounds={"scale": (0.0,), "margin": (-0.1, 4.0)}, grad=_arcface_grad,
                   kinks=(Kink(_margin_kink_inputs(1.0), _margin_kink_grad(1.0, 16.0, np.cos(0.4)),
                               {"scale": 16.0, "margin": 0.4},
                               "cos θ_y = 1: dψ/dc (unbounded) is taken at the neighbouring float; "
                               "d cos/dx = 0 there, so only the other classes' terms remain"),),
                   optax=("optax CE on insightface's ArcFace logits", _naive_arcface)),
    margin_classes("cosface_loss", kwargs={"scale": 16.0, "margin": 0.3}, bench_kwargs={},
                   bounds={"scale": (0.0,), "margin": (-0.1,)}, grad=_cosface_grad,
                   optax=("optax CE on CosFace logits", _naive_cosface)),
    # SphereFace's margin is >= 1: 3.0 halved (the no-re-tracing test) stays inside.
    margin_classes("sphereface_loss", kwargs={"scale": 16.0, "margin": 3.0},
                   bench_kwargs={"margin": 1.35}, bounds={"scale": (0.0,), "margin": (0.5,)},
                   kinks=(Kink(_margin_kink_inputs(-1.0),
                               _margin_kink_grad(-1.0, 16.0, np.cos(3 * np.pi) * -1 - 6),
                               {"scale": 16.0, "margin": 3.0},
                               "cos θ_y = −1, ψ(π) = (−1)³cos 3π − 6: d cos/dx = 0, so only the "
                               "other classes' terms remain"),)),
    margin_classes("subcenter_arcface_loss", sizes=SUBCENTERS,
                   kwargs={"num_subcenters": 2, "scale": 16.0, "margin": 0.4},
                   bench_kwargs={"num_subcenters": 2},
                   bounds={"scale": (0.0,), "margin": (-0.1, 4.0)}),
    contrast("supervised_contrastive_loss", make=_contrast_labels,
             kwargs={"temperature": 0.2, "base_temperature": 0.1}, bench_kwargs={},
             bounds={"temperature": (0.0, -1.0), "base_temperature": (0.0,)},
             grad=_supcon_grad, optout=SUPCON_OPTOUT),
    contrast("info_nce_loss", kwargs={"temperature": 0.2}, bench_kwargs={},
             bounds={"temperature": (0.0, -1.0)}, grad=_info_nce_grad,
             optax=("optax CE on q kᵀ/τ", _naive_info_nce)),
    contrast("clip_loss", kwargs={"logit_scale": 5.0}, bench_kwargs={"logit_scale": 14.3},
             bounds={"logit_scale": (-1.0,)}, grad=_clip_grad,
             optax=("optax CE both ways", _naive_clip)),
    contrast("siglip_loss", kwargs={"logit_scale": 5.0, "logit_bias": -2.0},
             bench_kwargs={"logit_scale": 10.0, "logit_bias": -10.0},
             bounds={"logit_scale": (-1.0,)}, unbounded=("logit_bias",), grad=_siglip_grad,
             optax=("optax sigmoid BCE over all pairs", _naive_siglip)),
    contrast("sharded_clip_loss", kwargs={"logit_scale": 5.0, "mesh": Deferred(_batch_mesh)},
             bench_kwargs={"logit_scale": 14.3, "mesh": Deferred(_batch_mesh)},
             bounds={"logit_scale": (-1.0,)}, grad=_clip_grad, optax=_unsharded("clip_loss")),
    contrast("sharded_siglip_loss",
             kwargs={"logit_scale": 5.0, "logit_bias": -2.0, "mesh": Deferred(_batch_mesh)},
             bench_kwargs={"logit_scale": 10.0, "logit_bias": -10.0,
                           "mesh": Deferred(_batch_mesh)},
             bounds={"logit_scale": (-1.0,)}, unbounded=("logit_bias",), grad=_siglip_grad,
             reverse_only=True, optax=_unsharded("siglip_loss")),
    contrast("sharded_supervised_contrastive_loss", make=_contrast_labels,
             kwargs={"temperature": 0.2, "base_temperature": 0.1, "mesh": Deferred(_batch_mesh)},
             bench_kwargs={"mesh": Deferred(_batch_mesh)},
             bounds={"temperature": (0.0, -1.0), "base_temperature": (0.0,)},
             grad=_supcon_grad, optout=SUPCON_OPTOUT,
             optax=_unsharded("supervised_contrastive_loss")),
    # Circle and Multi-Similarity normalise the embeddings themselves (cosines): |z| = 1e30
    # is fine. Circle's weights α are held constant (stop_gradient), so its gradient is not
    # the derivative of its value: finite differences do not apply.
    contrast("circle_loss", make=_contrast_labels, kwargs={"margin": 0.25, "gamma": 32.0},
             bench_kwargs={}, bounds={"margin": (-0.1,), "gamma": (0.0, -1.0)},
             optout={**CONTRAST_OPTOUT,
                     "second_derivatives": "the self-paced weights α_p = [1 + m − s_p]_+ and "
                                           "α_n = [s_n + m]_+ are held constant in the "
                                           "derivative (the reference implementations' "
                                           "gradient, stop_gradient), so finite "
                                           "differences of the value, which see α move, "
                                           "differ by design; test_contrastive checks the "
                                           "closed form"}),
    contrast("multi_similarity_loss", make=_contrast_labels,
             kwargs={"alpha": 2.0, "beta": 10.0, "base": 0.5}, bench_kwargs={},
             bounds={"alpha": (0.0, -1.0), "beta": (0.0, -1.0), "epsilon": (-0.1,)},
             unbounded=("base",)),
    # ---------------------------------------------------------------- segmentation (issues 13, 15)
    segmentation("dice_loss", kwargs={"alpha": 0.3, "beta": 0.7, "smooth": 0.5},
                 bench_kwargs={}, bounds={"smooth": (-1.0,), "alpha": (-0.5,), "beta": (-0.5,)},
                 grad=lambda x, t, **kw: _tversky_grad(x, t, **kw)),
    segmentation("multiclass_generalized_dice_loss", kind="batch_scalar", kwargs={"smooth": 0.5},
                 bench_kwargs={}, bounds={"smooth": (-1.0,)}),
    segmentation("binary_dice_loss", make=_binary_masks, kwargs={"smooth": 0.5},
                 bench_kwargs={}, bounds={"smooth": (-1.0,)}),
    segmentation("tversky_loss", kwargs={"alpha": 0.3, "beta": 0.7, "smooth": 0.5},
                 bounds={"alpha": (-0.5,), "beta": (-0.5,), "smooth": (-1.0,)},
                 grad=lambda x, t, **kw: _tversky_grad(x, t, **kw)),
    segmentation("focal_tversky_loss", kwargs={"alpha": 0.3, "beta": 0.7, "gamma": 0.75},
                 bounds={"alpha": (-0.5,), "beta": (-0.5,), "smooth": (-1.0,),
                         "gamma": (0.0, -1.0)},
                 grad=lambda x, t, **kw: _tversky_grad(x, t, **kw),
                 kinks=(Kink(([[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 0.0], [0.0, 1.0]]]),
                             [[[0.0, 0.0], [0.0, 0.0]]], {"gamma": 0.5, "apply_softmax": False},
                             "a perfect class: (1 − TI)^γ has an infinite slope at 0 for γ < 1; "
                             "the minimum's sub-gradient 0"),)),
    segmentation("jaccard_loss", kwargs={"smooth": 0.5}, bounds={"smooth": (-1.0,)},
                 grad=lambda x, t, smooth=1.0: _tversky_grad(x, t, 1.0, 1.0, smooth)),
    Loss("lovasz_softmax_loss", "segmentation_labels", _pixel_labels, SEGMENTS,
         kwargs={"classes": "all"}, label_argnum=1,
         optout={"ignore_index": PIXEL_IGNORE,
                 "axis_out_of_range": "(N, P, C) inputs: axis=2 is the class axis itself; "
                                      "test_segmentation checks out-of-range axes"}),
    Loss("lovasz_hinge_loss", "binary_map", _binary_masks, SEGMENTS, label_argnum=1,
         kinks=(Kink(([[1.0, -1.0, 3.0]], [[1, 0, 1]]), [[0.0, 0.0, 0.0]],
                     why="every hinge at its kink or beyond (1 − x·s <= 0): gradient 0"),),
         optout={"ignore_index": PIXEL_IGNORE}),
    # ---------------------------------------------------------------- detection (issue 15)
    boxes("box_iou_loss", kwargs={"eps": 1e-6}, bounds={"eps": (-1.0,)},
          twice_differentiable=True,
          kinks=(Kink(([[0.0, 0.0, 2.0, 2.0]], [[2.0, 0.0, 4.0, 2.0]]), [[0.0] * 4],
                      why="boxes that touch: the intersection is 0 with a zero gradient"),)),
    boxes("generalized_box_iou_loss", kwargs={"eps": 1e-6}, bounds={"eps": (-1.0,)},
          twice_differentiable=True),
    boxes("distance_box_iou_loss", kwargs={"eps": 1e-6}, bounds={"eps": (-1.0,)},
          twice_differentiable=True),
    # α is a stop_gradient constant (the paper, torchvision): the gradient is not the value's
    # derivative, so finite differences of the value do not apply.
    boxes("complete_box_iou_loss", kwargs={"eps": 1e-6}, bounds={"eps": (-1.0,)}),
    # ---------------------------------------------------------------- deviances (issue 15)
    regression("tweedie_deviance", make=_rates, kwargs={"power": 1.5}, unbounded=("power",),
               twice_differentiable=True, grad=_tweedie_grad,
               optout={"extreme_predictions": DOMAIN, "no_retrace": STATIC_POWER}),
    # exp((2 − p)·η) with p = 1.5 and y·exp((1 − p)·η) overflow for |η| in the thousands.
    regression("tweedie_deviance", variant="log_input", make=_counts,
               kwargs={"power": 1.5, "log_input": True}, unbounded=("power",),
               twice_differentiable=True, grad=_tweedie_grad, expect_inf=lambda v: abs(v) > 1e3,
               optout={"no_retrace": STATIC_POWER}),
    regression("poisson_deviance", make=_rates, twice_differentiable=True,
               grad=lambda m, y, **kw: _tweedie_grad(m, y, 1.0, **kw),
               optout={"extreme_predictions": DOMAIN}),
    # exp(η) overflows above ~88.7: the true value is above float32's maximum.
    regression("poisson_deviance", variant="log_input", make=_counts,
               kwargs={"log_input": True}, twice_differentiable=True,
               grad=lambda m, y, **kw: _tweedie_grad(m, y, 1.0, **kw),
               expect_inf=lambda v: v > 88.0),
    regression("gamma_deviance", make=_rates, twice_differentiable=True,
               grad=lambda m, y, **kw: _tweedie_grad(m, y, 2.0, **kw),
               optout={"extreme_predictions": DOMAIN}),
    Loss("brier_score", "probs", _binary_probabilities, ELEMENTWISE, traits=CONVEX,
         twice_differentiable=True, expect_inf=squares_overflow, grad=lambda p, y: 2 * (p - y)),
    classes("brier_score", variant="multiclass", make=_probs_integer,
            sizes={"test": CLASSES["test"]}, twice_differentiable=True,
            grad=_brier_multiclass_grad,
            expect_inf=lambda v: 2 * v ** 2 > F32_MAX),
    # ---------------------------------------------------------------- robust (issue 15)
    robust("general_robust_loss", kwargs={"alpha": 0.5, "scale": 1.3}, unbounded=("alpha",),
           grad=_robust_grad),
    robust("general_robust_loss", variant="alpha=-inf", kwargs={"alpha": -np.inf, "scale": 1.3},
           unbounded=("alpha",),
           grad=lambda x, alpha, scale: x / scale ** 2 * np.exp(-0.5 * (x / scale) ** 2)),
    robust("cauchy_loss", kwargs={"scale": 1.3},
           grad=lambda x, scale=1.0: x / (scale ** 2 * (0.5 * (x / scale) ** 2 + 1))),
    robust("geman_mcclure_loss", kwargs={"scale": 1.3},
           grad=lambda x, scale=1.0: 16 * x / (scale ** 2 * ((x / scale) ** 2 + 4) ** 2)),
    robust("welsch_loss", kwargs={"scale": 1.3},
           grad=lambda x, scale=1.0: x / scale ** 2 * np.exp(-0.5 * (x / scale) ** 2)),
    # ---------------------------------------------------------------- relative errors (issue 15)
    regression("mean_absolute_percentage_error", kwargs={"eps": 1e-3}, bounds={"eps": (0.0, -1.0)},
               traits={"convex", "zero_at_perfect"}, grad=_mape_grad,
               kinks=(Kink(([1.0, 2.0], [1.0, 1.0]), [0.0, 100.0],
                           why="0 at p = t; 100·sign(p − t)/max(|t|, ε) elsewhere"),)),
    regression("mean_squared_logarithmic_error", kwargs={"eps": 1e-3},
               bounds={"eps": (0.0, -1.0)}, traits={"zero_at_perfect"}, grad=_msle_grad,
               kinks=(Kink(([1e-7, -2.0], [1.0, 1.0]), [0.0, 0.0], {"eps": 1e-3},
                           "at and below ε the clamp is flat: gradient 0"),)),
    # ---------------------------------------------------------------- sequence, Fenchel-Young,
    # ranking, similarity (issue 13)
    # Issue 13: the hand-written forward-backward at <= 0.8x optax's autodiff through its scan.
    sequence("ctc_loss", kwargs={"log_epsilon": -1e4}, bench_kwargs={},
             bounds={"log_epsilon": (0.0, 1.0)}, torch=_torch_ctc, target=0.8),
    sequence("ctc_loss_with_forward_probs", kind="sequence_probs",
             kwargs={"log_epsilon": -1e4}, bounds={"log_epsilon": (0.0, 1.0)},
             not_timed="the same recursion as ctc_loss with the α's stacked: ctc_loss's row "
                       "times the loss (optax's ctc_loss is this function)",
             optout={"vmap_over_examples": PER_SEQUENCE_BATCH,
                     "no_retrace": "returns a tuple (loss, α_blank, α_emit), which the shared "
                                   "test's jnp.mean of the output does not take; ctc_loss's "
                                   "entry checks the same traced log_epsilon"}),
    classes("multiclass_sparsemax_loss", traits=CONVEX,
            grad=lambda x, y: _np_sparsemax(x) - np.eye(x.shape[-1])[y],
            optax=_optax_standard_promotion("multiclass_sparsemax_loss")),
    sigmoid("sparsemax_loss", traits=CONVEX, twice_differentiable=False,
            grad=lambda x, y: np.clip((np.float64(x) + 1) / 2, 0, 1) - y),
    class_probs("ranking_softmax_loss", make=_relevance, kwargs={"reduce_fn": None},
                traits={"convex", "shift_invariant"}, grad=_ranking_grad,
                masked_reference=_np_ranking,
                optout={"masked_classes": "the shared test also calls it with its defaults, and "
                                          "the default reduce_fn=jnp.mean (optax's) returns a "
                                          "scalar that its per-row checks do not fit; "
                                          "test_ranking checks −inf, NaN and inf at masked items "
                                          "in both modes, forward mode included"}),
    cosine("cosine_similarity", nonnegative=False,
           kinks=(Kink(([[0.0, 0.0, 0.0]], [[1.0, -2.0, 0.5]]), [[0.0, 0.0, 0.0]],
                       {"epsilon": 0.0}, "a zero vector with ε = 0: the cosine is undefined "
                                         "and unbounded nearby; value 0, gradient 0"),),
           torch=lambda F, p, t: F.cosine_similarity(p, t, dim=-1)),
    cosine("cosine_distance",
           grad=lambda a, b, **kw: -_np_cosine_grad(a, b, **kw),
           kinks=(Kink(([[0.0, 0.0, 0.0]], [[1.0, -2.0, 0.5]]), [[0.0, 0.0, 0.0]],
                       {"epsilon": 0.0}, "a zero vector with ε = 0: value 1, gradient 0"),),
           optout={"masked_classes": COSINE_WHERE,
                   "fully_masked_rows": "a fully masked pair is a pair of zero vectors, whose "
                                        "distance is 1 by definition (optax's value at ε > 0), "
                                        "not 0; test_similarity checks masks"},
           torch=lambda F, p, t: 1 - F.cosine_similarity(p, t, dim=-1)),
    # optax's ntxent materialises (N, N, D): 1024 x 1024 x 128 float32 is 512 MiB (CONTRAST's
    # full 4096 x 4096 x 256 would be 16 GiB).
    Loss("ntxent", "contrast_scalar", _contrast_labels,
         {"test": CONTRAST["test"], "quick": {"n": 512, "d": 128}, "full": {"n": 1024, "d": 128}},
         kwargs={"temperature": 0.2},
         bench_kwargs={}, bounds={"temperature": (0.0, -1.0)}, twice_differentiable=True,
         grad=_np_ntxent_grad, optax=_optax_standard_promotion("ntxent")),
]

BY_NAME: dict[str, Loss] = {}
for _entry in LOSSES:
  BY_NAME.setdefault(_entry.name, _entry)  # the first entry of a name is its main one
del _entry
