"""The classification losses, gathered from their family modules (the public module of the
cross-entropy family; ``jaxloss`` itself exports the same names).

- :mod:`jaxloss.softmax`: softmax cross-entropy against probability and integer labels,
  PolyLoss, label smoothing, NLL and the softmax focal loss (one softmax cross-entropy
  derivative, and the integer-label losses that gather the label's entry);
- :mod:`jaxloss.sigmoid`: sigmoid and binary cross-entropy, the sigmoid focal loss and the
  multilabel soft-margin loss (elementwise, one ``exp(−|x|)`` per entry);
- :mod:`jaxloss.divergence`: the KL divergence against probability and log-probability
  targets, and the generalized KL divergence of unnormalised measures.
"""

from jaxloss.divergence import (
    convex_kl_divergence,
    generalized_kl_divergence,
    kl_divergence,
    kl_divergence_with_log_targets,
)
from jaxloss.sigmoid import (
    binary_cross_entropy,
    multilabel_soft_margin_loss,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
)
from jaxloss.softmax import (
    categorical_focal_loss,
    nll_loss,
    poly_loss_cross_entropy,
    safe_softmax_cross_entropy,
    smooth_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
    softmax_focal_loss,
)

__all__ = [
    "binary_cross_entropy",
    "categorical_focal_loss",
    "convex_kl_divergence",
    "generalized_kl_divergence",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "poly_loss_cross_entropy",
    "safe_softmax_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "softmax_focal_loss",
]
