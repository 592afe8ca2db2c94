"""jaxloss: loss functions for JAX.

Every loss is a pure, jitted function returning unreduced per-example values;
:func:`jaxloss.reduce` does the batch reduction with masks and weights.
"""

__version__ = "0.1.0"

from jaxloss.large_vocab import (
    linear_softmax_cross_entropy,
    vocab_parallel_linear_softmax_cross_entropy,
)
from jaxloss.reduce import reduce
from jaxloss.regression import (
    gaussian_nll_loss,
    huber_loss,
    l1_loss,
    l2_loss,
    log_cosh,
    poisson_nll_loss,
    quantile_loss,
    smooth_l1_loss,
    squared_error,
)

__all__ = [
    "__version__",
    "reduce",
    # regression
    "gaussian_nll_loss",
    "huber_loss",
    "l1_loss",
    "l2_loss",
    "log_cosh",
    "poisson_nll_loss",
    "quantile_loss",
    "smooth_l1_loss",
    "squared_error",
    # large vocabulary
    "linear_softmax_cross_entropy",
    "vocab_parallel_linear_softmax_cross_entropy",
]
