"""Collect a root's runs into results.md and results.csv, beside the reference numbers.

  python -m experiments.collect R

Reads R/runs.json (every run the runner planned under R) and each run's
metrics.json and plan.json. A finished run's plan.json must describe that run (the
identity fields of its config argument, and its examples per class): a folder copied
or linked from another run's is one line naming it, not a wrong row. Runs that
differ only in their seed form one row: the measured top-1 as min <- median -> max
and mean ± std over the finished seeds, beside the paper's number and the authors' re-runs (experiments/references.json),
each with its source and where in it the number is. A finished run is reported
whatever the suite says of it (a run the suite marks blocked that has a metrics.json
counts). A row whose runs did not all finish says how many did, and why the others
did not (not run, unfinished, failed with the error, blocked with the reason). Where
a run's own plan.json differs from a reference's setting (batch, learning rate,
resolution) the row says so. Top-5 is printed where a reference gives it; the
other evaluations of a run (ReaL, ImageNet-V2) are columns. VTAB-1k gets the mean
over its 19 tasks and over each group, over the tasks that have results. Suites whose
runs differ by variant (miniature) get one column per variant instead.

results.csv holds the same rows (and the means) with each row's settings and
provenance: commits, package versions, datasets' versions, devices, wall time.
The figures (figures.py) go beside results.md.
"""

import argparse
import collections
import csv
import dataclasses
import os
import statistics
import sys

from bit_train import cli
from bit_train import hyperrule
from bit_train import reading
from bit_train.errors import UserError
from experiments import figures
from experiments import plans
from experiments import runs as runs_lib
from experiments.suites import vtab

REFERENCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "references.json")
# Evaluations of a run besides its main one (metrics.json "evals"), by the dataset
# their name starts with, and the column they get.
EVAL_COLUMNS = {"imagenet2012_real": "ReaL", "imagenet_v2": "ImageNet-V2"}


def load_references(path=REFERENCES):
  """(sources, {(model, dataset, shots): {source: number}})."""
  data = reading.read_json(path, "references file", dict)
  by_row = collections.defaultdict(dict)
  for number in data["numbers"]:
    by_row[(number["model"], number["dataset"], number["shots"])][number["source"]] = number
  return data["sources"], by_row


@dataclasses.dataclass(frozen=True)
class State:
  """One run as collect sees it."""
  run: runs_lib.Run
  status: str  # done | blocked | failed | unfinished | not run
  metrics: dict = None
  why: str = ""
  plan: dict = None  # a finished run's own plan.json "plan"
  seconds: float = None  # the runner's wall time over the run's attempts


def run_state(root, run):
  metrics = runs_lib.metrics(root, run)
  if metrics is not None:
    return State(run, "done", metrics)
  if run.blocked:
    return State(run, "blocked", why=run.blocked)
  failed = runs_lib.failure(root, run)
  if failed is not None:
    return State(run, "failed", why=failed["why"])
  if os.path.isdir(run.workdir(root)):
    return State(run, "unfinished", why="started, no metrics.json yet")
  return State(run, "not run")


@dataclasses.dataclass(frozen=True)
class Stats:
  """Statistics of one row's values, in %."""
  values: tuple

  @property
  def n(self):
    return len(self.values)

  @property
  def median(self):
    return statistics.median(self.values)

  @property
  def mean(self):
    return statistics.mean(self.values)

  @property
  def std(self):
    """Sample standard deviation (n - 1); 0 for one value."""
    return statistics.stdev(self.values) if self.n > 1 else 0.0

  def spread(self):
    """'min ← **median** → max', or the one value."""
    if self.n == 1:
      return f"{self.values[0]:.1f}"
    return (f"{min(self.values):.1f} ← **{self.median:.1f}** → "
            f"{max(self.values):.1f}")

  def mean_std(self):
    return f"{self.mean:.1f}" if self.n == 1 else f"{self.mean:.1f} ± {self.std:.1f}"


def stats(states, value=lambda m: m["top1"]):
  """Stats (in %) of `value` over the finished runs that have it, or None."""
  values = []
  for state in states:
    if state.status == "done":
      found = value(state.metrics)
      if found is not None:
        values.append(100 * found)
  return Stats(tuple(values)) if values else None


def reference_text(number, key="median"):
  if key == "median" and "min" in number:
    return f"{number['min']:g} ← **{number['median']:g}** → {number['max']:g}"
  return f"{number[key]:g}"


