"""Shared private helpers: the jit wrapper, dtype policy, input checks, stable primitives.

Every loss module imports from here and from nowhere else inside the package (besides
``reduce``), so a fix to a helper reaches every loss at once.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.experimental import checkify

_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


# --------------------------------------------------------------------------------------------
# The jit wrapper: concrete hyper-parameters are validated before the jitted core is entered.
# --------------------------------------------------------------------------------------------

def _is_concrete(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_hyperparameter(fn: str, name: str, value: Any, low: float | None = None,
                         high: float | None = None, *, low_open: bool = False) -> None:
  """Raises ``ValueError`` if a concrete ``value`` lies outside [low, high] (or (low, high]).

  Traced values are checked inside the jitted core with :func:`debug_check_range`.
  """
  if value is None or not _is_concrete(value):
    return
  if low is not None and (value < low or (low_open and value == low)):
    bound = f"> {low}" if low_open else f">= {low}"
    raise ValueError(f"{fn}({name}=...) must be {bound}, got {value}")
  if high is not None and value > high:
    raise ValueError(f"{fn}({name}=...) must be <= {high}, got {value}")


def debug_check_range(fn: str, name: str, value: jax.typing.ArrayLike, low: float | None = None,
                      high: float | None = None, *, low_open: bool = False) -> None:
  """The traced counterpart of :func:`check_hyperparameter` (free outside ``checkify``)."""
  value = jnp.asarray(value)
  if low is not None:
    ok = jnp.all(value > low) if low_open else jnp.all(value >= low)
    bound = f"> {low}" if low_open else f">= {low}"
    checkify.debug_check(ok, f"{fn}({name}=...) must be {bound}, got {{}}", value)
  if high is not None:
    checkify.debug_check(jnp.all(value <= high), f"{fn}({name}=...) must be <= {high}, got {{}}",
                         value)


def loss_jit(*, static_argnames: Sequence[str] = (),
             ranges: dict[str, tuple[float | None, float | None, bool]] | None = None
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
  """Decorator: ``jax.jit`` with static configuration and eager range checks.

  Args:
    static_argnames: names of the static (hashable configuration) arguments.
    ranges: ``{name: (low, high, low_open)}`` of float hyper-parameters; a concrete Python
      number outside the range raises ``ValueError`` before tracing, a traced one is checked
      by ``checkify.debug_check`` in the core (the core calls :func:`debug_check_range`).
  """
  ranges = dict(ranges or {})

  def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    jitted = jax.jit(fn, static_argnames=tuple(static_argnames), inline=True)
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
      if ranges:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        for name, (low, high, low_open) in ranges.items():
          check_hyperparameter(fn.__name__, name, bound.arguments[name], low, high,
                               low_open=low_open)
      return jitted(*args, **kwargs)

    wrapper.jitted = jitted  # exposes ``_cache_size`` to the re-tracing tests
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


def check_same_shape(fn: str, name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
  """``ValueError`` naming both arguments unless ``b`` has ``a``'s shape or is a scalar."""
  if b.shape != a.shape and b.ndim != 0:
    raise ValueError(f"{fn}: `{name_a}` and `{name_b}` must have the same shape (or "
                     f"`{name_b}` a scalar), got {name_a}.shape={a.shape} and "
                     f"{name_b}.shape={b.shape}")


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


def poison_invalid(x: jax.Array, valid: jax.Array) -> jax.Array:
  """``x`` where ``valid``, NaN elsewhere, in value and in gradient.

  Multiplies by 1 or NaN instead of a ``where``: the example's loss is NaN, and its gradient
  is NaN too wherever the loss depends on the inputs there (a ``where`` would send a silent,
  finite 0 back instead).
  """
  return x * jnp.where(valid, jnp.ones((), x.dtype), jnp.full((), jnp.nan, x.dtype))


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
