"""Shared private helpers: the jit wrapper, dtype policy, input checks, stable primitives.

Every loss module imports from here and from nowhere else inside the package (besides
``reduce``), so a fix to a helper reaches every loss at once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, ParamSpec, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero
from jax.experimental import checkify

_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


# --------------------------------------------------------------------------------------------
# The jit wrapper: one declaration per bound, checked eagerly when concrete and through
# checkify when traced; static arguments and misuse get messages that name the argument.
# --------------------------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True)
class Range:
  """The admissible values of a float hyper-parameter (or of a floating array argument).

  ``Range(low=0.0)`` is ``x >= 0``; ``Range(low=0.0, low_open=True)`` is ``x > 0``;
  ``Range(0.0, 1.0)`` is ``0 <= x <= 1``. ``None`` leaves that side unbounded.
  """
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False

  def describe(self) -> str:
    """The bound in words, for error messages: ``"> 0.0"``, ``"in [0.0, 1.0]"``."""
    if self.low is not None and self.high is not None:
      return (f"in {'(' if self.low_open else '['}{self.low}, "
              f"{self.high}{')' if self.high_open else ']'}")
    if self.low is not None:
      return f"{'>' if self.low_open else '>='} {self.low}"
    return f"{'<' if self.high_open else '<='} {self.high}"

  def contains(self, value: Any) -> Any:
    """``value`` within the range, elementwise: a Python bool or a boolean array."""
    ok = True
    if self.low is not None:
      ok = ok & ((value > self.low) if self.low_open else (value >= self.low))
    if self.high is not None:
      ok = ok & ((value < self.high) if self.high_open else (value <= self.high))
    return ok


def _is_concrete(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_bounds(fn: str, bounds: Mapping[str, Range], arguments: Mapping[str, Any]) -> None:
  """Concrete Python numbers: ``ValueError`` now. Anything else: ``checkify.debug_check``
  (free unless the caller runs under ``checkify``), traced inside the jitted function."""
  for name, bound in bounds.items():
    value = arguments.get(name)  # absent: the default, which is valid
    if value is None:
      continue
    message = f"{fn}({name}=...) must be {bound.describe()}, got"
    if _is_concrete(value):
      if not bound.contains(value):
        raise ValueError(f"{message} {value}")
    else:
      value = jnp.asarray(value)
      checkify.debug_check(jnp.all(bound.contains(value)), f"{message} {{}}", value)


def _check_static(fn: str, static: Sequence[str], arguments: Mapping[str, Any]) -> None:
  for name in static:
    value = arguments.get(name)
    if isinstance(value, (jax.Array, np.ndarray)):
      raise TypeError(f"{fn}({name}=...) is a static configuration argument: it must be a "
                      f"Python value (int, str, tuple, None), not an array or a traced value; "
                      f"got {type(value).__name__}")


def _bind(fn: str, signature: inspect.Signature, args: tuple[Any, ...],
          kwargs: dict[str, Any]) -> inspect.BoundArguments:
  """``signature.bind`` whose errors name the function and point PyTorch habits elsewhere."""
  if "reduction" in kwargs and "reduction" not in signature.parameters:
    raise TypeError(f"{fn}() takes no `reduction`: jaxloss losses return per-example values; "
                    f"reduce them with jaxloss.reduce, e.g. "
                    f"`jaxloss.reduce(jaxloss.{fn}(...), \"mean\")` (or \"sum\", with "
                    f"`where=` and `weights=`)")
  try:
    bound = signature.bind(*args, **kwargs)
  except TypeError as e:
    params = [p.replace(annotation=inspect.Parameter.empty)
              for p in signature.parameters.values()]
    short = inspect.Signature(params)
    keyword_only = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    hint = (f" ({', '.join(keyword_only)} {'is' if len(keyword_only) == 1 else 'are'} "
            f"keyword-only)" if keyword_only and "positional" in str(e) else "")
    raise TypeError(f"{fn}{short}: {e}{hint}") from None
  bound.apply_defaults()
  return bound


def loss_jit(*, static: Sequence[str] = (), bounds: Mapping[str, Range] | None = None
             ) -> Callable[[Callable[P, R]], Callable[P, R]]:
  """Decorator: ``jax.jit`` with static configuration arguments and hyper-parameter bounds.

  Each bound is declared once, here; the wrapper checks it both ways (a concrete Python
  number raises ``ValueError`` before tracing; a traced value or an array is checked by
  ``checkify.debug_check`` inside the jitted function). The wrapped function keeps its
  signature for type checkers and ``inspect.signature``.

  Args:
    static: names of the static (hashable configuration) arguments.
    bounds: ``{name: Range(...)}`` of float hyper-parameters or floating array arguments;
      ``None`` values are not checked.
  """
  bounds = dict(bounds or {})
  static = tuple(static)

  def wrap(fn: Callable[P, R]) -> Callable[P, R]:
    name = fn.__name__
    signature = inspect.signature(fn)
    for arg in (*static, *bounds):
      if arg not in signature.parameters:
        raise AssertionError(f"loss_jit: {name} has no argument {arg!r}")

    @functools.wraps(fn)
    def checked(*args: P.args, **kwargs: P.kwargs) -> R:
      if bounds:
        _check_bounds(name, bounds, signature.bind(*args, **kwargs).arguments)
      return fn(*args, **kwargs)

    jitted = jax.jit(checked, static_argnames=static, inline=True)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
      bound = _bind(name, signature, args, kwargs)
      _check_static(name, static, bound.arguments)
      concrete = {k: bound.arguments[k] for k in bounds if _is_concrete(bound.arguments[k])}
      _check_bounds(name, {k: bounds[k] for k in concrete}, concrete)
      return jitted(*args, **kwargs)

    return wrapper

  return wrap


# --------------------------------------------------------------------------------------------
# Dtype policy and input checks (all run at trace time).
# --------------------------------------------------------------------------------------------

def check_floating(fn: str, name: str, x: jax.typing.ArrayLike) -> jax.Array:
  """Returns ``x`` as an array; ``TypeError`` naming the argument unless it is floating."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{fn}: `{name}` must have a floating dtype, got {x.dtype}")
  return x


