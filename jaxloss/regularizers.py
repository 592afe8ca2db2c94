"""Regularizers over parameter pytrees, and the structural risk (mean loss + penalty).

The survey's structural risk: R(θ) = (1/N) Σ_i L(y_i, f(x_i; θ)) + λ J(θ), with J an L1
(lasso: sparse solutions), L2 (ridge: small weights) or elastic-net penalty. Each penalty sums
over every leaf of ``params``; a ``mask`` pytree of bools excludes leaves (biases, norms),
with optax's meaning: ``True`` = penalised. Results are scalars in float32 (or wider): they
are sums over all parameters, so bf16/fp16 leaves are accumulated in float32 and the sum is
not rounded back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _numerics
from jaxloss.reduce import reduce

ArrayLike = jax.typing.ArrayLike
PyTree = object


def _masked_leaves(fn: str, params: PyTree, mask: PyTree | None
                   ) -> tuple[jnp.dtype, list[tuple[jax.Array, jax.Array | None]]]:
  """``(dtype, [(leaf, keep)])``: every leaf of ``params`` with its mask bit (None: kept).

  ``mask`` has the structure of ``params`` or a prefix of it (one bool for a whole subtree).
  """
  pairs: list[tuple[jax.Array, jax.Array | None]]
  if mask is None:
    pairs = [(leaf, None) for leaf in jax.tree.leaves(params)]
  else:
    try:
      # One mask bit per leaf of ``params``: a bool standing for a subtree is repeated.
      keeps = jax.tree.leaves(jax.tree.broadcast(mask, params))
    except (ValueError, TypeError) as e:
      raise ValueError(f"{fn}: `mask` must have the structure of `params` (or a prefix of it), "
                       f"got mask={jax.tree.structure(mask)} and "
                       f"params={jax.tree.structure(params)}") from e
    for keep in jax.tree.leaves(mask):
      keep = jnp.asarray(keep)
      if keep.dtype != jnp.bool_ or keep.ndim != 0:
        raise TypeError(f"{fn}: every leaf of `mask` must be a scalar bool, got "
                        f"{keep.dtype}{list(keep.shape)}")
    pairs = [(leaf, jnp.asarray(keep))
             for leaf, keep in zip(jax.tree.leaves(params), keeps, strict=True)]
  leaves = [_numerics.check_floating(fn, "params leaf", leaf) for leaf, _ in pairs]
  dtype = _numerics.compute_dtype(*leaves)
  return dtype, [(leaf.astype(dtype), keep) for leaf, (_, keep) in zip(leaves, pairs, strict=True)]


def _penalties(fn: str, params: PyTree, mask: PyTree | None) -> tuple[jax.Array, jax.Array]:
  """``(Σ|w|, ½Σw²)`` over the unmasked leaves, in float32 or wider."""
  dtype, pairs = _masked_leaves(fn, params, mask)
  l1 = jnp.zeros((), dtype)
  l2 = jnp.zeros((), dtype)
  for w, keep in pairs:
    if keep is not None:
      # A masked leaf is replaced by zeros before the penalty, so its inf/NaN reaches neither
      # the value nor (through 0·NaN) the gradient.
      w = jnp.where(keep, w, jnp.zeros((), dtype))
    l1 = l1 + jnp.sum(_numerics.abs0(w))  # sub-gradient 0 at w = 0
    l2 = l2 + 0.5 * jnp.sum(w * w)
  return l1, l2


@_numerics.loss_jit()
def l1_penalty(params: PyTree, *, mask: PyTree | None = None) -> jax.Array:
  """L1 penalty (lasso), ``Σ_w |w|`` over every unmasked leaf of ``params``.

  Args:
    params: a pytree of floating arrays.
    mask: optional pytree of scalar bools with the structure of ``params`` (or a prefix of
      it); ``False`` excludes that leaf (or subtree), e.g. the biases.

  Returns:
    A scalar in float32 (or wider: the compute dtype of the leaves).

  Sub-gradient: sign(w), and 0 at w = 0 (contract 4). Gradient methods therefore do not make
  weights exactly 0 but keep them oscillating within a step of it; proximal methods (soft
  thresholding) give exact zeros.

  Edge cases:
    An empty pytree, or one fully masked, gives 0 with zero gradients. A masked leaf's NaN or
    inf does not reach the value or the gradient. Integer leaves raise ``TypeError`` (mask
    them out of ``params`` before the call). NaN in an unmasked leaf propagates.

  References:
    R. Tibshirani, "Regression Shrinkage and Selection via the Lasso", JRSS B 1996.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.l1_penalty({'w': jnp.array([1.0, -2.0]), 'b': jnp.array(0.5)})
    Array(3.5, dtype=float32)
  """
  return _penalties("l1_penalty", params, mask)[0]


@_numerics.loss_jit()
def l2_penalty(params: PyTree, *, mask: PyTree | None = None) -> jax.Array:
  """L2 penalty (ridge, weight decay), ``½ Σ_w w²`` over every unmasked leaf of ``params``.

  Args:
    params: a pytree of floating arrays.
    mask: optional pytree of scalar bools with the structure of ``params`` (or a prefix of
      it); ``False`` excludes that leaf (or subtree).

  Returns:
    A scalar in float32 (or wider). Its gradient is w itself, so ``λ·l2_penalty`` in a loss
    is SGD's weight decay λ (as ``optax.add_decayed_weights``).

  Edge cases:
    As :func:`l1_penalty`; overflows to inf where Σw² exceeds float32's maximum.

  References:
    A. Hoerl, R. Kennard, "Ridge Regression", Technometrics 1970; A. Tikhonov (1943).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.l2_penalty({'w': jnp.array([1.0, -2.0]), 'b': jnp.array(0.5)})
    Array(2.625, dtype=float32)
  """
  return _penalties("l2_penalty", params, mask)[1]


@_numerics.loss_jit(bounds={"l1_ratio": _numerics.Range(low=0.0, high=1.0)})
def elastic_net_penalty(params: PyTree, *, l1_ratio: ArrayLike = 0.5,
                        mask: PyTree | None = None) -> jax.Array:
  """Elastic-net penalty, ``r·Σ|w| + (1 − r)·½Σw²`` with ``r = l1_ratio``.

  scikit-learn's ``ElasticNet`` penalty with its ``alpha`` factored out; ``l1_ratio = 1`` is
  :func:`l1_penalty`, ``0`` is :func:`l2_penalty`.

  Args:
    params: a pytree of floating arrays.
    l1_ratio: traced float in [0, 1].
    mask: optional pytree of scalar bools excluding leaves, as in :func:`l1_penalty`.

  Returns:
    A scalar in float32 (or wider). Sub-gradient r·sign(w) + (1 − r)·w, with sign(0) = 0.

  Edge cases:
    As :func:`l1_penalty`. ``l1_ratio`` outside [0, 1] raises ``ValueError`` (a Python
    number) or fails ``checkify`` (traced).

  References:
    H. Zou, T. Hastie, "Regularization and Variable Selection via the Elastic Net", JRSS B
    2005.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> jaxloss.elastic_net_penalty({'w': jnp.array([1.0, -2.0])}, l1_ratio=0.5)
    Array(2.75, dtype=float32)
  """
  fn = "elastic_net_penalty"
  l1, l2 = _penalties(fn, params, mask)
  r = jnp.asarray(l1_ratio, l1.dtype)
  # xmul: a penalty whose weight is 0 is left out (½Σw² is inf at |w| = 1e20, and 0·inf NaN).
  return _numerics.xmul(r, l1) + _numerics.xmul(1.0 - r, l2)


@_numerics.loss_jit(bounds={"l1": _numerics.Range(low=0.0), "l2": _numerics.Range(low=0.0)})
def structural_risk(losses: ArrayLike, params: PyTree, *, l1: ArrayLike = 0.0,
                    l2: ArrayLike = 0.0, where: ArrayLike | None = None,
                    mask: PyTree | None = None) -> jax.Array:
  """Structural risk: the mean loss plus ``l1·Σ|w| + l2·½Σw²``, one scalar for a train step.

  .. math::
    R(\\theta) = \\frac{1}{N} \\sum_i \\ell_i + \\lambda_1 \\lVert\\theta\\rVert_1
                 + \\lambda_2 \\tfrac12 \\lVert\\theta\\rVert_2^2

  Args:
    losses: per-example losses, any shape (the empirical risk is their mean, as
      ``jaxloss.reduce(losses, "mean", where=where)``).
    params: the parameter pytree the penalties act on.
    l1: traced float >= 0, the lasso strength.
    l2: traced float >= 0, the ridge strength.
    where: optional boolean mask of the losses' shape; masked losses are left out of the
      mean (a fully masked batch has empirical risk 0).
    mask: optional pytree of scalar bools excluding parameter leaves from both penalties, as
      in :func:`l1_penalty`.

  Returns:
    A scalar in float32 (or wider), differentiable in ``losses`` and ``params``.

  Edge cases:
    ``l1``/``l2`` < 0 raise ``ValueError`` (Python numbers) or fail ``checkify`` (traced).
    NaN in an unmasked loss or parameter propagates.

  References:
    V. Vapnik, "The Nature of Statistical Learning Theory", 1995 (structural risk
    minimisation).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> losses = jnp.array([0.5, 1.5])
    >>> jaxloss.structural_risk(losses, {'w': jnp.array([1.0, -2.0])}, l1=0.25, l2=0.5)
    Array(3., dtype=float32)
  """
  fn = "structural_risk"
  losses = _numerics.check_floating(fn, "losses", losses)
  where, _ = _numerics.check_reduce_masks(fn, losses, where, None)
  empirical = reduce(losses, "mean", where=where)
  pen1, pen2 = _penalties(fn, params, mask)
  dtype = _numerics.compute_dtype(empirical, pen1)
  return (empirical.astype(dtype) + _numerics.xmul(jnp.asarray(l1, dtype), pen1.astype(dtype))
          + _numerics.xmul(jnp.asarray(l2, dtype), pen2.astype(dtype)))