def _resolution(plan):
  return f"{plan['precrop']}/{plan['crop']}"


def our_settings(states):
  """The distinct (batch, lr, resolution) of a row's runs, each from its own
  plan.json, with the image size the rule saw."""
  found = {}
  for state in states:
    plan = state.plan
    if plan is not None:
      key = (plan["batch_size"], plan["base_lr"], _resolution(plan))
      found.setdefault(key, plan.get("image_size"))
  return found


def setting_notes(states, sources, refs):
  """'batch 512 vs 128, lr 0.003 vs 0.001 (readme_tf2, readme_jax)' where a
  reference's setting differs from the runs' own."""
  settings = our_settings(states)
  if not settings:
    return []
  notes = []
  if len(settings) > 1:
    notes.append("seeds ran in different settings: " + "; ".join(
        f"batch {b}, lr {lr:g}, resolution {res}" for b, lr, res in settings))
  (batch, lr, resolution), image_size = next(iter(settings.items()))
  by_diff = collections.OrderedDict()
  for name, number in refs.items():
    theirs = dict(sources[name]["setting"])
    diffs = []
    if batch != theirs["batch_size"]:
      diffs.append(f"batch {batch} vs {theirs['batch_size']}")
    if abs(lr - theirs["base_lr"]) > 1e-12:
      diffs.append(f"lr {lr:g} vs {theirs['base_lr']:g}")
    if "resolution" in number:
      their_res = "/".join(map(str, number["resolution"]))
    elif image_size:
      their_res = "/".join(map(str, hyperrule.get_resolution(
          tuple(image_size), theirs["resolution_rule"])))
    else:
      their_res = resolution
    if resolution != their_res:
      diffs.append(f"resolution {resolution} vs {their_res}")
    if diffs:
      by_diff.setdefault(", ".join(diffs), []).append(name)
  return notes + [f"{diff} ({', '.join(names)})" for diff, names in by_diff.items()]


def status_notes(states):
  """What keeps a row from being complete: counts and reasons; and finished runs
  the suite marks blocked."""
  counts = collections.Counter(s.status for s in states)
  notes = []
  for status in ("not run", "unfinished", "failed", "blocked"):
    if counts[status]:
      whys = sorted({s.why for s in states if s.status == status and s.why})
      notes.append(f"{counts[status]} {status}" + (f": {'; '.join(whys)}" if whys else ""))
  notes += sorted({s.run.note for s in states if s.run.note})
  ran_blocked = sorted({s.run.blocked for s in states if s.status == "done" and s.run.blocked})
  if ran_blocked:
    notes.append(f"finished although the suite marks it blocked ({'; '.join(ran_blocked)})")
  return notes


@dataclasses.dataclass
class Row:
  suite: str
  model: str
  dataset: str
  shots: str
  variant: str
  states: list

  @property
  def top1(self):
    return stats(self.states)

  @property
  def finished(self):
    return sum(s.status == "done" for s in self.states)


def group_rows(root, runs, with_variant):
  """Rows: runs that differ only in their seed, each finished run with its own
  plan.json and wall time."""
  groups = collections.OrderedDict()
  for run in runs:
    key = (run.suite, run.model, run.dataset, run.shots, run.variant if with_variant else "")
    groups.setdefault(key, []).append(run)
  rows = []
  for key, group in groups.items():
    states = []
    for run in group:
      state = run_state(root, run)
      if state.status == "done":
        record = runs_lib.plan_record(root, run)
        check_belongs(root, run, record)
        state = dataclasses.replace(state, plan=record["plan"] if record else None,
                                    seconds=runs_lib.seconds(root, run))
      states.append(state)
    rows.append(Row(*key, states))
  return rows


def check_belongs(root, run, record):
  """Raises UserError when a finished run's plan.json describes another run than
  the one its folder is named for (a run folder copied or linked from another run):
  its results would be tabled under the wrong row."""
  found = plans.identity_difference(record, run)
  if found:
    raise UserError(
        f"the run folder {run.workdir(root)} holds another run than {run.suite}/"
        f"{run.name}: its plan.json has {', '.join(found)}: it was copied or linked "
        "from another run's folder; delete it (or put that run where its name "
        "says) and run the suite again.")


