"""CTC: against the explicit sum over all alignments (float64), optax's values, gradients and
forward probabilities, the hand-written backward pass, zero_infinity, bad labels and extremes.

Compilation dominates this file's time, so the tests share two input shapes and a few jitted
helpers (one compilation per function, shape and static argument).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.experimental import checkify

import jaxloss
from _reference import assert_close


def f32(x):
  return jnp.asarray(x, jnp.float32)


def _loss_only(fn):
  return lambda *args, **kwargs: fn(*args, **kwargs)[0]


ALPHAS_LOSS = _loss_only(jaxloss.ctc_loss_with_forward_probs)


@functools.partial(jax.jit, static_argnames=("fn", "blank_id", "zero_infinity"))
def _value_and_grads(fn, logits, logit_pad, labels, label_pad, weights, log_epsilon, blank_id,
                     zero_infinity):
  extra = {"zero_infinity": True} if zero_infinity else {}

  def total(x, eps):
    loss = fn(x, logit_pad, labels, label_pad, blank_id=blank_id, log_epsilon=eps, **extra)
    return jnp.sum(weights * loss), loss

  (_, loss), grads = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(logits,
                                                                             log_epsilon)
  return loss, grads[0], grads[1]


def value_and_grads(fn, logits, logit_pad, labels, label_pad, weights, log_epsilon=-1e5, *,
                    blank_id=0, zero_infinity=False):
  """The per-sequence loss and the gradients of Σ_b weights_b·loss_b in logits and log_epsilon
  (one compilation per function, shapes and static arguments: they are always passed the same
  way)."""
  eps = jnp.asarray(log_epsilon, logits.dtype)
  return _value_and_grads(fn, logits, logit_pad, labels, label_pad, weights, eps,
                          blank_id=blank_id, zero_infinity=zero_infinity)


def collapse(path, blank):
  """Graves et al.'s B: merge repeats, then drop blanks."""
  merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
  return tuple(k for k in merged if k != blank)


def np_ctc(logits, label, blank):
  """−log Σ_π Π_t p_t(π_t) over the alignments π of ``label`` (all K^T of them enumerated),
  and its gradient in the logits: softmax − γ, γ_t(k) the posterior of emitting k at t."""
  x = np.float64(logits)
  p = np.exp(x - x.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  total, gamma = 0.0, np.zeros_like(p)
  frames = np.arange(len(x))
  for path in itertools.product(range(x.shape[1]), repeat=len(x)):
    if collapse(path, blank) == tuple(label):
      weight = np.prod(p[frames, path])
      total += weight
      gamma[frames, path] += weight
  return -np.log(total), p - gamma / total


# Shape 1, for the brute-force reference: 8 sequences of at most 6 frames, 4 classes, at most
# 4 labels. Frames and labels: a tight fit, repeats that force a blank, empty, single.
CASES = [(6, [1, 2]), (5, [1, 1]), (4, [2, 1, 2]), (6, []), (3, [3, 3]), (6, [1, 2, 3, 1]),
         (1, [2]), (5, [3])]


def padded_batch(rng, cases, blank=0, scale=1.5, frames=6, classes=4, max_labels=4):
  """Logits, paddings and labels for (frames, label) cases, right-padded."""
  assert len(cases) == 8
  logits = (rng.normal(size=(8, frames, classes)) * scale).astype(np.float32)
  logit_pad = np.ones((8, frames), np.float32)
  labels = np.full((8, max_labels), (blank + 1) % classes, np.int32)  # padding: never read
  label_pad = np.ones((8, max_labels), np.float32)
  for b, (length, label) in enumerate(cases):
    logit_pad[b, :length] = 0
    labels[b, :len(label)] = label
    label_pad[b, :len(label)] = 0
  return logits, logit_pad, labels, label_pad


def reference(logits, logit_pad, labels, label_pad, blank=0):
  losses, grads = [], np.zeros(logits.shape)
  for b in range(len(logits)):
    frames = int(np.sum(logit_pad[b] == 0))
    loss, grad = np_ctc(logits[b, :frames], labels[b, :int(np.sum(label_pad[b] == 0))], blank)
    losses.append(loss)
    grads[b, :frames] = grad
  return np.array(losses), grads


ONES8 = np.ones(8, np.float32)


@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_matches_sum_over_all_alignments(rng, blank):
  cases = [(f, [k if k != blank else 0 for k in label]) for f, label in CASES]
  logits, *rest = padded_batch(rng, cases, blank=blank)
  loss_ref, grad_ref = reference(logits, *rest, blank=blank)
  loss, grad, _ = value_and_grads(jaxloss.ctc_loss, f32(logits), *rest, ONES8, blank_id=blank)
  assert_close(loss, loss_ref)
  assert_close(grad, grad_ref)
  if blank == 0:  # the forward probabilities' loss: the log-space recursion
    loss, grad, _ = value_and_grads(ALPHAS_LOSS, f32(logits), *rest, ONES8)
    assert_close(loss, loss_ref)
    assert_close(grad, grad_ref)


def test_ctc_matches_sum_over_all_alignments_in_float64(rng):
  logits, *rest = padded_batch(rng, CASES)
  loss_ref, grad_ref = reference(logits, *rest)
  with jax.enable_x64(True):
    x = jnp.asarray(logits, jnp.float64)
    loss, grad, _ = value_and_grads(jaxloss.ctc_loss, x, *rest, jnp.ones(8, jnp.float64))
    assert loss.dtype == grad.dtype == jnp.float64
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-10, atol=1e-12)


