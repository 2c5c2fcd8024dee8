"""Turns the raw numbers of bench/runtime into bench/results/runtime.json, a plot, and
the runtime section of docs/benchmarks.md (other sections are kept)."""
import json
import statistics
import sys
from pathlib import Path

import matplotlib
from benchdoc import replace_section

matplotlib.use("Agg")
import matplotlib.pyplot as plt

work, out_json, out_png, doc = (Path(a) for a in sys.argv[1:5])


def nums(name):
    return [float(x) for x in (work / name).read_text().split()]


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


life = {r["command"]: [t * 1000 for t in r["times"]] for r in json.loads((work / "lifecycle.json").read_text())["results"]}
first = {"shoal": [v / 1000 for v in nums("first-shoal.txt")], "runc": [v / 1000 for v in nums("first-runc.txt")]}
burst = {"shoal": nums("burst-shoal.txt"), "runc": nums("burst-runc.txt")}

summary = {}
for metric, data in (("lifecycle_ms", life), ("first_instruction_ms", first), ("burst_50_ms", burst)):
    summary[metric] = {
        k: {"median": statistics.median(v), "p10": pct(v, 10), "p90": pct(v, 90), "n": len(v)} for k, v in data.items()
    }
ratio = summary["lifecycle_ms"]["shoal"]["median"] / summary["lifecycle_ms"]["runc"]["median"]
summary["lifecycle_ratio_shoal_over_runc"] = ratio
out_json.write_text(json.dumps(summary, indent=2) + "\n")

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
for ax, (title, data, unit) in zip(
    axes,
    (
        ("lifecycle of /bin/true", life, "ms"),
        ("start request → first instruction", first, "ms"),
        ("50 containers at once (wall)", burst, "ms"),
    ),
):
    ax.boxplot([data["shoal"], data["runc"]], labels=["shoal", "runc"], showfliers=False)
    ax.set_title(title)
    ax.set_ylabel(unit)
    ax.set_ylim(bottom=0)
fig.suptitle("Shoal built-in runtime vs runc (Debian), same busybox rootfs, same machine, one run")
fig.tight_layout()
fig.savefig(out_png, dpi=90)


def row(name, metric):
    s, r = summary[metric]["shoal"], summary[metric]["runc"]
    return f"| {name} | {s['median']:.1f} ({s['p10']:.1f}–{s['p90']:.1f}) | {r['median']:.1f} ({r['p10']:.1f}–{r['p90']:.1f}) | {s['median'] / r['median']:.2f}× |"


section = "\n".join(
    [
        "## Runtime: Shoal vs runc",
        "",
        "`bench/runtime` (as root): both runtimes through their command lines, on the same busybox rootfs,",
        "in one run on this machine (2 cores, hybrid cgroups driven as v1). Shoal runs with its defaults",
        "(pid, mount, uts, ipc and net namespaces, overlayfs root, seccomp, cgroup limits set up);",
        "runc with `runc spec` defaults (no seccomp profile). Median (p10–p90), milliseconds.",
        "",
        "| measure | shoal | runc | shoal / runc |",
        "|---|---|---|---|",
        row("lifecycle of `/bin/true` (create → start → exit → delete)", "lifecycle_ms"),
        row("start request → payload's first instruction", "first_instruction_ms"),
        row(f"{summary['burst_50_ms']['shoal']['n']} bursts of 50 containers at once, wall time per burst", "burst_50_ms"),
        "",
        f"Goal: shoal ≤ 0.25× runc's median lifecycle. Measured: {ratio:.2f}×.",
        "",
        "![runtime benchmark](img/runtime.png)",
        "",
    ]
)

replace_section(doc, "## Runtime: Shoal vs runc", section)
print(json.dumps(summary, indent=2))
