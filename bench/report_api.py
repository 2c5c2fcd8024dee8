"""Turns bench/api/run's raw numbers into bench/results/api.json, a plot, and the Cluster
API section of docs/benchmarks.md (other sections are kept). A row compares like with
like only when both peers listed the same number of objects; rows where they did not
are marked `same_counts: false` and do not count towards the goal."""
import json
import sys
from pathlib import Path

import matplotlib
from benchdoc import replace_section

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker

RPS_GOAL, P99_GOAL = 10.0, 0.1
raw, out_json, out_png, doc = (Path(a) for a in sys.argv[1:5])
meta = json.loads((raw / "meta.json").read_text())
counts, wanted = meta["counts"], meta["wanted"]
paths = ("services", "tasks")
concurrencies = sorted({int(p.stem.rsplit("-", 1)[1]) for p in raw.glob("shoal-services-*.json")})
res = {
    f"{peer}-{what}-{c}": json.loads((raw / f"{peer}-{what}-{c}.json").read_text())
    for peer in ("shoal", "docker")
    for what in paths
    for c in concurrencies
}

rows = []
for what in paths:
    s_n, d_n = counts["shoal"][what], counts["docker"][what]
    same = s_n == d_n == wanted[what]
    for c in concurrencies:
        s, d = res[f"shoal-{what}-{c}"], res[f"docker-{what}-{c}"]
        rps_ratio = s["rps"] / max(d["rps"], 1e-9)
        p99_ratio = s["p99_ms"] / max(d["p99_ms"], 1e-9)
        rows.append(
            {
                "list": what,
                "concurrency": c,
                "shoal_count": s_n,
                "docker_count": d_n,
                "same_counts": same,
                "shoal": {k: s[k] for k in ("path", "requests", "rps", "p50_ms", "p99_ms", "mean_ms", "body_bytes")},
                "docker": {k: d[k] for k in ("path", "requests", "rps", "p50_ms", "p99_ms", "mean_ms", "body_bytes")},
                "rps_ratio_shoal_over_docker": rps_ratio,
                "p99_ratio_shoal_over_docker": p99_ratio,
                "goal_met": same and rps_ratio >= RPS_GOAL and p99_ratio <= P99_GOAL,
            }
        )
all_same = all(r["same_counts"] for r in rows)
goal_met = all_same and all(r["goal_met"] for r in rows)
summary = {
    "goal": f">= {RPS_GOAL:g}x Docker's requests/s with p99 <= {P99_GOAL:g}x Docker's, same counts",
    "goal_met": goal_met,
    "meta": meta,
    "rows": rows,
    "runs": res,
}
out_json.write_text(json.dumps(summary, indent=2) + "\n")

def ms(v):
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}"