def test_ctc_minus_inf_logits_and_padded_frames(rng):
  # A class masked out with −inf at every frame is probability 0: finite loss and gradient
  # (optax: NaN). Whatever is in padded frames does not reach the value or the gradient.
  logits, logit_pad, labels, label_pad = padded_batch(
      rng, [(6, [1, 2]), (5, [2, 2]), (3, [1]), (6, [])] * 2)
  masked = logits.copy()
  masked[:, :, 3] = -np.inf
  masked[logit_pad == 1] = 1e3
  loss, grad, _ = value_and_grads(jaxloss.ctc_loss, f32(masked), logit_pad, labels, label_pad,
                                  ONES8)
  loss_ref, grad_ref = reference(logits[:, :, :3], logit_pad, labels, label_pad)
  assert_close(loss, loss_ref)
  assert_close(grad[:, :, :3], grad_ref)
  assert np.all(grad[:, :, 3] == 0) and np.all(grad[logit_pad == 1] == 0)


def test_ctc_never_negative(rng):
  # optax #1771: a near-certain alignment can give −8e-8 in float32 (then NaN downstream).
  logits, *rest = padded_batch(rng, [(6, [1])] * 8, scale=1.0)
  logits[:, :, 1] += 16  # p(label) ≈ 1 − 1e-7 at every frame: −log p ≈ 1e-6
  for fn in (jaxloss.ctc_loss, ALPHAS_LOSS):
    loss, grad, _ = value_and_grads(fn, f32(logits), *rest, ONES8)
    assert np.all(loss >= 0) and np.max(loss) < 1e-4
    assert np.all(np.isfinite(grad))


def test_ctc_zero_infinity_gives_zero_loss_and_gradient_to_impossible_sequences(rng):
  # Row 1: 3 labels + the blank between the repeat need 4 frames, it has 3; row 3 gets 4 labels
  # on 3 frames. Row 5's label has probability 0 (a −inf logit at every frame).
  cases = [(5, [1, 2]), (3, [1, 2, 2]), (4, [3, 3]), (3, [1, 2, 3, 1]), (6, [2]), (6, [3]),
           (2, [1]), (6, [])]
  logits, logit_pad, labels, label_pad = padded_batch(rng, cases)
  logits[5, :, 3] = -np.inf
  args = (logit_pad, labels, label_pad, ONES8)
  plain, plain_grad, _ = (np.asarray(v) for v in value_and_grads(jaxloss.ctc_loss, f32(logits),
                                                                *args))
  possible = [0, 2, 4, 6, 7]
  # optax's finite stand-in for +inf, ≈ −k·log_epsilon (its agreement with optax is tested
  # with the random batches below, whose row 0 is impossible).
  assert 1e5 < plain[1] < 1e6 and 1e5 < plain[3] < 1e6
  assert 1e5 < plain[5] < 1e6  # the lattice's ε-start P[1] = log_epsilon skips the label
  loss, grad, _ = (np.asarray(v) for v in value_and_grads(jaxloss.ctc_loss, f32(logits), *args,
                                                          zero_infinity=True))
  assert np.all(loss[[1, 3, 5]] == 0) and np.all(grad[[1, 3, 5]] == 0)
  loss_ref, grad_ref = reference(logits[possible], *(a[possible] for a in args[:3]))
  assert_close(loss[possible], loss_ref)
  assert_close(grad[possible], grad_ref)
  np.testing.assert_array_equal(grad[possible], plain_grad[possible])


