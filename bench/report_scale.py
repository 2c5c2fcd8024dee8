"""Turns bench/results/scale.json (from bench/scale/run) into the "Scale: simulated
nodes" section of docs/benchmarks.md (other sections are kept), with a plot of each
figure against the number of nodes on log-log axes and the fitted exponent.

report_scale.py RESULTS_JSON OUT_PNG DOC
"""
import json
import math
import sys
from pathlib import Path

import matplotlib
from benchdoc import replace_section

matplotlib.use("Agg")
import matplotlib.pyplot as plt

results, out_png, doc = (Path(a) for a in sys.argv[1:4])
data = json.loads(results.read_text())
cells = [c for c in data["cells"] if "error" not in c]
failed = [c for c in data["cells"] if "error" in c]


def commit_of(c):
    return c.get("commit", data["commit"])


commits = sorted({commit_of(c) for c in data["cells"]})


def slope(xs, ys):
    """Least-squares exponent of y ~ x^k on log-log axes (None under two points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else None


SERIES = [
    ("time to all assigned, s", lambda c: c["assigned_s"]),
    ("time to all RUNNING, s", lambda c: c["running_s"]),
    ("leader CPU, steady (cores)", lambda c: c["steady_leader_cpu"]),
    ("leader RSS, MB", lambda c: max(c["rss_kb"].values()) / 1024),
    ("GET /v1/tasks page p99, ms", lambda c: c["list"]["leader"]["p99_ms"]),
    ("lost nodes' tasks running again, s", lambda c: c["lose"]["recover_s"]),
]
nodes = [c["nodes"] for c in cells]
fig, ax = plt.subplots(figsize=(8, 5))
fits = {}
for name, f in SERIES:
    ys = [f(c) for c in cells]
    fits[name] = slope(nodes, ys)
    k = fits[name]
    ax.plot(nodes, ys, marker="o", label=f"{name} (slope {k:.2f})" if k is not None else name)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("simulated nodes (100 tasks each)")
ax.set_title(f"Shoal at scale, 3 managers on one machine (commits {', '.join(commits)})")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(out_png, dpi=90)


def page(lat):
    """A page's p50 / p99 when rendered, and from the list cache if the run measured it."""
    out = f"{lat['p50_ms']:.0f} / {lat['p99_ms']:.0f}"
    if "cached_p99_ms" in lat:
        out += f" (cached: {lat['cached_p50_ms']:.1f} / {lat['cached_p99_ms']:.1f})"
    return out


def row(c):
    lose = c["lose"]
    upd = f"{c['update_s']:.0f} s, leader {c['update_leader_cpu']:.2f} cores" if "update_s" in c else "–"
    snap = c.get("snapshot")
    cpu = (f" (CPU {snap['build_cpu_s']:.2f} / {snap['install_cpu_s']:.2f} s)"
           if snap and snap.get("build_cpu_s") else "")
    snap = (f"{snap['build_s']:.2f} / {snap['install_s']:.2f} s{cpu}, {snap['bytes'] / 1e6:.0f} MB; "
            f"caught up {snap['caught_up_s']:.1f} s" if snap else "not measured")
    return (
        f"| {c['nodes']} | {c['tasks']} | {commit_of(c)} | {c['assigned_s']:.1f} s ({c['assigned_per_s']:.0f}/s) | "
        f"{c['running_s']:.1f} s ({c['running_per_s']:.0f}/s) | {c['idle_leader_cpu']:.2f} / {c['steady_leader_cpu']:.2f} | "
        f"{max(c['rss_kb'].values()) / 1024:.0f} | {page(c['list']['leader'])} | "
        f"{upd} | {lose['nodes']} nodes: {lose['recover_s']:.1f} s, most running {lose['most_running_live']} | "
        f"{c['failover_write_s']:.1f} / {c['failover_sessions_s']:.1f} s, {c['failover_tasks_changed']} changed | "
        f"{snap} |"
    )


lines = [
    "## Scale: simulated nodes",
    "",
    "`bench/scale/run` (root; release build): 3 managers on loopback, drained, and `shoal bench-agents`",
    "with N simulated nodes (Shoal's real agent over gRPC, each node its own join, certificate and",
    "127.x source address; a timed fake runtime behind the agent's seam: PREPARING up to 50 ms,",
    "STARTING 200 ms ± 20 %), all on this machine's 2 cores. One service of 100 × N replicas. The",
    "times run from `service create` until no task is new or pending (assigned) and until every",
    "task is RUNNING; CPU is the leader's user + system time over 10 s (idle: no tasks; steady:",
    "every task running); RSS is the largest manager's; the list walks every page of",
    "`GET /v1/tasks?limit=1000` three times on the leader, timing each request and its whole",
    "reply read (not the bench's JSON parsing, and with its garbage collector held off): the",
    "first walk renders every page, the next two find them in the list cache (a quiet",
    "cluster's figure, in brackets where measured; rows without it mix all three walks and",
    "count the bench's own parsing and garbage collection); the update is a rolling update of",
    "10,000 replicas at parallelism 100 with no delay; the node loss silences a tenth of the nodes",
    "at once (\"most running\" counts tasks RUNNING on live nodes, watched for over-placement); the",
    "failover kills -9 the leader and times a write through a survivor and every live session back",
    "on the new leader (tasks changed: ids, nodes or states that moved; must be 0); the snapshot",
    "stops a follower, writes 700 entries, has the leader build one (`POST /v1/cluster/snapshot`)",
    "and purge its log, and restarts the follower, which must install it: build and install time",
    "(the follower's own metric: decode, write, swap in; in brackets, the CPU time of the threads",
    "doing it, from the managers' logs: the build runs on spare CPU), size, and restart to",
    "caught up. One run per",
    "cell, at the commit its row names" + (f" (started {data['started']})" if len(commits) == 1 else
                                           "; cells measured at different commits are not a like-for-like curve") + ".",
    "",
    "| nodes | tasks | commit | to all assigned | to all RUNNING | leader CPU idle / steady | manager RSS MB | task page p50 / p99 ms | rolling update of 10,000 | nodes lost | failover: write / sessions | snapshot: build / install |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
    *[row(c) for c in cells],
    "",
]
if failed:
    lines += [
        "Cells that did not finish: "
        + "; ".join(f"{c['nodes']} nodes × {c['tasks']} tasks ({c['error']})" for c in failed) + ".",
        "",
    ]
lines += [
    "Exponents fitted on log-log axes against N (1: linear, 2: an O(n²) scan"
    + ("; the cells come from different commits, so these mix code changes with growth" if len(commits) > 1 else "")
    + "): "
    + ", ".join(f"{k} {v:.2f}" for k, v in fits.items() if v is not None) + ".",
    "",
    "![scale](img/scale.png)",
    "",
]
replace_section(doc, "## Scale: simulated nodes", "\n".join(lines))
print("\n".join(lines))
