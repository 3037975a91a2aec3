"""Collect a root's runs into results.md and results.csv, beside the reference numbers.

  python -m experiments.collect R

Reads R/runs.json (every run the runner planned under R) and each run's
metrics.json and plan.json. Runs that differ only in their seed form one row: the
measured top-1 as min <- median -> max over the finished seeds, beside the paper's
number and the authors' re-runs (experiments/references.json), each with its
source. A row whose runs did not all finish says how many did, and why the others
did not (not run, unfinished, failed with the error, blocked with the reason). Where
our setting differs from a reference's (batch, learning rate, resolution rule) the
row says so. Suites whose runs differ by variant (miniature) get one column per
variant instead.
"""

import argparse
import collections
import csv
import json
import os
import statistics
import sys

from bit_train import cli
from bit_train import hyperrule
from bit_train.errors import UserError
from experiments import runs as runs_lib
from experiments.suites import vtab

REFERENCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "references.json")
SETTING_KEYS = ("batch_size", "base_lr", "resolution_rule")


def load_references(path=REFERENCES):
  with open(path) as f:
    data = json.load(f)
  by_row = collections.defaultdict(dict)
  for number in data["numbers"]:
    by_row[(number["model"], number["dataset"], number["shots"])][number["source"]] = number
  return data["sources"], by_row


def run_state(root, run):
  """(status, top-1 or None, why) of one run."""
  if run.blocked:
    return "blocked", None, run.blocked
  metrics = runs_lib.metrics(root, run)
  if metrics is not None:
    return "done", metrics["top1"], ""
  failed = runs_lib.failure(root, run)
  if failed is not None:
    return "failed", None, failed["why"]
  if os.path.isdir(run.workdir(root)):
    return "unfinished", None, "started, no metrics.json yet"
  return "not run", None, ""


def spread(values):
  """'min <- median -> max' in %, or the one value."""
  if not values:
    return ""
  values = [100 * v for v in values]
  if len(values) == 1:
    return f"{values[0]:.1f}"
  return f"{min(values):.1f} ← **{statistics.median(values):.1f}** → {max(values):.1f}"


def reference_text(number):
  if "min" in number:
    return f"{number['min']:g} ← **{number['median']:g}** → {number['max']:g}"
  return f"{number['median']:g}"


def our_setting(root, runs):
  """batch_size, base_lr (at that batch) and resolution rule of a row's runs."""
  for run in runs:
    record = runs_lib.plan_record(root, run)
    if record is not None:
      plan = record["plan"]
      return {k: plan[k] for k in SETTING_KEYS}, plan.get("image_size")
  return None, None


def setting_notes(ours, image_size, sources, refs):
  """'batch 512 vs 128 (readme_tf2)'-style notes where a reference's setting differs."""
  if ours is None:
    return []
  notes = []
  for name in refs:
    theirs = sources[name]["setting"]
    diffs = []
    if ours["batch_size"] != theirs["batch_size"]:
      diffs.append(f"batch {ours['batch_size']} vs {theirs['batch_size']}")
    if abs(ours["base_lr"] - theirs["base_lr"]) > 1e-12:
      diffs.append(f"lr {ours['base_lr']:g} vs {theirs['base_lr']:g}")
    if image_size and (hyperrule.get_resolution(image_size, ours["resolution_rule"])
                       != hyperrule.get_resolution(image_size, theirs["resolution_rule"])):
      ours_res = "/".join(map(str, hyperrule.get_resolution(image_size, ours["resolution_rule"])))
      theirs_res = "/".join(map(str, hyperrule.get_resolution(image_size, theirs["resolution_rule"])))
      diffs.append(f"resolution {ours_res} vs {theirs_res}")
    if diffs:
      notes.append(f"{', '.join(diffs)} ({name})")
  return notes


def status_notes(states):
  """What keeps a row from being complete: counts and reasons."""
  counts = collections.Counter(status for status, _, _ in states)
  notes = []
  for status in ("not run", "unfinished", "failed", "blocked"):
    if counts[status]:
      whys = sorted({why for s, _, why in states if s == status and why})
      notes.append(f"{counts[status]} {status}" + (f": {'; '.join(whys)}" if whys else ""))
  return notes


