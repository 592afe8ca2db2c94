"""Robust regression losses: Barron's general and adaptive loss and its named special cases
(Cauchy/Lorentzian, Geman–McClure, Welsch/Leclerc).

Every loss here is elementwise in the residuals x (a prediction minus its target, or any
error signal) with a scale c > 0, and depends on them through z = (x/c)². Hyper-parameter
arrays (a per-dimension ``alpha`` or ``scale`` as in Barron's adaptive use) broadcast to the
residuals' shape. bf16/fp16 are computed in float32 and returned in the promoted dtype.

Evaluating Barron's formula

  f(x, α, c) = |α − 2|/α · (((x/c)²/|α − 2| + 1)^{α/2} − 1)

as written loses every digit near α = 0 (an expm1(·)/α ratio) and near α = 2 (|α − 2| → 0 in
a denominator, and a derivative in α that cancels two terms of size z/|α − 2|). Two exact
rearrangements avoid both, with b = |α − 2| and L = log1p(z/b):

* away from α = 2 (|α − 2| >= 1): f = (b·L/2) · φ(α·L/2), φ(t) = expm1(t)/t (a series for
  |t| < ½), smooth through α = 0, where f = log1p(z/2);
* near α = 2 (|α − 2| < 1): f = (z + (b + z)·expm1((α − 2)/2 · L)) / α, smooth through α = 2,
  where f = z/2 and every term stays of the size of the result.

Residuals so large that z overflows (|x/c| > 1e17) use L = 2 log|x/c| − log b and the first
form for every α, so the loss is finite wherever its value is.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxloss import _numerics

ArrayLike = jax.typing.ArrayLike

_POSITIVE = _numerics.Range(low=0.0, low_open=True)
_TINY = 2.0 ** -23   # |α − 2| is clamped to float32's machine epsilon in the near-2 form
_BIG = 1e17          # |x/c| beyond which (x/c)² may overflow float32
_SERIES = tuple(1 / math.factorial(k + 1) for k in range(10))  # expm1(t)/t = Σ t^k/(k+1)!


def _hyper(fn: str, name: str, value: ArrayLike, x: jax.Array) -> jax.Array:
  """A scalar or array hyper-parameter broadcast to the residuals' shape."""
  v = jnp.asarray(value)
  if not (jnp.issubdtype(v.dtype, jnp.floating) or jnp.issubdtype(v.dtype, jnp.integer)):
    raise TypeError(f"{fn}: `{name}` must be a real number or array, got {v.dtype}")
  if not _numerics.broadcasts_to(v.shape, x.shape):
    raise ValueError(f"{fn}: `{name}` must be a scalar or broadcast to the residuals' shape, "
                     f"got {name}.shape={v.shape} and residuals.shape={x.shape}")
  return jnp.broadcast_to(v.astype(x.dtype), x.shape)


def _inputs(fn: str, residuals: ArrayLike, hypers: dict[str, ArrayLike]
            ) -> tuple[jnp.dtype, jax.Array, dict[str, jax.Array]]:
  x = _numerics.check_floating(fn, "residuals", residuals)
  arrays = {k: jnp.asarray(v) for k, v in hypers.items()}
  out_dtype = _numerics.result_dtype(x, *arrays.values())
  dtype = _numerics.compute_dtype(x, *arrays.values())
  xc = x.astype(dtype)
  return out_dtype, xc, {k: _hyper(fn, k, v, xc) for k, v in arrays.items()}


def _expm1_over(t: jax.Array) -> jax.Array:
  """φ(t) = expm1(t)/t, φ(0) = 1: a degree-9 Taylor polynomial for |t| < ½ (error < 3e-11),
  the ratio elsewhere; both branches differentiate exactly (double where, jax #1052)."""
  small = jnp.abs(t) < 0.5
  ts = jnp.where(small, t, jnp.zeros_like(t))
  poly = jnp.full_like(t, _SERIES[-1])
  for c in _SERIES[-2::-1]:
    poly = poly * ts + c
  tl = jnp.where(small, jnp.ones_like(t), t)
  return jnp.where(small, poly, jnp.expm1(tl) / tl)