# Shape 2, for optax agreement: 6 sequences of at most 20 frames, 7 classes, 8 labels.
def random_batch(rng, blank=0, scale=2.0):
  batch, frames, classes, max_labels = 6, 20, 7, 8
  logits = (rng.normal(size=(batch, frames, classes)) * scale).astype(np.float32)
  frame_len = rng.integers(frames // 2, frames + 1, size=batch)
  label_len = rng.integers(0, max_labels + 1, size=batch)
  logit_pad = (np.arange(frames)[None] >= frame_len[:, None]).astype(np.float32)
  label_pad = (np.arange(max_labels)[None] >= label_len[:, None]).astype(np.float32)
  choices = [k for k in range(classes) if k != blank]
  labels = rng.choice(choices, size=(batch, max_labels)).astype(np.int32)
  labels[:, 2] = labels[:, 1]  # a repeat in every sequence long enough
  logit_pad[0, 4:] = 1  # row 0 is impossible: 6 labels and a repeat on 4 frames
  label_pad[0] = np.arange(max_labels) >= 6
  return logits, logit_pad, labels, label_pad


WEIGHTS6 = np.array([0, 1, 1, 1, 1, 1], np.float32)  # the impossible row weighted out


@pytest.mark.parametrize("blank, log_epsilon", [(0, -1e5), (2, -1e5), (0, -4.0)])
def test_ctc_agrees_with_optax_values_and_gradients(rng, blank, log_epsilon):
  logits, *rest = random_batch(rng, blank=blank)
  # Row 0's value is ≈ 2e5 and its gradient a difference of such numbers in both, which
  # float32 leaves uncertain to ~1e-2: its weight is 0.
  weights = f32(rng.uniform(0.5, 1.5, size=len(logits))) * WEIGHTS6
  ours = value_and_grads(jaxloss.ctc_loss, f32(logits), *rest, weights, log_epsilon,
                         blank_id=blank)
  theirs = value_and_grads(optax.losses.ctc_loss, f32(logits), *rest, weights, log_epsilon,
                           blank_id=blank)
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
  assert_close(ours[1], theirs[1])
  np.testing.assert_allclose(ours[2], theirs[2], rtol=1e-4, atol=1e-6)  # ∂/∂log_epsilon


def test_ctc_underflowing_probabilities_fall_back_to_log_space(rng):
  # Logit gaps of ~200: frames' probabilities underflow float32 in the rescaled recursion;
  # the batch is recomputed in log space and matches optax.
  # The gradient's reference is optax's in float64: its float32 one is off by 3e-5 here
  # (weights exp(x − lae) from α's of magnitude ~1e3), the log-space recursion's by 7e-8.
  logits, *rest = random_batch(rng, scale=100.0)
  ours = value_and_grads(jaxloss.ctc_loss, f32(logits), *rest, WEIGHTS6)
  theirs = value_and_grads(optax.losses.ctc_loss, f32(logits), *rest, WEIGHTS6)
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
  with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
    wide = [jnp.asarray(a, jnp.float64 if a.dtype == np.float32 else a.dtype)
            for a in (logits, *rest, WEIGHTS6)]
    ref = [np.asarray(v) for v in value_and_grads(optax.losses.ctc_loss, *wide)]
  assert_close(ours[0], ref[0])
  assert_close(ours[1], ref[1])


def test_ctc_forward_probs_and_their_gradients_agree_with_optax(rng):
  # The hand-written backward pass takes cotangents of the returned α's and of log_epsilon
  # too; optax's automatic differentiation through its scan is the reference (a soft ε).
  logits, *rest = random_batch(rng)
  rest[0][0, :] = 0  # row 0 possible here (the α's of an impossible row are ≈ −1e5·k)

  def run(fn):
    def f(x, eps):
      loss, blank, emit = fn(x, *rest, log_epsilon=eps)
      total = jnp.sum(loss) + 0.01 * jnp.sum(jnp.tanh(blank / 10)) + 0.02 * jnp.sum(emit / 50)
      return total, (loss, blank, emit)
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))(f32(logits),
                                                                       jnp.float32(-3.0))

  (_, ours), (gx, ge) = run(jaxloss.ctc_loss_with_forward_probs)
  (_, theirs), (ox, oe) = run(optax.losses.ctc_loss_with_forward_probs)
  for a, b in zip(ours, theirs, strict=True):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=1e-5)
  assert_close(gx, ox)
  np.testing.assert_allclose(ge, oe, rtol=1e-5)


