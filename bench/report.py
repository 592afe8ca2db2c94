"""The benchmark's outputs: the Markdown table (with the machine and versions) and a PNG chart."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import pathlib
import platform
import re
import statistics
import subprocess
import textwrap
from collections.abc import Sequence
from typing import Any

import jax

from bench import specs as specs_lib
from bench.runner import COPY_ELEMENTS, MODES, Result, Run


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


def _targets_shown(run: Run) -> bool:
  """Speed targets are set at the full sizes: a quick run shows none."""
  return run.mode == "full"


def table(run: Run) -> str:
  """The full results table in Markdown (the ÷torch columns only where torch was timed; the
  target columns only at the full sizes)."""
  torch = run.torch_version is not None
  targets = _targets_shown(run)
  head = ["loss", "inputs", "fwd ms", "fwd ÷optax"] + ["fwd ÷torch"] * torch + [
      "fwd ÷floor", "f+b ms", "f+b ÷optax"] + ["f+b ÷torch"] * torch + [
      "f+b ÷floor", "compile s (ours / optax)", "temp MiB (ours / optax)"] + [
      "target (f+b)", "status"] * targets
  lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
  for r in run.results:
    if r.error is not None:
      lines.append(f"| `{r.name}` | error: {r.error} |" + " |" * (len(head) - 2))
      continue
    optax_compile = f" / {r.compile_s['optax']:.2f}" if "optax" in r.compile_s else ""
    optax_temp = f" / {_mib(r.temp_bytes['optax'])}" if "optax" in r.temp_bytes else ""
    cells = [f"`{r.name}`", r.shapes]
    for m in MODES:
      cells += [f"{1e3 * r.time_s[m]:.2f}", _ratio(r.ratios.get((m, "optax")))]
      cells += [_ratio(r.ratios.get((m, "torch")))] * torch + [_ratio(r.floor[m])]
    cells += [f"{r.compile_s['ours']:.2f}{optax_compile}",
              f"{_mib(r.temp_bytes['ours'])}{optax_temp}"]
    cells += [_target_text(r), _status(r)] * targets
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


QUICK_NOTE = ("Quick sizes (`--quick`): small inputs, where fixed per-call costs weigh more, so "
              "these ratios differ from a full run's (`python -m bench`); the speed targets are "
              "set at the full sizes and are not shown here.")


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
    lines += [QUICK_NOTE, ""]
  lines += [table(run), ""]
  missed = [(r.name, m) for r in run.results for m in misses(r)] if _targets_shown(run) else []
  if missed:
    lines += ["## Speed targets not met", ""] + [f"- `{n}`: {m}" for n, m in missed] + [""]
  notes = [(r.name, n) for r in run.results for n in r.notes]
  notes += [(r.name, f"reference is {r.optax_label}") for r in run.results
            if r.optax_label not in (None, "optax")]
  if notes:
    lines += ["## Notes", ""] + [f"- `{n}`: {m}" for n, m in notes] + [""]
  if run.not_timed:
    lines += ["## Not benchmarked", ""]
    lines += [f"- `{n}`: {why}" for n, why in run.not_timed.items()] + [""]
  for section in extra_sections:
    lines += [section.rstrip(), ""]
  return "\n".join(lines)


def _other_argnums() -> str:
  multi = [n for n, spec in specs_lib.SPECS.items() if not isinstance(spec.argnums, int)]
  return "; the inputs " + ", ".join(
      f"{specs_lib.SPECS[n].argnums} of `{n}`" for n in multi) if multi else ""


def _min_repeats(run: Run) -> int:
  done = [r.repeats for r in run.results if r.error is None]
  return min(done) if done else 0


# The terminal summary (``python -m bench`` prints it; the Markdown file has everything).
TERMINAL_COLUMNS = 100
QUICK_TERMINAL_NOTE = ("Quick sizes (--quick): small inputs, where fixed per-call costs weigh "
                       "more, so these ratios differ from a full run's (python -m bench).")
RATIO_LEGEND = ("{refs}: forward+backward time of jaxloss ÷ the reference's (< 1: faster); "
                "–: no counterpart.")


def _ms(seconds: float) -> str:
  ms = 1e3 * seconds
  return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:,.0f}"


def _clip(text: str, width: int = TERMINAL_COLUMNS) -> str:
  return text if len(text) <= width else text[:width - 1] + "…"


def _wrap(text: str) -> list[str]:
  return textwrap.wrap(text, TERMINAL_COLUMNS, break_on_hyphens=False)


def summary(run: Run) -> str:
  """One line: on how many of the losses with an optax counterpart jaxloss's forward+backward
  is faster, and the median ratio."""
  ratios = [r.ratios[("fb", "optax")] for r in run.results
            if r.error is None and ("fb", "optax") in r.ratios]
  if not ratios:
    return "Summary: none of these losses has an optax counterpart to compare with."
  faster = sum(x < 1.0 for x in ratios)
  return (f"Summary: jaxloss faster than optax (forward+backward) on {faster} of {len(ratios)} "
          f"losses; median ÷optax {statistics.median(ratios):.2f}")


def _torch_summary(run: Run) -> str | None:
  ratios = [r.ratios[("fb", "torch")] for r in run.results
            if r.error is None and ("fb", "torch") in r.ratios]
  if not ratios:
    return None
  faster = sum(x < 1.0 for x in ratios)
  return (f"         jaxloss faster than torch (forward+backward) on {faster} of {len(ratios)} "
          f"losses; median ÷torch {statistics.median(ratios):.2f}")


def _shown_path(path: pathlib.Path) -> str:
  try:
    return str(path.resolve().relative_to(pathlib.Path.cwd().resolve()))
  except ValueError:
    return str(path)


def terminal(run: Run, markdown_path: pathlib.Path, png_path: pathlib.Path, *,
             more_in_markdown: Sequence[str] = ()) -> str:
  """What ``python -m bench`` prints: a table that fits in ``TERMINAL_COLUMNS`` columns (loss,
  largest input, forward and forward+backward ms of jaxloss, the forward+backward ratios), the
  one-line summary, and where the full Markdown table and the PNG plot were written.
  ``more_in_markdown``: titles of further sections that only the Markdown file holds."""
  torch = run.torch_version is not None
  head = ["largest input", "fwd ms", "f+b ms", "÷optax"] + ["÷torch"] * torch
  rows = []
  for r in run.results:
    if r.error is not None:
      continue
    cells = [r.size, _ms(r.time_s["fwd"]), _ms(r.time_s["fb"]),
             _ratio(r.ratios.get(("fb", "optax"))), _ratio(r.ratios.get(("fb", "torch")))]
    rows.append((r.name, cells[:len(head)]))
  widths = [max([len(h)] + [len(c[i]) for _, c in rows]) for i, h in enumerate(head)]
  rest = sum(w + 2 for w in widths)
  names = [r.name for r in run.results]
  name_w = min(max([4] + [len(n) for n in names]), TERMINAL_COLUMNS - rest)

  def line(name: str, cells: Sequence[str]) -> str:
    size, *numbers = cells
    return (f"{name:<{name_w}}  {size:<{widths[0]}}"
            + "".join(f"  {c:>{w}}" for c, w in zip(numbers, widths[1:], strict=True)))

  lines = _wrap(QUICK_TERMINAL_NOTE) if run.mode == "quick" else []
  lines += [line("loss", head)]
  by_name = dict(rows)
  for r in run.results:
    if r.error is not None:
      lines.append(_clip(f"{r.name:<{name_w}}  failed: {r.error}"))
    elif len(r.name) > name_w:  # a name too long for the column gets a line of its own
      lines += [r.name, line("", by_name[r.name])]
    else:
      lines.append(line(r.name, by_name[r.name]))
  refs = "÷optax, ÷torch" if torch else "÷optax"
  lines += _wrap(RATIO_LEGEND.format(refs=refs)) + ["", summary(run)]
  if torch and (torch_line := _torch_summary(run)) is not None:
    lines.append(torch_line)
  disagree = [r.name for r in run.results if r.notes]
  if disagree:
    lines += _wrap("A reference's value differs from jaxloss's for: " + ", ".join(disagree)
                   + " (see the Markdown file's notes).")
  if run.not_timed:
    n = len(run.not_timed)
    lines += _wrap(f"Not timed: {n} public function{'s' * (n != 1)} (the Markdown file says "
                   "why).")
  more = ", ".join(["every column", "the method", "the machine", *more_in_markdown])
  lines += [""] + _wrap(f"Full report, Markdown ({more}):")
  lines += [f"  {_shown_path(markdown_path)}", "Plot, PNG:", f"  {_shown_path(png_path)}"]
  return "\n".join(lines)


def _log_ticks(ax: Any) -> None:
  """Readable log-axis ticks: 1, 2, 5 per decade (1 alone over many decades) as plain numbers,
  no minor labels (matplotlib's default labels minor ticks as "3×10⁰4×10⁰", run together)."""
  import matplotlib.ticker as ticker  # noqa: PLC0415

  low, high = ax.get_xlim()
  decades = math.log10(max(high, 1e-30) / max(low, 1e-30))
  ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0,) if decades > 3 else
                                               (1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def chart(run: Run, path: pathlib.Path) -> None:
  """A PNG bar chart: f+b ratios against optax and torch, and f+b time over the floor.

  Legends name only the series drawn; a loss with no reference says so in place of its bars;
  targets (black ticks, the floor line, green bars) are drawn at the full sizes only."""
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  rows = [r for r in run.results if r.error is None][::-1]  # first loss at the top
  names = [r.name for r in rows]
  y = range(len(rows))
  targets = _targets_shown(run)
  fig_height = 1.4 + 0.28 * len(rows)
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, fig_height), sharey=True)
  refs = [ref for ref in ("optax", "torch") if any(("fb", ref) in r.ratios for r in rows)]
  height = 0.8 / max(len(refs), 1)
  offsets = {ref: (len(refs) - 1) * height / 2 - k * height for k, ref in enumerate(refs)}
  for ref in refs:
    color, offset = {"optax": "tab:blue", "torch": "tab:orange"}[ref], offsets[ref]
    drawn = [(i, r.ratios[("fb", ref)]) for i, r in enumerate(rows) if ("fb", ref) in r.ratios]
    ax1.barh([i + offset for i, _ in drawn], [v for _, v in drawn], height,
             label=f"jaxloss ÷ {ref}", color=color)
  missing = "no optax or torch counterpart" if run.torch_version else "no optax counterpart"
  for i, r in enumerate(rows):
    if ("fb", "optax") not in r.ratios:
      # In the optax bar's place (a torch bar beside it is drawn).
      text, at = ((missing, i) if ("fb", "torch") not in r.ratios
                  else ("no optax counterpart", i + offsets.get("optax", 0.0)))
      ax1.text(0.02, at, text, va="center", fontsize=7, color="dimgray", style="italic",
               transform=ax1.get_yaxis_transform())
  if targets and any(r.target is not None for r in rows):
    for i, r in enumerate(rows):
      if r.target is not None:
        ax1.plot([r.target, r.target], [i - 0.45, i + 0.45], color="black", lw=1.5,
                 label="target" if "target" not in ax1.get_legend_handles_labels()[1] else None)
  ax1.axvline(1.0, color="gray", ls="--", lw=1)
  ax1.set_yticks(list(y), names, fontsize=8)
  ax1.set_ylim(-0.6, len(rows) - 0.4)
  ax1.set_xlim(left=0.0)
  ax1.set_xlabel("forward+backward time, jaxloss ÷ reference (< 1: jaxloss faster)")
  if ax1.get_legend_handles_labels()[0]:
    ax1.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=8, frameon=False)
  green = [targets and r.floor_target is not None for r in rows]
  ax2.barh(list(y), [r.floor["fb"] for r in rows], 0.6,
           color=["tab:green" if g else "tab:gray" for g in green])
  if any(green):
    ax2.axvline(specs_lib.FLOOR_TARGET, color="black", ls="--", lw=1,
                label=f"{specs_lib.FLOOR_TARGET:g}× floor: target of the green (elementwise) "
                      "losses")
    ax2.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=8, frameon=False)
  ax2.set_xscale("log")
  _log_ticks(ax2)
  ax2.set_xlabel("forward+backward time ÷ bandwidth floor (log scale)")
  quick = ": ratios differ from a full run's" if run.mode == "quick" else ""
  # The title 0.1 inch from the top, whatever the figure's height (at matplotlib's default
  # height, 2% of the figure, a tall figure's title covered the legends); tight_layout fits
  # the axes and the legends above them below it.
  fig.suptitle(f"jaxloss on {jax.default_backend()} ({device_name()}), {run.mode} sizes{quick}",
               y=1 - 0.1 / fig_height, va="top")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