def shots_text(shots):
  if shots == "full":
    return "full"
  if shots == "vtab1k":
    return "1,000 (VTAB-1k)"
  return f"{shots}/class"


def _eval_value(name):
  def value(metrics):
    evals = metrics.get("evals", {})
    found = [r["top1"] for key, r in evals.items() if key.split("@")[0] == name]
    return found[0] if found else None
  return value


def reference_table(root, suite, runs, sources, refs_by_row):
  """Rows beside the references, as (markdown lines, csv rows)."""
  rows = group_rows(root, runs, False)
  keys = [(r.model, r.dataset, r.shots) for r in rows]
  if suite == "vtab":
    keys += [(r.model, label, vtab.SHOTS) for r in rows for label, _ in vtab_groups()]
  ref_names = [n for n in sources if any(n in refs_by_row.get(k, {}) for k in keys)]
  top5 = any("top5" in ref for r in rows
             for ref in refs_by_row.get((r.model, r.dataset, r.shots), {}).values())
  evals = [(name, column) for name, column in EVAL_COLUMNS.items()
           if any(stats(r.states, _eval_value(name)) for r in rows)]
  header = (["model", "dataset", "examples", "top-1 % min ← median → max", "mean ± std",
             "runs"] + ref_names + (["top-5 % (ours / reference)"] if top5 else [])
            + [f"{column} top-1 %" for _, column in evals] + ["notes"])
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  csv_rows = []
  for row in rows:
    refs = refs_by_row.get((row.model, row.dataset, row.shots), {})
    top1 = row.top1
    notes = status_notes(row.states) + setting_notes(row.states, sources, refs)
    cells = [row.model, row.dataset, shots_text(row.shots),
             top1.spread() if top1 else "—", top1.mean_std() if top1 else "",
             f"{row.finished}/{len(row.states)}"]
    cells += [reference_text(refs[n]) if n in refs else "" for n in ref_names]
    top5_refs = {n: ref["top5"] for n, ref in refs.items() if "top5" in ref}
    if top5:
      ours = stats(row.states, lambda m: m.get("top5"))
      cells.append(" / ".join([ours.spread() if ours else "—"] + [
          f"{v:g} ({n})" for n, v in top5_refs.items()]) if top5_refs else "")
    extra = {column: stats(row.states, _eval_value(name)) for name, column in evals}
    cells += [extra[c].spread() if extra[c] else "" for _, c in evals]
    cells.append("; ".join(notes))
    lines.append("| " + " | ".join(cells) + " |")
    references = {n: refs[n]["median"] for n in refs}
    references.update({f"{n}_top5": v for n, v in top5_refs.items()})
    csv_rows.append(csv_row(row, references, notes, extra))
  if suite == "vtab":
    for model in dict.fromkeys(r.model for r in rows):
      medians = {r.dataset: r.top1.median for r in rows if r.model == model and r.top1}
      mean_lines, mean_rows = vtab_means(suite, model, medians, ref_names, refs_by_row,
                                         len(header))
      lines += mean_lines
      csv_rows += mean_rows
  return lines, csv_rows


def vtab_groups():
  """(label, tasks) of the VTAB-1k mean and its three groups' means."""
  return [("vtab", vtab.TASKS)] + [
      (f"vtab_{g}", [t for t in vtab.TASKS if t.group == g]) for g in vtab.GROUPS]


def vtab_means(suite, model, medians, ref_names, refs_by_row, width):
  """The VTAB-1k mean over the 19 tasks and over each group, of the tasks' medians,
  over the tasks that have one: (markdown lines, csv rows)."""
  lines, rows = [], []
  for label, tasks in vtab_groups():
    have = [medians[t.name] for t in tasks if t.name in medians]
    refs = refs_by_row.get((model, label, vtab.SHOTS), {})
    count = f"{len(have)}/{len(tasks)} tasks"
    measured = f"{statistics.mean(have):.1f} ({count})" if have else f"— ({count})"
    cells = [model, f"{label} (mean)", shots_text(vtab.SHOTS), measured, "", ""]
    cells += [reference_text(refs[n]) if n in refs else "" for n in ref_names]
    cells += [""] * (width - len(cells) - 1)
    cells.append(f"mean of the medians of {count}")
    lines.append("| " + " | ".join(cells) + " |")
    rows.append(dict.fromkeys(CSV_FIELDS, "") | {
        "suite": suite, "model": model, "dataset": label, "shots": vtab.SHOTS,
        "variant": "mean", "runs": len(tasks), "finished": len(have),
        "top1_median": round(statistics.mean(have), 2) if have else "",
        "references": ";".join(f"{n}:{refs[n]['median']:g}" for n in refs),
        "notes": f"mean of the medians of {count}"})
  return lines, rows


