"""The rows of the "Coming from optax" and "Coming from PyTorch" guides, in one place.

Each row is a call a user already writes (optax, ``torch.nn.functional``, ``torchvision.ops``)
and the jaxloss call that gives the same number, both as source text. The guides' tables are
generated from these rows, and the tests execute every row:

- ``tests/test_guides.py`` evaluates both calls of each optax row on the same inputs and compares
  them, and evaluates the jaxloss call of each PyTorch row on the inputs stored in
  ``tests/data/torch_reduced.json``, against the value PyTorch computed there;
- ``tests/data/make_torch_vectors.py`` (run with PyTorch, torchvision and Keras installed)
  evaluates the PyTorch and Keras calls of these rows and writes that file and
  ``tests/data/keras_reference.json``;
- ``python docs/guides.py`` rewrites ``docs/coming_from_optax.md`` and
  ``docs/coming_from_pytorch.md``; a test fails when the committed pages differ.

Only numpy is imported here (the PyTorch script runs in an environment without jax). Inputs are
named sets of numpy arrays, each made by a function of its own seeded generator, so a row's
inputs do not depend on the other rows.
"""

from __future__ import annotations

import dataclasses
import pathlib
import zlib

import numpy as np

DOCS = pathlib.Path(__file__).resolve().parent
REPOSITORY = "https://github.com/jaxloss/jaxloss"


@dataclasses.dataclass(frozen=True)
class Row:
  other: str  # the optax / PyTorch call, as a user writes it
  jaxloss: str  # the jaxloss call that gives the same numbers
  inputs: str  # a key of INPUTS
  note: str = ""  # renamed keywords, the reduction recipe, what differs
  rtol: float = 1e-5  # float32 (jaxloss) against float64 (PyTorch) or float32 (optax)


# --- inputs --------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
  return x - x.max(-1, keepdims=True) - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1,
                                                                                      keepdims=True))


def _boxes(r: np.random.Generator, n: int) -> np.ndarray:
  corner = r.uniform(0.0, 4.0, size=(n, 2))
  return np.concatenate([corner, corner + r.uniform(0.5, 3.0, size=(n, 2))], axis=-1)


def _regression(r):
  return {"predictions": r.normal(size=8), "targets": r.normal(size=8) * 2}


def _integer_labels(r):
  labels = r.integers(0, 5, size=6)
  labels[[1, 4]] = -100  # PyTorch's default ignore_index: padding
  return {"logits": r.normal(size=(6, 5)) * 2, "labels": labels,
          "w": r.uniform(0.5, 2.0, size=5)}


def _dense_labels(r):
  return {"logits": r.normal(size=(6, 5)) * 2, "labels": r.integers(0, 5, size=6)}


def _image_labels(r):  # PyTorch's (N, C, H, W) layout: classes on axis 1
  return {"logits": r.normal(size=(2, 4, 3, 3)), "labels": r.integers(0, 4, size=(2, 3, 3))}


def _probability_labels(r):
  return {"logits": r.normal(size=(6, 5)) * 2, "probs": _softmax(r.normal(size=(6, 5)))}


def _log_probs(r):
  targets = _softmax(r.normal(size=(6, 5)) * 2)
  targets[0, 1] = 0.0  # a zero target: 0 · log 0 = 0
  targets[0] /= targets[0].sum()
  labels = r.integers(0, 5, size=6)
  labels[2] = -100
  return {"log_probs": _log_softmax(r.normal(size=(6, 5)) * 2), "targets": targets,
          "log_targets": _log_softmax(r.normal(size=(6, 5))), "labels": labels,
          "w": r.uniform(0.5, 2.0, size=5)}


def _binary(r):
  return {"logits": r.normal(size=(4, 3)) * 3, "labels": r.integers(0, 2, size=(4, 3)) * 1.0,
          "probs": r.uniform(0.02, 0.98, size=(4, 3)), "w": r.uniform(0.5, 2.0, size=(4, 3)),
          "pos_weight": r.uniform(0.5, 3.0, size=3)}


def _signed(r):
  return {"scores": r.normal(size=8) * 2, "y": r.choice([-1.0, 1.0], size=8),
          "distances": np.abs(r.normal(size=8)) * 1.5,
          "x1": r.normal(size=8), "x2": r.normal(size=8)}


def _multiclass(r):
  return {"scores": r.normal(size=(6, 5)), "labels": r.integers(0, 5, size=6),
          "w": r.uniform(0.5, 2.0, size=5)}


def _multilabel(r):
  # multilabel_margin_loss's targets: class indices, the first -1 ends each row's list.
  targets = np.array([[3, 0, -1, 1, 2], [1, -1, 2, 2, 0], [-1, 0, 1, 2, 3], [0, 1, 2, 3, 4]])
  return {"scores": r.normal(size=(4, 5)), "targets": targets,
          "logits": r.normal(size=(4, 5)) * 2, "labels": r.integers(0, 2, size=(4, 5)) * 1.0,
          "w": r.uniform(0.5, 2.0, size=5)}


