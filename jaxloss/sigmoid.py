"""Binary (sigmoid) family: sigmoid cross-entropy, binary cross-entropy on probabilities, and the
sigmoid focal loss.

Every loss is elementwise: ``logits`` (or ``probs``) and ``labels`` have the same shape (a
scalar label is allowed) and the result has that shape. Labels are 0/1 or probabilities in
[0, 1], integer or floating (as optax). bf16/fp16 inputs are computed in float32 and returned in
``jnp.result_type`` of the floating inputs (bf16 logits with float32 labels give float32).

Two closed-form derivatives (``jax.custom_jvp``, forward and reverse mode), ``_sigmoid_xent``
and ``_sigmoid_focal``, share one ``e = exp(−|x|)``: it gives σ(x) = 1/(1 + e) or e/(1 + e),
1 − σ(x), and softplus(±x) = max(±x, 0) + log1p(e), and the tangent reuses them.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike


class _Sigmoid(NamedTuple):
  """σ(x) and the logs of both classes' probabilities, without cancellation."""
  p: jax.Array    # σ(x)
  q: jax.Array    # 1 − σ(x)
  nlp: jax.Array  # −log σ(x) = softplus(−x)
  nlq: jax.Array  # −log(1 − σ(x)) = softplus(x)
  log1pe: jax.Array  # log1p(e^{−|x|}), the part the two softplus share


def _sigmoid(x: jax.Array, *, second_order: bool = False) -> _Sigmoid:
  """From e = exp(−|x|): σ(x) = 1/(1 + e) for x ≥ 0 and e/(1 + e) below;
  softplus(∓x) = max(∓x, 0) + log1p(e).

  ``second_order``: for a tangent rule that differentiates softplus itself (the focal loss's;
  the cross-entropy's uses σ and 1 − σ only), max(∓x, 0) is written ½|x| ∓ ½x (exact, no
  overflow), so that at x = 0 every piece takes the side x ≥ 0 as ``jnp.abs``'s derivative
  does and softplus(x)' = 1 − ½ = σ(0): ``jnp.maximum`` splits its tie's derivative in half
  (softplus(x)' = 0 at 0). The max form stays the default: it is the faster forward on XLA
  CPU (the ½|x| form costs one more buffer under ``value_and_grad``; measured 5–10%). No
  ``where`` on x itself in either: a select feeding these chains stops XLA CPU's
  vectorization (measured 3–5× slower)."""
  a = jnp.abs(x)
  e = jnp.exp(-a)
  inv = 1.0 / (1.0 + e)
  positive = x >= 0
  p = jnp.where(positive, inv, e * inv)
  q = jnp.where(positive, e * inv, inv)
  log1pe = jnp.log1p(e)
  if second_order:
    half_a, half_x = 0.5 * a, 0.5 * x
    return _Sigmoid(p, q, half_a - half_x + log1pe, half_a + half_x + log1pe, log1pe)
  return _Sigmoid(p, q, jnp.maximum(-x, 0.0) + log1pe, jnp.maximum(x, 0.0) + log1pe, log1pe)


class _BceTerms(NamedTuple):
  sig: _Sigmoid
  wy: jax.Array    # w·y, the positive term's coefficient (y without pos_weight)
  loss: jax.Array  # w·y·softplus(−x) + (1 − y)·softplus(x)


def _bce_terms(x: jax.Array, y: jax.Array, pos_weight: jax.Array | None, *,
               second_order: bool = False) -> _BceTerms:
  s = _sigmoid(x, second_order=second_order)
  if pos_weight is None and not second_order:
    # y·softplus(−x) + (1 − y)·softplus(x) = log1p(e^{−|x|}) + x·(H(x) − y), H(x) = ½(1 + sign x)
    # the step (H(0) = ½ meets x = 0): for y in [0, 1] two non-negative terms, so it keeps its
    # relative accuracy at every logit (softplus(x) − y·x cancels for confident correct
    # logits: at x = 15, y = 1 it gives 0 where the truth is 3.06e-7). Without a select or a
    # max it is also the fastest form on XLA CPU: value and sum fuse into one kernel, and
    # forward+backward is 3× faster than the two-softplus form (bench/NOTES.md). Only for
    # values that autodiff never sees: d(x·sign x)/dx is 0 at x = 0, not jnp.abs's 1.
    return _BceTerms(s, y, s.log1pe + x * (0.5 + 0.5 * jnp.sign(x) - y))
  wy = y if pos_weight is None else pos_weight * y
  return _BceTerms(s, wy, wy * s.nlp + (1.0 - y) * s.nlq)


