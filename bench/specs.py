"""What the benchmark runs: one :class:`Spec` per public loss, keyed by its name in ``jaxloss``.

A spec builds the positional inputs (float32) at a named size ("quick" or "full"), gives the
keyword arguments shared by jaxloss and optax, the PyTorch counterpart in
``torch.nn.functional`` (a function of ``F`` and torch tensors, returning the unreduced loss)
and the speed targets of issue 7. Names listed here but not (yet) in ``jaxloss`` are skipped;
names in ``jaxloss.__all__`` with no spec are reported as "not benchmarked".

The optax reference is ``optax.losses.<name>`` unless the spec names another function; a loss
compared with optax's function of the same name has the default target ``ratio <= 1.05``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

# Forward+backward targets from issue 7 (ratio jaxloss / optax, same run).
SHARED_WITH_OPTAX_TARGET = 1.05
# Elementwise losses at full size: forward+backward time within this factor of the floor.
FLOOR_TARGET = 3.0

# Names in ``jaxloss.__all__`` that are deliberately not in the table, and why.
NOT_TIMED = {
    "__version__": "not a function",
    "reduce": "the reduction, timed inside every loss's mean",
    "vocab_parallel_linear_softmax_cross_entropy":
        "needs a device mesh; see the large-vocabulary section",
}


@dataclasses.dataclass(frozen=True)
class Spec:
  """How to benchmark one loss.

  Attributes:
    build: ``build(key, **size)`` returns the positional inputs (arrays or pytrees).
    sizes: ``{"quick": size, "full": size}``, keyword arguments of ``build``.
    kwargs: keyword arguments passed to both jaxloss's and optax's function.
    argnums: the inputs differentiated in forward+backward (the first by default).
    optax: the reference when it is not ``optax.losses.<name>``, as ``(label, function)``.
    torch: ``torch(F, *inputs)`` with ``F = torch.nn.functional``: the unreduced loss.
    target: the forward+backward target ratio against optax, if not the default.
    floor_target: the target of forward+backward time over the bandwidth floor (full size).
  """
  build: Callable[..., tuple[Any, ...]]
  sizes: Mapping[str, Mapping[str, int]]
  kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  argnums: int | tuple[int, ...] = 0
  optax: tuple[str, Callable[..., Any]] | None = None
  torch: Callable[..., Any] | None = None
  target: float | None = None
  floor_target: float | None = None


# --------------------------------------------------------------------------------------------
# Sizes (issue 7: elementwise losses at 16M elements, the sigmoid losses at 8M, cross-entropy at
# N=4096, V=32000; the rest at sizes of the same order).
# --------------------------------------------------------------------------------------------

ELEMENTWISE = {"quick": {"n": 1 << 18}, "full": {"n": 1 << 24}}
SIGMOID = {"quick": {"n": 1 << 18}, "full": {"n": 1 << 23}}
VOCAB = {"quick": {"n": 64, "v": 4000}, "full": {"n": 4096, "v": 32000}}
CLASSES = {"quick": {"n": 256, "v": 1000}, "full": {"n": 16384, "v": 1000}}
EMBEDDING = {"quick": {"n": 1024, "d": 256}, "full": {"n": 65536, "d": 256}}
CENTERS = {"quick": {"n": 1024, "d": 256, "c": 1000}, "full": {"n": 65536, "d": 256, "c": 1000}}
PARAMS = {"quick": {"d": 512}, "full": {"d": 4096}}
LINEAR = {"quick": {"n": 128, "d": 128, "v": 4096}, "full": {"n": 1024, "d": 256, "v": 16000}}


# --------------------------------------------------------------------------------------------
# Input builders.
# --------------------------------------------------------------------------------------------

def _normal(key: jax.Array, *shape: int) -> jax.Array:
  return jax.random.normal(key, shape, jnp.float32)


def _sign(key: jax.Array, *shape: int) -> jax.Array:
  """Labels in {-1, +1} (float32, as optax's margin losses take them)."""
  return jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0).astype(jnp.float32)


def _bits(key: jax.Array, *shape: int) -> jax.Array:
  """Binary labels in {0, 1}, float32."""
  return jax.random.bernoulli(key, 0.5, shape).astype(jnp.float32)


def _classes(key: jax.Array, n: int, v: int) -> jax.Array:
  return jax.random.randint(key, (n,), 0, v, jnp.int32)


def _probabilities(key: jax.Array, n: int, v: int) -> jax.Array:
  return jax.nn.softmax(_normal(key, n, v), axis=-1)


