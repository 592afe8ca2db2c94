"""The benchmark machinery (``python -m bench``) on one loss at a tiny size: it must write the
Markdown table and the PNG chart. Timing values are not asserted (the CPU is shared)."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss
from bench import large_vocab, registry, report, runner, specs, suite


def test_bench_writes_table_and_chart(tmp_path: pathlib.Path):
  tiny = {"l2_loss": specs.Spec("l2_loss", "elementwise", registry.pair,
                                {"quick": {"shape": (1024,)}})}
  run = suite.benchmark(["l2_loss"], quick=True, out=tmp_path, partial=True, spec_table=tiny,
                        repeats=2, large_vocab=False)
  (result,) = run.results
  assert result.error is None, result.error
  assert result.repeats == 2
  assert ("fb", "optax") in result.ratios  # optax's l2_loss was found and timed
  assert result.notes == []  # jaxloss and optax agree on the value
  mds, pngs = list(tmp_path.glob("*.md")), list(tmp_path.glob("*.png"))
  assert [p.name for p in mds] == [f"{jax.default_backend()}-" + mds[0].name.split("-", 1)[1]]
  assert mds[0].name.endswith("-quick-partial.md") and pngs[0].stem == mds[0].stem
  text = mds[0].read_text()
  assert "| `l2_loss` | 1024 float32, 1024 float32 |" in text
  assert f"jax {jax.__version__}" in text
  assert pngs[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_optax_references_agree_with_jaxloss_at_the_test_size():
  # The bench compares like with like: each optax reference gives jaxloss's mean (the runner
  # notes a disagreement beyond VALUE_RTOL; here it fails). Which names are timed is the
  # registry's (tests/test_registry.py checks every public name has an entry).
  import optax

  for name, spec in specs.SPECS.items():
    label, reference = spec.optax or ("optax", getattr(optax.losses, name, None))
    if reference is None:
      continue
    # The test-size inputs from numpy (the jax-key builder's path is
    # test_registry's test_bench_inputs_trace_through_the_loss_at_both_sizes), the bench's
    # keyword arguments.
    args, _ = spec.inputs(seed=1)
    kwargs = spec.keywords(bench=True)
    # Each side under one jit (arguments closed over): one compilation, not one per eager op.
    mean_of = lambda fn: float(jax.jit(lambda: jnp.mean(fn(*args, **kwargs)))())
    ours = mean_of(getattr(jaxloss, name))
    # optax is written for numpy's implicit rank promotion (its multiclass generalized dice
    # multiplies (B, C) by (C,)); the suite's strict mode is for jaxloss's own code.
    with jax.numpy_rank_promotion("allow"):
      theirs = mean_of(reference)
    assert abs(ours - theirs) <= runner.VALUE_RTOL * max(1.0, abs(ours)), (name, label, ours,
                                                                          theirs)


def test_large_vocab_floor_runs_the_products_it_claims():
  """``bench.large_vocab.three_products`` (the time floor's yardstick) computes, chunk by chunk,
  dh = (h W) Wᵀ and dW = hᵀ (h W), checked in float64 numpy."""
  rng = np.random.default_rng(0)
  h, w = rng.normal(size=(64, 8)), rng.normal(size=(8, 8192)) / 3  # two chunks of 4096
  dh, dw = large_vocab.three_products(jnp.asarray(h, jnp.float32), jnp.asarray(w, jnp.float32),
                                      None)
  z = h @ w
  np.testing.assert_allclose(dh, z @ w.T, rtol=1e-4, atol=1e-4 * np.abs(z @ w.T).max())
  np.testing.assert_allclose(dw, h.T @ z, rtol=1e-4, atol=1e-4 * np.abs(h.T @ z).max())


def _fake_run(mode: str, torch_version: str | None) -> runner.Run:
  """A run's results as the runner returns them, made up (no timing): the longest public name,
  a loss without an optax counterpart, one that failed, one whose reference disagrees."""
  def result(name: str, size: str, ratio: float | None, **kw) -> runner.Result:
    ratios = {} if ratio is None else {("fwd", "optax"): ratio, ("fb", "optax"): ratio}
    if torch_version is not None:
      ratios[("fb", "torch")] = 0.25
    return runner.Result(name, shapes=f"{size} float32", size=size, repeats=7,
                         time_s={"fwd": 1.234e-4, "fb": 2.5}, ratios=ratios,
                         floor={"fwd": 1.5, "fb": 3.0}, compile_s={"ours": 0.1},
                         temp_bytes={"ours": 0}, optax_label="optax" if ratio else None, **kw)

  results = [result("softmax_cross_entropy_with_integer_labels", "4096×32000", 0.99,
                    target=1.0),
             result("l1_loss", "16777216", None),
             result("l2_penalty", "4 arrays, 16,783,360", 1.2, notes=["optax mean 1 ≠ 2"]),
             result("hinge_loss", "16777216", 0.5),
             runner.Result("huber_loss", error="ValueError: " + "x" * 200)]
  return runner.Run(mode, results, 2e10, torch_version, 2,
                    {"reduce": "timed inside every loss's mean"})


def test_terminal_output_fits_100_columns_with_a_summary():
  md = pathlib.Path("bench/results/cpu-quick.md")
  for mode, torch_version in (("quick", None), ("full", "2.5.0")):
    text = report.terminal(_fake_run(mode, torch_version), md, md.with_suffix(".png"),
                           more_in_markdown=["the large-vocabulary tables"])
    lines = text.splitlines()
    assert max(map(len, lines)) <= report.TERMINAL_COLUMNS, text
    # 0.99 and 0.5 are below 1, 1.2 is not; the failed and the optax-less losses do not count.
    assert ("Summary: jaxloss faster than optax (forward+backward) on 2 of 3 losses; "
            "median ÷optax 0.99") in lines
    head = next(i for i, line in enumerate(lines) if line.startswith("loss "))
    assert lines[head + 1].startswith("softmax_cross_entropy_with_integer_labels  4096×32000")
    assert "÷optax" in lines[head] and ("÷torch" in text) == (torch_version is not None)
    assert any(line.startswith("huber_loss") and "failed" in line for line in lines)
    (l1,) = (line for line in lines if line.startswith("l1_loss "))
    assert l1.split()[-1 - (torch_version is not None)] == "–"  # no optax counterpart
    assert ("Quick sizes" in text) == (mode == "quick")
    assert str(md) in text and str(md.with_suffix(".png")) in text
    assert "issue" not in text and "__version__" not in text
  # Three-digit counts (a run of hundreds of losses) still fit.
  many = _fake_run("full", "2.5.0")
  many.results *= 40
  lines = report.terminal(many, md, md.with_suffix(".png")).splitlines()
  assert max(map(len, lines)) <= report.TERMINAL_COLUMNS
  assert any(line.startswith("Summary:") and " 80 of 120 " in line for line in lines)


def test_markdown_shows_targets_at_full_sizes_only_and_real_functions():
  quick, full = (report.markdown(_fake_run(m, None), []) for m in ("quick", "full"))
  assert "differ from a full run" in quick and "status" not in quick
  assert "| status |" in full and "÷torch |" not in full  # no torch column without torch
  assert "issue" not in quick + full and "__version__" not in quick + full