@jax.custom_jvp
def _sigmoid_xent(x: jax.Array, y: jax.Array, pos_weight: jax.Array | None) -> jax.Array:
  """−w·y·log σ(x) − (1 − y)·log(1 − σ(x)), w = ``pos_weight`` (1 when ``None``)."""
  return _bce_terms(x, y, pos_weight).loss


@functools.partial(_sigmoid_xent.defjvp, symbolic_zeros=True)
def _sigmoid_xent_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
                      ) -> tuple[jax.Array, jax.Array]:
  x, y, pos_weight = primals
  dx, dy, dw = tangents
  (p, q, nlp, nlq, _), wy, _ = _bce_terms(x, y, pos_weight)
  loss = _sigmoid_xent(x, y, pos_weight)  # through this rule again at every order
  tangent = jnp.zeros_like(loss)
  if _numerics.nonzero(dx):
    # d/dx = (1 − y)·σ(x) − w·y·(1 − σ(x)) (= σ(x) − y for w = 1), with 1 − σ(x) exact.
    tangent = tangent + ((1.0 - y) * p - wy * q) * dx
  if _numerics.nonzero(dy):
    # d/dy = w·softplus(−x) − softplus(x), which is −x for w = 1.
    tangent = tangent + (-x if pos_weight is None else pos_weight * nlp - nlq) * dy
  if pos_weight is not None and _numerics.nonzero(dw):
    tangent = tangent + y * nlp * dw
  return loss, tangent


class _FocalTerms(NamedTuple):
  sig: _Sigmoid
  ce: jax.Array      # the sigmoid cross-entropy −log p_t
  base: jax.Array    # 1 − p_t = y(1 − σ(x)) + (1 − y)σ(x)
  weight: jax.Array  # (1 − p_t)^γ


def _focal_terms(x: jax.Array, y: jax.Array, gamma: jax.Array) -> _FocalTerms:
  bce = _bce_terms(x, y, None, second_order=True)
  base = y * bce.sig.q + (1.0 - y) * bce.sig.p
  # (1 − p_t)^γ through a double where: at 1 − p_t = 0 the weight is the constant 0^γ
  # (1 at γ = 0: exactly the cross-entropy), so differentiating the tangent rule (a Hessian)
  # never meets power's γ·0^(γ−1) = 0·inf.
  positive = base > 0
  weight = jnp.where(positive, jnp.power(jnp.where(positive, base, jnp.ones_like(base)), gamma),
                     (gamma == 0).astype(base.dtype))
  return _FocalTerms(bce.sig, bce.loss, base, weight)


@jax.custom_jvp
def _sigmoid_focal(x: jax.Array, y: jax.Array, gamma: jax.Array) -> jax.Array:
  """(1 − p_t)^γ · BCE(x, y), 1 − p_t = y(1 − σ(x)) + (1 − y)σ(x)."""
  terms = _focal_terms(x, y, gamma)
  return terms.weight * terms.ce