def group_rows(root, runs, with_variant):
  """(key, [run], [state]) per row: runs that differ only in their seed."""
  groups = collections.OrderedDict()
  for run in runs:
    key = (run.suite, run.model, run.dataset, run.shots) + ((run.variant,) if with_variant else ())
    groups.setdefault(key, []).append(run)
  return [(key, group, [run_state(root, r) for r in group]) for key, group in groups.items()]


def shots_text(shots):
  return "full" if shots == "full" else f"{shots}/class"


def reference_table(root, suite, runs, sources, refs_by_row):
  """Rows beside the references, as (markdown lines, csv rows)."""
  ref_names = list(sources)
  lines = ["| model | dataset | examples | measured top-1 % | runs | " +
           " | ".join(ref_names) + " | notes |",
           "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in ref_names) + " | --- |"]
  rows = []
  medians = collections.defaultdict(dict)  # (model, seed-set) -> dataset -> median
  for (suite_name, model, dataset, shots), group, states in group_rows(root, runs, False):
    values = [top1 for status, top1, _ in states if status == "done"]
    refs = refs_by_row.get((model, dataset, shots), {})
    ours, image_size = our_setting(root, group)
    notes = status_notes(states) + setting_notes(ours, image_size, sources, refs)
    if values:
      medians[model][dataset] = statistics.median(values)
    lines.append(f"| {model} | {dataset} | {shots_text(shots)} | {spread(values) or '—'} | "
                 f"{len(values)}/{len(group)} | " +
                 " | ".join(reference_text(refs[n]) if n in refs else "" for n in ref_names) +
                 f" | {'; '.join(notes)} |")
    rows.append(_csv_row(suite_name, model, dataset, shots, "", group, states, values,
                         {n: refs[n]["median"] for n in refs}, notes))
  if suite == "vtab":
    for model, by_task in medians.items():
      lines += _vtab_means(model, by_task, ref_names, refs_by_row)
  return lines, rows


def _vtab_means(model, by_task, ref_names, refs_by_row):
  """The VTAB-1k mean and its three group means, once every task has a number."""
  lines = []
  for label, tasks in [("vtab", vtab.TASKS)] + [
      (f"vtab_{g}", [t for t in vtab.TASKS if t.group == g]) for g in vtab.GROUPS]:
    have = [by_task[t.name] for t in tasks if t.name in by_task]
    measured = (f"{100 * statistics.mean(have):.1f}" if len(have) == len(tasks)
                else f"— ({len(have)}/{len(tasks)} tasks)")
    refs = refs_by_row.get((model, label, "full"), {})
    lines.append(f"| {model} | {label} (mean) | 1,000 | {measured} | | " +
                 " | ".join(reference_text(refs[n]) if n in refs else "" for n in ref_names)
                 + " | mean of the tasks' medians |")
  return lines


def variant_table(root, runs):
  """One row per (model, dataset, shots), one column per variant."""
  variants = list(dict.fromkeys(r.variant for r in runs))
  lines = ["| examples per class | " + " | ".join(variants) + " | notes |",
           "| --- | " + " | ".join("---" for _ in variants) + " | --- |"]
  rows, cells, notes = [], collections.OrderedDict(), collections.defaultdict(list)
  for (suite_name, model, dataset, shots, variant), group, states in group_rows(
      root, runs, True):
    values = [top1 for status, top1, _ in states if status == "done"]
    row_key = (model, dataset, shots)
    cells.setdefault(row_key, {})[variant] = (
        spread(values) + (f" ({len(values)}/{len(group)})" if len(values) < len(group)
                          else "") if values else "—")
    notes[row_key] += [f"{variant}: {n}" for n in status_notes(states)]
    rows.append(_csv_row(suite_name, model, dataset, shots, variant, group, states,
                         values, {}, status_notes(states)))
  for (model, dataset, shots), by_variant in cells.items():
    lines.append(f"| {'all' if shots == 'full' else shots} | " +
                 " | ".join(by_variant.get(v, "—") for v in variants) +
                 f" | {'; '.join(notes[(model, dataset, shots)])} |")
  if not any(notes.values()):  # every run finished: no notes column
    lines = [line.rsplit(" |", 2)[0] + " |" for line in lines]
  return lines, rows


CSV_FIELDS = ("suite", "model", "dataset", "shots", "variant", "runs", "finished",
              "top1_min", "top1_median", "top1_max", "top1_by_seed", "references", "notes")


def _csv_row(suite, model, dataset, shots, variant, group, states, values, refs, notes):
  by_seed = ";".join(f"{r.seed}:{100 * top1:.2f}" for r, (s, top1, _) in zip(group, states)
                     if s == "done")
  stats = ([round(100 * min(values), 2), round(100 * statistics.median(values), 2),
            round(100 * max(values), 2)] if values else ["", "", ""])
  return dict(zip(CSV_FIELDS, [suite, model, dataset, shots, variant, len(group),
                               len(values), *stats, by_seed,
                               ";".join(f"{k}:{v:g}" for k, v in refs.items()),
                               "; ".join(notes)]))


def collect(root, out=None, readme=None):
  """Writes results.md and results.csv into `out` (default R); returns the markdown.

  readme: a Markdown file whose `<!-- experiments.collect SUITE -->` ...
  `<!-- /experiments.collect SUITE -->` blocks get the suite's table.
  """
  out = out or root
  suites, planned = runs_lib.load_planned(root)
  if not planned:
    raise UserError(f"no runs planned under {root}: run `python -m experiments.run "
                    f"SUITE --root {root}` first.")
  sources, refs_by_row = load_references()
  by_suite = collections.OrderedDict()
  for run in planned.values():
    by_suite.setdefault(run.suite, []).append(run)
  text, csv_rows, cited = ["# Results", ""], [], False
  sections = {}
  for suite, runs in by_suite.items():
    text += [f"## {suite}: {suites[suite]['about']}", ""]
    first = len(text)
    if suites[suite]["table"] == "variants":
      lines, rows = variant_table(root, runs)
      text += lines + ["", "Top-1 % on the held-out examples, min ← **median** → max "
                       "over seeds; (k/n) when only k of n seeds finished."]
    else:
      lines, rows = reference_table(root, suite, runs, sources, refs_by_row)
      cited = True
      text += lines + ["", "Top-1 %; ours min ← **median** → max over seeds."]
    times = [runs_lib.seconds(root, r) for r in runs if not r.blocked]
    if times and None not in times:
      text.append(f"The {len(times)} runs took {sum(times) / 60:.0f} min, one after "
                  "another (the runner's wall time per run, summed).")
    flags = sorted({f for r in runs for f in r.flags})
    if flags:
      text.append(f"Runs set on the command line: {' '.join(flags)}.")
    sections[suite] = text[first:]
    text.append("")
    csv_rows += rows
  if cited:
    text += ["## Sources", ""] + [f"- **{name}**: {s['cite']}; setting: " + ", ".join(
        f"{k} {v}" for k, v in s["setting"].items()) for name, s in sources.items()]
  markdown = "\n".join(text) + "\n"
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(markdown)
  if readme:
    update_readme(readme, sections)
  with open(os.path.join(out, "results.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, CSV_FIELDS)
    writer.writeheader()
    writer.writerows(csv_rows)
  return markdown


def update_readme(path, sections):
  """Replaces each `<!-- experiments.collect SUITE -->` block with the suite's table."""
  with open(path) as f:
    text = f.read()
  for suite, lines in sections.items():
    begin, end = f"<!-- experiments.collect {suite} -->", f"<!-- /experiments.collect {suite} -->"
    if begin in text and end in text:
      head, rest = text.split(begin, 1)
      _, tail = rest.split(end, 1)
      text = head + begin + "\n" + "\n".join(lines) + "\n" + end + tail
  with open(path, "w") as f:
    f.write(text)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.collect",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("root", help="the --root the runner used")
  parser.add_argument("--out", help="where results.md and results.csv go (default: root)")
  parser.add_argument("--readme", help="a Markdown file whose <!-- experiments.collect "
                      "SUITE --> blocks get the suite's table (the project README)")
  args = parser.parse_args(argv)
  print(collect(os.path.abspath(args.root), args.out, args.readme), end="")
  print(f"wrote {os.path.join(args.out or args.root, 'results.md')} and results.csv"
        + (f"; updated {args.readme}" if args.readme else ""), file=sys.stderr)


if __name__ == "__main__":
  try:
    main()
  except UserError as e:
    cli.fail(e)