def _pairs(r):
  return {"x1": r.normal(size=(6, 4)), "x2": r.normal(size=(6, 4)),
          "y": r.choice([-1.0, 1.0], size=6)}


def _triplets(r):
  return {"anchors": r.normal(size=(5, 4)), "positives": r.normal(size=(5, 4)),
          "negatives": r.normal(size=(5, 4))}


def _counts(r):
  rate = r.uniform(0.2, 4.0, size=8)
  return {"log_rate": np.log(rate), "rate": rate, "counts": r.poisson(2.0, size=8) * 1.0}


def _gaussian(r):
  return {"mean": r.normal(size=8), "targets": r.normal(size=8),
          "variance": r.uniform(0.1, 2.0, size=8)}


def _boxes_pair(r):
  return {"boxes1": _boxes(r, 5), "boxes2": _boxes(r, 5)}


def _focal(r):
  return {"logits": r.normal(size=(4, 3)) * 2, "labels": r.integers(0, 2, size=(4, 3)) * 1.0}


def _ctc(r):
  t, n, c, s = 6, 3, 4, 3
  input_lengths = np.array([6, 5, 4])
  target_lengths = np.array([3, 2, 3])
  return {
      "log_probs": np.swapaxes(_log_softmax(r.normal(size=(n, t, c))), 0, 1),  # (T, N, C)
      # distinct labels, so that every sequence has an alignment (PyTorch gives inf otherwise)
      "targets": np.stack([r.permutation(np.arange(1, c)) for _ in range(n)]),
      "input_lengths": input_lengths, "target_lengths": target_lengths,
      # optax's layout of the same lengths: 1.0 marks a padded frame or label
      "logit_paddings": (np.arange(t) >= input_lengths[:, None]) * 1.0,
      "label_paddings": (np.arange(s) >= target_lengths[:, None]) * 1.0,
  }


def _segmentation(r):
  return {"logits": r.normal(size=(2, 4, 4, 3)) * 2,
          "masks": np.eye(3)[r.integers(0, 3, size=(2, 4, 4))],
          "binary_logits": r.normal(size=(2, 16)) * 2,
          "binary_masks": r.integers(0, 2, size=(2, 16)) * 1.0}


def _ranking(r):
  return {"scores": r.normal(size=(3, 6)), "relevance": r.integers(0, 3, size=(3, 6)) * 1.0}


def _ntxent(r):
  return {"embeddings": r.normal(size=(6, 4)), "labels": np.array([0, 0, 1, 1, 2, 2])}


def _sparsemax(r):
  return {"logits": r.normal(size=6) * 2, "labels": r.integers(0, 2, size=6) * 1.0,
          "scores": r.normal(size=(4, 5)), "classes": r.integers(0, 5, size=4),
          "one_hot": np.eye(5)[r.integers(0, 5, size=4)]}


def _keras(r):
  # Keras's losses mean over the last axis: (batch, features) inputs; positive ones for the
  # logarithmic and percentage errors, probabilities away from Keras's clip at 1e-7.
  probs = _softmax(r.normal(size=(4, 5)))
  return {"predictions": r.normal(size=(4, 3)), "targets": r.normal(size=(4, 3)) * 2,
          "positive_predictions": r.uniform(0.5, 3.0, size=(4, 3)),
          "positive_targets": r.uniform(0.5, 3.0, size=(4, 3)),
          "rate": r.uniform(0.2, 4.0, size=(4, 3)), "counts": r.poisson(2.0, size=(4, 3)) * 1.0,
          "scores": r.normal(size=(4, 3)) * 2, "y": r.choice([-1.0, 1.0], size=(4, 3)),
          "binary_logits": r.normal(size=(4, 3)) * 2,
          "binary_labels": r.integers(0, 2, size=(4, 3)) * 1.0,
          "binary_probs": r.uniform(0.05, 0.95, size=(4, 3)),
          "logits": r.normal(size=(4, 5)) * 2, "labels": r.integers(0, 5, size=4),
          "one_hot": np.eye(5)[r.integers(0, 5, size=4)], "probs": probs,
          "target_probs": _softmax(r.normal(size=(4, 5)))}


INPUTS = {
    "regression": _regression, "integer_labels": _integer_labels, "dense_labels": _dense_labels,
    "image_labels": _image_labels, "probability_labels": _probability_labels,
    "log_probs": _log_probs, "binary": _binary, "signed": _signed, "multiclass": _multiclass,
    "multilabel": _multilabel, "pairs": _pairs, "triplets": _triplets, "counts": _counts,
    "gaussian": _gaussian, "boxes": _boxes_pair, "focal": _focal, "ctc": _ctc,
    "segmentation": _segmentation, "ranking": _ranking, "ntxent": _ntxent,
    "sparsemax": _sparsemax, "keras": _keras,
}


def make_inputs(name: str) -> dict[str, np.ndarray]:
  """The named input set: float64 and int64 numpy arrays, the same on every call."""
  return INPUTS[name](np.random.default_rng(zlib.crc32(name.encode())))


# --- optax ---------------------------------------------------------------------------------------