@functools.partial(_sigmoid_focal.defjvp, symbolic_zeros=True)
def _sigmoid_focal_jvp(primals: tuple[jax.Array, ...], tangents: tuple[Any, ...]
                       ) -> tuple[jax.Array, jax.Array]:
  x, y, gamma = primals
  dx, dy, dgamma = tangents
  (p, q, nlp, nlq, _), ce, base, weight = _focal_terms(x, y, gamma)
  loss = weight * ce
  tangent = jnp.zeros_like(loss)
  positive = base > 0
  safe_base = jnp.where(positive, base, jnp.ones_like(base))
  if _numerics.nonzero(dx):
    # d(1 − p_t)/dx = (1 − 2y)σ(1 − σ), so d/dx = γ·w·(1 − 2y)·r·CE + w·(σ − y) with
    # r = σ(1 − σ)/(1 − p_t): written as the ratio, the (1 − p_t)^(γ−1) = inf that meets
    # σ(1 − σ) = 0 at saturated logits with γ < 1 (optax #1267) never appears.
    # 1 − p_t = c·m + d·(1 − m) with m = max(σ, 1 − σ) ≥ ½ and c the label's weight on m
    # (c = 1 − y for x ≥ 0, y below): 1 − p_t ≥ c/2, so where c ≠ 0 the quotient and its own
    # derivative (in a Hessian: ·/(1 − p_t)²) are finite. Where c = 0 (a hard label on the
    # logit's side: y = 1, x ≥ 0 or y = 0, x < 0) 1 − p_t underflows at saturated logits and
    # its square from |x| ≈ 44 in float32; there r is exactly σ for y = 1 and 1 − σ for y = 0
    # (their limit 1 included), taken through a double where so the quotient's derivative
    # never meets 0/0 (jax #1052).
    hard = jnp.where(x >= 0, 1.0 - y, y) == 0
    ratio = jnp.where(hard, y * p + (1.0 - y) * q,
                      p * q / jnp.where(hard, jnp.ones_like(base), base))
    tangent = tangent + weight * (gamma * (1.0 - 2.0 * y) * ratio * ce
                                  + (1.0 - y) * p - y * q) * dx
  if _numerics.nonzero(dy):
    # d(1 − p_t)/dy = (1 − 2σ); the BCE's d/dy = log(σ(x)/(1 − σ(x))) = nlq − nlp.
    grow = jnp.where(positive, weight / safe_base, jnp.zeros_like(base))
    tangent = tangent + (gamma * grow * (q - p) * ce + weight * (nlp - nlq)) * dy
  if _numerics.nonzero(dgamma):
    log_base = jnp.where(positive, jnp.log(safe_base), jnp.zeros_like(base))
    tangent = tangent + weight * log_base * ce * dgamma
  return loss, tangent


@jax.custom_jvp
def _xlog1mp(w: jax.Array, p: jax.Array) -> jax.Array:
  """w·log(1 − p) as w·log1p(−p) (exact for p near 0, where 1 − p rounds), 0 where w = 0."""
  zero = w == 0
  return jnp.where(zero, jnp.zeros_like(w), w * jnp.log1p(-jnp.where(zero, jnp.zeros_like(p), p)))


@functools.partial(_xlog1mp.defjvp, symbolic_zeros=True)
def _xlog1mp_jvp(primals: tuple[jax.Array, jax.Array], tangents: tuple[Any, Any]
                 ) -> tuple[jax.Array, jax.Array]:
  (w, p), (dw, dp) = primals, tangents
  out = _xlog1mp(w, p)
  # d/dw = log(1 − p), also at w = 0 (the soft-label derivative); d/dp = −w/(1 − p), 0 where
  # w = 0 (p is replaced by 0 there, as in the value).
  safe_p = jnp.where(w == 0, jnp.zeros_like(p), p)
  tangent = jnp.zeros_like(out)
  if _numerics.nonzero(dw):
    tangent = tangent + dw * jnp.log1p(-p)
  if _numerics.nonzero(dp):
    tangent = tangent + _numerics.xmul(w, -dp / (1.0 - safe_p))
  return out, tangent


def _binary_inputs(fn: str, logits: ArrayLike, labels: ArrayLike
                   ) -> tuple[jnp.dtype, jax.Array, jax.Array]:
  y0 = jnp.asarray(labels)
  if y0.dtype == jnp.bool_:  # boolean labels are 0/1 (as optax); they do not set the dtype
    y0 = y0.astype(jnp.int32)
  dtype, x, y = _numerics.elementwise_inputs(fn, logits, y0, "logits", "labels")
  return dtype, x, jnp.broadcast_to(y, x.shape)


