"""Margin losses: 0-1, hinge (binary, squared, multiclass), perceptron, logistic, exponential.

Binary losses take scores ``s`` and labels ``y`` in {−1, +1} of the same shape (a scalar label is
allowed) and are functions of the margin m = y·s; the result has the scores' shape. Multiclass
losses take scores with a class axis (``axis=-1``) and integer labels of the scores' shape
without that axis. bf16/fp16 scores are computed in float32 and returned in their dtype.

The 0-1 loss is what a classifier is judged by; it is neither convex nor continuous and its
gradient is 0 everywhere, so it cannot be trained by gradient descent. The other losses are its
convex surrogates (hinge: SVMs; logistic: logistic regression; exponential: AdaBoost).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


def _margin_loss(fn: str, scores: ArrayLike, labels: ArrayLike, scores_name: str,
                 labels_name: str, of_margin: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """``of_margin(m)`` at the margin m = y·s, for labels ``y`` in {−1, +1} (see
  :func:`_numerics.pm1_inputs`), in the output dtype; NaN with a zero gradient at bad labels."""
  dtype, s, y, valid = _numerics.pm1_inputs(fn, scores, labels, scores_name, labels_name)
  return _numerics.nan_where_invalid(of_margin(y * s), valid).astype(dtype)


@_numerics.loss_jit()
def zero_one_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
  """The 0-1 loss: 1 if the margin y·s <= 0 (a mistake, or a score of exactly 0), else 0.

  Args:
    scores: floating array of any shape ``S`` (the sign is the predicted class).
    labels: −1 or +1, shape ``S`` or a scalar; integer or floating.

  Returns:
    The elementwise loss (0 or 1), shape ``S``, in the scores' dtype.

  Gradient: exactly 0 everywhere (a ``stop_gradient``): the loss is piecewise constant, so
  gradient descent cannot minimise it. That is why the surrogates in this module exist
  (:func:`hinge_loss`, :func:`logistic_loss`, :func:`exponential_loss`), each an upper bound
  on it.

  Edge cases:
    A score of 0 counts as a mistake (m = 0). A label that is neither −1 nor +1 gives NaN for
    that example and fails ``checkify`` naming the label. NaN scores propagate.

  References:
    V. Vapnik, "The Nature of Statistical Learning Theory", 1995 (the 0-1 risk);
    P. Bartlett, M. Jordan, J. McAuliffe, "Convexity, Classification, and Risk Bounds",
    JASA 2006 (its convex surrogates).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.zero_one_loss(jnp.array([2.0, -0.5, 0.0]), jnp.array([1, 1, -1]))
    Array([0., 1., 1.], dtype=float32)
  """
  scores = jax.lax.stop_gradient(jnp.asarray(scores))
  def mistake(m: jax.Array) -> jax.Array:
    return jnp.where(jnp.isnan(m), m, (m <= 0).astype(m.dtype))
  return _margin_loss("zero_one_loss", scores, labels, "scores", "labels", mistake)


@_numerics.loss_jit()
def hinge_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
  """Hinge loss (soft-margin SVM), ``max(0, 1 − y·s)`` (optax's ``hinge_loss``).

  Args:
    predictor_outputs: floating scores ``s``, any shape ``S``.
    targets: labels ``y`` in {−1, +1}, shape ``S`` or a scalar; integer or floating.

  Returns:
    The elementwise loss, shape ``S``, in the scores' dtype.

  Sub-gradient: d/ds = −y for m = y·s < 1, 0 for m >= 1, and 0 at the kink m = 1 (contract
  4; optax's ``jnp.maximum`` gives −y/2 there).

  Edge cases:
    A label outside {−1, +1} gives NaN for that example and fails
    ``checkify`` naming it; optax returns a finite number for it (a 0/1 label of 0 gives a
    loss of 1 whatever the score). Shapes must match (optax broadcasts (N,) against (N, 1)).
    NaN scores propagate.

  References:
    C. Cortes, V. Vapnik, "Support-Vector Networks", Machine Learning 1995;
    optax ``optax.losses.hinge_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.hinge_loss(jnp.array([2.0, 0.5, -1.0]), jnp.array([1, 1, 1]))
    Array([0. , 0.5, 2. ], dtype=float32)
  """
  # relu'(0) = 0: the sub-gradient 0 at m = 1.
  return _margin_loss("hinge_loss", predictor_outputs, targets, "predictor_outputs", "targets",
                      lambda m: _numerics.relu(1.0 - m))


@_numerics.loss_jit()
def squared_hinge_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
  """Squared hinge loss (L2-SVM), ``max(0, 1 − y·s)²``.

  Args:
    predictor_outputs: floating scores ``s``, any shape ``S``.
    targets: labels ``y`` in {−1, +1}, shape ``S`` or a scalar; integer or floating.

  Returns:
    The elementwise loss, shape ``S``, in the scores' dtype.

  Derivative: d/ds = −2y·max(0, 1 − m), continuous (0 at m = 1); the second derivative jumps
  at m = 1.

  Edge cases:
    Overflows to inf where 1 − m exceeds ~1.8e19 (the true value is above float32's maximum).
    A label outside {−1, +1} gives NaN for that example and fails ``checkify`` naming it.
    NaN scores propagate.

  References:
    Y. Tang, "Deep Learning using Linear Support Vector Machines", 2013; scikit-learn
    ``LinearSVC(loss="squared_hinge")``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.squared_hinge_loss(jnp.array([2.0, 0.5, -1.0]), jnp.array([1, 1, 1]))
    Array([0.  , 0.25, 4.  ], dtype=float32)
  """
  return _margin_loss("squared_hinge_loss", predictor_outputs, targets, "predictor_outputs",
                      "targets", lambda m: jnp.square(_numerics.relu(1.0 - m)))


@_numerics.loss_jit()
def perceptron_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
  """Perceptron loss, ``max(0, −y·s)`` (optax's ``perceptron_loss``).

  Args:
    predictor_outputs: floating scores ``s``, any shape ``S``.
    targets: labels ``y`` in {−1, +1}, shape ``S`` or a scalar; integer or floating.

  Returns:
    The elementwise loss, shape ``S``, in the scores' dtype.

  Sub-gradient: d/ds = −y for m = y·s < 0, 0 for m >= 0, and 0 at the kink m = 0 (contract
  4; optax's ``jnp.maximum`` gives −y/2 there).

  Edge cases:
    A label outside {−1, +1} gives NaN for that example and fails
    ``checkify`` naming it; optax returns a finite number for it. NaN scores propagate.

  References:
    F. Rosenblatt, "The Perceptron", Psychological Review 1958;
    optax ``optax.losses.perceptron_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.perceptron_loss(jnp.array([2.0, 0.5, -1.0]), jnp.array([1, 1, 1]))
    Array([0., 0., 1.], dtype=float32)
  """
  # relu'(0) = 0: the sub-gradient 0 at m = 0.
  return _margin_loss("perceptron_loss", predictor_outputs, targets, "predictor_outputs",
                      "targets", lambda m: _numerics.relu(-m))


@_numerics.loss_jit()
def logistic_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Logistic loss, ``log(1 + exp(−y·s))`` (PyTorch's ``soft_margin_loss`` per element).

  It is the negative log-likelihood of logistic regression with labels in {−1, +1}
  (= ``sigmoid_binary_cross_entropy`` with 0/1 labels).

  Args:
    scores: floating scores ``s``, any shape ``S``.
    labels: ``y`` in {−1, +1}, shape ``S`` or a scalar; integer or floating.

  Returns:
    The elementwise loss, shape ``S``, in the scores' dtype.

  Derivative: d/ds = −y·σ(−m), with σ the logistic sigmoid; smooth.

  Edge cases:
    Computed as softplus(−m) = logaddexp(−m, 0), so it is finite with finite gradients for
    every finite score (≈ −m for m = −1e4, ≈ e^{−m} for m = 1e4). A label outside
    {−1, +1} gives NaN for that example and fails ``checkify`` naming it. NaN scores propagate.

  References:
    D. R. Cox, "The regression analysis of binary sequences", JRSS B 1958;
    PyTorch ``torch.nn.functional.soft_margin_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(jnp.round(jaxloss.logistic_loss(jnp.array([2.0, 0.0, -1.0]), 1), 4))
    [0.1269 0.6931 1.3133]
  """
  return _margin_loss("logistic_loss", scores, labels, "scores", "labels",
                      lambda m: jax.nn.softplus(-m))


@_numerics.loss_jit()
def exponential_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
  """Exponential loss, ``exp(−y·s)``: the loss AdaBoost minimises stage-wise.

  Args:
    scores: floating scores ``s``, any shape ``S``.
    labels: ``y`` in {−1, +1}, shape ``S`` or a scalar; integer or floating.

  Returns:
    The elementwise loss, shape ``S``, in the scores' dtype.

  Derivative: d/ds = −y·exp(−m); smooth.

  Edge cases:
    Overflows to inf where m < −88.7 in float32 (e.g. exp(100) at m = −100): there the true
    value is above float32's maximum, and its gradient is infinite too. A single badly
    misclassified example therefore dominates a batch, the known weakness of AdaBoost with
    label noise. A label outside {−1, +1} gives NaN for that example and fails ``checkify``
    naming it. NaN scores propagate.

  References:
    Y. Freund, R. Schapire, "A decision-theoretic generalization of on-line learning and an
    application to boosting", JCSS 1997; J. Friedman, T. Hastie, R. Tibshirani, "Additive
    logistic regression", Ann. Statist. 2000.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> loss = jaxloss.exponential_loss(jnp.array([2.0, 0.0, -1.0]), 1)
    >>> print([f"{v:.4f}" for v in loss.tolist()])
    ['0.1353', '1.0000', '2.7183']
  """
  return _margin_loss("exponential_loss", scores, labels, "scores", "labels",
                      lambda m: jnp.exp(-m))


# --------------------------------------------------------------------------------------------
# Multiclass.
# --------------------------------------------------------------------------------------------

def _class_inputs(fn: str, scores: ArrayLike, labels: ArrayLike, axis: int,
                  scores_name: str = "scores"
                  ) -> tuple[jnp.dtype, jax.Array, jax.Array, jax.Array, jax.Array]:
  """Checks scores and integer labels (the shared class-axis checks); returns
  ``(out_dtype, s, y, one_hot, valid)``.

  ``s`` has the class axis last and the compute dtype; ``y`` is the label clipped into range
  (the caller makes the invalid rows NaN, with a zero gradient, through ``valid``).
  """
  inputs = _numerics.class_inputs(fn, scores, axis, name=scores_name)
  checked = _numerics.class_labels(fn, labels, inputs.x, inputs.axis, x_name=scores_name)
  s = jnp.moveaxis(inputs.x, inputs.axis, -1)
  y = jnp.squeeze(checked.index, inputs.axis)
  num_classes = s.shape[-1]
  one_hot = jax.lax.broadcasted_iota(y.dtype, y.shape + (num_classes,), y.ndim) == y[..., None]
  return inputs.dtype, s, y, one_hot, checked.valid


def _label_score(s: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.take_along_axis(s, y[..., None], axis=-1)[..., 0]


def _crammer_singer(fn: str, scores: ArrayLike, labels: ArrayLike, axis: int,
                    margin: float) -> jax.Array:
  """``max(0, margin + max_{j≠y} s_j − s_y)``, the max's ties going to the lowest index.

  The label wins ties with the best other class (the loss is 0 there and so is the
  gradient), the binary hinge/perceptron rule at its kink; ties among the other classes send
  the gradient to the lowest class index (an ``argmax``, where ``jnp.max`` splits it).
  """
  dtype, s, y, one_hot, valid = _class_inputs(fn, scores, labels, axis)
  others = jnp.where(one_hot, -jnp.inf, s)
  best_other = _label_score(others, jnp.argmax(others, axis=-1))
  # (s_j − s_y) first: with |s| = 1e30, margin + s_j would round the margin away.
  loss = _numerics.relu(margin + (best_other - _label_score(s, y)))
  return _numerics.nan_where_invalid(loss, valid).astype(dtype)


@_numerics.loss_jit(static=("axis",))
def multiclass_hinge_loss(scores: ArrayLike, labels: ArrayLike, *, axis: int = -1) -> jax.Array:
  """Multiclass hinge loss of Crammer and Singer (optax's ``multiclass_hinge_loss``).

  .. math::
    \\ell = \\max_j (s_j + 1 - [j = y]) - s_y
          = \\max\\big(0,\\, 1 + \\max_{j \\ne y} s_j - s_y\\big)

  Args:
    scores: floating scores with a class axis of size ``C``.
    labels: integer class indices in [0, C), the scores' shape without the class axis.
    axis: static; the class axis.

  Returns:
    The loss, the scores' shape without the class axis, in the scores' dtype.

  Sub-gradient: e_k − e_y where k = argmax_{j≠y} s_j when the loss is positive, else 0. At the
  kink (s_y = 1 + max_{j≠y} s_j) it is 0 (contract 4); ties among the other classes go to the
  lowest index k. optax differentiates ``jnp.max``, which splits the gradient evenly among
  tied entries there.

  Edge cases:
    With one class the loss is 0. A label outside [0, C) gives NaN for
    that example and fails ``checkify`` naming it; optax's one-hot turns it into a finite
    wrong loss (−1 gives ``max_j s_j + 1``). NaN scores propagate.

  References:
    K. Crammer, Y. Singer, "On the Algorithmic Implementation of Multiclass Kernel-based
    Vector Machines", JMLR 2001; optax ``optax.losses.multiclass_hinge_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> scores = jnp.array([[3.0, 1.0, 0.5], [0.25, 0.5, 0.0]])
    >>> jaxloss.multiclass_hinge_loss(scores, jnp.array([0, 2]))
    Array([0. , 1.5], dtype=float32)
  """
  return _crammer_singer("multiclass_hinge_loss", scores, labels, axis, 1.0)


@_numerics.loss_jit(static=("axis",))
def multiclass_perceptron_loss(scores: ArrayLike, labels: ArrayLike, *,
                               axis: int = -1) -> jax.Array:
  """Multiclass perceptron loss, ``max_j s_j − s_y`` (optax's ``multiclass_perceptron_loss``).

  Equal to ``max(0, max_{j≠y} s_j − s_y)``: 0 when the label has the top score.

  Args:
    scores: floating scores with a class axis of size ``C``.
    labels: integer class indices in [0, C), the scores' shape without the class axis.
    axis: static; the class axis.

  Returns:
    The loss, the scores' shape without the class axis, in the scores' dtype.

  Sub-gradient: e_k − e_y with k = argmax_{j≠y} s_j when another class scores above the
  label, else 0. When the label ties for the top score the loss is at its kink and the
  gradient is 0 (contract 4, like :func:`perceptron_loss` at m = 0); ties among other classes
  go to the lowest index. optax splits the gradient evenly among tied maxima there.

  Edge cases:
    A label outside [0, C) gives NaN for that example and fails
    ``checkify`` naming it (optax returns ``max_j s_j`` for it). NaN scores propagate.

  References:
    M. Collins, "Discriminative Training Methods for Hidden Markov Models: Theory and
    Experiments with Perceptron Algorithms", EMNLP 2002;
    optax ``optax.losses.multiclass_perceptron_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> scores = jnp.array([[3.0, 1.0, 0.5], [0.25, 0.5, 0.0]])
    >>> jaxloss.multiclass_perceptron_loss(scores, jnp.array([0, 2]))
    Array([0. , 0.5], dtype=float32)
  """
  return _crammer_singer("multiclass_perceptron_loss", scores, labels, axis, 0.0)


@_numerics.loss_jit(static=("axis",))
def multiclass_zero_one_loss(logits: ArrayLike, labels: ArrayLike, *, axis: int = -1
                             ) -> jax.Array:
  """Multiclass 0-1 loss: 1 if ``argmax_j logits_j != label`` else 0.

  Args:
    logits: floating scores with a class axis of size ``C``.
    labels: integer class indices in [0, C), the logits' shape without the class axis.
    axis: static; the class axis.

  Returns:
    The loss (0 or 1), the logits' shape without the class axis, in the logits' dtype; its
    mean over a batch is the error rate (one minus the accuracy).

  Gradient: exactly 0 everywhere (a ``stop_gradient``): it cannot be trained with gradients;
  train a surrogate (cross-entropy, :func:`multiclass_hinge_loss`) and report this one.

  Edge cases:
    Tied top scores go to the lowest class index (``argmax``), so a tie is correct only when
    the label is the first of the tied classes. A label outside [0, C) gives NaN for that
    example and fails ``checkify`` naming it. A NaN logit makes its example NaN.

  References:
    The classification error; R. Duda, P. Hart, "Pattern Classification", 1973.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> logits = jnp.array([[3.0, 1.0, 0.5], [0.25, 0.5, 0.0]])
    >>> jaxloss.multiclass_zero_one_loss(logits, jnp.array([0, 2]))
    Array([0., 1.], dtype=float32)
  """
  fn = "multiclass_zero_one_loss"
  logits = jax.lax.stop_gradient(jnp.asarray(logits))
  dtype, s, y, _, valid = _class_inputs(fn, logits, labels, axis, "logits")
  wrong = (jnp.argmax(s, axis=-1) != y).astype(s.dtype)
  wrong = jnp.where(jnp.any(jnp.isnan(s), axis=-1), jnp.nan, wrong)
  return _numerics.nan_where_invalid(wrong, valid).astype(dtype)


@_numerics.loss_jit(static=("p", "axis"))
def multi_margin_loss(scores: ArrayLike, labels: ArrayLike, *, p: int = 1,
                      margin: ArrayLike = 1.0, class_weights: ArrayLike | None = None,
                      axis: int = -1) -> jax.Array:
  """Multiclass margin loss of Weston and Watkins (PyTorch's ``multi_margin_loss``).

  .. math::
    \\ell = \\frac{w_y}{C} \\sum_{j \\ne y} \\max(0, \\text{margin} - s_y + s_j)^p

  Every class that comes within ``margin`` of the label is penalised (Crammer–Singer's
  :func:`multiclass_hinge_loss` penalises only the best one).

  Args:
    scores: floating scores with a class axis of size ``C``.
    labels: integer class indices in [0, C), the scores' shape without the class axis.
    p: static, 1 or 2 (as PyTorch).
    margin: traced float (PyTorch's ``margin``).
    class_weights: optional per-class weights of shape ``(C,)`` (PyTorch's ``weight``); the
      label's weight multiplies the example.
    axis: static; the class axis.

  Returns:
    The loss, the scores' shape without the class axis, in the scores' dtype (PyTorch's
    ``reduction="none"``).

  Sub-gradient: each term contributes (w_y/C)·p·h^{p−1}·(e_j − e_y), with
  h = margin − s_y + s_j, where h > 0, and 0 at h = 0 (contract 4: the kink of max(0, ·)).

  Edge cases:
    A label outside [0, C) gives NaN for that example and fails
    ``checkify`` naming it (PyTorch raises). NaN scores propagate.

  References:
    J. Weston, C. Watkins, "Support Vector Machines for Multi-Class Pattern Recognition",
    ESANN 1999; PyTorch ``torch.nn.functional.multi_margin_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> scores = jnp.array([[0.1, 0.2, 0.4, 0.8]])
    >>> print(jnp.round(jaxloss.multi_margin_loss(scores, jnp.array([3])), 4))  # PyTorch's example
    [0.325]
  """
  fn = "multi_margin_loss"
  if p not in (1, 2):
    raise ValueError(f"{fn}(p=...) must be 1 or 2, got {p!r}")
  dtype, s, y, one_hot, valid = _class_inputs(fn, scores, labels, axis)
  num_classes = s.shape[-1]
  # relu'(0) = 0: the sub-gradient 0 at the kink h = 0.
  h = _numerics.relu(jnp.asarray(margin, s.dtype) + (s - _label_score(s, y)[..., None]))
  # Divided by C before the sum (and, for p = 2, before the square's second factor): the
  # sum of C squares near float32's maximum would overflow where the mean does not.
  h = h * (h / num_classes) if p == 2 else h / num_classes
  loss = jnp.sum(jnp.where(one_hot, jnp.zeros((), s.dtype), h), axis=-1)
  if class_weights is not None:
    w = _numerics.per_class(fn, "class_weights", class_weights, s, s.ndim - 1, x_name="scores")
    loss = loss * w.reshape(-1)[y]
  return _numerics.nan_where_invalid(loss, valid).astype(dtype)


# --------------------------------------------------------------------------------------------
# PyTorch's and Keras's pairwise and multilabel margins.
# --------------------------------------------------------------------------------------------

@_numerics.loss_jit()
def margin_ranking_loss(x1: ArrayLike, x2: ArrayLike, labels: ArrayLike, *,
                        margin: ArrayLike = 0.0) -> jax.Array:
  """Margin ranking loss, ``max(0, −y·(x1 − x2) + margin)`` (PyTorch's ``margin_ranking_loss``).

  ``y = +1`` asks for ``x1`` to rank above ``x2`` by ``margin``, ``y = −1`` for the reverse.

  Args:
    x1: floating scores, any shape ``S``.
    x2: floating scores of shape ``S``.
    labels: −1 or +1 (integer, floating or boolean: True is +1), shape ``S`` or a scalar.
    margin: traced float (PyTorch's ``margin``).

  Returns:
    The loss, shape ``S``, in the result dtype of the floating inputs.

  Sub-gradient: −y in ``x1`` and +y in ``x2`` where the hinge is active, and 0 at the kink
  y·(x1 − x2) = margin (the ``max(0, ·)`` rule).

  Edge cases:
    A label that is neither −1 nor +1 gives NaN for that pair with a zero gradient, and fails
    ``checkify`` naming it. NaN scores propagate.

  References:
    PyTorch ``torch.nn.functional.margin_ranking_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> loss = jaxloss.margin_ranking_loss(jnp.array([1.0, 0.2]), jnp.array([0.5, 0.6]),
    ...                                    jnp.array([1, 1]), margin=0.1)
    >>> print(jnp.round(loss, 4))
    [0.  0.5]
  """
  fn = "margin_ranking_loss"
  out, (a, b) = _numerics.floating_inputs(fn, ("x1", "x2"), (x1, x2))
  _, gap, y, valid = _numerics.pm1_inputs(fn, a - b, labels, "x1", "labels")
  loss = _numerics.relu(jnp.asarray(margin, gap.dtype) - y * gap)
  return _numerics.nan_where_invalid(loss, valid).astype(out)


@_numerics.loss_jit()
def hinge_embedding_loss(distances: ArrayLike, labels: ArrayLike, *,
                         margin: ArrayLike = 1.0) -> jax.Array:
  """Hinge embedding loss: ``x`` for similar pairs (y = 1), ``max(0, margin − x)`` for dissimilar
  ones (y = −1) (PyTorch's ``hinge_embedding_loss``).

  Args:
    distances: floating distances ``x`` (e.g. an L1 pairwise distance), any shape ``S``.
    labels: +1 (similar) or −1 (dissimilar), integer, floating or boolean, shape ``S`` or a
      scalar.
    margin: traced float.

  Returns:
    The loss, shape ``S``, in the result dtype of the floating inputs.

  Sub-gradient: 1 for y = 1; −1 for y = −1 where x < margin, and 0 at x = margin.

  Edge cases:
    A label that is neither −1 nor +1 gives NaN with a zero gradient and fails ``checkify``
    naming it. NaN distances propagate.

  References:
    PyTorch ``torch.nn.functional.hinge_embedding_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.hinge_embedding_loss(jnp.array([0.3, 0.3, 2.0]), jnp.array([1, -1, -1]))
    Array([0.3, 0.7, 0. ], dtype=float32)
  """
  fn = "hinge_embedding_loss"
  dtype, x, y, valid = _numerics.pm1_inputs(fn, distances, labels, "distances", "labels")
  loss = jnp.where(y == 1, x, _numerics.relu(jnp.asarray(margin, x.dtype) - x))
  return _numerics.nan_where_invalid(loss, valid).astype(dtype)


@_numerics.loss_jit(static=("axis",))
def categorical_hinge_loss(scores: ArrayLike, labels: ArrayLike, *, axis: int = -1) -> jax.Array:
  """Categorical hinge loss, ``max(0, neg − pos + 1)`` (Keras's ``CategoricalHinge``).

  .. math::
    \\text{pos} = \\sum_j y_j s_j, \\qquad \\text{neg} = \\max_j (1 - y_j) s_j

  Args:
    scores: floating scores with a class axis ``axis``.
    labels: one-hot (or probability) targets of the scores' shape, floating.
    axis: static; the class axis.

  Returns:
    The loss, the scores' shape without ``axis``, in the result dtype of the floating inputs.

  Sub-gradient: where the hinge is active, (1 − y_k)·e_k − y in the scores, k the arg max of
  (1 − y)·s with ties to the lowest class index; 0 at the kink neg − pos = −1.

  Edge cases:
    As Keras, ``neg`` takes the label's own entry as (1 − y)·s = 0 for a one-hot label, so
    ``neg`` is never below 0. NaN scores propagate.

  References:
    Keras ``keras.losses.categorical_hinge``; K. Crammer, Y. Singer, "On the algorithmic
    implementation of multiclass kernel-based vector machines", JMLR 2001.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.categorical_hinge_loss(jnp.array([[0.6, 0.4], [0.4, 0.6]]),
    ...                                jnp.array([[0.0, 1.0], [0.0, 0.0]]))
    Array([1.2, 1.6], dtype=float32)
  """
  fn = "categorical_hinge_loss"
  out, (s, y) = _numerics.floating_inputs(fn, ("scores", "labels"), (scores, labels))
  axis = _numerics.canonical_axis(fn, axis, s.ndim, name="scores")
  pos = jnp.sum(y * s, axis=axis)
  others = (1.0 - y) * s
  k = jnp.argmax(others, axis=axis, keepdims=True)  # ties to the lowest index
  neg = jnp.take_along_axis(others, k, axis=axis).squeeze(axis)
  return _numerics.relu(neg - pos + 1.0).astype(out)


@_numerics.loss_jit()
def multilabel_margin_loss(scores: ArrayLike, targets: ArrayLike) -> jax.Array:
  """Multilabel margin loss (PyTorch's ``multilabel_margin_loss``).

  .. math::
    \\ell = \\frac{1}{C} \\sum_{j \\in T} \\sum_{i \\notin T} \\max(0, 1 - (s_j - s_i))

  with ``T`` the target classes: the leading entries of ``targets`` up to the first −1 (the
  padding; what follows it is ignored, as PyTorch).

  Args:
    scores: floating scores of shape ``S + (C,)`` (classes last, as PyTorch).
    targets: integer class indices of the same shape, padded with −1.

  Returns:
    The loss, shape ``S``, in the scores' dtype.

  Sub-gradient: each active term adds (e_i − e_j)/C; 0 at the kink s_j − s_i = 1.

  Edge cases:
    A row with no target (−1 first) has loss 0 and zero gradient. A target index ≥ C, or a
    negative one other than the −1 padding, before the first −1 gives NaN for that row with a
    zero gradient and fails ``checkify`` naming it (PyTorch raises). NaN scores propagate.

  References:
    PyTorch ``torch.nn.functional.multilabel_margin_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> s = jnp.array([[0.1, 0.2, 0.4, 0.8]])
    >>> print(f"{float(jaxloss.multilabel_margin_loss(s, jnp.array([[3, 0, -1, 1]]))[0]):.4f}")
    0.8500
  """
  fn = "multilabel_margin_loss"
  x = _numerics.check_floating(fn, "scores", scores)
  y = _numerics.wide_labels(_numerics.check_integer(fn, "targets", targets))
  if x.ndim < 1 or y.shape != x.shape:
    raise ValueError(f"{fn}: `scores` and `targets` must have the same shape (..., C), got "
                     f"scores.shape={x.shape} and targets.shape={y.shape}")
  dtype = x.dtype
  x = x.astype(_numerics.compute_dtype(x))
  num_classes = x.shape[-1]
  listed = jnp.cumprod((y != -1).astype(jnp.int32), axis=-1).astype(bool)  # before the first −1
  valid_entry = ~listed | ((y >= 0) & (y < num_classes))
  _numerics.debug_check_labels(fn, "targets", y, valid_entry, f"in [0, {num_classes}) or -1")
  valid = jnp.all(valid_entry, axis=-1)
  index = jnp.where(listed & valid_entry, y, 0)
  iota = jax.lax.broadcasted_iota(index.dtype, index.shape + (num_classes,), index.ndim)
  is_target = jnp.any((iota == index[..., None]) & listed[..., None], axis=-2)  # (..., C)
  x_target = jnp.take_along_axis(x, index, axis=-1)  # (..., C): s_{y_j}
  h = _numerics.relu(1.0 - (x_target[..., :, None] - x[..., None, :]))  # (..., j, i)
  active = listed[..., :, None] & ~is_target[..., None, :]
  loss = jnp.sum(jnp.where(active, h / num_classes, jnp.zeros((), x.dtype)), axis=(-2, -1))
  return _numerics.nan_where_invalid(loss, valid).astype(dtype)
