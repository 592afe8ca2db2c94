"""Shared test helpers: tolerances, the PyTorch reference vectors, the registry's test cases,
the one gradient helper and a trace counter.

- ``assert_close``: float32 results against float64 references (rtol, and an atol scaled to the
  reference, since entries near zero carry only absolute error).
- ``f32``: an array in float32, the dtype every test computes in.
- ``value_and_grad_of_sum`` / ``grad_of_sum``: the gradient every test takes, of Σ loss with
  respect to the first input.
- ``trace_count(fn)``: how often jax has traced the jitted ``fn`` so far in this process (from
  ``jax.monitoring``'s trace events: no private attribute of the wrapper).
- ``entries(shared_test, ...)``: pytest parameters, one per ``bench/registry.py`` entry a shared
  test runs on; an entry's opt-out becomes a skip that shows its written reason.
"""

import collections
import json
import os
import pathlib
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import registry

# The shared cases, and those tests/data/make_torch_vectors.py generates for later losses.
_VECTORS = sorted((pathlib.Path(__file__).parent / "data").glob("torch_reference*.json"))


def assert_close(actual, reference, rtol=1e-5, atol_scale=1e-5, atol=None):
  """float32 results against float64 references: rtol, and an atol scaled to the reference."""
  actual = np.asarray(actual, np.float64)
  reference = np.asarray(reference, np.float64)
  assert actual.shape == reference.shape, (actual.shape, reference.shape)
  if atol is None:
    finite = reference[np.isfinite(reference)]
    atol = atol_scale * (np.max(np.abs(finite)) if finite.size else 1.0) + 1e-30
  np.testing.assert_allclose(actual, reference, rtol=rtol, atol=atol)


def torch_cases(torch_function):
  """The PyTorch reference cases (float64, reduction='none') for one torch function."""
  cases = [c for path in _VECTORS for c in json.loads(path.read_text())["cases"]]
  return [c for c in cases if c["torch_function"] == torch_function]


def f32(x):
  """``x`` as a float32 jax array."""
  return jnp.asarray(x, jnp.float32)


def value_and_grad_of_sum(fn, x, *args, **kwargs):
  """``(Σ fn(x, *args, **kwargs), its gradient with respect to x)``.

  Under one ``jax.jit`` (the other arguments closed over, so concrete hyper-parameters stay
  concrete): one compilation instead of eager autodiff's forward, backward and per-op pieces.
  """
  return jax.jit(jax.value_and_grad(lambda p: jnp.sum(fn(p, *args, **kwargs))))(x)


def grad_of_sum(fn, x, *args, **kwargs):
  """d/dx of Σ fn(x, *args, **kwargs), at ``x`` taken as float32 (a list, numpy, an array)."""
  return value_and_grad_of_sum(fn, f32(x), *args, **kwargs)[1]


# ------------------------------------------------------------------------------ trace counter
# jax reports every trace of a jitted function as a duration event named
# JAXPR_TRACE_EVENT with the function's name; a loss's jitted body carries the loss's name
# (functools.wraps), so counting those events counts its (re-)traces. The listener is
# registered once, for the whole session.

_JAXPR_TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_TRACES = collections.Counter()


def _count_traces(event, duration_secs, **kwargs):
  del duration_secs
  if event == _JAXPR_TRACE_EVENT:
    _TRACES[kwargs.get("fun_name")] += 1


jax.monitoring.register_event_duration_secs_listener(_count_traces)


def trace_count(fn):
  """How many times jax has traced the jitted function ``fn`` (or the name ``fn``) so far."""
  return _TRACES[fn if isinstance(fn, str) else fn.__name__]


# ------------------------------------------------------------------------------ the registry

# The suite's time budget (10 minutes on 2 cores, for ~110 entries): the shared checks run on
# every entry when JAXLOSS_FULL_SWEEP=1, and by default on a fixed share of the entries chosen
# by a stable hash of (check, entry id): the costliest (float64 second derivatives by finite
# differences; the per-example vmap and gradient loops) on fewer. Every entry is in the full
# sweep; the ones sampled out show as skipped with this reason.
FULL_SWEEP = os.environ.get("JAXLOSS_FULL_SWEEP", "") == "1"
# Shared test -> 1 in n entries; every other shared test runs on 1 entry in DEFAULT_SHARE, the
# share picked per (test, entry) so that each entry meets a different subset of the checks.
# The shares are powers of two times the default: doubling n keeps a subset of the entries
# that ran before (crc % 2n == 0 implies crc % n == 0). "traced_bounds" is the checkify half
# of test_out_of_range_hyperparameters_are_named_eager_and_traced (its eager half runs on
# every bound).
SAMPLED = {"second_derivatives": 24, "vmap_over_examples": 16, "low_precision": 12,
           "sharded_batch": 12, "extreme_predictions": 8, "masked_classes": 8,
           "empty_batch": 8, "ignore_index": 8, "nan_propagates": 8}
DEFAULT_SHARE = 4


def sampled_out(check, entry):
  """Whether the default run leaves ``check`` out for ``entry`` (never under FULL_SWEEP)."""
  if check is None or FULL_SWEEP:
    return False
  n = SAMPLED.get(check, DEFAULT_SHARE)
  return zlib.crc32(f"{check}/{entry.id}".encode()) % n != 0


def entries(shared_test=None, *, kinds=None, where=lambda entry: True, losses_only=True):
  """pytest parameters for the registry entries ``shared_test`` runs on.

  Args:
    shared_test: a key of ``registry.SHARED_TESTS`` (entries that opt out are skipped with
      their reason), or None for a test no entry may opt out of.
    kinds: only entries of these kinds.
    where: only entries for which it is true.
    losses_only: only the per-example losses (``registry.KINDS[kind].loss``).
  """
  assert shared_test is None or shared_test in registry.SHARED_TESTS, shared_test
  params = []
  for entry in registry.LOSSES:
    if kinds is not None and entry.kind not in kinds:
      continue
    if losses_only and not entry.kind_info.loss:
      continue
    if not where(entry):
      continue
    reason = entry.optout.get(shared_test)
    if reason is None and sampled_out(shared_test, entry):
      reason = (f"sampled out of the default run's time budget (1 entry in "
                f"{SAMPLED.get(shared_test, DEFAULT_SHARE)}); JAXLOSS_FULL_SWEEP=1 runs every "
                f"entry")
    marks = [pytest.mark.skip(reason=f"{entry.id}: {reason}")] if reason else []
    params.append(pytest.param(entry, id=entry.id, marks=marks))
  return params