def _trailing_weight(fn: str, name: str, value: ArrayLike, x: jax.Array, x_name: str
                     ) -> jax.Array:
  """A floating weight (``pos_weight``, ``weight``) in ``x``'s dtype that broadcasts against
  the trailing axes of ``x`` (NumPy's rule), reshaped to ``x``'s rank."""
  w = _numerics.check_floating(fn, name, value).astype(x.dtype)
  if not _numerics.broadcasts_to(w.shape, x.shape):
    raise ValueError(f"{fn}: `{name}` must broadcast against the trailing axes of "
                     f"`{x_name}`, got {name}.shape={w.shape} and {x_name}.shape={x.shape}")
  return w.reshape((1,) * (x.ndim - w.ndim) + w.shape)


def _smooth_binary(y: jax.Array, label_smoothing: ArrayLike) -> jax.Array:
  """Keras' binary label smoothing, y·(1 − ε) + ε/2: both classes' labels move ε/2 toward ½
  (exactly y at ε = 0)."""
  eps = jnp.asarray(label_smoothing, y.dtype)
  return y * (1.0 - eps) + 0.5 * eps


def _sigmoid_bce(x: jax.Array, y: jax.Array, pos_weight: jax.Array | None,
                 weight: jax.Array | None) -> jax.Array:
  """The weighted sigmoid cross-entropy core, shared by :func:`sigmoid_binary_cross_entropy`
  and :func:`multilabel_soft_margin_loss`: ``weight · _sigmoid_xent(x, y, pos_weight)``
  (``x``, ``y`` of one shape; the weights already at ``x``'s rank)."""
  loss = _sigmoid_xent(x, y, pos_weight)
  return loss if weight is None else weight * loss


