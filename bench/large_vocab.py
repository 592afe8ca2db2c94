"""Large-vocabulary losses: temporary memory at LLM shapes and time at a CPU shape.

``python -m bench.large_vocab [--quick] [--memory-only | --time-only]`` prints Markdown tables
comparing ``jaxloss``'s large-vocabulary functions with the naive computation on explicit
logits, each differentiated (``jax.value_and_grad``) with respect to the hidden states and the
weight:

1. temporary bytes of forward + backward from ``jax.jit(...).lower(...).compile()
   .memory_analysis()`` (compiled only, never run) at Gemma-2's and Llama-3-8B's output layer:
   the cross-entropy in its default mode (per-token, reduced by the mean afterwards) and its
   fused ``reduction="mean"`` mode against ``optax.softmax_cross_entropy_with_integer_labels``
   on ``hidden @ weight``; ``linear_token_log_probs`` (with the entropy) against
   ``jaxloss.token_log_probs`` + ``jaxloss.token_entropy`` on the logits; and
   ``linear_distillation_loss`` (JSD) against ``jaxloss.generalized_jsd`` on both models'
   logits at a Llama-3-8B -> 1B shape;
2. forward + backward time at a CPU-sized shape, the median of repeated runs with all the
   functions interleaved in each round so that load from other processes hits them alike:
   the naive loss, the default mode, the fused mean mode, and the default mode's floor (its
   four (N, D) x (D, V)-sized products alone: 4/3 of ``three_products``; the naive loss and
   the fused mode run three).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxloss
from jaxloss.large_vocab import _tiling

# (name, N tokens, D hidden, V vocabulary, dtype) of the memory table.
MEMORY_SHAPES = (("Gemma-2 2B", 8192, 2304, 256000, jnp.bfloat16),
                 ("Llama-3-8B", 8192, 4096, 128256, jnp.bfloat16))
# Distillation: Llama-3-8B (teacher) -> Llama-3.2-1B (student), the shape.
DISTILL_SHAPE = ("Llama-3-8B -> 1B", 8192, 2048, 4096, 128256, jnp.bfloat16)
TIME_SHAPE = (2048, 512, 32000, jnp.float32)
QUICK_TIME_SHAPE = (512, 256, 8192, jnp.float32)  # --quick: the same comparison, ~20x less work
MiB = 2**20


def naive_loss(hidden, weight, labels):
  logits = jnp.matmul(hidden, weight, preferred_element_type=jnp.float32)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def chunked_loss(hidden, weight, labels):
  """The default mode (per-token, recomputing backward), reduced afterwards."""
  return jnp.mean(jaxloss.linear_softmax_cross_entropy(hidden, weight, labels))


def fused_loss(hidden, weight, labels):
  """The fused mode: the gradient computed in the forward pass."""
  return jaxloss.linear_softmax_cross_entropy(hidden, weight, labels, reduction="mean")


def naive_log_probs(hidden, weight, labels):
  logits = jnp.matmul(hidden, weight, preferred_element_type=jnp.float32)
  return jnp.sum(jaxloss.token_log_probs(logits, labels) + jaxloss.token_entropy(logits))


def fused_log_probs(hidden, weight, labels):
  log_p, entropy = jaxloss.linear_token_log_probs(hidden, weight, labels, return_entropy=True)
  return jnp.sum(log_p + entropy)


def naive_distillation(hs, ws, ht, wt):
  dot = functools.partial(jnp.matmul, preferred_element_type=jnp.float32)
  return jnp.sum(jaxloss.generalized_jsd(dot(hs, ws), jax.lax.stop_gradient(dot(ht, wt))))


def fused_distillation(hs, ws, ht, wt):
  return jnp.sum(jaxloss.linear_distillation_loss(hs, ws, ht, wt))


def _fwd_bwd(loss):
  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _specs(n, d, v, dtype):
  return (jax.ShapeDtypeStruct((n, d), dtype), jax.ShapeDtypeStruct((d, v), dtype),
          jax.ShapeDtypeStruct((n,), jnp.int32))


def temp_bytes(loss, *specs) -> int:
  """Temporary bytes of jitted forward + backward, from the compiled executable only."""
  return _fwd_bwd(loss).lower(*specs).compile().memory_analysis().temp_size_in_bytes


def _inputs(n, d, v, dtype, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(n, d)), dtype),
          jnp.asarray(rng.normal(size=(d, v)) / np.sqrt(d), dtype),
          jnp.asarray(rng.integers(0, v, size=n), jnp.int32))


def three_products(hidden, weight, labels):
  """The backward's products alone: per tile z = h W_c, dh += z W_cᵀ and dW_c = hᵀ z.

  The default mode runs these three products per tile and one more in the forward pass, so
  4/3 of this function's time is its floor (what is left above it is everything that is not
  a product: exp, max, sums, slices). Same tiles as the default mode when they cover all
  tokens (the CPU shapes here).
  """
  del labels
  n, d = hidden.shape
  v = weight.shape[1]
  chunk = _tiling("bench", n, d, v, None, None, False).chunk
  dot = functools.partial(jax.lax.dot_general, preferred_element_type=jnp.float32)

  def body(k, carry):
    dh, dw = carry
    start = jnp.minimum(k * chunk, v - chunk)
    w_c = jax.lax.dynamic_slice_in_dim(weight, start, chunk, axis=1)
    z = dot(hidden, w_c, (((1,), (0,)), ((), ())))
    dh = dh + dot(z, w_c, (((1,), (1,)), ((), ())))
    return dh, jax.lax.dynamic_update_slice_in_dim(
        dw, dot(hidden, z, (((0,), (0,)), ((), ()))), start, axis=1)

  return jax.lax.fori_loop(0, -(-v // chunk), body,
                           (jnp.zeros(hidden.shape, jnp.float32), jnp.zeros_like(weight)))


def time_interleaved(fns: dict, args, repeats: int) -> dict[str, float]:
  """Median seconds per call of each jitted function, the functions run in turn each round."""
  for fn in fns.values():
    jax.block_until_ready(fn(*args))  # compile and warm up
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def _row(label, naive, ours):
  return f"| {label} | {naive / MiB:,.0f} MiB | {ours / MiB:,.0f} MiB | {ours / naive:.2%} |"


def memory_table() -> list[str]:
  lines = ["Forward + backward (`value_and_grad` wrt hidden and weight), temporary memory from "
           "`memory_analysis()` (compiled, not run). The fused mode's figure includes one "
           "float32 (D, V) weight-gradient buffer (the weight is bf16); its excess over that "
           "buffer is the last column:", "",
           "| function, shape (N, D, V, dtype) | naive | jaxloss | ratio | excess over the "
           "f32 (D, V) buffer |", "| --- | ---: | ---: | ---: | ---: |"]
  for name, n, d, v, dtype in MEMORY_SHAPES:
    specs = _specs(n, d, v, dtype)
    shape = f"{name} ({n}, {d}, {v}, {jnp.dtype(dtype).name})"
    naive = temp_bytes(naive_loss, *specs)
    lines.append(_row(f"cross-entropy, default mode, {shape}", naive,
                      temp_bytes(chunked_loss, *specs)) + " |")
    fused = temp_bytes(fused_loss, *specs)
    buffer = d * v * 4
    lines.append(_row(f"cross-entropy, `reduction=\"mean\"`, {shape}", naive, fused)
                 + f" {(fused - buffer) / MiB:,.0f} MiB ({(fused - buffer) / naive:.2%}) |")
    if name.startswith("Llama"):
      lines.append(_row(f"`linear_token_log_probs` + entropy, {shape}",
                        temp_bytes(naive_log_probs, *specs),
                        temp_bytes(fused_log_probs, *specs)) + " |")
  name, n, ds, dt, v, dtype = DISTILL_SHAPE
  specs = (jax.ShapeDtypeStruct((n, ds), dtype), jax.ShapeDtypeStruct((ds, v), dtype),
           jax.ShapeDtypeStruct((n, dt), dtype), jax.ShapeDtypeStruct((dt, v), dtype))
  lines.append(_row(f"`linear_distillation_loss` (JSD), {name} ({n}, {ds}/{dt}, {v}, "
                    f"{jnp.dtype(dtype).name})", temp_bytes(naive_distillation, *specs),
                    temp_bytes(fused_distillation, *specs)) + " |")
  return lines


def time_table(quick: bool) -> list[str]:
  n, d, v, dtype = QUICK_TIME_SHAPE if quick else TIME_SHAPE
  repeats = 7 if quick else 15
  args = _inputs(n, d, v, dtype)
  medians = time_interleaved({"naive": _fwd_bwd(naive_loss), "default": _fwd_bwd(chunked_loss),
                              "mean": _fwd_bwd(fused_loss),
                              "products": jax.jit(three_products)}, args, repeats)
  floor = 4 / 3 * medians["products"]
  base = medians["naive"]
  return [f"Forward + backward time, median of {repeats} interleaved runs, ({n}, {d}, {v}, "
          f"{jnp.dtype(dtype).name}); ratios to the naive (optax) loss. Floor: the default "
          "mode's four matrix products alone (4/3 of its backward's three, timed in the same "
          "rounds); the naive loss and the fused mode run three:", "",
          "| naive (optax) | default mode | ratio | `reduction=\"mean\"` | ratio | floor of "
          "the default mode | ratio |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
          f"| {base * 1e3:.0f} ms | {medians['default'] * 1e3:.0f} ms | "
          f"{medians['default'] / base:.2f}× | {medians['mean'] * 1e3:.0f} ms | "
          f"{medians['mean'] / base:.2f}× | {floor * 1e3:.0f} ms | {floor / base:.2f}× |"]


def run(quick: bool, memory: bool = True, timing: bool = True) -> str:
  """The tables as Markdown (``quick``: a smaller time shape and 7 timed rounds, not 15)."""
  lines = [f"### Large-vocabulary losses (jax {jax.__version__}, {jax.default_backend()}: "
           f"{jax.devices()[0].device_kind})", ""]
  if memory:
    lines += memory_table() + [""]
  if timing:
    lines += time_table(quick)
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(prog="python -m bench.large_vocab")
  parser.add_argument("--quick", action="store_true", help="smaller time shape, fewer rounds")
  group = parser.add_mutually_exclusive_group()
  group.add_argument("--memory-only", action="store_true", help="only the memory table")
  group.add_argument("--time-only", action="store_true", help="only the time table")
  a = parser.parse_args()
  print(run(a.quick, memory=not a.time_only, timing=not a.memory_only))


if __name__ == "__main__":
  main()
