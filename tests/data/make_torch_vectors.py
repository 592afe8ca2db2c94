"""Regenerates the PyTorch (and Keras) reference files of tests/data/.

- ``torch_reference_extra.json``: PyTorch reference cases for the losses jaxloss added after the
  shared vectors (same format as ``torch_reference.json``, see its README). Every case is
  computed in float64 with ``reduction="none"``; ``grad`` is d(sum of loss) / d(inputs[0]).
- ``torch_reduced.json``: the value of each PyTorch row of the "Coming from PyTorch" guide
  (``docs/guides.py``: ``F.cross_entropy(logits, labels, weight=w)`` with its default
  reduction, ``"sum"``, ``"batchmean"``, ``torchvision.ops``' box losses ...), evaluated from the
  row's own source text on its named inputs in float64, with those inputs; and the names of the
  losses of ``torch.nn.functional`` and ``torchvision.ops``, so that the test sees a loss
  without a row.
- ``keras_reference.json``: the same for the guide's Keras rows (Keras 3 on its torch backend,
  ``floatx`` float64), written when Keras is installed.

Run with PyTorch installed (CPU is enough; none of these is a test dependency)::

    pip install torch torchvision keras numpy && python tests/data/make_torch_vectors.py
"""

import importlib.util
import json
import os
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT = pathlib.Path(__file__).with_name("torch_reference_extra.json")
REDUCED_OUT = pathlib.Path(__file__).with_name("torch_reduced.json")
KERAS_OUT = pathlib.Path(__file__).with_name("keras_reference.json")
GUIDES = pathlib.Path(__file__).resolve().parents[2] / "docs" / "guides.py"


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
  pm1 = lambda *shape: r.choice([-1.0, 1.0], size=shape)
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


def _guides():
  spec = importlib.util.spec_from_file_location("guides", GUIDES)
  module = importlib.util.module_from_spec(spec)
  sys.modules["guides"] = module  # dataclasses look their module up while it executes
  spec.loader.exec_module(module)  # numpy only: no jax needed here
  return module


def _stored_inputs(guides, rows):
  return {name: {k: {"dtype": str(v.dtype), "data": v.tolist()}
                 for k, v in guides.make_inputs(name).items()}
          for name in sorted({row.inputs for row in rows})}


def _evaluate(rows, guides, namespace, to_tensor, to_list):
  values = []
  for row in rows:
    inputs = {k: to_tensor(v) for k, v in guides.make_inputs(row.inputs).items()}
    value = eval(row.other, {**namespace, **inputs})
    values.append({"call": row.other, "inputs": row.inputs, "value": to_list(value)})
  return values


def _import_torchvision():
  """torchvision; where its compiled operators do not load (PyPI's wheel links CUDA builds of
  torch's libraries, absent beside a CPU-only torch), its pure-Python ``ops`` (the box and
  focal losses used here, written on torch operations) without the package's ``__init__``."""
  import importlib.metadata
  import types

  try:
    import torchvision
    return torchvision, torchvision.__version__
  except (ImportError, OSError, RuntimeError):
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
  spec = importlib.util.find_spec("torchvision")
  package = types.ModuleType("torchvision")
  package.__path__ = list(spec.submodule_search_locations)
  sys.modules["torchvision"] = package
  import torchvision.ops
  version = importlib.metadata.version("torchvision")
  return package, f"{version} (torchvision.ops alone: its compiled operators did not load)"


def reduced():
  """Writes torch_reduced.json (and keras_reference.json where Keras is installed)."""
  torchvision, torchvision_version = _import_torchvision()
  guides = _guides()
  namespace = {"F": F, "torch": torch, "torchvision": torchvision}
  to_tensor = torch.from_numpy  # float64 and int64, as numpy made them
  to_list = lambda x: x.detach().numpy().tolist()
  special = {"cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits",
             "kl_div", "cosine_similarity"}
  data = {
      "generator": f"tests/data/make_torch_vectors.py (reduced), torch {torch.__version__}, "
                   f"torchvision {torchvision_version}",
      "functional_losses": sorted(n for n in dir(F) if n.endswith("_loss") or n in special),
      "torchvision_losses": sorted(n for n in dir(torchvision.ops) if n.endswith("_loss")
                                   and callable(getattr(torchvision.ops, n))  # not the modules
                                   and not isinstance(getattr(torchvision.ops, n), type(os))),
      "inputs": _stored_inputs(guides, guides.TORCH_ROWS),
      "rows": _evaluate(guides.TORCH_ROWS, guides, namespace, to_tensor, to_list),
  }
  REDUCED_OUT.write_text(json.dumps(data, indent=1))
  print(f"wrote {len(data['rows'])} rows to {REDUCED_OUT}")

  os.environ.setdefault("KERAS_BACKEND", "torch")
  try:
    import keras
  except ImportError:
    print("keras is not installed: keras_reference.json left as it is")
    return
  keras.config.set_floatx("float64")
  data = {
      "generator": f"tests/data/make_torch_vectors.py (reduced), keras {keras.__version__} "
                   f"({keras.backend.backend()} backend, float64)",
      "losses": sorted(n for n in dir(keras.losses)
                       if n[0].islower() and n not in {"get", "serialize", "deserialize"}),
      "inputs": _stored_inputs(guides, guides.KERAS_ROWS),
      "rows": _evaluate(guides.KERAS_ROWS, guides, {"keras": keras}, lambda x: x,
                        lambda x: np.asarray(keras.ops.convert_to_numpy(x)).tolist()),
  }
  KERAS_OUT.write_text(json.dumps(data, indent=1))
  print(f"wrote {len(data['rows'])} rows to {KERAS_OUT}")


if __name__ == "__main__":
  main()
  reduced()