@_numerics.loss_jit(bounds={"label_smoothing": _numerics.Range(low=0.0, high=1.0)})
def sigmoid_binary_cross_entropy(logits: ArrayLike, labels: ArrayLike, *,
                                 pos_weight: ArrayLike | None = None,
                                 weight: ArrayLike | None = None,
                                 label_smoothing: ArrayLike = 0.0) -> jax.Array:
  """Sigmoid (binary) cross-entropy on logits, with PyTorch's ``pos_weight`` and ``weight`` and
  Keras' ``label_smoothing``.

  .. math::
    \\ell = v \\left[-w\\, \\tilde y \\log\\sigma(x) - (1 - \\tilde y)\\log(1 - \\sigma(x))\\right]
          = v \\left[w\\, \\tilde y\\, \\mathrm{softplus}(-x)
                   + (1 - \\tilde y)\\, \\mathrm{softplus}(x)\\right], \\qquad
    \\tilde y = y (1 - \\varepsilon) + \\varepsilon / 2

  Args:
    logits: floating array of shape ``S``.
    labels: 0/1 labels or probabilities in [0, 1], integer, boolean or floating, shape ``S``
      (or a scalar).
    pos_weight: optional weight ``w`` of the positive term (PyTorch's ``pos_weight``),
      broadcasting against the trailing axes of ``logits`` (per class: shape (C,)).
    weight: optional rescaling ``v`` of each element's loss (PyTorch's ``weight``), floating,
      broadcasting against the trailing axes of ``logits``; ``None`` is 1.
    label_smoothing: ε in [0, 1] (traced), Keras' ``BinaryCrossentropy(label_smoothing=ε)``:
      the labels are squeezed toward ½ (1 → 1 − ε/2, 0 → ε/2); 0 leaves them as given.

  Returns:
    The elementwise loss, shape ``S``, in ``jnp.result_type`` of the floating inputs
    (``logits`` and ``labels``; the weights take ``logits``' dtype).

  Gradient (a ``custom_jvp``): d/dx = v[(1 − ỹ)σ(x) − w·ỹ·(1 − σ(x))], which is v(σ(x) − ỹ)
  for w = 1; d/dỹ = v[w·softplus(−x) − softplus(x)] and dỹ/dε = ½ − y.

  Edge cases:
    Finite for every finite logit (±1e30 included: the loss is then |x| or 0), with its
    relative accuracy kept for confident correct logits (x = 50, y = 1 gives e^−50 = 1.93e-22,
    as optax and PyTorch; softplus(x) − y·x would give 0). With ε > 0 the loss of a correct
    logit no longer goes to 0: it is at least the entropy of (ε/2, 1 − ε/2). Unlike optax
    0.2.8, (N,) logits against (N, 1) labels raise ``ValueError`` instead of broadcasting to
    (N, N). NaN inputs propagate.

  References:
    optax ``optax.losses.sigmoid_binary_cross_entropy``; PyTorch
    ``binary_cross_entropy_with_logits`` (``pos_weight``, ``weight``); Keras
    ``BinaryCrossentropy(from_logits=True, label_smoothing=...)``; C. Szegedy et al.,
    "Rethinking the Inception Architecture for Computer Vision", CVPR 2016 (label smoothing).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> # σ(0) = 1/2: log 2 for either label.
    >>> print(jnp.round(jaxloss.sigmoid_binary_cross_entropy(jnp.zeros(2), jnp.array([0, 1])), 4))
    [0.6931 0.6931]
    >>> # ε = 0.2: the label 1 becomes 0.9, so the loss at x = 0 stays log 2 but x = 10 pays.
    >>> loss = jaxloss.sigmoid_binary_cross_entropy(jnp.array([0.0, 10.0]), jnp.ones(2),
    ...                                             label_smoothing=0.2)
    >>> print(jnp.round(loss, 4))
    [0.6931 1.    ]
  """
  fn = "sigmoid_binary_cross_entropy"
  dtype, x, y = _binary_inputs(fn, logits, labels)
  if pos_weight is not None:
    pos_weight = _trailing_weight(fn, "pos_weight", pos_weight, x, "logits")
  w = None if weight is None else _trailing_weight(fn, "weight", weight, x, "logits")
  return _sigmoid_bce(x, _smooth_binary(y, label_smoothing), pos_weight, w).astype(dtype)