def variant_table(root, runs):
  """One row per (model, dataset, shots), one column per variant."""
  variants = list(dict.fromkeys(r.variant for r in runs))
  lines = ["| examples per class | " + " | ".join(variants) + " | notes |",
           "| --- | " + " | ".join("---" for _ in variants) + " | --- |"]
  csv_rows, cells, notes = [], collections.OrderedDict(), collections.defaultdict(list)
  for row in group_rows(root, runs, True):
    top1 = row.top1
    key = (row.model, row.dataset, row.shots)
    short = f" ({row.finished}/{len(row.states)})" if row.finished < len(row.states) else ""
    cells.setdefault(key, {})[row.variant] = top1.spread() + short if top1 else "—"
    row_notes = status_notes(row.states)
    notes[key] += [f"{row.variant}: {n}" for n in row_notes]
    csv_rows.append(csv_row(row, {}, row_notes, {}))
  for (model, dataset, shots), by_variant in cells.items():
    lines.append(f"| {'all' if shots == 'full' else shots} | " +
                 " | ".join(by_variant.get(v, "—") for v in variants) +
                 f" | {'; '.join(notes[(model, dataset, shots)])} |")
  if not any(notes.values()):  # every run finished: no notes column
    lines = [line.rsplit(" |", 2)[0] + " |" for line in lines]
  return lines, csv_rows


CSV_FIELDS = ("suite", "model", "dataset", "shots", "variant", "runs", "finished",
              "top1_min", "top1_median", "top1_max", "top1_mean", "top1_std",
              "top1_by_seed", "top5_median", "real_top1_median", "imagenet_v2_top1_median",
              "references", "batch_size", "base_lr", "resolution", "batch_split",
              "commit", "packages", "dataset_version", "devices", "wall_seconds", "notes")


def _distinct(values):
  return ";".join(dict.fromkeys(str(v) for v in values if v not in (None, "")))


def provenance_fields(states):
  """The row's provenance, from each finished run's metrics.json and plan.json:
  distinct values joined with ';'."""
  done = [s for s in states if s.status == "done"]
  found = [s.metrics.get("provenance", {}) for s in done]
  plans = [s.plan for s in done if s.plan]
  seconds = [s.seconds if s.seconds is not None else p.get("seconds")
             for s, p in zip(done, found)]
  return {
      "batch_size": _distinct(p["batch_size"] for p in plans),
      "base_lr": _distinct(f"{p['base_lr']:g}" for p in plans),
      "resolution": _distinct(_resolution(p) for p in plans),
      "batch_split": _distinct(p.get("batch_split") for p in plans),
      "commit": _distinct(p.get("commit") for p in found),
      "packages": _distinct(" ".join(f"{k}={v}" for k, v in sorted(
          p.get("packages", {}).items())) for p in found),
      "dataset_version": _distinct(p.get("dataset_version") for p in found),
      "devices": _distinct(p.get("devices") for p in found),
      "wall_seconds": (round(sum(seconds), 1) if seconds and None not in seconds else ""),
  }


def csv_row(row, references, notes, extra):
  """One results.csv row; `extra` maps eval columns to their Stats."""
  top1 = row.top1
  by_seed = ";".join(f"{s.run.seed}:{100 * s.metrics['top1']:.2f}"
                     for s in row.states if s.status == "done")
  top5 = stats(row.states, lambda m: m.get("top5"))

  def rounded(value):
    return "" if value is None else round(value, 2)
  return dict({
      "suite": row.suite, "model": row.model, "dataset": row.dataset,
      "shots": row.shots, "variant": row.variant, "runs": len(row.states),
      "finished": row.finished,
      "top1_min": rounded(min(top1.values)) if top1 else "",
      "top1_median": rounded(top1.median) if top1 else "",
      "top1_max": rounded(max(top1.values)) if top1 else "",
      "top1_mean": rounded(top1.mean) if top1 else "",
      "top1_std": rounded(top1.std) if top1 else "",
      "top1_by_seed": by_seed,
      "top5_median": rounded(top5.median) if top5 else "",
      "real_top1_median": rounded(extra["ReaL"].median) if extra.get("ReaL") else "",
      "imagenet_v2_top1_median": (rounded(extra["ImageNet-V2"].median)
                                  if extra.get("ImageNet-V2") else ""),
      "references": ";".join(f"{k}:{v:g}" for k, v in references.items()),
      "notes": "; ".join(notes)}, **provenance_fields(row.states))


