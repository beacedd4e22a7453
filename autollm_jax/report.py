"""Writing an evaluation report: report.json, report.md (tables) and regret_vs_budget.png."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from autollm_jax import evaluation


def _cell(summary: dict, key: str, k: int) -> str:
  s = summary[key]
  return f"{s['mean'][k]:.3f} [{s['lo'][k]:.3f}, {s['hi'][k]:.3f}]"


def markdown(report: dict) -> str:
  """Per regret, one table: agents x (overall, per task) at budget 1 and the full budget."""
  budget = report["budget"]
  agents = report["agents"]
  tasks = sorted({t for a in agents.values() for t in a["per_task"]})
  lines = [f"# Evaluation: {len(report['experiments'])} experiments, seeds "
           f"{report['seeds']}, budget {budget}", "",
           "Mean over experiments (each averaged over seeds) and 95% interval over experiments.",
           ""]
  for key in evaluation.REGRETS:
    lines.append(f"## {key.replace('_', ' ')} at k=1 / k={budget}")
    lines.append("")
    header = ["agent", "overall k=1", f"overall k={budget}"] + [
        f"{t} k={k}" for t in tasks for k in (1, budget)]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for name, a in agents.items():
      row = [name, _cell(a["overall"], key, 0), _cell(a["overall"], key, budget - 1)]
      row += [f"{a['per_task'][t][key]['mean'][k]:.3f}" if t in a["per_task"] else "-"
              for t in tasks for k in (0, budget - 1)]
      lines.append("| " + " | ".join(row) + " |")
    lines.append("")
  if report.get("comparisons"):
    lines += ["## Paired differences in strict regret (agent minus baseline)", "",
              "Mean over experiments of the per-experiment difference, 95% interval; an "
              "interval entirely below 0 means the agent is better beyond it.", "",
              f"| agent - baseline | k=1 | k={budget} |", "|---|---|---|"]
    for c in report["comparisons"]:
      d = c["strict_regret"]
      lines.append(f"| {c['agent']} - {c['baseline']} | "
                   + " | ".join(f"{d['mean'][k]:+.3f} [{d['lo'][k]:+.3f}, {d['hi'][k]:+.3f}]"
                                for k in (0, budget - 1)) + " |")
    lines.append("")
  return "\n".join(lines)


def plot(report: dict, path: str | os.PathLike) -> None:
  """Strict and normalized regret versus budget: one panel per task and one overall."""
  agents = report["agents"]
  tasks = sorted({t for a in agents.values() for t in a["per_task"]})
  panels = ["overall"] + tasks
  rows = len(evaluation.REGRETS)
  fig, axes = plt.subplots(rows, len(panels), figsize=(4 * len(panels), 6.5),
                           squeeze=False)
  ks = list(range(1, report["budget"] + 1))
  for r, key in enumerate(evaluation.REGRETS):
    for c, panel in enumerate(panels):
      ax = axes[r, c]
      for name, a in agents.items():
        s = a["overall"] if panel == "overall" else a["per_task"].get(panel)
        if s is None:
          continue
        ax.plot(ks, s[key]["mean"], marker="o", label=name)
        ax.fill_between(ks, s[key]["lo"], s[key]["hi"], alpha=0.15)
      ax.set_title(panel if r == 0 else "")
      ax.set_xlabel("budget k")
      ax.set_ylabel(key.replace("_", " ") if c == 0 else "")
      ax.set_xticks(ks)
      ax.set_ylim(bottom=0)
  axes[0, 0].legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def add_comparisons(report: dict, pairs: Sequence[tuple[str, str]]) -> dict:
  """The report with "comparisons": a paired difference (evaluation.paired_difference) for
  each (agent, baseline) pair whose agents are both in it."""
  report["comparisons"] = [
      {"agent": a, "baseline": b,
       **{key: evaluation.paired_difference(report, a, b, key) for key in evaluation.REGRETS}}
      for a, b in pairs if a in report["agents"] and b in report["agents"]]
  return report


def write(report: dict, out_dir: str | os.PathLike) -> dict[str, pathlib.Path]:
  """Writes report.json, report.md and regret_vs_budget.png into out_dir; returns the paths."""
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {"json": out / "report.json", "md": out / "report.md",
           "png": out / "regret_vs_budget.png"}
  paths["json"].write_text(json.dumps(report, indent=1))
  paths["md"].write_text(markdown(report))
  plot(report, paths["png"])
  return paths