@_numerics.loss_jit(bounds={"label_smoothing": _numerics.Range(low=0.0, high=1.0)})
def binary_cross_entropy(probs: ArrayLike, labels: ArrayLike, *, weight: ArrayLike | None = None,
                         label_smoothing: ArrayLike = 0.0) -> jax.Array:
  """Binary cross-entropy on probabilities, ``v·[−ỹ log p − (1 − ỹ) log(1 − p)]``, with
  PyTorch's ``weight`` ``v`` and Keras' label smoothing ỹ = y·(1 − ε) + ε/2.

  Args:
    probs: floating probabilities in [0, 1], shape ``S``.
    labels: 0/1 labels or probabilities, integer or floating, shape ``S`` (or a scalar).
    weight: optional rescaling ``v`` of each element's loss (PyTorch's ``weight``), floating,
      broadcasting against the trailing axes of ``probs``; ``None`` is 1.
    label_smoothing: ε in [0, 1] (traced), Keras' ``BinaryCrossentropy(label_smoothing=ε)``:
      the labels are squeezed toward ½ (1 → 1 − ε/2, 0 → ε/2); 0 leaves them as given.

  Returns:
    The elementwise loss, shape ``S``, in ``jnp.result_type`` of the floating inputs
    (``probs`` and ``labels``; ``weight`` takes ``probs``' dtype).

  Gradient: d/dp = v·(p − ỹ)/(p(1 − p)); the terms with a zero coefficient are skipped
  (0·log 0 = 0), so the gradient is finite at p = 0 with ỹ = 0 and at p = 1 with ỹ = 1.

  Edge cases:
    Exact at p ∈ {0, 1}: 0 where the label agrees, +inf where it disagrees (the true value;
    PyTorch instead clamps the log at −100 and returns 100, and Keras clips p to
    [1e-7, 1 − 1e-7]). With ε > 0 every label is strictly inside (0, 1), so p ∈ {0, 1} gives
    +inf. A zero ``weight`` gives exactly 0 with a zero gradient (in ``probs`` and in
    ``weight``), also where the unweighted loss is +inf. The second term is log1p(−p),
    accurate at small p (p = 3.15e-7, y = 0 gives 3.15e-7); p itself cannot resolve 1 − p
    below 6e-8 in float32, so near p = 1 prefer :func:`sigmoid_binary_cross_entropy` on
    logits. The label derivative is log((1 − p)/p), also at y ∈ {0, 1}. NaN inputs propagate
    (except where ``weight`` is 0).

  References:
    PyTorch ``torch.nn.functional.binary_cross_entropy`` (``weight``); Keras
    ``BinaryCrossentropy(label_smoothing=...)``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> loss = jaxloss.binary_cross_entropy(jnp.array([0.5, 0.25]), jnp.array([1.0, 0.0]))
    >>> print(jnp.round(loss, 4))  # −log ½ and −log ¾
    [0.6931 0.2877]
    >>> loss = jaxloss.binary_cross_entropy(jnp.array([0.5, 0.25]), jnp.array([1.0, 0.0]),
    ...                                     weight=jnp.array([2.0, 0.0]))
    >>> print(jnp.round(loss, 4))
    [1.3863 0.    ]
  """
  fn = "binary_cross_entropy"
  dtype, p, y = _numerics.elementwise_inputs(fn, probs, labels, "probs", "labels")
  y = _smooth_binary(y, label_smoothing)
  if weight is None:
    return -(_numerics.xlogy(y, p) + _xlog1mp(1.0 - y, p)).astype(dtype)
  w = jnp.broadcast_to(_trailing_weight(fn, "weight", weight, p, "probs"), p.shape)
  # A zero weight leaves the element out: p is replaced by ½ there before the logs (double
  # where, jax #1052), so an infinite loss at p ∈ {0, 1} cannot make 0·inf = NaN in the
  # gradient.
  out = w == 0
  y = jnp.broadcast_to(y, p.shape)
  p = jnp.where(out, jnp.full((), 0.5, p.dtype), p)
  loss = -(_numerics.xlogy(y, p) + _xlog1mp(1.0 - y, p))
  return jnp.where(out, jnp.zeros_like(loss), w * loss).astype(dtype)


@_numerics.loss_jit(bounds={"gamma": _numerics.Range(low=0.0),
                            "alpha": _numerics.Range(low=0.0, high=1.0)})