def check_integer(fn: str, name: str, x: jax.typing.ArrayLike) -> jax.Array:
  """Returns ``x`` as an array; ``TypeError`` naming the argument unless it is integer."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.integer):
    raise TypeError(f"{fn}: `{name}` must have an integer dtype (class indices), got {x.dtype}")
  return x


def check_numeric(fn: str, name: str, x: jax.typing.ArrayLike) -> jax.Array:
  """Returns ``x`` as an array; ``TypeError`` for booleans and complex numbers."""
  x = jnp.asarray(x)
  if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
    raise TypeError(f"{fn}: `{name}` must be a real number array, got {x.dtype}")
  return x


def result_dtype(*arrays: jax.Array) -> jnp.dtype:
  """The output dtype rule: ``jnp.result_type`` of the floating inputs (weakly typed Python
  scalars defer to the arrays), so bf16 with bf16 is bf16 and bf16 with float32 is float32, as
  optax. Integer and boolean inputs (labels) do not take part; none floating gives float32."""
  floats = [a for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
  if not floats:
    return jnp.dtype(jnp.float32)
  with jax.numpy_dtype_promotion("standard"):  # the rule is explicit even under "strict"
    return jnp.dtype(jnp.result_type(*floats))


def compute_dtype(*arrays: jax.Array) -> jnp.dtype:
  """The dtype to compute in: :func:`result_dtype`, widened to float32 from bf16/fp16."""
  dtype = result_dtype(*arrays)
  return jnp.dtype(jnp.float32) if dtype in _LOW_PRECISION else dtype


def upcast(*arrays: jax.Array) -> tuple[jnp.dtype, list[jax.Array]]:
  """Returns ``(dtype, arrays cast to it)``: :func:`compute_dtype` applied to ``arrays``."""
  dtype = compute_dtype(*arrays)
  return dtype, [a.astype(dtype) for a in arrays]


def check_same_shape(fn: str, name_a: str, a: jax.Array, name_b: str, b: jax.Array, *,
                     allow_scalar: bool = True) -> None:
  """``ValueError`` naming both arguments unless ``b`` has ``a``'s shape (or is a scalar, when
  ``allow_scalar``)."""
  if b.shape != a.shape and not (allow_scalar and b.ndim == 0):
    alternative = f" (or `{name_b}` a scalar)" if allow_scalar else ""
    raise ValueError(f"{fn}: `{name_a}` and `{name_b}` must have the same shape{alternative}, "
                     f"got {name_a}.shape={a.shape} and {name_b}.shape={b.shape}")


def check_reduce_masks(fn: str, losses: jax.Array, where: jax.typing.ArrayLike | None,
                       weights: jax.typing.ArrayLike | None
                       ) -> tuple[jax.Array | None, jax.Array | None]:
  """Checks ``reduce``-style ``where`` (boolean) and ``weights`` (real) against ``losses``: the
  same shape, or one that broadcasts to it at the same rank (or a scalar); errors name ``fn``."""
  for name, arr in (("where", where), ("weights", weights)):
    if arr is not None:
      shape = jnp.shape(arr)
      try:
        broadcast = jnp.broadcast_shapes(shape, losses.shape) == losses.shape
      except ValueError:
        broadcast = False
      if not broadcast or len(shape) not in (0, losses.ndim):
        raise ValueError(f"{fn}: `{name}` must have the shape of `losses` (or broadcast to it "
                         f"at the same rank), got losses.shape={losses.shape} and "
                         f"{name}.shape={shape}")
  if where is not None:
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
      raise TypeError(f"{fn}: `where` must be a boolean mask, got {where.dtype}")
  if weights is not None:
    weights = check_numeric(fn, "weights", weights)
  return where, weights


def floating_inputs(fn: str, names: Sequence[str], arrays: Sequence[jax.typing.ArrayLike]
                    ) -> tuple[jnp.dtype, list[jax.Array]]:
  """Same-shaped floating inputs (named for errors): ``(out_dtype, arrays in the compute
  dtype)``, ``out_dtype`` by :func:`result_dtype`."""
  checked = [check_floating(fn, n, x) for n, x in zip(names, arrays, strict=True)]
  for name, x in zip(names[1:], checked[1:], strict=True):
    check_same_shape(fn, names[0], checked[0], name, x, allow_scalar=False)
  return result_dtype(*checked), upcast(*checked)[1]


def canonical_axis(fn: str, axis: int, ndim: int, *, name: str | None = None) -> int:
  """``axis`` as a non-negative int; ``ValueError`` if out of range for ``ndim``, naming the
  argument ``name`` it indexes (e.g. ``"anchors"``) when given."""
  if not isinstance(axis, int):
    raise TypeError(f"{fn}: `axis` must be an int, got {axis!r}")
  if not -ndim <= axis < ndim:
    what = "an input" if name is None else f"`{name}`"
    raise ValueError(f"{fn}: axis={axis} is out of range for {what} of rank {ndim}")
  return axis % ndim


AxisLike = int | tuple[int, ...] | None  # optax's type of a class-axis argument


def canonical_axes(fn: str, axis: AxisLike, ndim: int, *, name: str | None = None,
                   allow_none: bool = True) -> int | tuple[int, ...]:
  """``axis`` as optax types it, normalised: an int stays an int (:func:`canonical_axis`); a
  tuple of ints becomes a tuple of non-negative ints in the order given (negative entries
  allowed, a repeated axis refused); ``None`` (where ``allow_none``) is every axis.

  ``TypeError`` for anything else, ``ValueError`` for an entry out of range or repeated.
  """
  if isinstance(axis, int):
    return canonical_axis(fn, axis, ndim, name=name)
  if axis is None and allow_none:
    return tuple(range(ndim))
  if not isinstance(axis, tuple) or not all(isinstance(a, int) for a in axis):
    allowed = "an int, a tuple of ints or None" if allow_none else "an int or a tuple of ints"
    raise TypeError(f"{fn}: `axis` must be {allowed}, got {axis!r}")
  axes = tuple(canonical_axis(fn, a, ndim, name=name) for a in axis)
  if len(set(axes)) != len(axes):
    raise ValueError(f"{fn}: axis={axis} names an axis twice")
  return axes


def elementwise_inputs(fn: str, predictions: jax.typing.ArrayLike,
                       targets: jax.typing.ArrayLike | None,
                       pred_name: str = "predictions", target_name: str = "targets",
                       ) -> tuple[jnp.dtype, jax.Array, jax.Array]:
  """Checks an elementwise loss's pair and returns ``(out_dtype, p, t)`` in the compute dtype.

  ``targets=None`` means zeros (optax's convention). ``out_dtype`` is :func:`result_dtype` of
  the two (floating targets take part; integer ones do not).
  """
  p = check_floating(fn, pred_name, predictions)
  t = jnp.zeros((), p.dtype) if targets is None else check_numeric(fn, target_name, targets)
  check_same_shape(fn, pred_name, p, target_name, t)
  out = result_dtype(p, t)
  dtype = compute_dtype(p, t)
  return out, p.astype(dtype), t.astype(dtype)


# --------------------------------------------------------------------------------------------
# Stable primitives.
# --------------------------------------------------------------------------------------------

def nonzero(tangent: Any) -> bool:
  """Whether a tangent reaching a ``defjvp(..., symbolic_zeros=True)`` rule may be nonzero
  (its term can be skipped otherwise)."""
  return type(tangent) is not SymbolicZero


def safe_where(pred: jax.Array, x_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
               y: jax.Array, safe_value: float = 1.0) -> jax.Array:
  """``where(pred, x_fn(x), y)`` with the double-where trick (jax #1052).

  ``x_fn`` is evaluated at ``safe_value`` where ``pred`` is false, so an inf/NaN it would
  produce there (or in its gradient) cannot poison the branch that is taken.
  """
  x_safe = jnp.where(pred, x, jnp.asarray(safe_value, x.dtype))
  return jnp.where(pred, x_fn(x_safe), y)


@jax.custom_jvp
def abs0(x: jax.Array) -> jax.Array:
  """``|x|`` whose derivative at 0 is 0, the sub-gradient contract 4 asks for.

  (``jnp.abs`` differentiates to 1 at 0.)
  """
  return jnp.abs(x)


@abs0.defjvp
def _abs0_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
        ) -> tuple[jax.Array, jax.Array]:
  (x,), (dx,) = primals, tangents
  return jnp.abs(x), jnp.sign(x) * dx


@jax.custom_jvp
def xmul(w: jax.Array, a: jax.Array) -> jax.Array:
  """w·a with 0·a = 0 even where ``a`` is inf: a term whose weight is 0 is left out.

  Derivatives: ``a`` in ``w`` (also at w = 0, where a ``where(w == 0, 0, w·a)`` would give 0)
  and ``w`` in ``a`` (0 where w = 0).
  """
  return jnp.where(w == 0, jnp.zeros_like(a), w * a)


@functools.partial(xmul.defjvp, symbolic_zeros=True)
def _xmul_jvp(primals: tuple[jax.Array, jax.Array], tangents: tuple[Any, Any]
              ) -> tuple[jax.Array, jax.Array]:
  (w, a), (dw, da) = primals, tangents
  out = xmul(w, a)
  terms = ([dw * a] if nonzero(dw) else []) + ([xmul(w, da)] if nonzero(da) else [])
  return out, sum(terms, jnp.zeros_like(out))


@jax.custom_jvp
def xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
  """x·log(y) with 0·log(0) = 0, and finite gradients in ``y`` where x = 0.

  ``jax.scipy.special.xlogy`` gives the right value but its gradient in ``y`` at y = 0 is
  0·inf = NaN; here y is replaced by 1 where x = 0 before the log (optax PR #1786).
  Derivatives: log(y) in ``x`` (also at x = 0, where a plain ``where`` would give 0: the soft
  label derivative of a cross-entropy), x/y in ``y`` and 0 where x = 0.
  """
  zero = x == 0
  return jnp.where(zero, jnp.zeros_like(x), x * jnp.log(jnp.where(zero, jnp.ones_like(y), y)))


@functools.partial(xlogy.defjvp, symbolic_zeros=True)
def _xlogy_jvp(primals: tuple[jax.Array, jax.Array], tangents: tuple[Any, Any]
               ) -> tuple[jax.Array, jax.Array]:
  (x, y), (dx, dy) = primals, tangents
  out = xlogy(x, y)
  # d/dx = log y (skipped when x is not differentiated: log 0 = −inf would meet a zero dx);
  # d/dy = x/y, 0 where x = 0 (y is replaced by 1 there, as in the value).
  safe_y = jnp.where(x == 0, jnp.ones_like(y), y)
  terms = (([dx * jnp.log(y)] if nonzero(dx) else [])
           + ([xmul(x, dy / safe_y)] if nonzero(dy) else []))
  return out, sum(terms, jnp.zeros_like(out))


# --------------------------------------------------------------------------------------------
# Bad labels (contract 6): NaN for the example, and a checkify error naming the label.
# --------------------------------------------------------------------------------------------

def debug_check_labels(fn: str, name: str, labels: jax.Array, valid: jax.Array,
                       expected: str) -> None:
  """``checkify.debug_check`` that every label is valid, naming the first bad one.

  Args:
    fn: the public function's name, for the message.
    name: the argument's name.
    labels: the labels as given (any shape).
    valid: boolean array of ``labels``' shape (or a scalar).
    expected: what a valid label is, e.g. ``"-1 or +1"`` or ``"in [0, 5)"``.
  """
  if labels.size == 0:
    return
  valid = jnp.broadcast_to(valid, labels.shape)
  first_bad = labels.reshape(-1)[jnp.argmax(~valid.reshape(-1))]
  checkify.debug_check(jnp.all(valid), f"{fn}: every label in `{name}` must be {expected}, "
                       f"got {{}}", first_bad)


def wide_labels(labels: jax.Array) -> jax.Array:
  """Integer labels in a dtype that holds every class index: int8/uint8/int16/uint16 widened to
  int32, so that ``labels < num_classes`` is not computed modulo 256 (uint8 labels with 260
  classes would wrap 260 to 4 and call label 5 out of range)."""
  return labels.astype(jnp.int32) if labels.dtype.itemsize < 4 else labels


def pm1_inputs(fn: str, scores: jax.typing.ArrayLike, labels: jax.typing.ArrayLike,
               scores_name: str, labels_name: str
               ) -> tuple[jnp.dtype, jax.Array, jax.Array, jax.Array]:
  """``(out_dtype, s, y, valid)`` for labels in {−1, +1}, as :func:`elementwise_inputs`.

  Boolean labels mean True = +1, False = −1. ``y`` is +1 where the label is neither −1 nor +1
  (so that everything computed from it stays finite); the caller's :func:`nan_where_invalid`
  then makes that example NaN with a zero gradient. ``checkify`` names the first bad label.
  """
  labels = jnp.asarray(labels)
  if labels.dtype == jnp.bool_:
    labels = jnp.where(labels, 1, -1).astype(jnp.int8)
  dtype, s, y = elementwise_inputs(fn, scores, labels, scores_name, labels_name)
  valid = (y == 1) | (y == -1)
  debug_check_labels(fn, labels_name, labels, valid, "-1 or +1")
  return dtype, s, jnp.where(valid, y, jnp.ones((), y.dtype)), valid


def class_labels_valid(fn: str, name: str, labels: jax.Array, num_classes: int) -> jax.Array:
  """Boolean mask of the integer labels in [0, num_classes); :func:`debug_check_labels` too."""
  labels = wide_labels(labels)
  valid = (labels >= 0) & (labels < num_classes)
  debug_check_labels(fn, name, labels, valid, f"in [0, {num_classes})")
  return valid


def nan_where_invalid(loss: jax.Array, valid: jax.Array) -> jax.Array:
  """The one bad-label rule: ``loss`` where ``valid``, NaN elsewhere, with a zero gradient there.

  ``loss`` must have been computed from inputs made safe at the invalid entries (the label
  clipped into range, a ±1 label replaced by +1), so that its own gradient is finite there;
  the ``where`` then sends exactly 0 back to the invalid entries. A row masked out afterwards
  by ``reduce(where=...)`` cannot poison the gradient (0·NaN is NaN, jax #1052), while its
  NaN value still shows up in any unmasked reduction.
  """
  return jnp.where(valid, loss, jnp.full((), jnp.nan, loss.dtype))


@jax.custom_jvp
def relu(x: jax.Array) -> jax.Array:
  """``max(x, 0)`` with derivative 0 at 0: ``jax.nn.relu``'s value and derivative, NaN kept.

  Written as a select, not ``jnp.maximum``: on CPU, XLA hands a ``max`` that feeds a sum to
  its YNNPACK reduction fusion, which materialises the broadcast zero and the ``max``'s input,
  two temporary buffers of the input's size under ``value_and_grad`` of a mean (one with the
  select; bench/NOTES.md).
  """
  return jnp.where(x < 0, jnp.zeros((), x.dtype), x)


@relu.defjvp
def _relu_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
        ) -> tuple[jax.Array, jax.Array]:
  (x,), (dx,) = primals, tangents
  return relu(x), jnp.where(x > 0, dx, jnp.zeros((), dx.dtype))


# ============================================================================================
# Class-axis inputs: the checks every loss with classes along an axis shares (the softmax and
# KL families; the multiclass margin losses). Each message names the arguments as the caller
# wrote them (`logits`, `log_probs`, `scores`, `log_predictions`), never "logits" for all.
# ============================================================================================

def broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
  """Whether an array of ``shape`` broadcasts to ``target`` without growing it (NumPy's rule,
  decided here so that a mismatch gets our message rather than JAX's)."""
  lead = len(target) - len(shape)
  return lead >= 0 and all(s in (1, t) for s, t in zip(shape, target[lead:], strict=True))


class ClassAxes(NamedTuple):
  """Several class axes merged into one last axis (optax's tuple ``axis``).

  ``merge`` moves the batch axes first (in their order) and the class axes last, in the order
  given, and flattens the class axes into one: a class index is then the row-major flat index
  into the class axes in that order (optax's ``softmax_cross_entropy_with_integer_labels``
  with a tuple ``axis``), and a reduction over the class axes is one over the last axis.
  """
  perm: tuple[int, ...]         # the batch axes, then the class axes in the order given
  batch: tuple[int, ...]        # the batch shape (the loss's shape)
  classes: tuple[int, ...]      # the class axes' sizes, in the order given

  @classmethod
  def of(cls, shape: tuple[int, ...], axes: tuple[int, ...]) -> ClassAxes:
    batch_axes = tuple(i for i in range(len(shape)) if i not in axes)
    return cls(batch_axes + axes, tuple(shape[i] for i in batch_axes),
               tuple(shape[i] for i in axes))

  def merge(self, a: jax.Array) -> jax.Array:
    """``a`` (of the full shape) as ``batch + (C,)``, C the product of the class sizes."""
    n_classes = int(np.prod(self.classes, dtype=np.int64))
    return jnp.transpose(a, self.perm).reshape(self.batch + (n_classes,))

  def split(self, a: jax.Array) -> jax.Array:
    """The inverse of :meth:`merge`."""
    inverse = tuple(int(i) for i in np.argsort(self.perm))
    return jnp.transpose(a.reshape(self.batch + self.classes), inverse)

  def merge_where(self, fn: str, where: jax.typing.ArrayLike | None, shape: tuple[int, ...],
                  name: str) -> jax.typing.ArrayLike | None:
    """A ``where`` of the full shape (up to broadcasting) merged like the inputs; one of the
    batch shape (masking whole rows) unchanged; anything else ``ValueError``."""
    if where is None or jnp.ndim(where) == len(self.batch):
      return where
    m = jnp.asarray(where)
    if m.ndim != len(shape) or not broadcasts_to(m.shape, shape):
      raise ValueError(f"{fn}: `where` must have the shape of `{name}` or of `{name}` without "
                       f"axes {self.perm[len(self.batch):]}, got where.shape={m.shape} and "
                       f"{name}.shape={shape}")
    return self.merge(jnp.broadcast_to(m, shape))


def merge_class_axes(fn: str, x: jax.typing.ArrayLike, axis: AxisLike,
                     where: jax.typing.ArrayLike | None = None, *,
                     others: Sequence[jax.typing.ArrayLike] = (), name: str = "logits",
                     allow_none: bool = True
                     ) -> tuple[Any, int, Any, list[Any], ClassAxes | None]:
  """``(x, axis, where, others, merged)`` with a tuple (or ``None``) ``axis`` merged into one
  last class axis (:class:`ClassAxes`); an int ``axis`` returns everything as given (the fast
  path: no transpose, no copy) with ``merged`` ``None``. ``others`` are arrays of ``x``'s
  shape (the targets), merged alike; a shape mismatch is left for the caller's check."""
  if isinstance(axis, int):
    return x, axis, where, list(others), None
  xa = jnp.asarray(x)
  axes = canonical_axes(fn, axis, xa.ndim, name=name, allow_none=allow_none)
  assert isinstance(axes, tuple)
  merged = ClassAxes.of(xa.shape, axes)
  rest = [jnp.asarray(o) for o in others]
  rest = [merged.merge(o) if o.shape == xa.shape else o for o in rest]
  return (merged.merge(xa), xa.ndim - len(axes), merged.merge_where(fn, where, xa.shape, name),
          rest, merged)


class ClassInputs(NamedTuple):
  """A class-axis array checked by :func:`class_inputs`."""
  dtype: jnp.dtype  # the array's own dtype: the dtype the loss returns
  x: jax.Array      # the array in the compute dtype (bf16/fp16 widened to float32)
  axis: int         # the class axis, non-negative


def class_inputs(fn: str, x: jax.typing.ArrayLike, axis: int, *,
                 name: str = "logits") -> ClassInputs:
  """Checks a floating array with classes along ``axis``; ``name`` is the argument's name."""
  x = check_floating(fn, name, x)
  axis = canonical_axis(fn, axis, x.ndim, name=name)
  _, (xc,) = upcast(x)
  return ClassInputs(x.dtype, xc, axis)


class ProbabilityInputs(NamedTuple):
  """Two same-shaped class-axis arrays checked by :func:`probability_inputs`."""
  dtype: jnp.dtype        # result_dtype of both arrays: the dtype the loss returns
  x: jax.Array            # the first array (logits, log-predictions) in the compute dtype
  y: jax.Array            # the second (probabilities, log-probabilities) in the same dtype
  axis: int               # the class axis, non-negative
  mask: jax.Array | None  # ``where`` as a boolean array of ``x``'s shape (see class_mask)


def probability_inputs(fn: str, x: jax.typing.ArrayLike, y: jax.typing.ArrayLike,
                       axis: AxisLike, where: jax.typing.ArrayLike | None, *,
                       x_name: str = "logits", y_name: str = "labels") -> ProbabilityInputs:
  """Checks a class-axis array against a same-shaped floating target (probabilities or
  log-probabilities) and a class mask; both are returned in their common compute dtype.

  A tuple (or ``None``) ``axis`` is merged into one last class axis (:func:`merge_class_axes`:
  a reduction over the class axes is one over it); the returned ``axis`` is then that one."""
  xa = check_floating(fn, x_name, x)
  ya = check_floating(fn, y_name, y)
  if ya.shape != xa.shape:
    raise ValueError(f"{fn}: `{x_name}` and `{y_name}` must have the same shape, got "
                     f"{x_name}.shape={xa.shape} and {y_name}.shape={ya.shape}")
  xa, axis, where, (ya,), _ = merge_class_axes(fn, xa, axis, where, others=(ya,), name=x_name)
  axis = canonical_axis(fn, axis, xa.ndim, name=x_name)
  _, (xc, yc) = upcast(xa, ya)
  return ProbabilityInputs(result_dtype(xa, ya), xc, yc, axis,
                           class_mask(fn, where, xc, axis, name=x_name))


def class_mask(fn: str, where: jax.typing.ArrayLike | None, x: jax.Array, axis: int, *,
               name: str = "logits") -> jax.Array | None:
  """``where`` as a boolean mask of ``x``'s shape, or ``None``.

  ``where`` has ``x``'s shape (it masks classes) or ``x``'s shape without ``axis`` (it masks
  whole rows), either up to broadcasting; anything else raises ``ValueError`` naming ``where``
  and ``name``, the argument ``x`` came from.
  """
  if where is None:
    return None
  m = jnp.asarray(where)
  if m.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `where` must be a boolean mask, got {m.dtype}")
  if m.ndim == x.ndim - 1:
    m = jnp.expand_dims(m, axis)
  if m.ndim != x.ndim or not broadcasts_to(m.shape, x.shape):
    raise ValueError(f"{fn}: `where` must have the shape of `{name}` or of `{name}` without "
                     f"axis {axis}, got where.shape={jnp.shape(where)} and "
                     f"{name}.shape={x.shape}")
  return jnp.broadcast_to(m, x.shape)


def per_class(fn: str, name: str, value: jax.typing.ArrayLike, x: jax.Array, axis: int, *,
              x_name: str = "logits") -> jax.Array:
  """A floating (C,) per-class array (``class_weights``, a per-class ``alpha``) in ``x``'s
  dtype, reshaped to broadcast along ``x``'s class axis; ``ValueError`` naming both otherwise."""
  v = check_floating(fn, name, value)
  n_classes = x.shape[axis]
  if v.shape != (n_classes,):
    raise ValueError(f"{fn}: `{name}` must have shape ({n_classes},), one entry per class of "
                     f"{x_name}.shape={x.shape} along axis {axis}, got {name}.shape={v.shape}")
  shape = [1] * x.ndim
  shape[axis] = n_classes
  return v.astype(x.dtype).reshape(shape)


def _equals(labels: jax.Array, value: int) -> jax.Array:
  """``labels == value`` without wrapping ``value`` into the labels' dtype (uint8 −100 = 156)."""
  info = jnp.iinfo(labels.dtype)
  if not info.min <= value <= info.max:
    return jnp.zeros(labels.shape, bool)
  return labels == value


class ClassLabels(NamedTuple):
  """Integer class labels checked by :func:`class_labels`, and the bad-label rule for them.

  A loss computes its value from ``index`` (every entry a class in range, so the value and
  its gradient are finite for every row) and passes it through :meth:`finish`.
  """
  # The labels clipped into [0, C), class axis kept (size 1): for take_along_axis and for an
  # iota comparison inside a tangent. (The field shadows tuple.index, which nothing here uses.)
  index: jax.Array  # type: ignore[assignment]
  valid: jax.Array  # batch-shaped: the label is a class in range that `where` leaves
                    # unmasked, or the row is a `zero` row
  zero: jax.Array   # batch-shaped: the row's loss is 0 (its label is `ignore_index`, or
                    # `where` masks every class of the row: optax's rule)

  def finish(self, loss: jax.Array) -> jax.Array:
    """``loss`` (batch-shaped) with 0 at the ``zero`` rows and NaN at the invalid ones, each
    with a zero gradient (:func:`nan_where_invalid`)."""
    return nan_where_invalid(jnp.where(self.zero, jnp.zeros((), loss.dtype), loss), self.valid)


def class_labels(fn: str, labels: jax.typing.ArrayLike, x: jax.Array, axis: int, *,
                 name: str = "labels", x_name: str = "logits", mask: jax.Array | None = None,
                 ignore_index: int | None = None) -> ClassLabels:
  """Checks integer labels against a class-axis array ``x`` (canonical ``axis``).

  ``TypeError`` unless the labels are integer, ``ValueError`` (naming ``name`` and
  ``x_name``) unless their shape is ``x``'s without ``axis``. A label outside [0, C) other
  than ``ignore_index``, or one pointing at a class ``mask`` (of ``x``'s shape) takes out, is
  invalid: :meth:`ClassLabels.finish` gives its row NaN with a zero gradient, and under
  ``checkify`` an error names it. The comparisons run in :func:`wide_labels`' dtype, so uint8
  labels with more than 255 classes are read as the numbers they are.
  """
  y = check_integer(fn, name, labels)
  batch_shape = x.shape[:axis] + x.shape[axis + 1:]
  if y.shape != batch_shape:
    raise ValueError(f"{fn}: `{name}` must have the shape of `{x_name}` without axis {axis}, "
                     f"{batch_shape}, got {x_name}.shape={x.shape} and {name}.shape={y.shape}")
  n_classes = x.shape[axis]
  wide = wide_labels(y)
  in_range = (wide >= 0) & (wide < n_classes)
  index = jnp.expand_dims(jnp.clip(wide, 0, max(n_classes - 1, 0)), axis)
  zero = jnp.zeros(y.shape, bool) if ignore_index is None else _equals(y, ignore_index)
  valid = in_range
  expected = f"in [0, {n_classes})"
  if mask is not None:
    zero = zero | ~jnp.any(mask, axis)
    valid = valid & jnp.take_along_axis(mask, index, axis).squeeze(axis)
    expected += " and a class that `where` leaves unmasked"
  if ignore_index is not None:
    expected += f" (or ignore_index={ignore_index})"
  valid = valid | zero
  debug_check_labels(fn, name, y, valid, expected)
  return ClassLabels(index, valid, zero)


# ============================================================================================
# Forward-only fast paths: a fused pass whose only failure mode is a NaN.
# ============================================================================================

def fused_or_exact(fast: Callable[[], jax.Array], exact: Callable[[], jax.Array]) -> jax.Array:
  """``fast()``, or ``exact()`` where ``fast()`` holds a NaN anywhere.

  For the primal of a ``custom_jvp`` (it runs only when nothing differentiates the loss):
  ``fast`` is plain arithmetic that XLA fuses into one pass, ``exact`` the guarded form. The
  invariant the caller must keep: wherever ``fast`` gives no NaN it equals ``exact`` (up to
  rounding), and every input on which the guards matter (0·(−inf), an infinite maximum, a NaN
  input) makes ``fast`` NaN somewhere. ``exact`` runs under ``lax.cond``, for the whole batch,
  only then (under ``vmap`` the ``cond`` becomes a select and both run).
  """
  value = fast()
  return jax.lax.cond(jnp.any(jnp.isnan(value)), exact, lambda: value)
