"""Demo (until the benchmark lands): each loss's value and gradient on the current backend."""

import argparse

import jax
import jax.numpy as jnp

import jaxloss


def main() -> None:
  parser = argparse.ArgumentParser(prog="python -m bench")
  parser.add_argument("--quick", action="store_true", help="small sizes")
  parser.parse_args()
  print(f"jaxloss {jaxloss.__version__} on {jax.default_backend()} ({jax.devices()[0]})")
  p = jnp.linspace(-2.0, 2.0, 5)
  t = jnp.zeros_like(p) + 0.5
  for name in ("l1_loss", "squared_error", "l2_loss", "smooth_l1_loss", "huber_loss",
               "log_cosh", "quantile_loss", "poisson_nll_loss"):
    fn = getattr(jaxloss, name)
    value, grad = jax.value_and_grad(lambda x: jaxloss.reduce(fn(x, t)))(p)
    print(f"{name:18s} mean={float(value):+.4f} grad={grad}")


if __name__ == "__main__":
  main()
