"""The benchmark's outputs: the Markdown table (with the machine and versions) and a PNG chart."""

from __future__ import annotations

import datetime
import importlib.metadata
import pathlib
import platform
import re
import subprocess

import jax

from bench import specs as specs_lib
from bench.runner import COPY_ELEMENTS, Result, Run


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  if cpuinfo.exists():
    for line in cpuinfo.read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor() or platform.machine()


def device_name() -> str:
  """The accelerator's kind, or the CPU model on the CPU backend."""
  kind = jax.devices()[0].device_kind
  return cpu_model() if jax.default_backend() == "cpu" else kind


def stem(mode: str, partial: bool) -> str:
  """``<backend>-<device>`` (+ ``-quick`` / ``-partial``), safe as a file name."""
  slug = re.sub(r"[^a-z0-9]+", "-", f"{jax.default_backend()}-{device_name()}".lower()).strip("-")
  return slug + ("-quick" if mode == "quick" else "") + ("-partial" if partial else "")


def git_revision() -> str:
  """The checkout's commit (``+ changes`` when the work tree differs), or "unknown"."""
  root = pathlib.Path(__file__).parent.parent
  try:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                         text=True, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "jaxloss", "bench"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"
  return sha + (" + uncommitted changes" if dirty else "")


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def _ratio(value: float | None) -> str:
  return "–" if value is None else f"{value:.2f}"


def _target_text(r: Result) -> str:
  parts = []
  if r.target is not None:
    stretch = " (stretch 0.8)" if r.name == "softmax_cross_entropy_with_integer_labels" else ""
    parts.append(f"÷optax ≤ {r.target:g}{stretch}")
  if r.floor_target is not None:
    parts.append(f"÷floor ≤ {r.floor_target:g}")
  return "; ".join(parts) or "–"


def misses(r: Result) -> list[str]:
  """The targets ``r`` misses, as text (forward+backward)."""
  out = []
  ratio = r.ratios.get(("fb", "optax"))
  if r.target is not None and ratio is not None and ratio > r.target:
    out.append(f"÷optax {ratio:.2f} > {r.target:g}")
  if r.floor_target is not None and r.floor.get("fb", 0.0) > r.floor_target:
    out.append(f"÷floor {r.floor['fb']:.2f} > {r.floor_target:g}")
  return out


def _status(r: Result) -> str:
  if r.target is None and r.floor_target is None:
    return "–"
  return "**miss**" if misses(r) else "pass"


def _mib(n: int | None) -> str:
  return "–" if n is None else f"{n / 2**20:.0f}"