_CE = "jaxloss.softmax_cross_entropy_with_integer_labels"

OPTAX_ROWS = [
    # regression
    Row("optax.losses.squared_error(predictions, targets)",
        "jaxloss.squared_error(predictions, targets)", "regression"),
    Row("optax.losses.l2_loss(predictions, targets)",
        "jaxloss.l2_loss(predictions, targets)", "regression", "½ (p − t)²"),
    Row("optax.losses.huber_loss(predictions, targets, delta=1.5)",
        "jaxloss.huber_loss(predictions, targets, delta=1.5)", "regression"),
    Row("optax.losses.log_cosh(predictions, targets)",
        "jaxloss.log_cosh(predictions, targets)", "regression"),
    Row("optax.losses.cosine_similarity(x1, x2)", "jaxloss.cosine_similarity(x1, x2)", "pairs"),
    Row("optax.losses.cosine_distance(x1, x2)", "jaxloss.cosine_distance(x1, x2)", "pairs"),
    # classification
    Row("optax.losses.softmax_cross_entropy(logits, probs)",
        "jaxloss.softmax_cross_entropy(logits, probs)", "probability_labels",
        "adds `label_smoothing=`, `class_weights=`"),
    Row("optax.losses.safe_softmax_cross_entropy(logits, probs)",
        "jaxloss.safe_softmax_cross_entropy(logits, probs)", "probability_labels",
        "finite forward-mode tangents at −inf logits too; labels of the logits' shape"),
    Row("optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels)",
        f"{_CE}(logits, labels)", "dense_labels",
        "adds `label_smoothing=`, `ignore_index=`, `class_weights=`; a label outside "
        "[0, C) gives NaN (optax wraps −1 to the last class)"),
    Row("optax.losses.poly_loss_cross_entropy(logits, jax.nn.one_hot(labels, 5), epsilon=1.0)",
        "jaxloss.poly_loss_cross_entropy(logits, jax.nn.one_hot(labels, 5), epsilon=1.0)",
        "dense_labels"),
    Row("optax.losses.sigmoid_binary_cross_entropy(logits, labels)",
        "jaxloss.sigmoid_binary_cross_entropy(logits, labels)", "binary",
        "adds PyTorch's `pos_weight=`"),
    Row("optax.losses.sigmoid_focal_loss(logits, labels, alpha=0.25, gamma=2.0)",
        "jaxloss.sigmoid_focal_loss(logits, labels, alpha=0.25, gamma=2.0)", "binary"),
    Row("optax.losses.smooth_labels(probs, 0.1)", "jaxloss.smooth_labels(probs, 0.1)",
        "probability_labels"),
    Row("optax.losses.kl_divergence(log_probs, targets)",
        "jaxloss.kl_divergence(log_probs, targets)", "log_probs",
        "finite gradients at zero targets"),
    Row("optax.losses.kl_divergence_with_log_targets(log_probs, log_targets)",
        "jaxloss.kl_divergence_with_log_targets(log_probs, log_targets)", "log_probs"),
    Row("optax.losses.generalized_kl_divergence(log_probs, targets)",
        "jaxloss.generalized_kl_divergence(log_probs, targets)", "log_probs",
        "finite gradients at zero targets and at log q = −inf"),
    Row("optax.losses.convex_kl_divergence(log_probs, targets)",
        "jaxloss.generalized_kl_divergence(log_probs, targets)", "log_probs",
        "`jaxloss.convex_kl_divergence` exists and warns, as optax's deprecated name does"),
    # margin
    Row("optax.losses.hinge_loss(scores, y)", "jaxloss.hinge_loss(scores, y)", "signed",
        "labels ±1; sub-gradient 0 at y·s = 1"),
    Row("optax.losses.perceptron_loss(scores, y)", "jaxloss.perceptron_loss(scores, y)",
        "signed"),
    Row("optax.losses.multiclass_hinge_loss(scores, labels)",
        "jaxloss.multiclass_hinge_loss(scores, labels)", "multiclass", "adds `axis=`"),
    Row("optax.losses.multiclass_perceptron_loss(scores, labels)",
        "jaxloss.multiclass_perceptron_loss(scores, labels)", "multiclass", "adds `axis=`"),
    # Fenchel-Young
    Row("optax.losses.sparsemax_loss(logits, labels)", "jaxloss.sparsemax_loss(logits, labels)",
        "sparsemax"),
    Row("optax.losses.multiclass_sparsemax_loss(scores, classes)",
        "jaxloss.multiclass_sparsemax_loss(scores, classes)", "sparsemax"),
    Row("optax.losses.make_fenchel_young_loss(jax.scipy.special.logsumexp)(scores, one_hot)",
        "jaxloss.make_fenchel_young_loss(jax.scipy.special.logsumexp)(scores, one_hot)",
        "sparsemax", "a max function of one row"),
    # embeddings, ranking, segmentation, sequences
    Row("optax.losses.triplet_margin_loss(anchors, positives, negatives, margin=0.5)",
        "jaxloss.triplet_margin_loss(anchors, positives, negatives, margin=0.5)", "triplets",
        "the same at `norm_degree=2`; jaxloss's norm is PyTorch's ‖a − p + ε‖, optax's differs "
        "for odd degrees; adds `swap=`"),
    Row("optax.losses.ntxent(embeddings, labels, temperature=0.5)",
        "jaxloss.ntxent(embeddings, labels, temperature=0.5)", "ntxent",
        "a scalar, as optax"),
    Row("optax.losses.ranking_softmax_loss(scores, relevance)",
        "jaxloss.ranking_softmax_loss(scores, relevance)", "ranking",
        "reduced by `reduce_fn=jnp.mean`, as optax"),
    Row("optax.losses.dice_loss(logits, masks)", "jaxloss.dice_loss(logits, masks)",
        "segmentation", "`reduction=\"mean\"` by default, as optax"),
    Row("optax.losses.multiclass_generalized_dice_loss(logits, masks)",
        "jaxloss.multiclass_generalized_dice_loss(logits, masks)", "segmentation"),
    Row("optax.losses.binary_dice_loss(binary_logits, binary_masks)",
        "jaxloss.binary_dice_loss(binary_logits, binary_masks)", "segmentation"),
    Row("optax.losses.ctc_loss(jnp.swapaxes(log_probs, 0, 1), logit_paddings, targets, "
        "label_paddings)",
        "jaxloss.ctc_loss(jnp.swapaxes(log_probs, 0, 1), logit_paddings, targets, "
        "label_paddings)", "ctc", "adds `zero_infinity=`", rtol=1e-4),
    Row("optax.losses.ctc_loss_with_forward_probs(jnp.swapaxes(log_probs, 0, 1), "
        "logit_paddings, targets, label_paddings)",
        "jaxloss.ctc_loss_with_forward_probs(jnp.swapaxes(log_probs, 0, 1), logit_paddings, "
        "targets, label_paddings)", "ctc", "(loss, α of blanks, α of labels)", rtol=1e-4),
    # the reduction: optax leaves it to jnp
    Row("jnp.mean(optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels))",
        f"jaxloss.reduce({_CE}(logits, labels))", "dense_labels",
        "`reduce`'s default is the mean"),
    Row("jnp.sum(optax.losses.huber_loss(predictions, targets))",
        "jaxloss.reduce(jaxloss.huber_loss(predictions, targets), \"sum\")", "regression"),
    Row("jnp.sum(optax.losses.l2_loss(predictions, targets) * (targets > 0)) "
        "/ jnp.sum(targets > 0)",
        "jaxloss.reduce(jaxloss.l2_loss(predictions, targets), where=targets > 0)", "regression",
        "a masked mean; 0 (not NaN) when nothing is left"),
]

