"""Calls a type checker must reject, and the calls beside them it must accept.

Not a test module (pytest does not collect it, and it is never run): ``check.py`` runs mypy
on it. Each line that must fail ends with a comment ``E:`` and a part of mypy's message for
that line; every other line must type-check. The losses keep their real signatures
through ``_numerics.loss_jit`` (typed with a ParamSpec), which is what makes these errors
possible at all.
"""

import jax
import jax.numpy as jnp

import jaxloss

x = jnp.ones((4, 3))
labels = jnp.zeros((4,), jnp.int32)

# PyTorch's habit: the loss takes no `reduction`; jaxloss.reduce does.
jaxloss.huber_loss(x, x, reduction="mean")  # E: Unexpected keyword argument "reduction"
jaxloss.l1_loss(x, x, reduction="sum")  # E: Unexpected keyword argument "reduction"
mean: jax.Array = jaxloss.reduce(jaxloss.huber_loss(x, x, delta=0.5), "mean")

# Hyper-parameters are keyword-only.
jaxloss.huber_loss(x, x, 0.5)  # E: Too many positional arguments for "huber_loss"
jaxloss.huber_loss(x, x, delta=0.5)

# A static argument has its declared type.
jaxloss.softmax_cross_entropy_with_integer_labels(x, labels, axis="last")  # E: "axis"
jaxloss.softmax_cross_entropy_with_integer_labels(x, labels, axis=-1)

# The result is an array, not Any: using it as a str is an error.
jaxloss.l2_loss(x, x).upper()  # E: "Array" has no attribute "upper"
