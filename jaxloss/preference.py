"""Post-training objectives on log-probabilities: preference losses and policy-gradient losses.

Preference losses take per-sequence log-probabilities (``jaxloss.sequence_log_probs``) of a
policy, and for the reference-based ones of a frozen reference model, and return one value per
pair (or per example for the unpaired KTO): the DPO family with TRL's ``loss_type``\\ s, SimPO,
ORPO's odds-ratio term, CPO's preference term and KTO.

Policy-gradient objectives take per-token log-probabilities and return per-token values, exactly
0 with zero gradient at masked tokens: PPO's clipped surrogate (with DAPO's asymmetric clip),
GSPO's sequence-ratio surrogate, Schulman's KL estimators and GRPO's group advantages. The batch
normalisation that distinguishes GRPO, DAPO and Dr. GRPO is a :func:`jaxloss.reduce` call
(shown in :func:`clipped_policy_loss`'s docstring), not an option.

Every input is computed in float32 at least (bf16/fp16 are widened) and the result is returned
in the promoted dtype of the floating inputs. Values and gradients stay finite for
log-probability differences up to ±1e4: the sigmoid terms are written with ``softplus`` and
``sigmoid`` (never ``log(sigmoid(x))``), and the three places where an exponential of a large
difference appears (ORPO's odds, the policy ratio, the k3 estimator) have closed-form or
guarded derivatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

_POSITIVE = _numerics.Range(low=0.0, low_open=True)
_NON_NEGATIVE = _numerics.Range(low=0.0)
_SMOOTHING = _numerics.Range(low=0.0, high=0.5, high_open=True)
_CLIP = _numerics.Range(low=0.0, high=1.0)

DPO_LOSS_TYPES = ("sigmoid", "robust", "hinge", "ipo", "exo_pair", "nca_pair", "bco_pair",
                  "sppo_hard", "apo_zero", "apo_down")
KL_ESTIMATORS = ("k1", "k2", "k3")


# --------------------------------------------------------------------------------------------
# Input handling.
# --------------------------------------------------------------------------------------------

def _same_shape_inputs(fn: str, names: Sequence[str], values: Sequence[ArrayLike]
                       ) -> tuple[jnp.dtype, list[jax.Array]]:
  """Checks floating arrays of one shape; returns (result dtype, arrays in the compute dtype)."""
  arrays = [_numerics.check_floating(fn, n, v) for n, v in zip(names, values, strict=True)]
  for name, a in zip(names[1:], arrays[1:], strict=True):
    if a.shape != arrays[0].shape:
      raise ValueError(f"{fn}: `{names[0]}` and `{name}` must have the same shape, got "
                       f"{names[0]}.shape={arrays[0].shape} and {name}.shape={a.shape}")
  out_dtype = jnp.result_type(*[a.dtype for a in arrays])
  _, arrays = _numerics.upcast(*arrays)
  return out_dtype, arrays


def _token_mask(fn: str, name: str, mask: ArrayLike | None, shape: tuple[int, ...]
                ) -> jax.Array | None:
  if mask is None:
    return None
  m = jnp.asarray(mask)
  if m.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `{name}` must be a boolean mask (use mask.astype(bool)), got "
                    f"{m.dtype}")
  if m.shape != shape:
    raise ValueError(f"{fn}: `{name}` must have the shape of `log_probs`, got "
                     f"log_probs.shape={shape} and {name}.shape={m.shape}")
  return m


def _token_advantages(fn: str, advantages: ArrayLike, shape: tuple[int, ...]) -> jax.Array:
  """Advantages per token (``shape``), per sequence (``shape[:-1]``) or one scalar."""
  a = _numerics.check_floating(fn, "advantages", advantages)
  if a.shape == shape or a.ndim == 0:
    return a
  if len(shape) >= 1 and a.shape == shape[:-1]:
    return jnp.expand_dims(a, -1)  # one advantage per sequence, shared by its tokens
  raise ValueError(f"{fn}: `advantages` must have the shape of `log_probs` (one per token), "
                   f"or that shape without the last (token) axis (one per sequence), or be a "
                   f"scalar; got log_probs.shape={shape} and advantages.shape={a.shape}")


def _masked(mask: jax.Array | None, x: jax.Array, fill: float = 0.0) -> jax.Array:
  return x if mask is None else jnp.where(mask, x, jnp.full((), fill, x.dtype))


def _smoothed_logistic(u: jax.Array, eps: jax.Array) -> jax.Array:
  """−(1 − ε) log σ(u) − ε log σ(−u) = (1 − ε) softplus(−u) + ε softplus(u) (cDPO's form)."""
  return (1.0 - eps) * jax.nn.softplus(-u) + eps * jax.nn.softplus(u)


# --------------------------------------------------------------------------------------------
# The DPO family, SimPO, CPO, KTO.
# --------------------------------------------------------------------------------------------

@_numerics.loss_jit(static=("loss_type",),
                    bounds={"beta": _POSITIVE, "label_smoothing": _SMOOTHING})
def dpo_loss(policy_chosen: ArrayLike, policy_rejected: ArrayLike, reference_chosen: ArrayLike,
             reference_rejected: ArrayLike, *, beta: ArrayLike = 0.1,
             label_smoothing: ArrayLike = 0.0, loss_type: str = "sigmoid",
             bco_delta: ArrayLike = 0.0) -> jax.Array:
  """Direct Preference Optimization and its variants, per preference pair (TRL's ``loss_type``).

  With the log-ratios c = π_c − ρ_c (chosen) and r = π_r − ρ_r (rejected) of policy π to
  reference ρ, the margin z = c − r and u = β z, ε the label smoothing, and
  −log σ(x) = softplus(−x):

  ============  ================================================================
  loss_type     loss per pair
  ============  ================================================================
  sigmoid       (1 − ε) softplus(−u) + ε softplus(u)      (DPO; ε > 0 is cDPO)
  robust        [(1 − ε) softplus(−u) − ε softplus(u)] / (1 − 2ε)
  hinge         max(0, 1 − u)                               (SLiC)
  ipo           (z − 1/(2β))²
  exo_pair      σ(u)[log σ(u) − log(1 − ε)] + σ(−u)[log σ(−u) − log ε]
  nca_pair      softplus(−βc) + ½ softplus(βc) + ½ softplus(βr)
  bco_pair      softplus(δ − βc) + softplus(βr − δ)
  sppo_hard     (c − 1/(2β))² + (r + 1/(2β))²
  apo_zero      σ(−βc) + σ(βr)                              (1 − σ(βc) + σ(βr))
  apo_down      σ(βc) + σ(−βz)                              (σ(βc) + 1 − σ(β(c − r)))
  ============  ================================================================

  These are the formulas of TRL's ``DPOTrainer.dpo_loss``, followed from the revision of
  ``trl/trainer/dpo_trainer.py`` that has the ten types above beside the sorted-batch ``aot``
  and ``aot_pair`` types and ``discopop`` (left out here: they sort across the batch or take a
  second temperature); its release number was not pinned from the sources read. Two
  choices follow TRL exactly: ``exo_pair`` replaces ε = 0 by 10⁻³ (log ε must be finite), and
  ``bco_pair``'s δ is the caller's ``bco_delta`` (TRL keeps a running mean of the batch's
  rewards β·c and β·r, detached: pass ``jax.lax.stop_gradient`` of yours). TRL computes
  ``ipo`` on length-averaged log-probabilities (``sequence_log_probs(..., average=True)``) and
  the others on sums; this function takes whichever it is given.

  Args:
    policy_chosen: the policy's log-probabilities of the chosen responses, shape ``S``.
    policy_rejected: the policy's log-probabilities of the rejected responses, shape ``S``.
    reference_chosen: the reference model's log-probabilities of the chosen responses, ``S``.
    reference_rejected: the reference model's, of the rejected responses, ``S``.
    beta: β > 0 (traced), the strength of the implicit KL constraint (IPO's τ).
    label_smoothing: ε in [0, 0.5) (traced), the assumed probability that a label is flipped;
      used by ``sigmoid``, ``robust`` and ``exo_pair`` only.
    loss_type: static string, one of the table's.
    bco_delta: δ of ``bco_pair`` (traced; default 0).

  Returns:
    The per-pair loss, shape ``S``, in the promoted dtype of the inputs.

  Gradient: by automatic differentiation of the stable forms above; for ``sigmoid``,
  d/dπ_c = −β[(1 − ε) σ(−u) − ε σ(u)] = −d/dπ_r. ``hinge``'s kink at u = 1 has sub-gradient 0
  (contract 4).

  Edge cases:
    Finite values and gradients for log-probability differences up to ±1e4 (β z up to ±1e3):
    the logistic terms use softplus and sigmoid, whose derivatives saturate to 0 or ±β instead
    of overflowing; the squared losses are polynomial. ``robust`` is undefined at ε = 0.5
    (division by 1 − 2ε), hence the open bound. NaN inputs propagate.

  References:
    R. Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a
    Reward Model", NeurIPS 2023 (sigmoid); E. Mitchell, "A note on DPO with noisy
    preferences", 2023 (cDPO); S. R. Chowdhury et al., "Provably Robust DPO", ICML 2024
    (robust); Y. Zhao et al., "SLiC-HF", 2023 (hinge); M. G. Azar et al., "A General
    Theoretical Paradigm to Understand Learning from Human Preferences", AISTATS 2024 (ipo);
    H. Ji et al., "Towards Efficient Exact Optimization of Language Model Alignment", ICML 2024
    (exo_pair, Eq. 16); H. Chen et al., "Noise Contrastive Alignment of Language Models with
    Explicit Rewards", NeurIPS 2024 (nca_pair); S. Jung et al., "Binary Classifier
    Optimization for Large Language Model Alignment", 2024 (bco_pair); Y. Wu et al.,
    "Self-Play Preference Optimization", 2024 (sppo_hard, Eq. 4.7 with hard probabilities);
    K. D'Oosterlinck et al., "Anchored Preference Optimization", 2024 (apo_zero Eq. 7,
    apo_down Eq. 8); TRL ``trl/trainer/dpo_trainer.py``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> pc, pr = jnp.array([-10.0, -12.0]), jnp.array([-14.0, -11.0])
    >>> rc, rr = jnp.array([-11.0, -11.0]), jnp.array([-13.0, -13.0])
    >>> print([f"{v:.4f}" for v in jaxloss.dpo_loss(pc, pr, rc, rr, beta=0.5)])
    ['0.3133', '1.7014']
    >>> print(jaxloss.dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo"))
    [ 1. 16.]
  """
  fn = "dpo_loss"
  if loss_type not in DPO_LOSS_TYPES:
    raise ValueError(f"{fn}: unknown loss_type={loss_type!r}; expected one of {DPO_LOSS_TYPES}")
  names = ("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected")
  out_dtype, (pc, pr, rc, rr) = _same_shape_inputs(
      fn, names, (policy_chosen, policy_rejected, reference_chosen, reference_rejected))
  dtype = pc.dtype
  b = jnp.asarray(beta, dtype)
  eps = jnp.asarray(label_smoothing, dtype)
  c, r = pc - rc, pr - rr  # chosen and rejected log-ratios (the implicit rewards / β)
  z = c - r
  u = b * z
  if loss_type == "sigmoid":
    loss = _smoothed_logistic(u, eps)
  elif loss_type == "robust":
    loss = ((1.0 - eps) * jax.nn.softplus(-u) - eps * jax.nn.softplus(u)) / (1.0 - 2.0 * eps)
  elif loss_type == "hinge":
    loss = _numerics.relu(1.0 - u)
  elif loss_type == "ipo":
    loss = (z - 1.0 / (2.0 * b)) ** 2
  elif loss_type == "exo_pair":
    e = jnp.where(eps == 0, jnp.asarray(1e-3, dtype), eps)
    # KL(Bernoulli(σ(u)) ‖ Bernoulli(1 − ε)); log σ(±u) = −softplus(∓u), and σ(u)·log σ(u)
    # is 0·(finite) where σ underflows, never 0·(−inf).
    loss = (jax.nn.sigmoid(u) * (-jax.nn.softplus(-u) - jnp.log1p(-e))
            + jax.nn.sigmoid(-u) * (-jax.nn.softplus(u) - jnp.log(e)))
  elif loss_type == "nca_pair":
    loss = (jax.nn.softplus(-b * c) + 0.5 * jax.nn.softplus(b * c)
            + 0.5 * jax.nn.softplus(b * r))
  elif loss_type == "bco_pair":
    delta = jnp.asarray(bco_delta, dtype)
    loss = jax.nn.softplus(delta - b * c) + jax.nn.softplus(b * r - delta)
  elif loss_type == "sppo_hard":
    half = 0.5 / b
    loss = (c - half) ** 2 + (r + half) ** 2
  elif loss_type == "apo_zero":
    loss = jax.nn.sigmoid(-b * c) + jax.nn.sigmoid(b * r)
  else:  # apo_down
    loss = jax.nn.sigmoid(b * c) + jax.nn.sigmoid(-u)
  return loss.astype(out_dtype)


@_numerics.loss_jit(bounds={"beta": _POSITIVE, "gamma": _NON_NEGATIVE,
                            "label_smoothing": _SMOOTHING})
def simpo_loss(policy_chosen: ArrayLike, policy_rejected: ArrayLike, *, beta: ArrayLike = 2.0,
               gamma: ArrayLike = 0.5, label_smoothing: ArrayLike = 0.0) -> jax.Array:
  """Simple Preference Optimization (SimPO), reference-free, on length-averaged log-probs.

  .. math::
    u = \\beta\\,(\\bar\\pi_c - \\bar\\pi_r) - \\gamma, \\qquad
    \\ell = -(1 - \\varepsilon) \\log \\sigma(u) - \\varepsilon \\log \\sigma(-u)

  with π̄ the length-averaged log-probabilities (``sequence_log_probs(..., average=True)``),
  γ the target reward margin and ε TRL's label smoothing (ε = 0 is the paper's Eq. 6). TRL's
  ``CPOTrainer`` writes the margin as β(π̄_c − π̄_r − γ/β), the same number.

  Args:
    policy_chosen: length-averaged log-probabilities of the chosen responses, shape ``S``.
    policy_rejected: length-averaged log-probabilities of the rejected responses, ``S``.
    beta: β > 0 (traced), the reward scale (the paper uses 2 to 2.5).
    gamma: γ >= 0 (traced), the target reward margin (TRL's ``simpo_gamma``, default 0.5).
    label_smoothing: ε in [0, 0.5) (traced).

  Returns:
    The per-pair loss, shape ``S``, in the promoted dtype of the inputs.

  Gradient: d/dπ̄_c = −β[(1 − ε) σ(−u) − ε σ(u)] = −d/dπ̄_r.

  Edge cases:
    Finite values and gradients for differences up to ±1e4 (softplus form). NaN propagates.

  References:
    Y. Meng, M. Xia, D. Chen, "SimPO: Simple Preference Optimization with a Reference-Free
    Reward", NeurIPS 2024 (Eq. 6); TRL ``CPOTrainer`` with ``loss_type="simpo"``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(f"{jaxloss.simpo_loss(jnp.array([-0.8]), jnp.array([-1.5]))[0]:.4f}")
    0.3412
  """
  fn = "simpo_loss"
  out_dtype, (pc, pr) = _same_shape_inputs(fn, ("policy_chosen", "policy_rejected"),
                                           (policy_chosen, policy_rejected))
  dtype = pc.dtype
  u = jnp.asarray(beta, dtype) * (pc - pr) - jnp.asarray(gamma, dtype)
  return _smoothed_logistic(u, jnp.asarray(label_smoothing, dtype)).astype(out_dtype)


@_numerics.loss_jit(bounds={"beta": _POSITIVE, "label_smoothing": _SMOOTHING})
def cpo_loss(policy_chosen: ArrayLike, policy_rejected: ArrayLike, *, beta: ArrayLike = 0.1,
             label_smoothing: ArrayLike = 0.0) -> jax.Array:
  """Contrastive Preference Optimization's preference term (reference-free DPO).

  .. math::
    u = \\beta\\,(\\pi_c - \\pi_r), \\qquad
    \\ell = -(1 - \\varepsilon) \\log \\sigma(u) - \\varepsilon \\log \\sigma(-u)

  CPO's full objective adds the negative log-likelihood of the chosen response,
  ``-sequence_log_probs(token_log_probs(...), mask)`` (weighted by TRL's ``cpo_alpha``); this
  function is the preference term only (TRL ``CPOTrainer``, ``loss_type="sigmoid"``).

  Args:
    policy_chosen: the policy's log-probabilities of the chosen responses, shape ``S``.
    policy_rejected: of the rejected responses, shape ``S``.
    beta: β > 0 (traced).
    label_smoothing: ε in [0, 0.5) (traced).

  Returns:
    The per-pair loss, shape ``S``, in the promoted dtype of the inputs.

  Gradient: d/dπ_c = −β[(1 − ε) σ(−u) − ε σ(u)] = −d/dπ_r.

  Edge cases:
    Finite values and gradients for differences up to ±1e4 (softplus form). NaN propagates.

  References:
    H. Xu et al., "Contrastive Preference Optimization: Pushing the Boundaries of LLM
    Performance in Machine Translation", ICML 2024 (Eq. 3); TRL ``CPOTrainer``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(f"{jaxloss.cpo_loss(jnp.array([-10.0]), jnp.array([-14.0]))[0]:.4f}")
    0.5130
  """
  fn = "cpo_loss"
  out_dtype, (pc, pr) = _same_shape_inputs(fn, ("policy_chosen", "policy_rejected"),
                                           (policy_chosen, policy_rejected))
  dtype = pc.dtype
  u = jnp.asarray(beta, dtype) * (pc - pr)
  return _smoothed_logistic(u, jnp.asarray(label_smoothing, dtype)).astype(out_dtype)


def _log1mexp(x: jax.Array) -> jax.Array:
  """log(1 − eˣ) for x <= 0 without cancellation (Mächler 2012): log(−expm1(x)) near 0,
  log1p(−eˣ) below −log 2. −inf at x = 0; NaN for x > 0."""
  return jnp.where(x > -jnp.log(2.0), jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


@jax.custom_jvp
def _odds_ratio_term(a: jax.Array, b: jax.Array) -> jax.Array:
  """−log σ(L) = softplus(−L), L = log odds(a) − log odds(b), odds(x) = eˣ / (1 − eˣ)."""
  log_odds = (a - _log1mexp(a)) - (b - _log1mexp(b))
  return jax.nn.softplus(-log_odds)


@_odds_ratio_term.defjvp
def _odds_ratio_term_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
                         ) -> tuple[jax.Array, jax.Array]:
  (a, b), (da, db) = primals, tangents
  # With q = 1 − eˣ (computed as −expm1(x), exact near 0) and σ(−L) = q_a e^b / (q_a e^b +
  # q_b e^a): d/da = −σ(−L)/q_a = −1/D and d/db = σ(−L)/q_b = (q_a/q_b)/D, D = q_a + e^(a−b) q_b.
  # D stays finite as a → 0⁻ (where 1/q_a alone overflows and autodiff of the log-odds gives
  # inf·0 = NaN); e^(a−b) overflowing to inf gives the true limits 0.
  qa, qb = -jnp.expm1(a), -jnp.expm1(b)
  d = qa + jnp.exp(a - b) * qb
  return _odds_ratio_term(a, b), -da / d + (qa / qb) * db / d


@_numerics.loss_jit(bounds={"beta": _POSITIVE})
def orpo_loss(policy_chosen: ArrayLike, policy_rejected: ArrayLike, *,
              beta: ArrayLike = 0.1) -> jax.Array:
  """ORPO's odds-ratio term on length-averaged log-probabilities, stable as log p → 0⁻.

  .. math::
    \\mathrm{odds}(p) = \\frac{p}{1 - p}, \\qquad
    L = \\log\\frac{\\mathrm{odds}(e^{\\bar\\pi_c})}{\\mathrm{odds}(e^{\\bar\\pi_r})}
      = (\\bar\\pi_c - \\bar\\pi_r) - [\\log(1 - e^{\\bar\\pi_c}) - \\log(1 - e^{\\bar\\pi_r})],
    \\qquad \\ell = -\\beta \\log \\sigma(L)

  on the length-averaged log-probabilities π̄ (``sequence_log_probs(..., average=True)``).
  ORPO's full objective adds the chosen response's NLL (from :func:`token_log_probs`); this
  is the λ·L_OR term, β being TRL's name for λ. TRL's ``odds_ratio_loss`` returns β·log σ(L)
  and subtracts its mean; this returns the positive loss −β log σ(L).

  Args:
    policy_chosen: length-averaged log-probabilities (<= 0) of the chosen responses, ``S``.
    policy_rejected: of the rejected responses, shape ``S``.
    beta: β > 0 (traced), the weight of the odds-ratio term (the paper's λ).

  Returns:
    The per-pair loss, shape ``S``, in the promoted dtype of the inputs.

  Gradient (a ``custom_jvp``): with q = 1 − e^π̄ and D = q_c + e^(π̄_c − π̄_r) q_r,
  d/dπ̄_c = −β / D and d/dπ̄_r = β (q_c / q_r) / D.

  Edge cases:
    log(1 − eˣ) is computed as log(−expm1(x)) for x > −log 2 and log1p(−eˣ) below (the
    naive ``log1p(-exp(x))`` loses every digit as x → 0⁻ and gives −inf at x = −1e-8 in
    float32). The gradient stays finite as the chosen log-probability → 0⁻, and at exactly 0
    (d/dπ̄_c = −β·odds(e^π̄_r), its limit), where autodiff of the log-odds gives NaN. The loss
    is +inf, with an infinite gradient in π̄_r, when the rejected log-probability is exactly
    0 (its odds are infinite: the true value). Positive inputs (not log-probabilities) give
    NaN. Finite for differences of ±1e4. NaN inputs propagate.

  References:
    J. Hong, N. Lee, J. Thorne, "ORPO: Monolithic Preference Optimization without Reference
    Model", EMNLP 2024 (Eqs. 6-7); M. Mächler, "Accurately Computing log(1 − exp(−|a|))",
    2012; TRL ``ORPOTrainer.odds_ratio_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> loss = jaxloss.orpo_loss(jnp.array([-0.5, -1e-6]), jnp.array([-1.0, -2.0]), beta=1.0)
    >>> print([f"{v:.3g}" for v in loss])
    ['0.32', '1.57e-07']
  """
  fn = "orpo_loss"
  out_dtype, (pc, pr) = _same_shape_inputs(fn, ("policy_chosen", "policy_rejected"),
                                           (policy_chosen, policy_rejected))
  return (jnp.asarray(beta, pc.dtype) * _odds_ratio_term(pc, pr)).astype(out_dtype)


@_numerics.loss_jit(bounds={"beta": _POSITIVE, "desirable_weight": _NON_NEGATIVE,
                            "undesirable_weight": _NON_NEGATIVE})
def kto_loss(policy: ArrayLike, reference: ArrayLike, desirable: ArrayLike, *,
             beta: ArrayLike = 0.1, kl: ArrayLike = 0.0, desirable_weight: ArrayLike = 1.0,
             undesirable_weight: ArrayLike = 1.0) -> jax.Array:
  """Kahneman–Tversky Optimization, per (unpaired) example.

  .. math::
    r = \\pi - \\rho, \\quad z_0 = \\mathrm{sg}[\\max(0, \\mathrm{kl})], \\qquad
    \\ell = \\begin{cases} \\lambda_D\\,(1 - \\sigma(\\beta (r - z_0))) & \\text{desirable} \\\\
    \\lambda_U\\,(1 - \\sigma(\\beta (z_0 - r))) & \\text{undesirable} \\end{cases}

  with π and ρ the policy's and the reference's sequence log-probabilities, and z₀ the
  batch's reference point: an estimate of KL(π ‖ ρ), in the paper and TRL the mean of π − ρ
  over mismatched (prompt, completion) pairs, clamped at 0 and not differentiated (sg = stop
  gradient). Both are applied here, so ``kl`` may be passed as computed. The value is the
  paper's λ_y − v(x, y) and TRL's ``kto_loss`` (before its batch mean).

  Args:
    policy: the policy's log-probabilities of the completions, shape ``S``.
    reference: the reference model's log-probabilities, shape ``S``.
    desirable: boolean array of shape ``S``: ``True`` for a desirable completion.
    beta: β > 0 (traced).
    kl: the reference point (traced scalar or an array of shape ``S``); clamped at 0, and
      its gradient is 0.
    desirable_weight: λ_D >= 0 (traced).
    undesirable_weight: λ_U >= 0 (traced).

  Returns:
    The per-example loss in [0, λ], shape ``S``, in the promoted dtype of the inputs.

  Gradient: d/dπ = −λ_D β σ(β(r − z₀)) σ(−β(r − z₀)) for a desirable example and
  +λ_U β σ(β(z₀ − r)) σ(−β(z₀ − r)) for an undesirable one; 0 with respect to ``kl``.

  Edge cases:
    Finite values and gradients (saturating to 0) for log-ratios up to ±1e4. A non-boolean
    ``desirable`` raises ``TypeError``. NaN inputs propagate.

  References:
    K. Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization", ICML 2024
    (Eq. 8 and §4.1's reference point); TRL ``KTOTrainer.kto_loss``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> pol, ref = jnp.array([-10.0, -10.0]), jnp.array([-12.0, -12.0])
    >>> loss = jaxloss.kto_loss(pol, ref, jnp.array([True, False]), beta=0.5)
    >>> print([f"{v:.4f}" for v in loss])
    ['0.2689', '0.7311']
  """
  fn = "kto_loss"
  out_dtype, (pol, ref) = _same_shape_inputs(fn, ("policy", "reference"), (policy, reference))
  dtype = pol.dtype
  good = jnp.asarray(desirable)
  if good.dtype != jnp.bool_:
    raise TypeError(f"{fn}: `desirable` must be a boolean array, got {good.dtype}")
  if good.shape != pol.shape:
    raise ValueError(f"{fn}: `policy` and `desirable` must have the same shape, got "
                     f"policy.shape={pol.shape} and desirable.shape={good.shape}")
  k = _numerics.check_numeric(fn, "kl", kl)
  _numerics.check_same_shape(fn, "policy", pol, "kl", k)
  z0 = lax.stop_gradient(jnp.maximum(k.astype(dtype), 0.0))
  b = jnp.asarray(beta, dtype)
  r = pol - ref
  # 1 − σ(x) = σ(−x): desirable x = β(r − z0), undesirable x = β(z0 − r).
  loss = jnp.where(good, jnp.asarray(desirable_weight, dtype) * jax.nn.sigmoid(b * (z0 - r)),
                   jnp.asarray(undesirable_weight, dtype) * jax.nn.sigmoid(b * (r - z0)))
  return loss.astype(out_dtype)


# --------------------------------------------------------------------------------------------
# Policy-gradient objectives (per token).
# --------------------------------------------------------------------------------------------

def _surrogate_parts(delta: jax.Array, adv: jax.Array, low: jax.Array, high: jax.Array
                     ) -> tuple[jax.Array, jax.Array, jax.Array]:
  ratio = jnp.exp(delta)
  # The unclipped branch of min(r·A, clip(r)·A) is the smaller one: r < 1 + ε_h when A > 0,
  # r > 1 − ε_l when A < 0. At the kinks (r = 1 + ε_h with A > 0, r = 1 − ε_l with A < 0)
  # the clipped branch is taken: its zero derivative is a sub-gradient (contract 4).
  unclipped = ((adv > 0) & (ratio < high)) | ((adv < 0) & (ratio > low))
  clipped = jnp.clip(ratio, low, high)
  return ratio, unclipped, clipped


@jax.custom_jvp
def _clipped_surrogate(delta: jax.Array, adv: jax.Array, low: jax.Array,
                       high: jax.Array) -> jax.Array:
  """−min(r·A, clip(r, low, high)·A) with r = exp(delta)."""
  ratio, unclipped, clipped = _surrogate_parts(delta, adv, low, high)
  return -adv * jnp.where(unclipped, ratio, clipped)


@_clipped_surrogate.defjvp
def _clipped_surrogate_jvp(primals: tuple[Any, ...], tangents: tuple[Any, ...]
                           ) -> tuple[jax.Array, jax.Array]:
  delta, adv, low, high = primals
  d_delta, d_adv, d_low, d_high = tangents
  ratio, unclipped, clipped = _surrogate_parts(delta, adv, low, high)
  chosen = jnp.where(unclipped, ratio, clipped)
  zero = jnp.zeros_like(chosen)
  # d/d delta = −A·r on the unclipped branch, exactly 0 on the clipped one: the coefficient is
  # selected before it multiplies the tangent, so an overflowed r = inf on the clipped branch
  # never meets a zero tangent (inf·0 = NaN).
  coef_delta = jnp.where(unclipped, -adv * ratio, zero)
  at_low = ~unclipped & (ratio <= low)
  at_high = ~unclipped & (ratio >= high) & ~at_low
  tangent = (coef_delta * d_delta - chosen * d_adv
             + jnp.where(at_low, -adv, zero) * d_low + jnp.where(at_high, -adv, zero) * d_high)
  return -adv * chosen, tangent


def _policy_inputs(fn: str, log_probs: ArrayLike, old_log_probs: ArrayLike,
                   advantages: ArrayLike
                   ) -> tuple[jnp.dtype, jax.Array, jax.Array, jax.Array]:
  lp = _numerics.check_floating(fn, "log_probs", log_probs)
  old = _numerics.check_floating(fn, "old_log_probs", old_log_probs)
  if old.shape != lp.shape:
    raise ValueError(f"{fn}: `log_probs` and `old_log_probs` must have the same shape, got "
                     f"log_probs.shape={lp.shape} and old_log_probs.shape={old.shape}")
  adv = _token_advantages(fn, advantages, lp.shape)
  out_dtype = jnp.result_type(lp.dtype, old.dtype, adv.dtype)
  _, (lp, old, adv) = _numerics.upcast(lp, old, adv)
  return out_dtype, lp, old, jnp.broadcast_to(adv, lp.shape)


@_numerics.loss_jit(bounds={"epsilon_low": _CLIP, "epsilon_high": _NON_NEGATIVE})
def clipped_policy_loss(log_probs: ArrayLike, old_log_probs: ArrayLike, advantages: ArrayLike,
                        *, epsilon_low: ArrayLike = 0.2, epsilon_high: ArrayLike = 0.2,
                        where: ArrayLike | None = None) -> jax.Array:
  """PPO's clipped surrogate per token, with DAPO's asymmetric clip range (GRPO's token loss).

  .. math::
    r_t = \\exp(\\log\\pi_\\theta(y_t) - \\log\\pi_{old}(y_t)), \\qquad
    \\ell_t = -\\min\\big(r_t A_t,\\
              \\mathrm{clip}(r_t, 1 - \\varepsilon_l, 1 + \\varepsilon_h) A_t\\big)

  ε_l = ε_h is PPO's clip (Schulman et al. 2017, Eq. 7) and GRPO's token term (Shao et al.
  2024); ε_h > ε_l is DAPO's "clip-higher" (Yu et al. 2025: ε_l = 0.2, ε_h = 0.28). The value
  is the negated objective: minimise its reduction.

  The three normalisations users choose between are reductions of these per-token values
  (``m`` the completion mask, ``B`` sequences of padded length ``T``); masked tokens are
  exactly 0, so a mean over every entry divides by the constant B·T:

  * DAPO (token-level mean over the batch, TRL's ``bnpo``/``dapo``):
    ``jaxloss.reduce(loss, "mean", where=m)`` = Σ ℓ / Σ m;
  * GRPO (mean over each sequence's tokens, then over sequences): with ``mf`` the mask as
    floats, ``jaxloss.reduce(loss, "mean", weights=mf / mf.sum(-1, keepdims=True))``; an
    all-masked sequence has weight 0 (write ``jnp.maximum(mf.sum(...), 1)`` to avoid 0/0)
    and is left out;
  * Dr. GRPO (a constant, the padded length): ``jaxloss.reduce(loss, "mean")`` = Σ ℓ / (B·T).

  Args:
    log_probs: the current policy's log-probabilities of the sampled tokens, shape ``S``
      (e.g. (B, T); from :func:`token_log_probs`).
    old_log_probs: the sampling policy's, shape ``S`` (constants).
    advantages: per token (shape ``S``), per sequence (``S`` without its last axis, shared
      by the sequence's tokens, as GRPO's), or a scalar.
    epsilon_low: ε_l in [0, 1] (traced).
    epsilon_high: ε_h >= 0 (traced).
    where: optional boolean mask of shape ``S``: masked tokens give exactly 0 with zero
      gradient (even if their inputs are NaN or inf).

  Returns:
    The per-token loss, shape ``S``, in the promoted dtype of the inputs.

  Gradient (a ``custom_jvp``): d/d log π_θ = −A_t r_t where the unclipped branch is the
  minimum (A > 0 and r < 1 + ε_h, or A < 0 and r > 1 − ε_l), else 0; at the kinks 0
  (contract 4). d/dA = −r_t or −clip(r_t) (the branch taken); d/d old = −d/d log π_θ.

  Edge cases:
    A log-ratio of 1e4 overflows r to inf: on the clipped branch the value is −A(1 + ε_h)
    and the gradient exactly 0 (autodiff of ``jnp.minimum`` gives inf·0 = NaN there); on the
    unclipped branch (A < 0) the value and gradient are +inf, the true values. A = 0 gives
    0 with gradient 0 in the log-probabilities. NaN inputs propagate (unless masked).

  References:
    J. Schulman et al., "Proximal Policy Optimization Algorithms", 2017; Z. Shao et al.,
    "DeepSeekMath" (GRPO), 2024; Q. Yu et al., "DAPO: An Open-Source LLM Reinforcement
    Learning System at Scale", 2025; Z. Liu et al., "Understanding R1-Zero-Like Training: A
    Critical Perspective" (Dr. GRPO), 2025; TRL ``GRPOTrainer`` (``loss_type`` grpo, bnpo,
    dr_grpo, dapo).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> lp = jnp.log(jnp.array([[0.5, 0.3, 0.2], [0.9, 0.1, 0.1]]))
    >>> old = jnp.log(jnp.array([[0.4, 0.3, 0.2], [0.5, 0.1, 0.1]]))
    >>> adv, m = jnp.array([1.0, -1.0]), jnp.array([[True, True, False], [True, True, True]])
    >>> loss = jaxloss.clipped_policy_loss(lp, old, adv, epsilon_high=0.28, where=m)
    >>> print(jnp.round(loss, 4))
    [[-1.25 -1.    0.  ]
     [ 1.8   1.    1.  ]]
    >>> dapo = jaxloss.reduce(loss, "mean", where=m)
    >>> mf = m.astype(jnp.float32)
    >>> grpo = jaxloss.reduce(loss, "mean", weights=mf / mf.sum(-1, keepdims=True))
    >>> dr_grpo = jaxloss.reduce(loss, "mean")
    >>> print(f"{dapo:.4f} {grpo:.4f} {dr_grpo:.4f}")
    0.3100 0.0708 0.2583
  """
  fn = "clipped_policy_loss"
  out_dtype, lp, old, adv = _policy_inputs(fn, log_probs, old_log_probs, advantages)
  mask = _token_mask(fn, "where", where, lp.shape)
  dtype = lp.dtype
  delta = _masked(mask, lp - old)
  adv = _masked(mask, adv)
  loss = _clipped_surrogate(delta, adv, 1.0 - jnp.asarray(epsilon_low, dtype),
                            1.0 + jnp.asarray(epsilon_high, dtype))
  return _masked(mask, loss).astype(out_dtype)


@_numerics.loss_jit(bounds={"epsilon_low": _CLIP, "epsilon_high": _NON_NEGATIVE})
def sequence_clipped_policy_loss(log_probs: ArrayLike, old_log_probs: ArrayLike,
                                 advantages: ArrayLike, mask: ArrayLike, *,
                                 epsilon_low: ArrayLike = 3e-4,
                                 epsilon_high: ArrayLike = 4e-4) -> jax.Array:
  """GSPO's clipped surrogate with the length-normalised sequence ratio, per token.

  .. math::
    s_i = \\exp\\Big(\\frac{1}{|y_i|} \\sum_t m_{i,t}\\,(\\log\\pi_\\theta(y_{i,t})
          - \\log\\pi_{old}(y_{i,t}))\\Big), \\qquad
    \\ell_{i,t} = -m_{i,t} \\min\\big(s_{i,t} A_{i,t},\\
                 \\mathrm{clip}(s_{i,t}, 1 - \\varepsilon_l, 1 + \\varepsilon_h) A_{i,t}\\big)

  with |y_i| = Σ_t m_{i,t} and the GSPO-token ratio s_{i,t} = sg[s_i]·π_θ(y_{i,t}) /
  sg[π_θ(y_{i,t})] (Zheng et al. 2025, §4.3; sg = stop gradient): every token of a sequence
  has the value of the sequence's ratio s_i, clipped by the sequence, and its gradient
  reaches that token's own log-probability, d ℓ_{i,t} / d log π_θ(y_{i,t}) = −A s_i on the
  unclipped branch. With one advantage per sequence and the sequence mean of GRPO
  (``reduce(loss, "mean", weights=mf / mf.sum(-1, keepdims=True))``, mf the float mask;
  see :func:`clipped_policy_loss`) this is GSPO's
  objective and gradient exactly (the paper's Eqs. 5, 11 and 18); any reduction that weighs
  a sequence's tokens equally (DAPO's token mean, Dr. GRPO's constant) gives the same
  gradient as TRL's ``importance_sampling_level="sequence"``, which broadcasts s_i instead.

  Args:
    log_probs: the current policy's token log-probabilities, shape (…, T).
    old_log_probs: the sampling policy's, shape (…, T).
    advantages: per token ((…, T), GSPO-token), per sequence ((…,), GSPO), or a scalar.
    mask: boolean completion mask of shape (…, T); masked tokens are exactly 0 with zero
      gradient and do not count in |y_i|.
    epsilon_low: ε_l in [0, 1] (traced; the paper's 3e-4).
    epsilon_high: ε_h >= 0 (traced; the paper's 4e-4).

  Returns:
    The per-token loss, shape (…, T), in the promoted dtype of the inputs.

  Gradient (the ``custom_jvp`` of :func:`clipped_policy_loss` at log s_i): d ℓ_{i,t} /
  d log π_θ(y_{i,t}) = −A_{i,t} s_i where unclipped, else 0; no cross-token terms. Second
  derivatives are those of the GSPO-token surrogate (the stop-gradients make its Hessian
  diagonal), not of the sequence objective: this is a first-order objective.

  Edge cases:
    An all-masked sequence gives 0 everywhere with zero gradient. A mean log-ratio of 1e4
    (r = inf) gives the clipped value and a zero gradient for A > 0, +inf for A < 0 (the true
    value). NaN at masked tokens does not reach the ratio or the gradient.

  References:
    C. Zheng et al., "Group Sequence Policy Optimization", 2025 (Eqs. 5-7, §4.3 GSPO-token);
    TRL ``GRPOTrainer`` with ``importance_sampling_level="sequence"``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> lp = jnp.array([[-1.0, -2.0, -3.0]])
    >>> old = jnp.array([[-1.0002, -2.0002, 0.0]])
    >>> m = jnp.array([[True, True, False]])
    >>> print(jnp.round(jaxloss.sequence_clipped_policy_loss(lp, old, jnp.array([1.0]), m), 5))
    [[-1.0002 -1.0002  0.    ]]
  """
  fn = "sequence_clipped_policy_loss"
  out_dtype, lp, old, adv = _policy_inputs(fn, log_probs, old_log_probs, advantages)
  if lp.ndim == 0:
    raise ValueError(f"{fn}: `log_probs` must have a token axis (the last), got a scalar")
  if mask is None:
    raise TypeError(f"{fn}: `mask` is required (the completion mask; |y_i| counts its tokens)")
  m = _token_mask(fn, "mask", mask, lp.shape)
  assert m is not None
  dtype = lp.dtype
  delta = jnp.where(m, lp - old, jnp.zeros((), dtype))
  count = jnp.maximum(jnp.sum(m, -1, keepdims=True), 1).astype(dtype)
  seq = jnp.sum(delta, -1, keepdims=True) / count  # log s_i
  # GSPO-token: the value of log s_i, the derivative of the token's own log-ratio.
  token = lax.stop_gradient(seq) + (delta - lax.stop_gradient(delta))
  adv = jnp.where(m, adv, jnp.zeros((), dtype))
  loss = _clipped_surrogate(token, adv, 1.0 - jnp.asarray(epsilon_low, dtype),
                            1.0 + jnp.asarray(epsilon_high, dtype))
  return jnp.where(m, loss, jnp.zeros((), dtype)).astype(out_dtype)


def _k3(d: jax.Array) -> jax.Array:
  """eᵈ − 1 − d >= 0: a Taylor series where |d| < 0.5 (expm1(d) − d cancels: 1e-4 relative
  error at d = 1e-3 in float32), expm1(d) − d elsewhere; each branch on its own safe input."""
  small = jnp.abs(d) < 0.5
  ds = jnp.where(small, d, jnp.zeros_like(d))
  series = ds * ds * (0.5 + ds * (1 / 6 + ds * (1 / 24 + ds * (1 / 120 + ds * (
      1 / 720 + ds * (1 / 5040 + ds * (1 / 40320)))))))
  dl = jnp.where(small, jnp.ones_like(d), d)
  return jnp.where(small, series, jnp.expm1(dl) - dl)


@_numerics.loss_jit(static=("estimator",))
def kl_penalty(log_probs: ArrayLike, reference_log_probs: ArrayLike, *, estimator: str = "k3",
               where: ArrayLike | None = None) -> jax.Array:
  """Per-token estimate of KL(π_θ ‖ π_ref) from sampled tokens (Schulman's k1, k2, k3).

  With the log-ratio d = log π_ref(y_t) − log π_θ(y_t) of a token y_t sampled from π_θ
  (Schulman's log r, r = π_ref / π_θ):

  =========  ==========================  ===========================================
  estimator  value                       property
  =========  ==========================  ===========================================
  k1         −d                          unbiased, high variance, negative half the time
  k2         d² / 2                      biased, low variance, >= 0
  k3         (eᵈ − 1) − d                unbiased, low variance, >= 0 (GRPO's, TRL's)
  =========  ==========================  ===========================================

  Args:
    log_probs: the policy's log-probabilities of the sampled tokens, shape ``S``.
    reference_log_probs: the reference model's, shape ``S``.
    estimator: static string, ``"k1"``, ``"k2"`` or ``"k3"``.
    where: optional boolean mask of shape ``S``; masked tokens give exactly 0 with zero
      gradient.

  Returns:
    Per-token values, shape ``S``, in the promoted dtype of the inputs. Reduce with
    :func:`jaxloss.reduce` as the policy loss is (GRPO adds β·k3 to each token's loss).

  Gradient: d/d log π_θ = 1 (k1), −d = log π_θ − log π_ref (k2), 1 − eᵈ (k3);
  d/d log π_ref is the negative of each.

  Edge cases:
    k3 is never negative: near d = 0 it is computed from its Taylor series (expm1(d) − d
    loses most digits there), elsewhere as expm1(d) − d; each branch sees only inputs where
    it is finite. d = 1e4 overflows k3 to +inf (the true value exceeds float32), d = −1e4
    gives 1e4 − 1. NaN inputs propagate (unless masked).

  References:
    J. Schulman, "Approximating KL Divergence", 2020 (joschu.net/blog/kl-approx.html);
    Z. Shao et al., "DeepSeekMath" (GRPO, Eq. 4), 2024; TRL ``GRPOTrainer``.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> lp, ref = jnp.array([-1.0, -2.0]), jnp.array([-1.5, -1.0])
    >>> for k in ("k1", "k2", "k3"):
    ...   print(k, jnp.round(jaxloss.kl_penalty(lp, ref, estimator=k), 4))
    k1 [ 0.5 -1. ]
    k2 [0.125 0.5  ]
    k3 [0.1065 0.7183]
  """
  fn = "kl_penalty"
  if estimator not in KL_ESTIMATORS:
    raise ValueError(f"{fn}: unknown estimator={estimator!r}; expected one of {KL_ESTIMATORS}")
  out_dtype, (lp, ref) = _same_shape_inputs(fn, ("log_probs", "reference_log_probs"),
                                            (log_probs, reference_log_probs))
  mask = _token_mask(fn, "where", where, lp.shape)
  d = _masked(mask, ref - lp)
  if estimator == "k1":
    value = -d
  elif estimator == "k2":
    value = 0.5 * d * d
  else:
    value = _k3(d)
  return _masked(mask, value).astype(out_dtype)


@_numerics.loss_jit(static=("num_groups", "scale"), bounds={"epsilon": _POSITIVE})
def group_advantages(rewards: ArrayLike, group_ids: ArrayLike, *, num_groups: int,
                     scale: str | None = "std", epsilon: ArrayLike = 1e-4) -> jax.Array:
  """GRPO's group-relative advantages: each reward less its group's mean, over its group's std.

  .. math::
    A_i = \\frac{r_i - \\mu_{g(i)}}{\\sigma_{g(i)} + \\epsilon} \\quad (\\texttt{scale="std"}),
    \\qquad A_i = r_i - \\mu_{g(i)} \\quad (\\texttt{scale=None}, \\text{Dr. GRPO})

  with μ_g and σ_g the mean and the sample standard deviation (ddof = 1, as TRL's
  ``torch.std``) of the rewards of group g (the completions of one prompt).

  Args:
    rewards: floating rewards, any shape ``S`` (typically (N,) for N completions).
    group_ids: integer group of each reward, shape ``S``, in [0, num_groups).
    num_groups: static int, the number of groups.
    scale: ``"std"`` (GRPO) or ``None`` (Dr. GRPO: no division, Liu et al. 2025).
    epsilon: ε > 0 (traced), TRL's 1e-4.

  Returns:
    Advantages of shape ``S`` in the rewards' dtype (pass them to
    :func:`clipped_policy_loss`; they are constants of the policy update).

  Edge cases:
    A group whose rewards are all equal has A = 0 (also with ε: σ = 0); a group of one
    completion has σ taken as 0 (torch's unbiased std gives NaN there), so A = 0. Gradients
    with respect to the rewards are finite (the square root is guarded at σ = 0). A group id
    outside [0, num_groups) gives NaN with zero gradient for that reward, and a ``checkify``
    error naming it; float ids raise ``TypeError``. NaN rewards propagate to their group.

  References:
    Z. Shao et al., "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
    Language Models", 2024 (§4.1.2, outcome supervision); Z. Liu et al., "Understanding
    R1-Zero-Like Training: A Critical Perspective", 2025 (Dr. GRPO); TRL ``GRPOTrainer``
    (``scale_rewards``).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> r = jnp.array([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    >>> g = jnp.array([0, 0, 0, 0, 1, 1])
    >>> print([f"{v:.4f}" for v in jaxloss.group_advantages(r, g, num_groups=2)])
    ['0.8659', '-0.8659', '-0.8659', '0.8659', '0.0000', '0.0000']
    >>> print(jaxloss.group_advantages(r, g, num_groups=2, scale=None))
    [ 0.5 -0.5 -0.5  0.5  0.   0. ]
  """
  fn = "group_advantages"
  if scale not in ("std", None):
    raise ValueError(f"{fn}: unknown scale={scale!r}; expected \"std\" or None")
  if not isinstance(num_groups, int) or isinstance(num_groups, bool) or num_groups < 1:
    raise ValueError(f"{fn}: `num_groups` must be a positive int, got {num_groups!r}")
  r = _numerics.check_floating(fn, "rewards", rewards)
  g = _numerics.check_integer(fn, "group_ids", group_ids)
  if g.shape != r.shape:
    raise ValueError(f"{fn}: `rewards` and `group_ids` must have the same shape, got "
                     f"rewards.shape={r.shape} and group_ids.shape={g.shape}")
  out_dtype = r.dtype
  _, (r,) = _numerics.upcast(r)
  dtype = r.dtype
  valid = _numerics.class_labels_valid(fn, "group_ids", g, num_groups)
  flat_r, flat_g, flat_v = r.ravel(), g.ravel(), valid.ravel()
  ids = jnp.where(flat_v, flat_g, jnp.zeros_like(flat_g))
  zero = jnp.zeros((), dtype)
  r0 = jnp.where(flat_v, flat_r, zero)  # a bad id's reward is left out of every group
  count = jax.ops.segment_sum(flat_v.astype(dtype), ids, num_groups)
  mean = jax.ops.segment_sum(r0, ids, num_groups) / jnp.maximum(count, 1.0)
  dev = jnp.where(flat_v, flat_r - mean[ids], zero)
  if scale == "std":
    var = jax.ops.segment_sum(dev * dev, ids, num_groups) / jnp.maximum(count - 1.0, 1.0)
    std = _numerics.safe_where(var > 0, jnp.sqrt, var, zero)  # sqrt'(0) = inf: guarded
    dev = dev / (std[ids] + jnp.asarray(epsilon, dtype))
  adv = _numerics.nan_where_invalid(dev, flat_v)
  return adv.reshape(r.shape).astype(out_dtype)