# Names of optax.losses without a jaxloss row, with the reason (none at present).
OPTAX_MISSING: dict[str, str] = {}

# --- PyTorch -------------------------------------------------------------------------------------

_IGNORED = "where=labels != -100, weights=w[labels]"

TORCH_ROWS = [
    # regression
    Row("F.l1_loss(predictions, targets)", "jaxloss.reduce(jaxloss.l1_loss(predictions, targets))",
        "regression", "`reduction=\"mean\"` (PyTorch's default) is `jaxloss.reduce`'s default"),
    Row("F.mse_loss(predictions, targets)",
        "jaxloss.reduce(jaxloss.squared_error(predictions, targets))", "regression",
        "optax's name"),
    Row("F.mse_loss(predictions, targets, reduction=\"sum\")",
        "jaxloss.reduce(jaxloss.squared_error(predictions, targets), \"sum\")", "regression"),
    Row("F.mse_loss(predictions, targets, reduction=\"none\")",
        "jaxloss.squared_error(predictions, targets)", "regression",
        "every jaxloss loss returns the unreduced values"),
    Row("F.smooth_l1_loss(predictions, targets, beta=0.5)",
        "jaxloss.reduce(jaxloss.smooth_l1_loss(predictions, targets, beta=0.5))", "regression"),
    Row("F.huber_loss(predictions, targets, delta=1.5)",
        "jaxloss.reduce(jaxloss.huber_loss(predictions, targets, delta=1.5))", "regression"),
    Row("F.poisson_nll_loss(log_rate, counts)",
        "jaxloss.reduce(jaxloss.poisson_nll_loss(log_rate, counts))", "counts"),
    Row("F.poisson_nll_loss(rate, counts, log_input=False, full=True)",
        "jaxloss.reduce(jaxloss.poisson_nll_loss(rate, counts, log_input=False, full=True))",
        "counts"),
    Row("F.gaussian_nll_loss(mean, targets, variance)",
        "jaxloss.reduce(jaxloss.gaussian_nll_loss(mean, targets, variance))", "gaussian",
        "`var` is `variance`"),
    # cross-entropy
    Row("F.cross_entropy(logits, labels)", f"jaxloss.reduce({_CE}(logits, labels))",
        "dense_labels"),
    Row("F.cross_entropy(logits, labels, weight=w)",
        f"jaxloss.reduce({_CE}(logits, labels, ignore_index=-100), {_IGNORED})",
        "integer_labels",
        "PyTorch's mean divides by the summed weight of the kept labels: `weights=w[labels]`; "
        "`ignore_index=-100` is PyTorch's default, here explicit; `jaxloss.reduce(loss)` "
        "alone would count the ignored rows"),
    Row("F.cross_entropy(logits, labels, weight=w, reduction=\"sum\")",
        f"jaxloss.reduce({_CE}(logits, labels, ignore_index=-100, class_weights=w), \"sum\")",
        "integer_labels", "`weight=` is `class_weights=`"),
    Row("F.cross_entropy(logits, labels, weight=w, reduction=\"none\")",
        f"{_CE}(logits, labels, ignore_index=-100, class_weights=w)", "integer_labels"),
    Row("F.cross_entropy(logits, labels, label_smoothing=0.1)",
        f"jaxloss.reduce({_CE}(logits, labels, label_smoothing=0.1))", "dense_labels"),
    Row("F.cross_entropy(logits, labels)",
        f"jaxloss.reduce({_CE}(logits, labels, axis=1))", "image_labels",
        "(N, C, H, W) logits: the classes on `axis=1`"),
    Row("F.cross_entropy(logits, probs)", "jaxloss.reduce(jaxloss.softmax_cross_entropy(logits, "
        "probs))", "probability_labels", "probability targets"),
    Row("F.nll_loss(log_probs, labels, weight=w)",
        f"jaxloss.reduce(jaxloss.nll_loss(log_probs, labels, ignore_index=-100), {_IGNORED})",
        "log_probs", "as `F.cross_entropy`"),
    Row("F.binary_cross_entropy(probs, labels)",
        "jaxloss.reduce(jaxloss.binary_cross_entropy(probs, labels))", "binary"),
    Row("F.binary_cross_entropy(probs, labels, weight=w)",
        "jaxloss.reduce(jaxloss.binary_cross_entropy(probs, labels, weight=w))", "binary",
        "`weight=` rescales each element and the mean still divides by the number of "
        "elements: do not pass `reduce(weights=)` (which divides by Σw)"),
    Row("F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)",
        "jaxloss.reduce(jaxloss.sigmoid_binary_cross_entropy(logits, labels, "
        "pos_weight=pos_weight))", "binary", "optax's name"),
    Row("F.kl_div(log_probs, targets, reduction=\"batchmean\")",
        "jaxloss.reduce(jaxloss.kl_divergence(log_probs, targets))", "log_probs",
        "`\"batchmean\"`: the mean over rows of each row's sum"),
    Row("F.kl_div(log_probs, log_targets, reduction=\"batchmean\", log_target=True)",
        "jaxloss.reduce(jaxloss.kl_divergence_with_log_targets(log_probs, log_targets))",
        "log_probs"),
    Row("F.kl_div(log_probs, targets, reduction=\"sum\")",
        "jaxloss.reduce(jaxloss.kl_divergence(log_probs, targets), \"sum\")", "log_probs"),
    Row("F.kl_div(log_probs, targets)",
        "jaxloss.reduce(jaxloss.kl_divergence(log_probs, targets)) / log_probs.shape[-1]",
        "log_probs", "`\"mean\"` divides by every element, classes included (PyTorch "
        "recommends `\"batchmean\"`)"),
    # margin
    Row("F.soft_margin_loss(scores, y)", "jaxloss.reduce(jaxloss.logistic_loss(scores, y))",
        "signed", "labels ±1"),
    Row("F.hinge_embedding_loss(distances, y, margin=1.0)",
        "jaxloss.reduce(jaxloss.hinge_embedding_loss(distances, y, margin=1.0))", "signed"),
    Row("F.margin_ranking_loss(x1, x2, y, margin=0.5)",
        "jaxloss.reduce(jaxloss.margin_ranking_loss(x1, x2, y, margin=0.5))", "signed"),
    Row("F.multi_margin_loss(scores, labels, p=2, margin=0.5, weight=w)",
        "jaxloss.reduce(jaxloss.multi_margin_loss(scores, labels, p=2, margin=0.5, "
        "class_weights=w))", "multiclass",
        "`weight=` is `class_weights=`; the mean divides by N, not by Σw"),
    Row("F.multilabel_margin_loss(scores, targets)",
        "jaxloss.reduce(jaxloss.multilabel_margin_loss(scores, targets))", "multilabel"),
    Row("F.multilabel_soft_margin_loss(logits, labels, weight=w)",
        "jaxloss.reduce(jaxloss.multilabel_soft_margin_loss(logits, labels, class_weights=w))",
        "multilabel", "`weight=` is `class_weights=`; the class mean divides by C, not by Σw"),
    # embeddings
    Row("F.cosine_embedding_loss(x1, x2, y, margin=0.3)",
        "jaxloss.reduce(jaxloss.cosine_embedding_loss(x1, x2, y, margin=0.3))", "pairs"),
    Row("F.cosine_similarity(x1, x2)", "jaxloss.cosine_similarity(x1, x2)", "pairs",
        "not a loss, not reduced"),
    Row("F.triplet_margin_loss(anchors, positives, negatives, margin=0.8, p=3, swap=True)",
        "jaxloss.reduce(jaxloss.triplet_margin_loss(anchors, positives, negatives, margin=0.8, "
        "norm_degree=3, swap=True))", "triplets", "`p=` is `norm_degree=` (optax's name)"),
    Row("F.triplet_margin_with_distance_loss(anchors, positives, negatives, margin=0.8)",
        "jaxloss.reduce(jaxloss.triplet_margin_with_distance_loss(anchors, positives, "
        "negatives, margin=0.8))", "triplets", "`distance_function=` is `distance_fn=`"),
    # sequences
    Row("F.ctc_loss(log_probs, targets, input_lengths, target_lengths)",
        "jaxloss.reduce(jaxloss.ctc_loss(jnp.swapaxes(log_probs, 0, 1), logit_paddings, "
        "targets, label_paddings) / target_lengths)", "ctc",
        "optax's layout: (N, T, C) logits and 0/1 paddings instead of lengths; PyTorch's mean "
        "divides each loss by its target length first", rtol=1e-4),
    Row("F.ctc_loss(log_probs, targets, input_lengths, target_lengths, reduction=\"sum\")",
        "jaxloss.reduce(jaxloss.ctc_loss(jnp.swapaxes(log_probs, 0, 1), logit_paddings, "
        "targets, label_paddings), \"sum\")", "ctc", rtol=1e-4),
    # torchvision.ops
    Row("torchvision.ops.sigmoid_focal_loss(logits, labels, reduction=\"mean\")",
        "jaxloss.reduce(jaxloss.sigmoid_focal_loss(logits, labels, alpha=0.25))", "focal",
        "torchvision's `alpha=0.25` default is jaxloss's `alpha=None` (no weighting): pass it"),
    Row("torchvision.ops.box_iou(boxes1, boxes2).diagonal()",
        "1 - jaxloss.box_iou_loss(boxes1, boxes2)", "boxes",
        "`box_iou` is the (N, M) matrix of every pair; jaxloss pairs the i-th boxes"),
    Row("torchvision.ops.generalized_box_iou_loss(boxes1, boxes2, reduction=\"mean\")",
        "jaxloss.reduce(jaxloss.generalized_box_iou_loss(boxes1, boxes2))", "boxes",
        "torchvision's default is `reduction=\"none\"`: the jaxloss call alone"),
    Row("torchvision.ops.distance_box_iou_loss(boxes1, boxes2, reduction=\"mean\")",
        "jaxloss.reduce(jaxloss.distance_box_iou_loss(boxes1, boxes2))", "boxes"),
    Row("torchvision.ops.complete_box_iou_loss(boxes1, boxes2, reduction=\"mean\")",
        "jaxloss.reduce(jaxloss.complete_box_iou_loss(boxes1, boxes2))", "boxes"),
]

