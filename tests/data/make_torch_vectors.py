"""Regenerates ``torch_reference_extra.json``: PyTorch reference cases for the losses jaxloss
added after the shared vectors (same format as ``torch_reference.json``, see its README).

Run with PyTorch installed (CPU is enough; torch is not a test dependency)::

    pip install torch numpy && python tests/data/make_torch_vectors.py

Every case is computed in float64 with ``reduction="none"``; ``grad`` is d(sum of loss) /
d(inputs[0]).
"""

import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

OUT = pathlib.Path(__file__).with_name("torch_reference_extra.json")


def _case(name, function, inputs, kwargs=None, note="", reduction=True):
  kwargs = kwargs or {}
  tensors = [torch.tensor(x) for x in inputs]
  tensors[0].requires_grad_(True)
  torch_kwargs = {k: torch.tensor(v) if k == "weight" else v for k, v in kwargs.items()}
  if reduction:
    torch_kwargs["reduction"] = "none"
  loss = getattr(F, function)(*tensors, **torch_kwargs)
  loss.sum().backward()
  return {"name": name, "torch_function": function, "note": note,
          "inputs": [np.asarray(x).tolist() for x in inputs], "kwargs": kwargs,
          "loss": loss.detach().numpy().tolist(), "grad": tensors[0].grad.numpy().tolist()}


def main():
  r = np.random.default_rng(20261201)
  pm1 = lambda *shape: r.choice([-1.0, 1.0], size=shape)  # noqa: E731
  cases = []
  for margin in (0.0, 0.5):
    cases.append(_case(f"margin_ranking.margin{margin}", "margin_ranking_loss",
                       [r.normal(size=7), r.normal(size=7), pm1(7)], {"margin": margin}))
  for margin in (1.0, 2.0):
    cases.append(_case(f"hinge_embedding.margin{margin}", "hinge_embedding_loss",
                       [np.abs(r.normal(size=8)) * 2, pm1(8)], {"margin": margin}))
  targets = np.array([[3, 0, -1, 1, 2], [1, -1, 2, 2, 0], [-1, 0, 1, 2, 3], [0, 1, 2, 3, 4],
                      [4, 4, -1, 0, 1]])
  cases.append(_case("multilabel_margin", "multilabel_margin_loss",
                     [r.normal(size=(5, 5)), targets]))
  for margin in (0.0, 0.3):
    cases.append(_case(f"cosine_embedding.margin{margin}", "cosine_embedding_loss",
                       [r.normal(size=(6, 4)), r.normal(size=(6, 4)), pm1(6)],
                       {"margin": margin}, note="PyTorch adds 1e-12 to each squared norm"))
  for swap in (False, True):
    cases.append(_case(f"triplet_with_distance.swap{swap}", "triplet_margin_with_distance_loss",
                       [r.normal(size=(5, 4)), r.normal(size=(5, 4)), r.normal(size=(5, 4))],
                       {"margin": 0.8, "swap": swap}, note="default distance: pairwise_distance"))
  labels = r.integers(0, 2, size=(6, 4)).astype(np.float64)
  cases.append(_case("multilabel_soft_margin", "multilabel_soft_margin_loss",
                     [r.normal(size=(6, 4)) * 3, labels]))
  cases.append(_case("multilabel_soft_margin.weight", "multilabel_soft_margin_loss",
                     [r.normal(size=(6, 4)) * 3, labels],
                     {"weight": r.uniform(0.5, 2.0, size=4).tolist()}))
  for eps in (1e-8, 1e-3):
    cases.append(_case(f"cosine_similarity.eps{eps}", "cosine_similarity",
                       [r.normal(size=(6, 4)), r.normal(size=(6, 4))], {"dim": -1, "eps": eps},
                       reduction=False))
  # CTC: inputs are (log_probs (T, N, C), targets (N, S), input_lengths (N,), target_lengths
  # (N,)); blank 0; one impossible alignment (T too short) in the zero_infinity case.
  t, n, c, s_len = 6, 3, 4, 3
  logits = r.normal(size=(t, n, c))
  log_probs = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
  targets = r.integers(1, c, size=(n, s_len))
  for zero_infinity in (False, True):
    lengths = [t, t - 1, 2] if zero_infinity else [t, t - 1, t - 2]
    cases.append(_case(f"ctc.zero_infinity{zero_infinity}", "ctc_loss",
                       [log_probs, targets, np.array(lengths), np.array([3, 2, 3])],
                       {"blank": 0, "zero_infinity": zero_infinity},
                       note="inputs[0] are log-probabilities (T, N, C), time-major"))
  OUT.write_text(json.dumps({"generator": f"tests/data/make_torch_vectors.py, torch "
                                          f"{torch.__version__}", "cases": cases}, indent=1))
  print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
  main()