class _Scaled:
  """u = x/c, z = u² where finite, and log1p(z/b) for any b > 0, also where z overflows."""

  def __init__(self, x: jax.Array, scale: jax.Array):
    u = x / scale
    self.big = jnp.abs(u) > _BIG
    small = jnp.where(self.big, jnp.zeros_like(u), u)
    self.z = jnp.square(small)                       # 0 where big
    self.log_u = jnp.log(jnp.abs(jnp.where(self.big, u, jnp.ones_like(u))))
    self.u = u

  def log1p_over(self, b: jax.Array) -> jax.Array:
    """log(1 + z/b); for |u| > 1e17 it is 2 log|u| − log b to float precision."""
    return jnp.where(self.big, 2 * self.log_u - jnp.log(b), jnp.log1p(self.z / b))


@_numerics.loss_jit(bounds={"scale": _POSITIVE})
def general_robust_loss(residuals: ArrayLike, *, alpha: ArrayLike,
                        scale: ArrayLike) -> jax.Array:
  r"""Barron's general and adaptive robust loss, for every shape α in [−∞, ∞].

  .. math::
    f(x, \alpha, c) = \frac{|\alpha - 2|}{\alpha}\left(\left(\frac{(x/c)^2}{|\alpha - 2|}
    + 1\right)^{\alpha/2} - 1\right)

  with its limits: α = 2, ½(x/c)² (L2); α = 0, log(½(x/c)² + 1) (Cauchy); α = −∞,
  1 − exp(−½(x/c)²) (Welsch); α = +∞, exp(½(x/c)²) − 1. α = 1 is the Charbonnier
  (pseudo-Huber) loss √((x/c)² + 1) − 1 and α = −2 Geman–McClure, 2(x/c)²/((x/c)² + 4).
  Smaller α is more robust: the influence of an outlier x/c → ∞ grows like |x|^{α−1}.

  Args:
    residuals: floating residuals x, any shape ``S``.
    alpha: the shape α, any real or ±inf; a scalar or an array broadcasting to ``S`` (traced
      and differentiable: the adaptive loss learns it, with Barron's normaliser as a separate
      term of the objective).
    scale: c > 0, a scalar or an array broadcasting to ``S`` (traced, differentiable).

  Returns:
    The elementwise loss, shape ``S``, >= 0, in the promoted floating dtype.

  Derivatives: ∂f/∂x = (x/c²)·((x/c)²/|α − 2| + 1)^{α/2 − 1} (Barron's ψ); ∂f/∂c = −(x/c)·∂f/∂x;
  ∂f/∂α from the formula (finite everywhere but at α = 2, where it is +∞ for x ≠ 0 since
  f − ½(x/c)² behaves like −¼(x/c)²(α − 2)·log|α − 2|). At α = 2 the value is exact and
  the α-derivative returned is the one at |α − 2| = 2⁻²³ (float32's machine epsilon), a
  large finite number of the true sign; within 2⁻²³ of 2 the same clamp applies. At α = ±∞
  the α-derivative is 0 (the limit). The loss is smooth in x (twice differentiable, also at 0).

  Edge cases:
    Finite with finite gradients in x, α and c for every finite input and α in [−1e3, 1e3] or
    ±∞, as long as the value itself is finite (α > 0 grows without bound: α = +∞ overflows
    for (x/c)² > 2·88). NaN in ``alpha`` or the residuals propagates. ``scale <= 0`` raises
    ``ValueError`` (Python number) or fails ``checkify`` (traced).

  References:
    J. T. Barron, "A General and Adaptive Robust Loss Function", CVPR 2019 (Eq. 1 and its
    limits, Eq. 3–8).

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> x = jnp.array([0.5, 2.0, 10.0])
    >>> for a in (2.0, 1.0, 0.0, -2.0, -jnp.inf):
    ...   loss = jaxloss.general_robust_loss(x, alpha=a, scale=1.0)
    ...   print(a, " ".join(f"{v:.4f}" for v in loss))
    2.0 0.1250 2.0000 50.0000
    1.0 0.1180 1.2361 9.0499
    0.0 0.1178 1.0986 3.9318
    -2.0 0.1176 1.0000 1.9231
    -inf 0.1175 0.8647 1.0000
  """
  fn = "general_robust_loss"
  out_dtype, x, h = _inputs(fn, residuals, {"alpha": alpha, "scale": scale})
  a, c = h["alpha"], h["scale"]
  s = _Scaled(x, c)
  delta = a - 2
  finite = jnp.isfinite(a)
  near_two = finite & (jnp.abs(delta) < 1) & ~s.big
  far = finite & ~near_two
  zero, one = jnp.zeros((), x.dtype), jnp.ones((), x.dtype)
  # Away from α = 2 (and every α for huge residuals): (b·L/2)·φ(α·L/2).
  b_far = jnp.where(far, jnp.maximum(jnp.abs(delta), _TINY), one)
  a_far = jnp.where(far, a, zero)
  l_far = s.log1p_over(b_far)
  t = 0.5 * a_far * l_far
  # expm1(t) overflows before (b/α)·expm1(t) does: past t = 30 (where expm1(t) = e^t to float
  # precision, and α > 0) the product is taken in log space.
  huge = t > 30
  t_small = jnp.where(huge, zero, t)
  a_huge = jnp.where(huge, a_far, one)
  f_far = jnp.where(huge, jnp.exp(jnp.log(b_far) - jnp.log(a_huge) + jnp.where(huge, t, zero)),
                    0.5 * b_far * l_far * _expm1_over(t_small))
  # Near α = 2: (z + (b + z)·expm1(δ/2·L))/α, b clamped to 2⁻²³.
  d_near = jnp.where(near_two, delta, zero)
  b_near = jnp.maximum(jnp.abs(d_near), _TINY)
  z_near = jnp.where(near_two, s.z, zero)
  # log1p(z/b), and log z − log b where z/b would overflow (b is as small as 2⁻²³ here).
  ratio_huge = z_near > 1e30 * b_near
  l_near = jnp.where(ratio_huge, jnp.log(jnp.where(ratio_huge, z_near, one)) - jnp.log(b_near),
                     jnp.log1p(jnp.where(ratio_huge, zero, z_near) / b_near))
  f_near = (z_near + (b_near + z_near) * jnp.expm1(0.5 * d_near * l_near)) / (2 + d_near)
  # α = ±∞: exp(±z/2) ∓ 1; for |x/c| > 1e17 exactly inf and 1 (with a zero gradient: the
  # chain rule through an overflowing z would multiply 0 by inf).
  infinite = jnp.isinf(a)
  z_plus = jnp.where(infinite & (a > 0), s.z, zero)   # double where: exp(z/2) may be inf
  z_minus = jnp.where(infinite & (a < 0), s.z, zero)
  f_inf = jnp.where(a > 0, jnp.expm1(0.5 * z_plus), -jnp.expm1(-0.5 * z_minus))
  f_inf = jnp.where(s.big, jnp.where(a > 0, jnp.full((), jnp.inf, x.dtype), one), f_inf)
  loss = jnp.where(far, f_far, jnp.where(near_two, f_near,
                                         jnp.where(infinite, f_inf, jnp.full((), jnp.nan,
                                                                             x.dtype))))
  return loss.astype(out_dtype)


