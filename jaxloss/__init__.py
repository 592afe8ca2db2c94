"""jaxloss: loss functions for JAX.

Every loss is a pure, jitted function returning unreduced per-example values;
:func:`jaxloss.reduce` does the batch reduction with masks and weights.
"""

__version__ = "0.1.0"

# representation learning (issue 16)
from jaxloss.contrastive import (
    arcface_loss,
    circle_loss,
    clip_loss,
    cosface_loss,
    info_nce_loss,
    margin_softmax_loss,
    multi_similarity_loss,
    sharded_clip_loss,
    sharded_siglip_loss,
    sharded_supervised_contrastive_loss,
    siglip_loss,
    sphereface_loss,
    subcenter_arcface_loss,
    supervised_contrastive_loss,
)
from jaxloss.detection import (
    box_iou_loss,
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
)
from jaxloss.deviance import (
    brier_score,
    gamma_deviance,
    poisson_deviance,
    tweedie_deviance,
)

# language-model post-training (issue 17)
from jaxloss.distillation import (
    generalized_jsd,
    reverse_kl_divergence,
    total_variation_distance,
)
from jaxloss.divergence import (
    convex_kl_divergence,
    generalized_kl_divergence,
    kl_divergence,
    kl_divergence_with_log_targets,
)
from jaxloss.embedding import (
    center_loss,
    contrastive_loss,
    cosine_embedding_loss,
    triplet_margin_loss,
    triplet_margin_with_distance_loss,
    update_centers,
)

# sequence, Fenchel-Young, ranking and similarity losses (issue 13)
from jaxloss.fenchel_young import make_fenchel_young_loss, multiclass_sparsemax_loss, sparsemax_loss
from jaxloss.language_model import sequence_log_probs, token_entropy, token_log_probs
from jaxloss.large_vocab import (
    linear_distillation_loss,
    linear_softmax_cross_entropy,
    linear_token_log_probs,
    vocab_parallel_linear_softmax_cross_entropy,
)
from jaxloss.margin import (
    categorical_hinge_loss,
    exponential_loss,
    hinge_embedding_loss,
    hinge_loss,
    logistic_loss,
    margin_ranking_loss,
    multi_margin_loss,
    multiclass_hinge_loss,
    multiclass_perceptron_loss,
    multiclass_zero_one_loss,
    multilabel_margin_loss,
    perceptron_loss,
    squared_hinge_loss,
    zero_one_loss,
)
from jaxloss.preference import (
    clipped_policy_loss,
    cpo_loss,
    dpo_loss,
    group_advantages,
    kl_penalty,
    kto_loss,
    orpo_loss,
    sequence_clipped_policy_loss,
    simpo_loss,
)
from jaxloss.ranking import ranking_softmax_loss
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
from jaxloss.regularizers import (
    elastic_net_penalty,
    l1_penalty,
    l2_penalty,
    structural_risk,
)
from jaxloss.relative import (
    mean_absolute_percentage_error,
    mean_squared_logarithmic_error,
)
from jaxloss.robust import (
    cauchy_loss,
    geman_mcclure_loss,
    general_robust_loss,
    welsch_loss,
)

# segmentation, detection, deviances, robust and relative-error regression (issues 13, 15)
from jaxloss.segmentation import (
    binary_dice_loss,
    dice_loss,
    focal_tversky_loss,
    jaccard_loss,
    lovasz_hinge_loss,
    lovasz_softmax_loss,
    multiclass_generalized_dice_loss,
    tversky_loss,
)
from jaxloss.sequence import ctc_loss, ctc_loss_with_forward_probs
from jaxloss.sigmoid import (
    binary_cross_entropy,
    multilabel_soft_margin_loss,
    sigmoid_binary_cross_entropy,
    sigmoid_focal_loss,
)
from jaxloss.similarity import cosine_distance, cosine_similarity, ntxent
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
    "__version__",
    "reduce",
    # classification
    "binary_cross_entropy",
    "kl_divergence",
    "kl_divergence_with_log_targets",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "poly_loss_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "softmax_focal_loss",
    "categorical_focal_loss",
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
    "linear_distillation_loss",
    "linear_softmax_cross_entropy",
    "linear_token_log_probs",
    "vocab_parallel_linear_softmax_cross_entropy",
    # margin
    "categorical_hinge_loss",
    "hinge_embedding_loss",
    "margin_ranking_loss",
    "multilabel_margin_loss",
    "exponential_loss",
    "hinge_loss",
    "logistic_loss",
    "multi_margin_loss",
    "multiclass_hinge_loss",
    "multiclass_perceptron_loss",
    "multiclass_zero_one_loss",
    "perceptron_loss",
    "squared_hinge_loss",
    "zero_one_loss",
    # embedding
    "cosine_embedding_loss",
    "triplet_margin_with_distance_loss",
    "center_loss",
    "contrastive_loss",
    "triplet_margin_loss",
    "update_centers",
    # regularizers
    "elastic_net_penalty",
    "l1_penalty",
    "l2_penalty",
    "structural_risk",
    # language model (issue 17)
    "sequence_log_probs",
    "token_entropy",
    "token_log_probs",
    # preference and policy-gradient objectives (issue 17)
    "clipped_policy_loss",
    "cpo_loss",
    "dpo_loss",
    "group_advantages",
    "kl_penalty",
    "kto_loss",
    "orpo_loss",
    "sequence_clipped_policy_loss",
    "simpo_loss",
    # distillation (issue 17)
    "generalized_jsd",
    "reverse_kl_divergence",
    "total_variation_distance",
    # representation learning (issue 16)
    "arcface_loss",
    "circle_loss",
    "clip_loss",
    "cosface_loss",
    "info_nce_loss",
    "margin_softmax_loss",
    "multi_similarity_loss",
    "sharded_clip_loss",
    "sharded_siglip_loss",
    "sharded_supervised_contrastive_loss",
    "siglip_loss",
    "sphereface_loss",
    "subcenter_arcface_loss",
    "supervised_contrastive_loss",
    # segmentation (issues 13, 15)
    "binary_dice_loss",
    "dice_loss",
    "focal_tversky_loss",
    "jaccard_loss",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "multiclass_generalized_dice_loss",
    "tversky_loss",
    # detection (issue 15)
    "box_iou_loss",
    "complete_box_iou_loss",
    "distance_box_iou_loss",
    "generalized_box_iou_loss",
    # deviances and the Brier score (issue 15)
    "brier_score",
    "gamma_deviance",
    "poisson_deviance",
    "tweedie_deviance",
    # relative-error regression (issue 15)
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    # robust regression (issue 15)
    "cauchy_loss",
    "general_robust_loss",
    "geman_mcclure_loss",
    "welsch_loss",
    # sequence, Fenchel-Young, ranking and similarity (issue 13)
    "ctc_loss",
    "ctc_loss_with_forward_probs",
    "make_fenchel_young_loss",
    "multiclass_sparsemax_loss",
    "sparsemax_loss",
    "ranking_softmax_loss",
    "cosine_distance",
    "cosine_similarity",
    "ntxent",
    # optax's remaining class-axis names (issue 13)
    "convex_kl_divergence",
    "generalized_kl_divergence",
    "safe_softmax_cross_entropy",
]
