"""pytest configuration for the doctests in jaxloss/ (``--doctest-modules``; not shipped).

Fixes what a docstring's printed result depends on, so that every ``Examples:`` section runs the
same under the README's test command, a bare ``pytest`` and ``pytest jaxloss``:

- numpy's print options (jax arrays print through numpy): 4 significant decimals, no
  scientific notation for small numbers, so ``jnp.round(x, 4)`` prints as ``0.8571`` and not
  as float32's ``0.85709995``;
- jax's default dtype and rank promotion, as a user's session has them (``tests/conftest.py``
  makes both strict for the test modules, and the setting is global to the process);
- 8 host CPU devices, as ``tests/conftest.py`` sets, for examples that build a ``Mesh``.

Only numpy and jax are imported here: collecting the doctests needs no test-only dependency.
"""

import os
from collections.abc import Iterator

_DEVICES = "--xla_force_host_platform_device_count=8"
if _DEVICES not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _DEVICES).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _doctest_environment() -> Iterator[None]:
  # numpy.printoptions restores the previous options on exit.
  with (np.printoptions(precision=4, suppress=True, floatmode="maxprec", linewidth=100),
        jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow")):
    yield
