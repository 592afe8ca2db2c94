"""``python -m bench``: the command line, and :func:`benchmark`, which runs and writes a report."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pathlib
import shutil
import sys
import textwrap
from collections.abc import Mapping, Sequence

import jax
from tqdm import tqdm

import jaxloss
from bench import report, runner
from bench import specs as specs_lib

DEFAULT_OUT = pathlib.Path(__file__).parent / "results"
LARGE_VOCAB_LOSS = "linear_softmax_cross_entropy"


def available() -> list[str]:
  """The losses with a spec that ``jaxloss`` exports now, in the spec table's order."""
  return [n for n in specs_lib.SPECS if n in jaxloss.__all__]


def large_vocab_section(quick: bool) -> str | None:
  """``bench.large_vocab.run(quick)``'s Markdown, if that module exists."""
  if importlib.util.find_spec("bench.large_vocab") is None:
    return None
  return importlib.import_module("bench.large_vocab").run(quick)


def benchmark(names: Sequence[str], *, quick: bool, out: pathlib.Path, partial: bool,
              spec_table: Mapping[str, specs_lib.Spec] | None = None,
              repeats: int | None = None, large_vocab: bool = True) -> runner.Run:
  """Runs ``names``, writes ``<out>/<stem>.md`` (the full table) and ``.png``, and prints the
  compact terminal table (:func:`bench.report.terminal`)."""
  mode = "quick" if quick else "full"
  columns = min(report.TERMINAL_COLUMNS, shutil.get_terminal_size().columns)
  run = runner.run(names, mode, spec_table=spec_table, repeats=repeats,
                   progress=lambda it: tqdm(it, desc="jaxloss bench", unit="loss",
                                            ncols=columns))
  sections = []
  if large_vocab:
    section = large_vocab_section(quick)
    if section is not None:
      sections.append(section)
  out.mkdir(parents=True, exist_ok=True)
  base = out / report.stem(mode, partial)
  md, png = base.with_suffix(".md"), base.with_suffix(".png")
  md.write_text(report.markdown(run, sections))
  report.chart(run, png)
  more = ["the large-vocabulary tables"] if sections else []
  print(report.terminal(run, md, png, more_in_markdown=more))
  return run


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m bench",
      description="Time every jaxloss loss against optax (and torch.nn.functional where "
                  "installed) on the local jax backend; write a Markdown table and a PNG.")
  parser.add_argument("--quick", action="store_true",
                      help="small sizes, for a first look (ratios differ from a full run's)")
  parser.add_argument("--loss", action="append", metavar="NAME",
                      help="only this loss (repeatable, or comma-separated)")
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT,
                      help=f"output folder (default {DEFAULT_OUT})")
  args = parser.parse_args(argv)
  names = available()
  if args.loss:
    chosen = [n.strip() for item in args.loss for n in item.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in names]
    if unknown:
      parser.error(f"no benchmark for {', '.join(unknown)}; available: {', '.join(names)}")
    names = [n for n in names if n in chosen]
  print(f"jaxloss {jaxloss.__version__} on {jax.default_backend()} ({jax.devices()[0]}), "
        f"{len(names)} losses, {'quick' if args.quick else 'full'} sizes", file=sys.stderr)
  run = benchmark(names, quick=args.quick, out=args.out, partial=bool(args.loss),
                  large_vocab=not args.loss or LARGE_VOCAB_LOSS in names)
  failed = [r.name for r in run.results if r.error is not None]
  if failed:
    print(textwrap.fill(f"benchmark failed for: {', '.join(failed)}", report.TERMINAL_COLUMNS),
          file=sys.stderr)
  return 1 if failed else 0
