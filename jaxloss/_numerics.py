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
from typing import Any, ParamSpec, TypeVar

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


def compute_dtype(*arrays: jax.Array) -> jnp.dtype:
  """The dtype to compute in: the floating result type, widened to float32 from bf16/fp16."""
  floats = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
  dtype = jnp.result_type(*floats) if floats else jnp.dtype(jnp.float32)
  return jnp.dtype(jnp.float32) if dtype in _LOW_PRECISION else jnp.dtype(dtype)


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


def canonical_axis(fn: str, axis: int, ndim: int) -> int:
  """``axis`` as a non-negative int; ``ValueError`` if out of range for ``ndim``."""
  if not isinstance(axis, int):
    raise TypeError(f"{fn}: `axis` must be an int, got {axis!r}")
  if not -ndim <= axis < ndim:
    raise ValueError(f"{fn}: axis={axis} is out of range for logits of rank {ndim}")
  return axis % ndim


def elementwise_inputs(fn: str, predictions: jax.typing.ArrayLike,
                       targets: jax.typing.ArrayLike | None,
                       pred_name: str = "predictions", target_name: str = "targets",
                       ) -> tuple[jnp.dtype, jax.Array, jax.Array]:
  """Checks an elementwise loss's pair and returns ``(out_dtype, p, t)`` in the compute dtype.

  ``targets=None`` means zeros (optax's convention). ``out_dtype`` is the predictions' dtype.
  """
  p = check_floating(fn, pred_name, predictions)
  t = jnp.zeros((), p.dtype) if targets is None else check_numeric(fn, target_name, targets)
  check_same_shape(fn, pred_name, p, target_name, t)
  dtype = compute_dtype(p)
  return p.dtype, p.astype(dtype), t.astype(dtype)


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
def _abs0_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return jnp.abs(x), jnp.sign(x) * dx


def xlogy(x: jax.Array, y: jax.Array) -> jax.Array:
  """x·log(y) with 0·log(0) = 0, and finite gradients in ``y`` where x = 0.

  ``jax.scipy.special.xlogy`` gives the right value but its gradient in ``y`` at y = 0 is
  0·inf = NaN; here y is replaced by 1 where x = 0 before the log (optax PR #1786).
  """
  zero = x == 0
  return jnp.where(zero, jnp.zeros_like(x), x * jnp.log(jnp.where(zero, jnp.ones_like(y), y)))


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


def class_labels_valid(fn: str, name: str, labels: jax.Array, num_classes: int) -> jax.Array:
  """Boolean mask of the integer labels in [0, num_classes); :func:`debug_check_labels` too."""
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
def _relu_jvp(primals, tangents):
  (x,), (dx,) = primals, tangents
  return relu(x), jnp.where(x > 0, dx, jnp.zeros((), dx.dtype))