@_numerics.loss_jit(bounds={"scale": _POSITIVE})
def cauchy_loss(residuals: ArrayLike, *, scale: ArrayLike = 1.0) -> jax.Array:
  r"""Cauchy (Lorentzian) loss, Barron's α = 0: log(½(x/c)² + 1).

  Args:
    residuals: floating residuals x, any shape ``S``.
    scale: c > 0, a scalar or broadcasting to ``S`` (traced).

  Returns:
    The elementwise loss, shape ``S``, in the promoted floating dtype; equal to
    ``general_robust_loss(x, alpha=0, scale=c)`` to rounding.

  Derivative: x/(c²·(½(x/c)² + 1)): redescending only logarithmically in the value, the
  influence decays like 1/x.

  Edge cases:
    Finite for every finite x (log(½u²) = 2 log|u| − log 2 where u² would overflow).

  References:
    Barron, CVPR 2019; M. J. Black & P. Anandan, "The robust estimation of multiple motions",
    CVIU 1996.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(" ".join(f"{v:.4f}" for v in jaxloss.cauchy_loss(jnp.array([0.5, 2.0, 1e20]))))
    0.1178 1.0986 91.4103
  """
  fn = "cauchy_loss"
  out_dtype, x, h = _inputs(fn, residuals, {"scale": scale})
  s = _Scaled(x, h["scale"])
  return s.log1p_over(jnp.full_like(x, 2.0)).astype(out_dtype)