# torch.nn.functional losses without a jaxloss row, with the reason (none at present).
TORCH_MISSING: dict[str, str] = {}

# Keras 3 (``keras.losses``, function forms: ``(y_true, y_pred)``, one value per sample). Stored
# values from Keras on its torch backend in float64 (tests/data/keras_reference.json).
_MEAN = "jnp.mean({}, axis=-1)"
KERAS_ROWS = [
    Row("keras.losses.mean_squared_error(targets, predictions)",
        _MEAN.format("jaxloss.squared_error(predictions, targets)"), "keras",
        "Keras means over the last axis; jaxloss's arguments are predictions first"),
    Row("keras.losses.mean_absolute_error(targets, predictions)",
        _MEAN.format("jaxloss.l1_loss(predictions, targets)"), "keras"),
    Row("keras.losses.mean_absolute_percentage_error(positive_targets, positive_predictions)",
        _MEAN.format("jaxloss.mean_absolute_percentage_error(positive_predictions, "
                     "positive_targets)"), "keras"),
    Row("keras.losses.mean_squared_logarithmic_error(positive_targets, positive_predictions)",
        _MEAN.format("jaxloss.mean_squared_logarithmic_error(positive_predictions, "
                     "positive_targets)"), "keras"),
    Row("keras.losses.huber(targets, predictions, delta=1.5)",
        _MEAN.format("jaxloss.huber_loss(predictions, targets, delta=1.5)"), "keras"),
    Row("keras.losses.log_cosh(targets, predictions)",
        _MEAN.format("jaxloss.log_cosh(predictions, targets)"), "keras"),
    Row("keras.losses.poisson(counts, rate)",
        _MEAN.format("jaxloss.poisson_nll_loss(rate, counts, log_input=False, eps=1e-7)"),
        "keras", "Keras's ε is 1e-7"),
    Row("keras.losses.hinge(y, scores)", _MEAN.format("jaxloss.hinge_loss(scores, y)"), "keras",
        "labels ±1 (Keras also maps 0/1 labels to ±1; jaxloss gives NaN for 0)"),
    Row("keras.losses.squared_hinge(y, scores)",
        _MEAN.format("jaxloss.squared_hinge_loss(scores, y)"), "keras"),
    Row("keras.losses.categorical_hinge(one_hot, logits)",
        "jaxloss.categorical_hinge_loss(logits, one_hot)", "keras"),
    Row("keras.losses.binary_crossentropy(binary_labels, binary_logits, from_logits=True)",
        _MEAN.format("jaxloss.sigmoid_binary_cross_entropy(binary_logits, binary_labels)"),
        "keras"),
    Row("keras.losses.binary_crossentropy(binary_labels, binary_probs)",
        _MEAN.format("jaxloss.binary_cross_entropy(binary_probs, binary_labels)"), "keras",
        "Keras clips the probabilities to [1e-7, 1 − 1e-7]; jaxloss is exact at 0 and 1"),
    Row("keras.losses.binary_focal_crossentropy(binary_labels, binary_logits, gamma=2.0, "
        "from_logits=True)",
        _MEAN.format("jaxloss.sigmoid_focal_loss(binary_logits, binary_labels, gamma=2.0)"),
        "keras", "Keras's `apply_class_balancing=True` with `alpha=a` is `alpha=a`"),
    Row("keras.losses.categorical_crossentropy(target_probs, logits, from_logits=True)",
        "jaxloss.softmax_cross_entropy(logits, target_probs)", "keras"),
    Row("keras.losses.categorical_crossentropy(one_hot, logits, from_logits=True, "
        "label_smoothing=0.1)",
        "jaxloss.softmax_cross_entropy(logits, one_hot, label_smoothing=0.1)", "keras"),
    Row("keras.losses.categorical_focal_crossentropy(target_probs, logits, alpha=0.25, "
        "gamma=2.0, from_logits=True)",
        "jaxloss.categorical_focal_loss(logits, target_probs, alpha=0.25, gamma=2.0)", "keras",
        "Keras's `alpha` defaults to 0.25, jaxloss's to none (1)"),
    Row("keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)",
        f"{_CE}(logits, labels)", "keras"),
    Row("keras.losses.kl_divergence(target_probs, probs)",
        "jaxloss.kl_divergence(jnp.log(probs), target_probs)", "keras",
        "Keras takes probabilities (clipped to [1e-7, 1]), jaxloss log-probabilities"),
    Row("keras.losses.cosine_similarity(targets, predictions)",
        "-jaxloss.cosine_similarity(predictions, targets)", "keras",
        "Keras's is the negative cosine (a loss)"),
]