def sigmoid_focal_loss(logits: ArrayLike, labels: ArrayLike, *, alpha: ArrayLike | None = None,
                       gamma: ArrayLike = 2.0) -> jax.Array:
  """Sigmoid focal loss (Lin et al. 2017), optax's ``sigmoid_focal_loss``.

  .. math::
    \\ell = -\\alpha_t (1 - p_t)^\\gamma \\log p_t, \\qquad
    1 - p_t = y(1 - \\sigma(x)) + (1 - y)\\sigma(x), \\qquad
    \\alpha_t = \\alpha y + (1 - \\alpha)(1 - y)

  with −log p_t the sigmoid cross-entropy, so soft labels in [0, 1] work as in optax.

  Args:
    logits: floating array of shape ``S``.
    labels: 0/1 labels or probabilities, integer or floating, shape ``S`` (or a scalar).
    alpha: optional weight of the positive class in [0, 1] (traced); ``None`` weighs both
      classes 1.
    gamma: focusing exponent γ >= 0 (traced); γ = 0 is the cross-entropy.

  Returns:
    The elementwise loss, shape ``S``, in ``jnp.result_type`` of the floating inputs.

  Gradient (a ``custom_jvp``): with w = (1 − p_t)^γ and CE = −log p_t,
  d/dx = α_t [γ w (1 − 2y) σ(1 − σ)/(1 − p_t)·CE + w (σ − y)].

  Edge cases:
    Finite values and gradients at γ = 0, at 0 < γ < 1 and at logits of ±1e4 or ±1e30, where
    optax's gradient is NaN (optax #1267: (1 − p_t)^(γ − 1) = inf times σ(1 − σ) = 0). The
    gradient with respect to γ is w·log(1 − p_t)·CE, taken as 0 where 1 − p_t = 0. The
    Hessian is finite too at γ ∈ {0, 0.5, 1, 2} and logits up to ±1e4 (optax's own
    ``test_extreme_logits_finite_gradients``). NaN inputs propagate.

  References:
    T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017;
    optax ``optax.losses.sigmoid_focal_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> # σ(0) = 1/2: (1 − 1/2)² · log 2.
    >>> print(jnp.round(jaxloss.sigmoid_focal_loss(jnp.zeros(1), jnp.ones(1)), 4))
    [0.1733]
  """
  fn = "sigmoid_focal_loss"
  dtype, x, y = _binary_inputs(fn, logits, labels)
  loss = _sigmoid_focal(x, y, jnp.asarray(gamma, x.dtype))
  if alpha is not None:
    a = jnp.asarray(alpha, x.dtype)
    loss = (a * y + (1.0 - a) * (1.0 - y)) * loss
  return loss.astype(dtype)


@_numerics.loss_jit(static=("axis",))
def multilabel_soft_margin_loss(logits: ArrayLike, labels: ArrayLike, *,
                                class_weights: ArrayLike | None = None,
                                axis: int = -1) -> jax.Array:
  """Multi-label one-versus-all loss, PyTorch's ``multilabel_soft_margin_loss``: the mean over
  the C classes of each class's (weighted) sigmoid cross-entropy.

  .. math::
    \\ell = \\frac{1}{C} \\sum_c w_c \\left[ y_c\\, \\mathrm{softplus}(-x_c)
            + (1 - y_c)\\, \\mathrm{softplus}(x_c) \\right]

  Args:
    logits: floating array with the C classes along ``axis``.
    labels: 0/1 labels (or probabilities in [0, 1]) of ``logits``' shape, integer, boolean or
      floating.
    class_weights: optional (C,) floating weights ``w_c`` (PyTorch's ``weight``); ``None``
      weighs every class 1. The mean divides by C, not by the summed weight (as PyTorch).
    axis: the class axis (static int).

  Returns:
    The per-example loss, ``logits``' shape without ``axis``, in ``jnp.result_type`` of the
    floating inputs.

  Gradient: d/dx_c = w_c (σ(x_c) − y_c)/C, through
  :func:`sigmoid_binary_cross_entropy`'s ``custom_jvp`` core.

  Edge cases:
    Finite with finite gradients at every finite logit (±1e30 included), as the sigmoid
    cross-entropy. PyTorch's targets are 0/1; soft labels give the soft-label cross-entropy.
    Shapes other than ``logits``' raise ``ValueError``. NaN inputs propagate.

  References:
    PyTorch ``torch.nn.functional.multilabel_soft_margin_loss`` (``reduction="none"``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> # σ(0) = 1/2: every class costs log 2, so does their mean.
    >>> loss = jaxloss.multilabel_soft_margin_loss(jnp.zeros((1, 3)), jnp.array([[1, 0, 1]]))
    >>> print(jnp.round(loss, 4))
    [0.6931]
  """
  fn = "multilabel_soft_margin_loss"
  dtype, x, y = _binary_inputs(fn, logits, labels)
  ax = _numerics.canonical_axis(fn, axis, x.ndim, name="logits")
  w = (None if class_weights is None
       else _numerics.per_class(fn, "class_weights", class_weights, x, ax))
  return jnp.mean(_sigmoid_bce(x, y, None, w), axis=ax).astype(dtype)
