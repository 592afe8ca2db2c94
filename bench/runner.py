"""Times each loss against its references, interleaved, in one process.

Per loss: the mean of the loss (forward) and ``jax.value_and_grad`` of it (forward+backward),
each under ``jax.jit``, for jaxloss, optax and (where installed) ``torch.nn.functional``. A
repetition calls, in turn, a copy kernel (the bandwidth yardstick), then every implementation
once per mode, each on the next of several input sets (so caches do not flatter a small
input). Ratios are medians of the per-repetition ratios, so load from other processes that
drifts during the run cancels; times are medians over the repetitions.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from bench import specs as specs_lib

MODES = ("fwd", "fb")  # forward; forward+backward
# Input sets cycled through: enough that together they outgrow the last-level cache (so a
# small input is read from memory, as a large one is), between 2 and 64.
ROTATION_BYTES, MIN_INPUT_SETS, MAX_INPUT_SETS = 256 << 20, 2, 64
# A timed sample lasts at least this long: calls too short for the clock are batched.
MIN_SAMPLE_S = 2e-3
# Warm-up calls of each callable (after the compiling first call), then the repetitions: at
# least MIN_REPEATS, more while the loss fits its time budget.
WARMUP_CALLS, MIN_REPEATS, MAX_REPEATS = 1, 7, 15
BUDGET_S = {"quick": 0.5, "full": 6.0}
# The copy kernel's array: float32 elements (``x + 1`` reads and writes it once).
COPY_ELEMENTS = {"quick": 1 << 24, "full": 1 << 26}
# Forward values of the references must agree with jaxloss's to this relative tolerance.
VALUE_RTOL = 1e-3


@dataclasses.dataclass
class Result:
  """One loss's measurements (times in seconds; ratios are medians of per-repetition ratios)."""
  name: str
  shapes: str = ""
  size: str = ""  # the largest input, compactly ("64×4000"; a pytree's array and element count)
  repeats: int = 0
  time_s: dict[str, float] = dataclasses.field(default_factory=dict)  # by mode, jaxloss
  # ratios[(mode, reference)] = jaxloss time / reference time; reference is "optax" or "torch"
  ratios: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)
  floor: dict[str, float] = dataclasses.field(default_factory=dict)  # time / floor, by mode
  compile_s: dict[str, float] = dataclasses.field(default_factory=dict)  # "ours", "optax"
  temp_bytes: dict[str, int | None] = dataclasses.field(default_factory=dict)
  optax_label: str | None = None  # None: no optax reference
  target: float | None = None
  floor_target: float | None = None
  notes: list[str] = dataclasses.field(default_factory=list)
  error: str | None = None


@dataclasses.dataclass
class Run:
  """The whole run: results in table order plus what the report needs about the setting."""
  mode: str
  results: list[Result]
  bandwidth: float  # bytes/s, median over every repetition of the run
  torch_version: str | None
  threads: int
  not_timed: dict[str, str]  # name -> why


def cores() -> int:
  """Cores this process may use (the thread count given to torch too)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _torch() -> Any:
  """``torch`` if installed and able to take this backend's arrays, else ``None``."""
  try:
    import torch  # noqa: PLC0415  (optional: compared where installed)
  except ImportError:
    return None
  backend = jax.default_backend()
  if backend == "cpu" or (backend == "gpu" and torch.cuda.is_available()):
    return torch
  return None