def pair(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  """Predictions and targets, both standard normal."""
  k1, k2 = jax.random.split(key)
  return _normal(k1, n), _normal(k2, n)


def _poisson(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return _normal(k1, n), jax.random.poisson(k2, 2.0, (n,)).astype(jnp.float32)


def _gaussian(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  k1, k2, k3 = jax.random.split(key, 3)
  return _normal(k1, n), _normal(k2, n), jnp.exp(_normal(k3, n))


def _margin(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return _normal(k1, n), _sign(k2, n)


def _sigmoid(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return 2.0 * _normal(k1, n), _bits(k2, n)


def _binary_probabilities(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return jax.random.uniform(k1, (n,), jnp.float32, 0.01, 0.99), _bits(k2, n)


def _integer_labels(key: jax.Array, n: int, v: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return 2.0 * _normal(k1, n, v), _classes(k2, n, v)


def _log_probs_integer(key: jax.Array, n: int, v: int) -> tuple[jax.Array, jax.Array]:
  logits, labels = _integer_labels(key, n, v)
  return jax.nn.log_softmax(logits, axis=-1), labels


def _probability_labels(key: jax.Array, n: int, v: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return 2.0 * _normal(k1, n, v), _probabilities(k2, n, v)


def _log_probs_probabilities(key: jax.Array, n: int, v: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return jax.nn.log_softmax(_normal(k1, n, v), axis=-1), _probabilities(k2, n, v)


def _log_probs_log_probabilities(key: jax.Array, n: int, v: int) -> tuple[jax.Array, jax.Array]:
  k1, k2 = jax.random.split(key)
  return (jax.nn.log_softmax(_normal(k1, n, v), axis=-1),
          jax.nn.log_softmax(_normal(k2, n, v), axis=-1))


def _one_hot(key: jax.Array, n: int, v: int) -> tuple[jax.Array]:
  return (jax.nn.one_hot(_classes(key, n, v), v, dtype=jnp.float32),)


def _triplet(key: jax.Array, n: int, d: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  k1, k2, k3 = jax.random.split(key, 3)
  return _normal(k1, n, d), _normal(k2, n, d), _normal(k3, n, d)


def _contrastive(key: jax.Array, n: int, d: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  k1, k2, k3 = jax.random.split(key, 3)
  return _normal(k1, n, d), _normal(k2, n, d), _bits(k3, n)


def _center_loss(key: jax.Array, n: int, d: int, c: int) -> tuple[jax.Array, ...]:
  k1, k2, k3 = jax.random.split(key, 3)
  return _normal(k1, n, d), _classes(k2, n, c), _normal(k3, c, d)


def _update_centers(key: jax.Array, n: int, d: int, c: int) -> tuple[jax.Array, ...]:
  features, labels, centers = _center_loss(key, n, d, c)
  return centers, features, labels


def _params(key: jax.Array, d: int) -> dict[str, jax.Array]:
  """A two-layer MLP's parameters, d²  weights in all."""
  k1, k2, k3 = jax.random.split(key, 3)
  return {"w1": _normal(k1, d, d // 2), "b1": jnp.zeros((d // 2,), jnp.float32),
          "w2": _normal(k2, d // 2, d), "b2": _normal(k3, d)}


def _penalty(key: jax.Array, d: int) -> tuple[dict[str, jax.Array]]:
  return (_params(key, d),)


def _structural_risk(key: jax.Array, d: int) -> tuple[jax.Array, dict[str, jax.Array]]:
  k1, k2 = jax.random.split(key)
  return jnp.abs(_normal(k1, 16 * d)), _params(k2, d)


def _linear(key: jax.Array, n: int, d: int, v: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  k1, k2, k3 = jax.random.split(key, 3)
  return _normal(k1, n, d), _normal(k2, d, v) / d ** 0.5, _classes(k3, n, v)


def _naive_linear_cross_entropy(hidden: jax.Array, weight: jax.Array,
                                labels: jax.Array) -> jax.Array:
  import optax  # noqa: PLC0415  (the bench extra; imported where the reference is used)
  return optax.losses.softmax_cross_entropy_with_integer_labels(hidden @ weight, labels)


# --------------------------------------------------------------------------------------------
# The table.
# --------------------------------------------------------------------------------------------

SPECS: dict[str, Spec] = {
    # regression
    "l1_loss": Spec(pair, ELEMENTWISE, torch=lambda F, p, t: F.l1_loss(p, t, reduction="none"),
                    floor_target=FLOOR_TARGET),
    "squared_error": Spec(pair, ELEMENTWISE,
                          torch=lambda F, p, t: F.mse_loss(p, t, reduction="none"),
                          floor_target=FLOOR_TARGET),
    "l2_loss": Spec(pair, ELEMENTWISE,
                    torch=lambda F, p, t: 0.5 * F.mse_loss(p, t, reduction="none"),
                    floor_target=FLOOR_TARGET),
    "smooth_l1_loss": Spec(
        pair, ELEMENTWISE, {"beta": 1.0},
        torch=lambda F, p, t: F.smooth_l1_loss(p, t, reduction="none", beta=1.0),
        floor_target=FLOOR_TARGET),
    "huber_loss": Spec(pair, ELEMENTWISE, {"delta": 1.0},
                       torch=lambda F, p, t: F.huber_loss(p, t, reduction="none", delta=1.0),
                       floor_target=FLOOR_TARGET),
    "log_cosh": Spec(pair, ELEMENTWISE),
    "quantile_loss": Spec(pair, ELEMENTWISE, {"quantile": 0.9}),
    "poisson_nll_loss": Spec(
        _poisson, ELEMENTWISE,
        torch=lambda F, x, t: F.poisson_nll_loss(x, t, log_input=True, reduction="none")),
    "gaussian_nll_loss": Spec(
        _gaussian, ELEMENTWISE,
        torch=lambda F, m, t, v: F.gaussian_nll_loss(m, t, v, reduction="none")),
    # classification
    "softmax_cross_entropy": Spec(
        _probability_labels, VOCAB, torch=lambda F, x, p: F.cross_entropy(x, p, reduction="none")),
    "softmax_cross_entropy_with_integer_labels": Spec(
        _integer_labels, VOCAB, torch=lambda F, x, y: F.cross_entropy(x, y, reduction="none"),
        target=1.0),
    "sigmoid_binary_cross_entropy": Spec(
        _sigmoid, SIGMOID,
        torch=lambda F, x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none"),
        target=0.8, floor_target=FLOOR_TARGET),
    "binary_cross_entropy": Spec(
        _binary_probabilities, ELEMENTWISE,
        torch=lambda F, p, y: F.binary_cross_entropy(p, y, reduction="none"),
        floor_target=FLOOR_TARGET),
    "sigmoid_focal_loss": Spec(_sigmoid, SIGMOID, {"gamma": 2.0}, target=0.5),
    "softmax_focal_loss": Spec(_integer_labels, VOCAB, {"gamma": 2.0}),
    "nll_loss": Spec(_log_probs_integer, VOCAB,
                     torch=lambda F, x, y: F.nll_loss(x, y, reduction="none")),
    "kl_divergence": Spec(
        _log_probs_probabilities, VOCAB,
        torch=lambda F, x, t: F.kl_div(x, t, reduction="none").sum(-1)),
    "kl_divergence_with_log_targets": Spec(
        _log_probs_log_probabilities, VOCAB,
        torch=lambda F, x, t: F.kl_div(x, t, reduction="none", log_target=True).sum(-1)),
    "smooth_labels": Spec(_one_hot, VOCAB, {"alpha": 0.1}),
    "poly_loss_cross_entropy": Spec(_probability_labels, VOCAB, {"epsilon": 2.0}),
    # margin
    "zero_one_loss": Spec(_margin, ELEMENTWISE),
    "multiclass_zero_one_loss": Spec(_integer_labels, CLASSES),
    "hinge_loss": Spec(_margin, ELEMENTWISE, floor_target=FLOOR_TARGET),
    "squared_hinge_loss": Spec(_margin, ELEMENTWISE),
    "perceptron_loss": Spec(_margin, ELEMENTWISE),
    "multiclass_hinge_loss": Spec(_integer_labels, CLASSES),
    "multiclass_perceptron_loss": Spec(_integer_labels, CLASSES),
    "multi_margin_loss": Spec(
        _integer_labels, CLASSES, {"p": 1, "margin": 1.0},
        torch=lambda F, x, y: F.multi_margin_loss(x, y, p=1, margin=1.0, reduction="none")),
    "logistic_loss": Spec(_margin, ELEMENTWISE,
                          torch=lambda F, s, y: F.soft_margin_loss(s, y, reduction="none"),
                          floor_target=FLOOR_TARGET),
    "exponential_loss": Spec(_margin, ELEMENTWISE),
    # embedding
    "center_loss": Spec(_center_loss, CENTERS),
    "update_centers": Spec(_update_centers, CENTERS, {"alpha": 0.5}),
    "triplet_margin_loss": Spec(
        _triplet, EMBEDDING, {"margin": 1.0},
        torch=lambda F, a, p, n: F.triplet_margin_loss(a, p, n, margin=1.0, reduction="none")),
    "contrastive_loss": Spec(_contrastive, EMBEDDING, {"margin": 1.0}),
    # regularizers
    "l1_penalty": Spec(_penalty, PARAMS),
    "l2_penalty": Spec(_penalty, PARAMS),
    "elastic_net_penalty": Spec(_penalty, PARAMS, {"l1_ratio": 0.5}),
    "structural_risk": Spec(_structural_risk, PARAMS, {"l1": 1e-4, "l2": 1e-4}, argnums=(0, 1)),
    # large vocabulary (the memory comparison is bench.large_vocab's section)
    "linear_softmax_cross_entropy": Spec(
        _linear, LINEAR, argnums=(0, 1),
        optax=("optax on h @ w", _naive_linear_cross_entropy),
        torch=lambda F, h, w, y: F.cross_entropy(h @ w, y, reduction="none")),
}
