"""The public calling convention every loss shares, enforced by ``_numerics.loss_jit``.

Misuse gets a message that names the function and the argument and says what to do instead;
signatures survive the wrapper for ``inspect`` (and for type checkers, checked in ``.ci/run``).
"""

import inspect

import jax
import jax.numpy as jnp
import pytest
from jax.experimental import checkify

import jaxloss
from jaxloss import _numerics

X = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32).reshape(2, 3)
LABELS = jnp.array([0, 2])


def test_wrapped_losses_keep_their_signature():
  params = inspect.signature(jaxloss.huber_loss).parameters
  assert list(params) == ["predictions", "targets", "delta"]
  assert params["delta"].kind is inspect.Parameter.KEYWORD_ONLY
  assert params["delta"].default == 1.0
  assert jaxloss.huber_loss.__name__ == "huber_loss"
  assert "Huber" in jaxloss.huber_loss.__doc__


def test_reduction_keyword_points_to_reduce():
  with pytest.raises(TypeError, match=r"l1_loss\(\) takes no `reduction`.*jaxloss\.reduce"):
    jaxloss.l1_loss(X, X, reduction="mean")
  with pytest.raises(TypeError, match=r"jaxloss\.reduce\(jaxloss\.softmax_cross_entropy_with"):
    jaxloss.softmax_cross_entropy_with_integer_labels(X, LABELS, reduction="sum")


def test_positional_hyperparameter_names_the_keyword():
  with pytest.raises(TypeError, match=r"huber_loss\(predictions, targets=None, \*, delta=1\.0\)"
                     r": too many positional arguments \(delta is keyword-only\)"):
    jaxloss.huber_loss(X, X, 0.5)


def test_unknown_keyword_names_the_function():
  with pytest.raises(TypeError, match=r"huber_loss\(.*\): got an unexpected keyword argument "
                                      r"'deltaa'"):
    jaxloss.huber_loss(X, X, deltaa=0.5)


@pytest.mark.parametrize("loss, args, name", [
    (jaxloss.softmax_cross_entropy_with_integer_labels, (X, LABELS), "axis"),
    (jaxloss.softmax_cross_entropy_with_integer_labels, (X, LABELS), "ignore_index"),
    (jaxloss.multi_margin_loss, (X, LABELS), "p"),
])
def test_traced_static_argument_names_it(loss, args, name):
  def f(value):
    return loss(*args, **{name: value})
  with pytest.raises(TypeError, match=rf"{loss.__name__}\({name}=\.\.\.\) is a static "
                                      r"configuration argument: it must be a Python value"):
    jax.jit(f)(1)


def test_concrete_bound_raises_before_tracing():
  with pytest.raises(ValueError, match=r"huber_loss\(delta=\.\.\.\) must be > 0\.0, got -1\.0"):
    jaxloss.huber_loss(X, X, delta=-1.0)
  with pytest.raises(ValueError, match=r"must be in \[0\.0, 1\.0\], got 1\.5"):
    jaxloss.quantile_loss(X, X, quantile=1.5)


def test_traced_bound_is_checked_by_checkify():
  checked = checkify.checkify(jax.jit(lambda d: jaxloss.huber_loss(X, X, delta=d)),
                              errors=checkify.user_checks)
  err, _ = checked(jnp.float32(-1.0))
  with pytest.raises(checkify.JaxRuntimeError, match=r"huber_loss\(delta=\.\.\.\) must be > 0"):
    err.throw()
  err, _ = checked(jnp.float32(0.5))
  assert err.get() is None


def test_traced_bound_outside_checkify_does_not_raise():
  # checkify.debug_check is dropped when not under checkify: a jitted training step with a
  # traced hyper-parameter compiles and runs without host callbacks.
  out = jax.jit(lambda d: jaxloss.huber_loss(X, X, delta=d))(jnp.float32(-1.0))
  assert out.shape == X.shape


@pytest.mark.parametrize("bound, inside, outside, words", [
    (_numerics.Range(low=0.0), [0.0, 3.0], [-1e-9], ">= 0.0"),
    (_numerics.Range(low=0.0, low_open=True), [1e-9], [0.0, -1.0], "> 0.0"),
    (_numerics.Range(0.0, 1.0), [0.0, 1.0, 0.5], [-0.1, 1.1], "in [0.0, 1.0]"),
    (_numerics.Range(0.0, 1.0, high_open=True), [0.0, 0.99], [1.0], "in [0.0, 1.0)"),
    (_numerics.Range(high=2.0), [-5.0, 2.0], [2.5], "<= 2.0"),
])
def test_range_contains_and_describes(bound, inside, outside, words):
  assert all(bound.contains(v) for v in inside)
  assert not any(bound.contains(v) for v in outside)
  assert bound.describe() == words


def test_loss_jit_refuses_a_bound_on_a_missing_argument():
  with pytest.raises(AssertionError, match="has no argument 'gamma'"):
    @_numerics.loss_jit(bounds={"gamma": _numerics.Range(low=0.0)})
    def f(x):
      return x