@_numerics.loss_jit(bounds={"scale": _POSITIVE})
def geman_mcclure_loss(residuals: ArrayLike, *, scale: ArrayLike = 1.0) -> jax.Array:
  r"""Geman–McClure loss in Barron's normalisation (α = −2): 2(x/c)²/((x/c)² + 4).

  Args:
    residuals: floating residuals x, any shape ``S``.
    scale: c > 0, a scalar or broadcasting to ``S`` (traced).

  Returns:
    The elementwise loss in [0, 2), shape ``S``, in the promoted floating dtype; equal to
    ``general_robust_loss(x, alpha=-2, scale=c)``. (The classic form x²/(x² + σ²) is this
    with c = σ/2, divided by 2.)

  Derivative: 16x/(c²·((x/c)² + 4)²): an outlier's influence decays like 1/x³.

  Edge cases:
    Tends to 2 with a zero gradient as |x| → ∞, also where (x/c)² overflows.

  References:
    Barron, CVPR 2019; S. Geman & D. E. McClure, "Bayesian image analysis: an application to
    single photon emission tomography", 1985.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> loss = jaxloss.geman_mcclure_loss(jnp.array([0.5, 2.0, 1e20]))
    >>> print(" ".join(f"{v:.4f}" for v in loss))
    0.1176 1.0000 2.0000
  """
  fn = "geman_mcclure_loss"
  out_dtype, x, h = _inputs(fn, residuals, {"scale": scale})
  s = _Scaled(x, h["scale"])
  # 2z/(z + 4); past |x/c| = 1e17 it is 2 − 8/(z + 4) = 2 to float precision (gradient 0).
  loss = jnp.where(s.big, jnp.full_like(x, 2.0), 2 * s.z / (s.z + 4))
  return loss.astype(out_dtype)


@_numerics.loss_jit(bounds={"scale": _POSITIVE})
def welsch_loss(residuals: ArrayLike, *, scale: ArrayLike = 1.0) -> jax.Array:
  r"""Welsch (Leclerc) loss, Barron's α = −∞: 1 − exp(−½(x/c)²).

  Args:
    residuals: floating residuals x, any shape ``S``.
    scale: c > 0, a scalar or broadcasting to ``S`` (traced).

  Returns:
    The elementwise loss in [0, 1), shape ``S``, in the promoted floating dtype; equal to
    ``general_robust_loss(x, alpha=-jnp.inf, scale=c)``.

  Derivative: (x/c²)·exp(−½(x/c)²): outliers have (exponentially) no influence.

  Edge cases:
    Computed as −expm1(−½(x/c)²): exact for small residuals, 1 with a zero gradient for huge
    ones.

  References:
    Barron, CVPR 2019; J. E. Dennis & R. E. Welsch, "Techniques for nonlinear least squares
    and robust regression", 1978.

  Examples:
    >>> import jax.numpy as jnp, jaxloss
    >>> print(" ".join(f"{v:.4f}" for v in jaxloss.welsch_loss(jnp.array([0.5, 2.0, 1e20]))))
    0.1175 0.8647 1.0000
  """
  fn = "welsch_loss"
  out_dtype, x, h = _inputs(fn, residuals, {"scale": scale})
  s = _Scaled(x, h["scale"])
  # Past |x/c| = 1e17 the loss is 1 to float precision; the select keeps the gradient 0 there
  # (through an overflowing (x/c)² it would be 0·inf).
  loss = jnp.where(s.big, jnp.ones_like(x), -jnp.expm1(-0.5 * s.z))
  return loss.astype(out_dtype)