def _mean_of(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> Callable[..., jax.Array]:
  return lambda *args: jnp.mean(fn(*args, **kwargs))


def _compile(fn: Callable[..., Any], args: Sequence[Any]) -> tuple[Any, float, int | None, Any]:
  """Compiles ``fn`` for ``args``; returns (executable, seconds to the first result, temp
  bytes from ``memory_analysis()``, the first result)."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  out = jax.block_until_ready(compiled(*args))
  seconds = time.perf_counter() - start
  analysis = compiled.memory_analysis()
  temp = getattr(analysis, "temp_size_in_bytes", None) if analysis is not None else None
  return compiled, seconds, temp, out


def _jax_call(compiled: Any, sets: Sequence[Sequence[Any]]) -> Callable[[int], None]:
  return lambda k: jax.block_until_ready(compiled(*sets[k]))


def _torch_calls(torch: Any, fn: Callable[..., Any], sets: Sequence[Sequence[Any]],
                 argnums: tuple[int, ...]) -> tuple[dict[str, Callable[[int], None]], float]:
  """Forward and forward+backward callables of ``fn(F, *tensors).mean()``, and its value."""
  F = torch.nn.functional
  sync = torch.cuda.synchronize if jax.default_backend() == "gpu" else (lambda: None)

  def tensor(x: jax.Array, grad: bool) -> Any:
    t = torch.from_dlpack(x)  # shares the jax buffer: no copy
    if not t.is_floating_point():
      return t.long()
    return t.detach().requires_grad_(True) if grad else t

  tsets = [[tensor(x, i in argnums) for i, x in enumerate(s)] for s in sets]

  def forward(k: int) -> None:
    with torch.no_grad():
      fn(F, *tsets[k]).mean()
    sync()

  def forward_backward(k: int) -> None:
    args = tsets[k]
    fn(F, *args).mean().backward()
    sync()
    for i in argnums:
      args[i].grad = None

  with torch.no_grad():
    value = float(fn(F, *tsets[0]).mean())
  return {"fwd": forward, "fb": forward_backward}, value


def _interleaved(calls: Mapping[str, Callable[[int], None]], n_sets: int, repeats: int | None,
                 budget_s: float) -> dict[str, np.ndarray]:
  """Seconds per call of each callable, one sample per repetition, the callables interleaved.

  A warm-up of ``WARMUP_CALLS`` calls each sets how many calls make one sample (at least
  ``MIN_SAMPLE_S``) and, when ``repeats`` is None, the number of repetitions.
  """
  number, per_rep = {}, 0.0
  for key, call in calls.items():
    times = []
    for k in range(WARMUP_CALLS):
      start = time.perf_counter()
      call(k)
      times.append(time.perf_counter() - start)
    number[key] = max(1, math.ceil(MIN_SAMPLE_S / max(min(times), 1e-9)))
    per_rep += number[key] * min(times)
  if repeats is None:
    repeats = int(np.clip(budget_s // max(per_rep, 1e-9), MIN_REPEATS, MAX_REPEATS))
  samples: dict[str, list[float]] = {key: [] for key in calls}
  for r in range(repeats):
    for key, call in calls.items():
      n = number[key]
      start = time.perf_counter()
      for j in range(n):
        call((r * n + j) % n_sets)
      samples[key].append((time.perf_counter() - start) / n)
  return {key: np.asarray(v) for key, v in samples.items()}


def _nbytes(tree: Any) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree))


def _describe(args: Sequence[Any]) -> str:
  parts = []
  for a in args:
    leaves = jax.tree.leaves(a)
    if isinstance(a, jax.Array):
      parts.append("×".join(map(str, a.shape)) + f" {a.dtype.name}")
    else:
      parts.append(f"pytree({len(leaves)} arrays, {sum(x.size for x in leaves):,} elements)")
  return ", ".join(parts)


def _size(args: Sequence[Any]) -> str:
  """The largest positional input, as the terminal table shows it: its shape, or for a pytree
  its array and element count."""
  def elements(a: Any) -> int:
    return sum(x.size for x in jax.tree.leaves(a))

  largest = max(args, key=elements)
  if isinstance(largest, jax.Array):
    return "×".join(map(str, largest.shape)) or "scalar"
  return f"{len(jax.tree.leaves(largest))} arrays, {elements(largest):,}"


def measure(name: str, spec: specs_lib.Spec, mode: str, copy_call: Callable[[int], None],
            copy_bytes: int, torch: Any, repeats: int | None = None) -> tuple[Result, np.ndarray]:
  """Benchmarks one loss; returns its result and the copy kernel's seconds per repetition."""
  import optax  # noqa: PLC0415  (the bench extra)

  argnums = (spec.argnums,) if isinstance(spec.argnums, int) else tuple(spec.argnums)
  # One compiled builder; input set i comes from the key fold_in(key, i).
  build = jax.jit(lambda i: spec.build(jax.random.fold_in(jax.random.key(0), i), mode))
  first = jax.block_until_ready(build(0))
  n_sets = int(np.clip(-(-ROTATION_BYTES // _nbytes(first)), MIN_INPUT_SETS, MAX_INPUT_SETS))
  sets = [first] + [jax.block_until_ready(build(i)) for i in range(1, n_sets)]

  if spec.optax is not None:
    optax_label, optax_fn = spec.optax
    target = spec.target
  else:
    optax_label, optax_fn = "optax", getattr(optax.losses, name, None)
    target = spec.target or (specs_lib.SHARED_WITH_OPTAX_TARGET if optax_fn else None)
  result = Result(name, _describe(first), _size(first),
                  optax_label=optax_label if optax_fn else None, target=target,
                  floor_target=spec.floor_target if mode == "full" else None)

  impls = {"ours": getattr(jaxloss, name)}
  if optax_fn is not None:
    impls["optax"] = optax_fn
  calls: dict[str, Callable[[int], None]] = {"copy": copy_call}
  values = {}
  for impl, fn in impls.items():
    loss = _mean_of(fn, spec.keywords(bench=True))
    for m, f in (("fwd", loss), ("fb", jax.value_and_grad(loss, argnums=argnums))):
      compiled, seconds, temp, out = _compile(f, first)
      calls[f"{impl}/{m}"] = _jax_call(compiled, sets)
      if m == "fb":
        result.compile_s[impl], result.temp_bytes[impl] = seconds, temp
      else:
        values[impl] = float(out)
  if torch is not None and spec.torch is not None:
    torch_calls, values["torch"] = _torch_calls(torch, spec.torch, sets, argnums)
    calls.update({f"torch/{m}": c for m, c in torch_calls.items()})
  for ref, value in values.items():
    if not math.isclose(value, values["ours"], rel_tol=VALUE_RTOL, abs_tol=VALUE_RTOL):
      result.notes.append(f"{ref} mean {value:.6g} ≠ jaxloss {values['ours']:.6g}")

  # Order within a repetition: copy, then each mode's implementations side by side.
  order = ["copy"] + [f"{impl}/{m}" for m in MODES for impl in ("ours", "optax", "torch")
                      if f"{impl}/{m}" in calls]
  samples = _interleaved({k: calls[k] for k in order}, n_sets, repeats, BUDGET_S[mode])
  result.repeats = len(samples["copy"])
  floor_bytes = {"fwd": _nbytes(first),
                 "fb": _nbytes(first) + sum(_nbytes(first[i]) for i in argnums)}
  for m in MODES:
    ours = samples[f"ours/{m}"]
    result.time_s[m] = float(np.median(ours))
    for ref in ("optax", "torch"):
      if f"{ref}/{m}" in samples:
        result.ratios[(m, ref)] = float(np.median(ours / samples[f"{ref}/{m}"]))
    floor_s = floor_bytes[m] * samples["copy"] / copy_bytes
    result.floor[m] = float(np.median(ours / floor_s))
  return result, samples["copy"]


def run(names: Iterable[str], mode: str, *, spec_table: Mapping[str, specs_lib.Spec] | None = None,
        repeats: int | None = None,
        progress: Callable[[Iterable[str]], Iterable[str]] = lambda it: it) -> Run:
  """Benchmarks ``names`` (each must have a spec) at the sizes of ``mode`` ("quick"/"full")."""
  spec_table = specs_lib.SPECS if spec_table is None else spec_table
  names = list(names)
  torch = _torch()
  threads = cores()
  if torch is not None:
    torch.set_num_threads(threads)
  # The copy kernel writes in place (the input is donated): a fresh 256 MiB output would be
  # page-faulted in on every call, measured 7x slower on CPU, a cost no loss need pay.
  copy = jax.jit(lambda a: a + 1.0, donate_argnums=0)
  state = [copy(jnp.zeros((COPY_ELEMENTS[mode],), jnp.float32))]
  copy_bytes = 2 * state[0].nbytes  # read once, written once

  def copy_call(_: int) -> None:
    state[0] = jax.block_until_ready(copy(state[0]))

  results, copies = [], []
  bar = progress(names)
  for name in bar:
    if hasattr(bar, "set_postfix_str"):
      bar.set_postfix_str(name)
    try:
      result, copy_s = measure(name, spec_table[name], mode, copy_call, copy_bytes, torch,
                               repeats)
      copies.append(copy_s)
    except Exception as e:  # noqa: BLE001  (one broken loss must not sink the table; reported)
      result = Result(name, error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
      traceback.print_exc()
    results.append(result)
  bandwidth = copy_bytes / float(np.median(np.concatenate(copies))) if copies else float("nan")
  return Run(mode, results, bandwidth, torch.__version__ if torch is not None else None,
             threads, not_timed_functions(spec_table))


def not_timed_functions(spec_table: Mapping[str, specs_lib.Spec]) -> dict[str, str]:
  """The public functions of jaxloss not timed, and why (``__version__`` is no function)."""
  functions = [n for n in jaxloss.__all__ if callable(getattr(jaxloss, n, None))]
  not_timed = {}
  for n in functions:
    if n in spec_table:
      continue
    not_timed[n] = specs_lib.NOT_TIMED.get(n, "not timed yet")
  return not_timed