def table(run: Run) -> str:
  """The results table in Markdown."""
  head = ("| loss | inputs | fwd ms | fwd ÷optax | fwd ÷torch | fwd ÷floor | f+b ms | "
          "f+b ÷optax | f+b ÷torch | f+b ÷floor | compile s (ours / optax) | "
          "temp MiB (ours / optax) | target (f+b) | status |")
  lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
  for r in run.results:
    if r.error is not None:
      lines.append(f"| `{r.name}` | error: {r.error} |" + " |" * 12)
      continue
    optax_compile = f" / {r.compile_s['optax']:.2f}" if "optax" in r.compile_s else ""
    optax_temp = f" / {_mib(r.temp_bytes['optax'])}" if "optax" in r.temp_bytes else ""
    cells = [f"`{r.name}`", r.shapes,
             f"{1e3 * r.time_s['fwd']:.2f}", _ratio(r.ratios.get(("fwd", "optax"))),
             _ratio(r.ratios.get(("fwd", "torch"))), _ratio(r.floor["fwd"]),
             f"{1e3 * r.time_s['fb']:.2f}", _ratio(r.ratios.get(("fb", "optax"))),
             _ratio(r.ratios.get(("fb", "torch"))), _ratio(r.floor["fb"]),
             f"{r.compile_s['ours']:.2f}{optax_compile}",
             f"{_mib(r.temp_bytes['ours'])}{optax_temp}", _target_text(r), _status(r)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def markdown(run: Run, extra_sections: list[str]) -> str:
  """The whole report: setting, method, table, misses, notes, then ``extra_sections``."""
  device = jax.devices()[0]
  torch = (f"torch {run.torch_version} ({run.threads} threads)" if run.torch_version
           else "torch not installed (no torch column)")
  lines = [
      f"# jaxloss benchmark: {jax.default_backend()}, {device_name()} ({run.mode} sizes)",
      "",
      f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
      f"- Machine: {cpu_model()}, {run.threads} cores, {platform.system()} "
      f"{platform.machine()}; device `{device}` ({device.device_kind})",
      f"- Versions: python {platform.python_version()}, jax {_version('jax')}, "
      f"jaxlib {_version('jaxlib')}, optax {_version('optax')}, jaxloss "
      f"{_version('jaxloss')} (git {git_revision()}); {torch}",
      f"- Copy bandwidth (jitted in-place `x + 1` on {COPY_ELEMENTS[run.mode] >> 18} MiB of "
      "float32, read + write, median over the run): "
      f"{run.bandwidth / 1e9:.1f} GB/s",
      "",
      "Method: `fwd` is `jnp.mean(loss(*inputs))` and `f+b` is `jax.value_and_grad` of it "
      f"(with respect to the first input{_other_argnums()}), each under `jax.jit`; torch's "
      "are `F.<loss>(..., reduction='none').mean()` under `torch.no_grad()` and with "
      "`.backward()`. One repetition runs the copy kernel, then jaxloss, optax, torch for "
      "`fwd`, then the same for `f+b`, each on the next of 2-64 rotating input sets "
      "(together ≥ 256 MiB, beyond the caches). `ms` is jaxloss's median time; `÷optax`, "
      "`÷torch` are medians of the per-repetition ratios jaxloss/reference (< 1: jaxloss "
      "faster); `÷floor` is the time over the bandwidth floor, the bytes that must move "
      "(inputs read once, plus the gradient written once for `f+b`) at the copy bandwidth "
      "measured in the same repetition (below 1 where a loss need not read all of an input: "
      "`nll_loss` reads one entry a row; far above where it is compute-bound). Compile is "
      "the first call (trace, compile, run) of `f+b`; temp is "
      "`compile().memory_analysis().temp_size_in_bytes` of `f+b`. At least "
      f"{_min_repeats(run)} repetitions per loss after a warm-up.",
      "",
  ]
  if run.mode == "quick":
    lines += ["Quick sizes: the targets of issue 7 are defined at the full sizes "
              "(`python -m bench`); statuses here are indicative only.", ""]
  lines += [table(run), ""]
  missed = [(r.name, m) for r in run.results for m in misses(r)]
  if missed:
    lines += ["## Targets missed", ""] + [f"- `{n}`: {m}" for n, m in missed] + [""]
  notes = [(r.name, n) for r in run.results for n in r.notes]
  notes += [(r.name, f"reference is {r.optax_label}") for r in run.results
            if r.optax_label not in (None, "optax")]
  if notes:
    lines += ["## Notes", ""] + [f"- `{n}`: {m}" for n, m in notes] + [""]
  if run.not_timed:
    lines += ["## Not benchmarked", ""]
    lines += [f"- `{n}`: {why}" for n, why in run.not_timed.items()] + [""]
  absent = [n for n in specs_lib.SPECS if n not in _public()]
  if absent:
    lines += ["Specs for names not (yet) in jaxloss, skipped: "
              + ", ".join(f"`{n}`" for n in absent) + ".", ""]
  for section in extra_sections:
    lines += [section.rstrip(), ""]
  return "\n".join(lines)


def _other_argnums() -> str:
  multi = [n for n, spec in specs_lib.SPECS.items() if not isinstance(spec.argnums, int)]
  return "; the inputs " + ", ".join(
      f"{specs_lib.SPECS[n].argnums} of `{n}`" for n in multi) if multi else ""


def _public() -> list[str]:
  import jaxloss  # noqa: PLC0415
  return list(jaxloss.__all__)


def _min_repeats(run: Run) -> int:
  done = [r.repeats for r in run.results if r.error is None]
  return min(done) if done else 0


def chart(run: Run, path: pathlib.Path) -> None:
  """A PNG bar chart: f+b ratios against optax and torch, and f+b time over the floor."""
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  rows = [r for r in run.results if r.error is None][::-1]  # first loss at the top
  names = [r.name for r in rows]
  y = range(len(rows))
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 1.2 + 0.28 * len(rows)), sharey=True)
  height = 0.4
  for offset, ref, color in ((height / 2, "optax", "tab:blue"),
                             (-height / 2, "torch", "tab:orange")):
    values = [r.ratios.get(("fb", ref), 0.0) for r in rows]
    ax1.barh([i + offset for i in y], values, height, label=f"jaxloss ÷ {ref}", color=color)
  for i, r in enumerate(rows):
    if r.target is not None:
      ax1.plot([r.target, r.target], [i - 0.45, i + 0.45], color="black", lw=1.5)
  ax1.axvline(1.0, color="gray", ls="--", lw=1)
  ax1.set_yticks(list(y), names, fontsize=8)
  ax1.set_xlabel("forward+backward time ratio (< 1: jaxloss faster; black tick: target)")
  ax1.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False)
  ax2.barh(list(y), [r.floor["fb"] for r in rows], 0.6,
           color=["tab:green" if r.floor_target is not None else "tab:gray" for r in rows])
  ax2.axvline(specs_lib.FLOOR_TARGET, color="black", ls="--", lw=1,
              label=f"{specs_lib.FLOOR_TARGET:g}× floor: target of the green (elementwise) losses")
  ax2.set_xscale("log")
  ax2.set_xlabel("forward+backward time ÷ bandwidth floor (log)")
  ax2.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False)
  fig.suptitle(f"jaxloss on {jax.default_backend()} ({device_name()}), {run.mode} sizes")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