# Plot: requests/s and p99 side by side, log scale (the peers can differ by orders of magnitude).
labels = [f"{r['list']}\n{r['concurrency']} client(s)" for r in rows]
x = range(len(rows))
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, key, title in ((axes[0], "rps", "requests/s (higher is better)"), (axes[1], "p99_ms", "p99 latency, ms (lower is better)")):
    for off, peer, color in ((-0.2, "shoal", "#2a7"), (0.2, "docker", "#57a")):
        vals = [r[peer][key] for r in rows]
        hatch = ["" if r["same_counts"] or peer == "docker" else "//" for r in rows]
        bars = ax.bar([i + off for i in x], vals, 0.4, color=color, label=peer)
        for bar, h, v in zip(bars, hatch, vals):
            bar.set_hatch(h)
            ax.annotate(f"{v:.0f}" if key == "rps" else ms(v), (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_title(title)
axes[0].legend(fontsize=8)
note = "" if all_same else "  (hatched: the peers listed different numbers of objects — not comparable)"
fig.suptitle(
    f"GET services / tasks at {wanted['services']} services × {wanted['tasks'] // wanted['services']} tasks, "
    f"unix socket, same client, one run{note}",
    fontsize=9,
)
fig.tight_layout()
fig.savefig(out_png, dpi=90)


def row(r):
    s, d = r["shoal"], r["docker"]
    goal = ("yes" if r["goal_met"] else "no") if r["same_counts"] else "n/a: counts differ"
    return (
        f"| `GET {r['list']}` | {r['concurrency']} | {r['shoal_count']} / {r['docker_count']} | "
        f"{ms(s['p50_ms'])} / {ms(s['p99_ms'])} | {s['rps']:.0f} | {ms(d['p50_ms'])} / {ms(d['p99_ms'])} | "
        f"{d['rps']:.0f} | {r['rps_ratio_shoal_over_docker']:.1f}× | {r['p99_ratio_shoal_over_docker']:.3f}× | {goal} |"
    )


def verdict():
    parts = [f"**{'Met' if goal_met else 'Not met'}.**"]
    for what in paths:
        rs = [r for r in rows if r["list"] == what]
        if not rs[0]["same_counts"]:
            parts.append(
                f"`GET {what}` is not comparable: Shoal listed {counts['shoal'][what]} and Docker "
                f"{counts['docker'][what]} of the {wanted[what]} {what} wanted, so those rows measure different "
                "work and do not count."
            )
            continue
        for met, word in ((True, "met"), (False, "missed")):
            cs = [str(r["concurrency"]) for r in rs if r["goal_met"] == met]
            if cs:
                parts.append(f"`GET {what}`: {word} with {' and '.join(cs)} client(s).")
    return " ".join(parts)


NOTE = (
    "Every row here is a quiet cluster: nothing is written while a row runs, so after its first answer "
    "Shoal serves each list from its reply cache (the whole reply kept at the store index it shows); "
    "these rows measure the cache, not rendering while objects change. Rows under churn (tasks "
    "restarting, services scaling) are not measured yet."
)
dstates = ", ".join(f"{k} {v}" for k, v in sorted(counts["docker"]["task_states"].items())) or "none"
section = "\n".join(
    [
        "## Cluster API: Shoal vs Docker",
        "",
        f"`bench/api/run`: {wanted['services']} services × {wanted['tasks'] // wanted['services']} replicas "
        "on a one-node cluster of each, created through each one's",
        "command line with a placement constraint no node meets, so the tasks stay pending and no",
        "container runs. The same client (`api/examples/api_bench.rs`, reqwest + tokio) sends GETs in a",
        f"closed loop over each one's unix socket, {meta['seconds']} s per row after {meta['warmup_seconds']} s "
        "of warm-up, reading every body in full;",
        "every answer was 200. The peers run one after the other in one run: first Docker",
        f"{meta['docker_version']} (Debian `docker.io`, swarm mode, API v{meta['docker_api_version']}: "
        f"`/v{meta['docker_api_version']}/services`, `/v{meta['docker_api_version']}/tasks`), then Shoal (one manager:",
        "`/v1/services`, `/v1/tasks`). Latencies in milliseconds; ratios are Shoal / Docker; \"objects\" is",
        "how many each one listed (Shoal / Docker).",
        "",
        NOTE,
        "",
        "| request (quiet: served from the reply cache) | clients | objects | shoal p50 / p99 | shoal req/s "
        "| docker p50 / p99 | docker req/s | req/s ratio | p99 ratio | goal |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[row(r) for r in rows],
        "",
        f"Goal (issue 5): ≥ {RPS_GOAL:g}× Docker's requests/s with p99 ≤ {P99_GOAL:g}× Docker's, at the same "
        f"counts. {verdict()}",
        "",
        f"Docker's tasks: {dstates}. Response sizes: services {res['shoal-services-1']['body_bytes']} B "
        f"(Shoal) vs {res['docker-services-1']['body_bytes']} B (Docker); tasks "
        f"{res['shoal-tasks-1']['body_bytes']} B vs {res['docker-tasks-1']['body_bytes']} B.",
        "",
        f"Run {meta['date']} on {meta['cpu']} ({meta['cores']} cores, shared by the daemon and the client), "
        f"kernel {meta['kernel']}; Shoal at {meta['commit']} ({meta['shoal_version']}, binary built "
        f"{meta['shoal_binary_mtime']}).",
        "",
        "![cluster API benchmark](img/api.png)",
        "",
    ]
)
replace_section(doc, "## Cluster API: Shoal vs Docker", section)
print(json.dumps({"goal_met": goal_met, "rows": rows}, indent=2))
