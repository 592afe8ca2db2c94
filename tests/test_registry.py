"""The registry itself (``bench/registry.py``): every public name has an entry, and every entry
says what the shared suites need to know, with a reason for each opt-out."""

import inspect

import jax
import jax.numpy as jnp
import pytest

import jaxloss
from bench import registry

ENTRIES = [pytest.param(entry, id=entry.id) for entry in registry.LOSSES]
TIMED = [pytest.param(entry, id=entry.id) for entry in registry.LOSSES if entry.timed]


def test_every_public_name_has_a_registry_entry():
  public = set(jaxloss.__all__) - set(registry.NON_LOSSES)
  missing = sorted(public - set(registry.BY_NAME))
  assert not missing, f"add an entry to bench/registry.py's LOSSES for: {missing}"
  stale = sorted(set(registry.BY_NAME) - set(jaxloss.__all__))
  assert not stale, f"registry entries for names jaxloss does not export: {stale}"
  for name, reason in registry.NON_LOSSES.items():
    assert name in jaxloss.__all__ and len(reason) > 10, name


def test_entry_ids_are_unique():
  ids = [entry.id for entry in registry.LOSSES]
  assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("entry", ENTRIES)
def test_entry_is_well_formed(entry):
  assert entry.kind in registry.KINDS, entry.kind
  assert "test" in entry.sizes
  if entry.timed:
    assert {"quick", "full"} <= set(entry.sizes), "timed entries need the bench's sizes"
  else:
    assert entry.variant or len(entry.not_timed) > 10
  params = inspect.signature(entry.fn).parameters
  for name in (*entry.kwargs, *(entry.bench_kwargs or {}), *entry.bounds, *entry.unbounded,
               *(k for kink in entry.kinks for k in kink.kwargs)):
    assert name in params, f"{entry.id} has no argument {name!r}"
  for key, reason in entry.optout.items():
    assert key in registry.SHARED_TESTS, f"{entry.id}: unknown shared test {key!r}"
    assert isinstance(reason, str) and len(reason) > 20, (entry.id, key)
  assert set(entry.traits) <= set(registry.TRAITS), entry.traits
  for values in entry.bounds.values():
    assert isinstance(values, tuple) and values, entry.id
  if entry.label_argnum is not None:
    args, _ = entry.inputs()
    assert entry.label_argnum < len(args)


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_float_hyperparameter_is_bounded_or_declared_unbounded(entry):
  # A float default is a hyper-parameter: the registry lists its out-of-range values (read by
  # test_out_of_range_hyperparameters_are_named_eager_and_traced) or says any value is valid.
  params = inspect.signature(entry.fn).parameters
  floats = [n for n, p in params.items()
            if isinstance(p.default, float) and not isinstance(p.default, bool)]
  undeclared = [n for n in floats if n not in entry.bounds and n not in entry.unbounded]
  assert not undeclared, f"{entry.id}: give bounds= or unbounded= for {undeclared}"


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_class_axis_where_has_a_masked_reference_or_opts_out(entry):
  params = inspect.signature(entry.fn).parameters
  if entry.kind_info.loss and "where" in params and "axis" in params:
    assert entry.masked_reference is not None or "masked_classes" in entry.optout, entry.id


@pytest.mark.parametrize("entry", TIMED)
def test_bench_inputs_trace_through_the_loss_at_both_sizes(entry):
  # Abstractly (jax.eval_shape): the full size costs no memory here.
  for size in ("quick", "full"):
    args = jax.eval_shape(lambda key, size=size: entry.build(key, size), jax.random.key(0))
    out = jax.eval_shape(lambda *a: jnp.mean(entry.fn(*a, **entry.keywords(bench=True))),
                         *args)
    assert out.shape == (), (entry.id, size)


def test_the_sampler_gives_the_same_layout_from_a_generator_and_a_key():
  for entry in registry.LOSSES:
    if not entry.timed:
      continue
    from_numpy = jax.tree.map(lambda a: (a.shape, a.dtype), entry.inputs()[0])
    from_key = jax.tree.map(lambda a: (a.shape, a.dtype),
                            jax.eval_shape(lambda k, e=entry: e.build(k, "test"),
                                           jax.random.key(0)))
    assert from_numpy == from_key, entry.id