# keras.losses functions without a row, with the reason.
KERAS_MISSING = {
    "circle": "no jaxloss counterpart",
    "categorical_generalized_cross_entropy": "no jaxloss counterpart",
    "ctc": "no row yet (jaxloss.ctc_loss has optax's layout; see the PyTorch table)",
    "dice": "no row yet (Keras's Dice reduces differently from optax's, see jaxloss.dice_loss)",
    "tversky": "no row yet (see jaxloss.tversky_loss's docstring for the mapping)",
}

# --- the pages -----------------------------------------------------------------------------------

_OPTAX_INTRO = """\
# Coming from optax

Where optax has a loss, jaxloss has the same name, the same signature (hyper-parameters
keyword-only) and the same numbers: replace `optax.losses.` by `jaxloss.`. Every row below is
executed by the test suite (`tests/test_guides.py`), which compares the two calls on the same
inputs, so the table cannot drift from the code.

What changes:

- **Extra keywords from PyTorch**: `ignore_index=`, `label_smoothing=`, `class_weights=`
  (PyTorch's `weight=`) on the softmax cross-entropies, `pos_weight=` on the sigmoid one,
  `swap=` on the triplet loss, `zero_infinity=` on CTC.
- **Bad input gives NaN, not a wrong number**: an integer label outside `[0, C)` (optax wraps
  −1 to the last class) or a ±1 label that is neither gives NaN for that example, with a zero
  gradient, so a masked mean of the rest is still right.
- **Shapes are checked**: predictions and targets of different shapes raise `ValueError`
  instead of broadcasting an (N,) against an (N, 1) into an (N, N) loss.
- **Reduction**: like optax, losses return per-example values (the few that optax reduces,
  `ntxent`, `ranking_softmax_loss`, `dice_loss`, stay reduced). Where you wrote `jnp.mean`,
  `jaxloss.reduce(loss)` does the same and adds masks and weights:
  `jaxloss.reduce(loss, where=mask)` is the mean over the kept entries (0, not NaN, when none
  is kept, with a zero gradient), `weights=w` a weighted mean (Σ w·ℓ / Σ w), `"sum"` the sum.
"""