def settings_line(rows):
  """The settings the finished runs trained with, each from its own plan.json."""
  counts = collections.Counter()
  for row in rows:
    if row["batch_size"] and row["variant"] != "mean":
      counts[f"batch {row['batch_size']} in {row['batch_split']} micro-batch(es), lr "
             f"{row['base_lr']}"] += int(row["finished"])
  if not counts:
    return []
  return ["Settings from the runs' plan.json: " + "; ".join(
      f"{setting} ({count} run{'s' * (count > 1)})" for setting, count in counts.items())
          + "."]


def collect(root, out=None, readme=None):
  """Writes results.md, results.csv and the figures into `out` (default R);
  returns the markdown.

  readme: a Markdown file whose `<!-- experiments.collect SUITE -->` ...
  `<!-- /experiments.collect SUITE -->` blocks get the suite's table.
  """
  out = out or root
  if not os.path.isdir(root):
    raise UserError(f"the root {root} is not a folder: give the --root the runner used.")
  if readme:
    reading.read_text(readme, "Markdown file", "give --readme an existing Markdown file")
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
  runs_lib.make_dirs(out, "output folder")
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
      text += lines + ["", "Top-1 %; ours min ← **median** → max over seeds, and mean ± "
                       "sample standard deviation."]
    times = [runs_lib.seconds(root, r) for r in runs if not r.blocked]
    if times and None not in times:
      text.append(f"The {len(times)} runs took {sum(times) / 60:.0f} min, one after "
                  "another (the runner's wall time per run over its attempts, summed).")
    text += settings_line(rows)
    with runs_lib.writing(out, "figures of the output folder"):
      drawn = figures.draw(suite, rows, out)
    for path in drawn:
      text += ["", f"![{suite}]({os.path.basename(path)})"]
    sections[suite] = text[first:]
    text.append("")
    csv_rows += rows
  if cited:
    text += ["## Sources", ""] + [f"- **{name}**: {s['cite']}; setting: " + ", ".join(
        f"{k} {v}" for k, v in s["setting"].items()) for name, s in sources.items()]
  markdown = "\n".join(text) + "\n"
  results = os.path.join(out, "results.md")
  with runs_lib.writing(results), open(results, "w") as f:
    f.write(markdown)
  if readme:
    update_readme(readme, sections)
  results = os.path.join(out, "results.csv")
  with runs_lib.writing(results), open(results, "w", newline="") as f:
    writer = csv.DictWriter(f, CSV_FIELDS)
    writer.writeheader()
    writer.writerows(csv_rows)
  return markdown


def update_readme(path, sections):
  """Replaces each `<!-- experiments.collect SUITE -->` block with the suite's table."""
  text = reading.read_text(path, "Markdown file", "give --readme an existing Markdown file")
  for suite, lines in sections.items():
    begin, end = f"<!-- experiments.collect {suite} -->", f"<!-- /experiments.collect {suite} -->"
    if begin in text and end in text:
      head, rest = text.split(begin, 1)
      _, tail = rest.split(end, 1)
      text = head + begin + "\n" + "\n".join(lines) + "\n" + end + tail
  with runs_lib.writing(path), open(path, "w") as f:
    f.write(text)


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m experiments.collect",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("root", help="the --root the runner used")
  parser.add_argument("--out", help="where results.md, results.csv and the figures go "
                      "(default: root)")
  parser.add_argument("--readme", help="a Markdown file whose <!-- experiments.collect "
                      "SUITE --> blocks get the suite's table (a docs page)")
  args = parser.parse_args(argv)
  print(collect(os.path.abspath(args.root), args.out, args.readme), end="")
  print(f"wrote {os.path.join(args.out or args.root, 'results.md')} and results.csv"
        + (f"; updated {args.readme}" if args.readme else ""), file=sys.stderr)


if __name__ == "__main__":
  cli.guarded(main, again="run the same command again (collect only reads the runs).")
