"""Large-vocabulary cross-entropy: temporary memory at LLM shapes and time at a CPU shape.

``python -m bench.large_vocab [--quick]`` prints two Markdown tables comparing
``jaxloss.linear_softmax_cross_entropy`` with the naive computation,
``optax.softmax_cross_entropy_with_integer_labels(hidden @ weight, labels)``, both reduced by
the mean and differentiated (``jax.value_and_grad``) with respect to ``hidden`` and ``weight``:

1. temporary bytes of forward + backward from ``jax.jit(...).lower(...).compile()
   .memory_analysis()`` (compiled only, never run) at Gemma-2's and Llama-3-8B's output layer;
2. forward + backward time at a CPU-sized shape, the median of repeated runs with ours and the
   naive one interleaved so that load from other processes hits both alike, and beside them the
   algorithm's floor: the recomputing backward runs four (N, D) x (D, chunk) products per chunk
   where the naive loss runs three (N, D) x (D, V) ones; 4/3 of the time of the three backward
   products alone (``three_products``, timed in the same rounds) is what no implementation of
   it can beat.
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
from jaxloss.large_vocab import _default_chunk

# (name, N tokens, D hidden, V vocabulary, dtype) of the memory table.
MEMORY_SHAPES = (("Gemma-2 2B", 8192, 2304, 256000, jnp.bfloat16),
                 ("Llama-3-8B", 8192, 4096, 128256, jnp.bfloat16))
TIME_SHAPE = (2048, 512, 32000, jnp.float32)
QUICK_TIME_SHAPE = (512, 256, 8192, jnp.float32)  # --quick: the same comparison, ~20x less work
MiB = 2**20


def naive_loss(hidden, weight, labels):
  logits = jnp.matmul(hidden, weight, preferred_element_type=jnp.float32)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def chunked_loss(hidden, weight, labels, chunk_size=None):
  return jnp.mean(jaxloss.linear_softmax_cross_entropy(hidden, weight, labels,
                                                       chunk_size=chunk_size))


def _fwd_bwd(loss, **kwargs):
  return jax.jit(jax.value_and_grad(lambda h, w, y: loss(h, w, y, **kwargs), argnums=(0, 1)))


def _specs(n, d, v, dtype):
  return (jax.ShapeDtypeStruct((n, d), dtype), jax.ShapeDtypeStruct((d, v), dtype),
          jax.ShapeDtypeStruct((n,), jnp.int32))


def temp_bytes(loss, n, d, v, dtype, **kwargs) -> int:
  """Temporary bytes of jitted forward + backward, from the compiled executable only."""
  compiled = _fwd_bwd(loss, **kwargs).lower(*_specs(n, d, v, dtype)).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def _inputs(n, d, v, dtype, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(n, d)), dtype),
          jnp.asarray(rng.normal(size=(d, v)) / np.sqrt(d), dtype),
          jnp.asarray(rng.integers(0, v, size=n), jnp.int32))


def three_products(hidden, weight, labels):
  """The backward's products alone: per chunk z = h W_c, dh += z W_cᵀ and dW_c = hᵀ z.

  The chunked loss runs these three products per chunk and one more in the forward pass,
  so 4/3 of this function's time is its floor (what is left above it is everything that is
  not a product: exp, max, sums, slices).
  """
  del labels
  v = weight.shape[1]
  chunk = _default_chunk(hidden.shape[0], v)
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


def run(quick: bool) -> str:
  """Both tables as Markdown (``quick``: a smaller time shape and 7 timed rounds, not 15)."""
  lines = [f"### Large-vocabulary cross-entropy (jax {jax.__version__}, "
           f"{jax.default_backend()}: {jax.devices()[0].device_kind})", "",
           "Forward + backward (`value_and_grad` of the mean wrt hidden and weight), "
           "temporary memory from `memory_analysis()` (compiled, not run):", "",
           "| shape (N, D, V, dtype) | naive (optax) | jaxloss | ratio |",
           "| --- | ---: | ---: | ---: |"]
  for name, n, d, v, dtype in MEMORY_SHAPES:
    naive = temp_bytes(naive_loss, n, d, v, dtype)
    ours = temp_bytes(chunked_loss, n, d, v, dtype)
    lines.append(f"| {name} ({n}, {d}, {v}, {jnp.dtype(dtype).name}) | {naive / MiB:,.0f} MiB "
                 f"| {ours / MiB:,.0f} MiB | {ours / naive:.2%} |")
  n, d, v, dtype = QUICK_TIME_SHAPE if quick else TIME_SHAPE
  repeats = 7 if quick else 15
  args = _inputs(n, d, v, dtype)
  medians = time_interleaved({"naive": _fwd_bwd(naive_loss), "jaxloss": _fwd_bwd(chunked_loss),
                              "products": jax.jit(three_products)}, args, repeats)
  floor = 4 / 3 * medians["products"]
  lines += ["", f"Forward + backward time, median of {repeats} interleaved runs. Floor: the "
            "chunked loss's four matrix products alone (4/3 of its backward's three, timed in "
            "the same rounds); the naive loss runs three:", "",
            "| shape (N, D, V, dtype) | naive (optax) | jaxloss | ratio | floor | floor ratio |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| ({n}, {d}, {v}, {jnp.dtype(dtype).name}) | {medians['naive'] * 1e3:.0f} ms "
            f"| {medians['jaxloss'] * 1e3:.0f} ms | {medians['jaxloss'] / medians['naive']:.2f}× "
            f"| {floor * 1e3:.0f} ms | {floor / medians['naive']:.2f}× |"]
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(prog="python -m bench.large_vocab")
  parser.add_argument("--quick", action="store_true", help="smaller time shape, fewer rounds")
  print(run(parser.parse_args().quick))


if __name__ == "__main__":
  main()