_TORCH_INTRO = """\
# Coming from PyTorch

jaxloss has a function for each loss of `torch.nn.functional` (and `torchvision.ops`'s focal
and box losses, and most of Keras's). A jaxloss loss never reduces: it returns PyTorch's
`reduction="none"`, and `jaxloss.reduce` does the reduction, with the mask and weights that
PyTorch's `ignore_index` and `weight=` stand for. Every row below is executed by the test suite
(`tests/test_guides.py`): the jaxloss call runs on inputs stored with the value that PyTorch
(torchvision, Keras) computed from the call on the left (`tests/data/torch_reduced.json` and
`keras_reference.json`, written by `tests/data/make_torch_vectors.py`), so the table cannot
drift from the code.

## The reduction recipes

{recipes}

The obvious `jaxloss.reduce(loss)` after `ignore_index=-100` is *not* PyTorch's mean: it
counts the ignored rows (as zeros) in the denominator. And with class weights, PyTorch's mean is
the weighted mean: pass the weights of the labels to `reduce` (`weights=w[labels]`) and the
loss unweighted, not `class_weights=w`. Per-element `weight=` of `binary_cross_entropy`,
`multilabel_soft_margin_loss` and `multi_margin_loss` is different again: PyTorch multiplies
and then divides by the number of elements, so multiply (or pass `class_weights=`) and call
`jaxloss.reduce(loss)`.

Renamed keywords: `input` and `target` are positional (`predictions`/`logits`/`scores`,
`targets`/`labels`); `weight=` is `class_weights=`; `p=` is `norm_degree=` on the triplet loss;
`var` is `variance`; `distance_function=` is `distance_fn=`; `dim=1` (the class axis of (N, C,
...) inputs) is `axis=1`.
"""

