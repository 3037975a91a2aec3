"""The paper's figures of the suites that ran, drawn from collect's rows as PNG.

  fewshot   top-1 against examples per class (log scale), one line per model, one
            panel per dataset; the bars span min to max over seeds (compare the
            paper's Fig. 2, BiT-L, and Fig. 6, BiT-S/M/L at 1 and 5 examples)
  vtab      top-1 per VTAB-1k task, one bar per model, tasks in their groups
            (paper Fig. 3)

Each figure is drawn only when its suite has results; `draw` returns the paths
written. `series` gives the numbers a figure plots, for tests and readers.
"""

import collections
import os

from experiments.suites import vtab

SUITE_FIGURES = {"fewshot": "fewshot", "vtab": "vtab"}  # suite -> figure kind


def _number(value):
  return None if value in ("", None) else float(value)


def fewshot_series(rows):
  """{dataset: {model: [(k, median, min, max)]}} of the few-shot rows with results,
  by increasing k."""
  series = collections.defaultdict(lambda: collections.defaultdict(list))
  for row in rows:
    median = _number(row["top1_median"])
    if median is None or not str(row["shots"]).isdigit():
      continue
    series[row["dataset"]][row["model"]].append(
        (int(row["shots"]), median, _number(row["top1_min"]), _number(row["top1_max"])))
  return {d: {m: sorted(points) for m, points in by_model.items()}
          for d, by_model in series.items()}


def vtab_series(rows):
  """{model: {task: median}} of the VTAB-1k task rows with results (means left out)."""
  series = collections.defaultdict(dict)
  for row in rows:
    median = _number(row["top1_median"])
    if median is not None and row["dataset"] in vtab.TASK_BY_NAME:
      series[row["model"]][row["dataset"]] = median
  return dict(series)


def _plot_fewshot(series, path, plt):
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.8),
                              squeeze=False)
  for ax, (dataset, by_model) in zip(axes[0], sorted(series.items())):
    for model, points in sorted(by_model.items()):
      ks, medians, lows, highs = zip(*points)
      errors = [[m - lo for m, lo in zip(medians, lows)],
                [hi - m for m, hi in zip(medians, highs)]]
      ax.errorbar(ks, medians, yerr=errors, marker="o", capsize=3, label=model)
    ax.set_xscale("log")
    ax.set_xticks(sorted({k for p in by_model.values() for k, *_ in p}))
    ax.get_xaxis().set_major_formatter(ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(ticker.NullFormatter())
    ax.set_title(dataset)
    ax.set_xlabel("examples per class")
    ax.set_ylabel("top-1 % (median, min-max)")
    ax.grid(alpha=0.3)
  axes[0][-1].legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def _plot_vtab(series, path, plt):
  tasks = [t.name for t in vtab.TASKS]
  models = sorted(series)
  width = 0.8 / len(models)
  figure, ax = plt.subplots(figsize=(14, 4.5))
  for i, model in enumerate(models):
    xs = [j + i * width for j, t in enumerate(tasks) if t in series[model]]
    ax.bar(xs, [series[model][t] for t in tasks if t in series[model]], width,
           label=model)
  ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))])
  ax.set_xticklabels(tasks, rotation=60, ha="right", fontsize=8)
  start = 0
  for group in vtab.GROUPS:
    count = sum(t.group == group for t in vtab.TASKS)
    ax.axvline(start + count - 0.5 + 0.4 - width / 2, color="grey", lw=0.8)
    ax.text(start + count / 2 - 0.5, 102, group, ha="center")
    start += count
  ax.set_ylim(0, 108)
  ax.set_ylabel("top-1 % (median over seeds)")
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def draw(suite, rows, out):
  """Writes the suite's figure as OUT/<suite>.png when it has results; its paths."""
  kind = SUITE_FIGURES.get(suite)
  series = {"fewshot": fewshot_series, "vtab": vtab_series}[kind](rows) if kind else None
  if not series:
    return []
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  path = os.path.join(out, f"{suite}.png")
  {"fewshot": _plot_fewshot, "vtab": _plot_vtab}[kind](series, path, plt)
  return [path]