def test_ctc_bad_labels_give_nan_and_zero_gradient(rng):
  logits, logit_pad, labels, label_pad = random_batch(rng)
  label_pad[:, :3] = 0
  labels[1, 0] = 7  # out of range (K = 7)
  labels[2, 1] = 0  # the blank
  label_pad[3, -1] = 1
  labels[3, -1] = -1  # at a padded position: ignored
  args = (logit_pad, labels, label_pad)
  loss, grad, _ = (np.asarray(v) for v in value_and_grads(jaxloss.ctc_loss, f32(logits), *args,
                                                          WEIGHTS6))
  assert np.isnan(loss[1]) and np.isnan(loss[2])
  assert np.all(np.isfinite(loss[[0, 3, 4, 5]]))
  assert np.all(grad[1:3] == 0) and np.all(np.isfinite(grad))
  checked = checkify.checkify(lambda x: jaxloss.ctc_loss(x, *args),
                              errors=checkify.user_checks)
  err, _ = jax.jit(checked)(f32(logits))
  assert "labels" in str(err.get()) and "7" in str(err.get())


def test_ctc_vmap_and_bf16(rng):
  logits, *rest = random_batch(rng)
  stacked = f32(np.stack([logits, logits * 0.5]))
  batched = jax.jit(jax.vmap(lambda x: jaxloss.ctc_loss(x, *rest)))(stacked)
  for b in range(2):
    loss = value_and_grads(jaxloss.ctc_loss, stacked[b], *rest, WEIGHTS6)[0]
    np.testing.assert_allclose(batched[b], loss, rtol=1e-6)
  loss, grad, _ = value_and_grads(jaxloss.ctc_loss, stacked[0].astype(jnp.bfloat16), *rest,
                                  WEIGHTS6.astype(jnp.bfloat16))
  assert loss.dtype == grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(loss.astype(np.float32), batched[0], rtol=2e-2)


def test_ctc_is_reverse_mode_only(rng):
  logits, *rest = random_batch(rng)
  with pytest.raises(TypeError, match="forward-mode"):
    jax.jvp(lambda x: jaxloss.ctc_loss(x, *rest), (f32(logits),), (f32(logits),))


def test_ctc_argument_errors(rng):
  logits, logit_pad, labels, label_pad = random_batch(rng)
  with pytest.raises(ValueError, match="log_epsilon"):
    jaxloss.ctc_loss(f32(logits), logit_pad, labels, label_pad, log_epsilon=0.5)
  with pytest.raises(ValueError, match="blank_id"):
    jaxloss.ctc_loss(f32(logits), logit_pad, labels, label_pad, blank_id=7)
  with pytest.raises(ValueError, match="label_paddings"):
    jaxloss.ctc_loss(f32(logits), logit_pad, labels, label_pad[:, :-1])
  with pytest.raises(TypeError, match="labels"):
    jaxloss.ctc_loss(f32(logits), logit_pad, f32(labels), label_pad)
  with pytest.raises(TypeError, match="keyword"):
    jaxloss.ctc_loss(f32(logits), logit_pad, labels, label_pad, 0)