RECIPES = [
    ("`reduction=\"none\"`", "the loss itself"),
    ("`reduction=\"mean\"` (the default)", "`jaxloss.reduce(loss)`"),
    ("`reduction=\"sum\"`", "`jaxloss.reduce(loss, \"sum\")`"),
    ("`reduction=\"batchmean\"` (`kl_div`)",
     "`jaxloss.reduce(jaxloss.kl_divergence(log_probs, targets))`: the KL sums over the "
     "classes, `reduce` averages the rows"),
    ("`ignore_index=-100` with `\"mean\"`", "`jaxloss.reduce(loss, where=labels != -100)`"),
    ("`weight=w` (per class) with `\"mean\"`",
     "`jaxloss.reduce(loss, where=labels != -100, weights=w[labels])`: divides by the summed "
     "weight of the kept labels, as PyTorch"),
    ("`weight=w` (per class) with `\"sum\"` or `\"none\"`", "`class_weights=w` on the loss"),
]

_KERAS_INTRO = """
## Keras

Keras's loss functions take `(y_true, y_pred)` and reduce over the last axis (one value per
sample); jaxloss's take predictions first and reduce nothing, so a Keras row is often the
jaxloss loss followed by `jnp.mean(..., axis=-1)`. The values compared are Keras 3's, computed
on its torch backend in float64 (`tests/data/keras_reference.json`).
"""


def _cell(text: str) -> str:
  return text.replace("|", "\\|")


def _table(rows: list[Row], left: str) -> list[str]:
  lines = [f"| {left} | jaxloss | notes |", "| --- | --- | --- |"]
  for row in rows:
    lines.append(f"| `{_cell(row.other)}` | `{_cell(row.jaxloss)}` | {_cell(row.note)} |")
  return lines


def _missing(missing: dict[str, str], what: str) -> list[str]:
  if not missing:
    return []
  lines = ["", f"{what} without a jaxloss counterpart yet:", ""]
  lines += [f"- `{name}`: {why}" for name, why in sorted(missing.items())]
  return lines


def optax_page() -> str:
  lines = [_OPTAX_INTRO, "## The table", "", *_table(OPTAX_ROWS, "optax"),
           *_missing(OPTAX_MISSING, "optax losses")]
  return "\n".join(lines) + "\n"


def torch_page() -> str:
  functional = [r for r in TORCH_ROWS if r.other.startswith("F.")]
  vision = [r for r in TORCH_ROWS if r.other.startswith("torchvision.")]
  recipes = ["| PyTorch | jaxloss |", "| --- | --- |"]
  recipes += [f"| {_cell(a)} | {_cell(b)} |" for a, b in RECIPES]
  lines = [_TORCH_INTRO.format(recipes="\n".join(recipes)), "## `torch.nn.functional`", "",
           "`F` is `torch.nn.functional`; a row without `reduction=` is PyTorch's default, "
           "`\"mean\"`.", "", *_table(functional, "PyTorch"),
           *_missing(TORCH_MISSING, "`torch.nn.functional` losses"), "",
           "## `torchvision.ops`", "",
           "torchvision's losses default to `reduction=\"none\"`.", "",
           *_table(vision, "torchvision"), _KERAS_INTRO, *_table(KERAS_ROWS, "Keras"),
           *_missing(KERAS_MISSING, "`keras.losses` functions")]
  return "\n".join(lines).rstrip("\n") + "\n"


PAGES = {"coming_from_optax.md": optax_page, "coming_from_pytorch.md": torch_page}

if __name__ == "__main__":
  for name, page in PAGES.items():
    (DOCS / name).write_text(page())
    print(f"wrote docs/{name}")
