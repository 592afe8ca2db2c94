"""Test configuration, set before jax is first imported.

- 8 host CPU devices for the sharding tests (`--xla_force_host_platform_device_count=8`).
- Strict dtype promotion and rank promotion that raises, so sloppy broadcasting inside a loss
  fails here instead of silently in a user's training step.
- float64 stays off: references are computed in numpy float64.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng():
  import numpy as np
  return np.random.default_rng(0)
