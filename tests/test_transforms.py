"""jit, vmap and grad agree for every registry entry; no re-tracing; second derivatives where
smooth.

The cases are the entries of ``bench/registry.py`` (inputs at the test size; the first input is
the one differentiated; ``batch_argnums`` are the inputs with the batch axis that ``vmap`` maps
over); an entry opts out of a test only with a written reason. Second derivatives are checked
with ``jax.test_util.check_grads`` at order 2, both modes (reverse only for the
reverse-mode-only losses), in float64.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxloss
from _reference import entries, trace_count
from bench.registry import N


def _is_float(a):
  return jnp.issubdtype(a.dtype, jnp.floating)


def _in_axes(entry, args):
  return tuple(0 if entry.batched(i) else None for i in range(len(args)))


def _example(args, axes, i):
  return tuple(a[i] if ax == 0 else a for a, ax in zip(args, axes, strict=True))


PER_EXAMPLE = entries("vmap_over_examples", losses_only=False,
                      where=lambda e: e.kind_info.per_example)


@pytest.mark.parametrize("entry", PER_EXAMPLE)
def test_vmap_matches_batched_call_and_python_loop(entry):
  (args, kwargs), fn = entry.inputs(), entry.fn
  axes = _in_axes(entry, args)
  batched = fn(*args, **kwargs)
  mapped = jax.vmap(lambda *a: fn(*a, **kwargs), in_axes=axes)(*args)
  looped = jnp.stack([fn(*_example(args, axes, i), **kwargs) for i in range(N)])
  chex.assert_trees_all_close(mapped, batched, rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(looped, batched, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("entry", PER_EXAMPLE)
def test_grad_of_sum_matches_per_example_grads(entry):
  (args, kwargs), fn = entry.inputs(), entry.fn

  def total(x, *rest):
    return jnp.sum(fn(x, *rest, **kwargs))

  whole = jax.grad(total)(*args)
  per_example = jax.vmap(jax.grad(total), in_axes=_in_axes(entry, args))(*args)
  chex.assert_trees_all_close(per_example, whole, rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(whole))


@pytest.mark.parametrize("entry", entries(None, kinds=("pm1",)))
def test_integer_pm1_labels_match_floating_labels(entry):
  # ±1 labels may be integers (as optax): the same values, vmap and gradient.
  (args, kwargs), fn = entry.inputs(), entry.fn
  i = entry.label_argnum
  ints = tuple(a.astype(jnp.int32) if j == i else a for j, a in enumerate(args))
  chex.assert_trees_all_close(fn(*ints, **kwargs), fn(*args, **kwargs), rtol=1e-6)
  chex.assert_trees_all_close(jax.vmap(lambda *a: fn(*a, **kwargs))(*ints),
                              fn(*args, **kwargs), rtol=1e-6, atol=1e-6)
  chex.assert_trees_all_close(jax.grad(lambda x: jnp.sum(fn(x, *ints[1:], **kwargs)))(args[0]),
                              jax.grad(lambda x: jnp.sum(fn(x, *args[1:], **kwargs)))(args[0]),
                              rtol=1e-6)


@pytest.mark.parametrize("entry", entries(None, kinds=("large_vocab",)))
def test_vmap_over_blocks_of_tokens(entry):
  # The (N, D) contract: vmap maps blocks of tokens (B, N/B, D), the weight unmapped.
  (args, kwargs), fn = entry.inputs(seed=3), entry.fn
  blocks = tuple(a.reshape((2, N // 2) + a.shape[1:]) if entry.batched(i) else a
                 for i, a in enumerate(args))
  axes = _in_axes(entry, args)
  batched = jax.vmap(lambda *a: fn(*a, **kwargs), in_axes=axes)(*blocks)
  looped = jnp.stack([fn(*_example(blocks, axes, k), **kwargs) for k in range(2)])
  np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("entry", entries("outer_jit", losses_only=False))
def test_outer_jit_matches_eager_call(entry):
  (args, kwargs), fn = entry.inputs(), entry.fn
  chex.assert_trees_all_close(jax.jit(lambda *a: fn(*a, **kwargs))(*args), fn(*args, **kwargs),
                              rtol=1e-6, atol=1e-6)


def _floats(kwargs):
  """The float hyper-parameters among the keyword arguments."""
  return {k: v for k, v in kwargs.items() if isinstance(v, float)}


@pytest.mark.parametrize("entry", entries("no_retrace", losses_only=False))
def test_new_values_and_hyperparameters_do_not_retrace(entry):
  # New input values of the same shapes and dtypes, and new float hyper-parameter values,
  # reuse the compiled loss: float hyper-parameters are traced, not static.
  fn = entry.fn
  (first, kwargs), (second, _) = entry.inputs(seed=1), entry.inputs(seed=2)
  halved = {k: v / 2 for k, v in _floats(kwargs).items()}  # stays inside every bound
  fn(*first, **kwargs)
  traces = trace_count(fn)
  fn(*second, **{**kwargs, **halved})
  assert trace_count(fn) == traces, f"{entry.id} re-traced for new values {halved}"
  # The same through chex: a user's jitted step around the loss, the hyper-parameters its
  # arguments, traces once.
  chex.clear_trace_counter()
  step = jax.jit(chex.assert_max_traces(
      lambda hyper, *a: jnp.mean(fn(*a, **{**kwargs, **hyper})), n=1))
  step(_floats(kwargs), *first)
  step(halved, *second)


def test_the_trace_counter_sees_a_retrace():
  # The no-retrace test is only as good as its counter: a new static value (p) re-traces.
  fn = jaxloss.multi_margin_loss
  s, y = jnp.zeros((3, 7), jnp.float32), jnp.zeros((3,), jnp.int32)  # a shape of its own
  fn(s, y, p=1, margin=1.0)
  traces = trace_count(fn)
  fn(s, y, p=1, margin=0.5)
  assert trace_count(fn) == traces
  fn(s, y, p=2, margin=0.5)
  assert trace_count(fn) == traces + 1


@pytest.mark.parametrize("entry", entries("second_derivatives", losses_only=False,
                                          where=lambda e: e.twice_differentiable))
def test_second_derivatives_match_finite_differences(entry):
  # In float64: float32 finite differences of second derivatives are too coarse to tell a
  # wrong Hessian from rounding (they failed at 5% for correct ones, depending on the inputs).
  (args, kwargs), fn = entry.inputs(), entry.fn
  modes = ("rev",) if entry.reverse_only else ("fwd", "rev")
  with jax.enable_x64(True):
    args = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64) if _is_float(a)
                        else a, args)
    check_grads(jax.jit(lambda x: jnp.sum(fn(x, *args[1:], **kwargs))), (args[0],), order=2,
                modes=modes, eps=1e-4, atol=1e-3, rtol=1e-3)
