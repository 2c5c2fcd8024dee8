"""Turns bench/api/run's raw numbers into bench/results/api.json, a plot, and the Cluster
API section of docs/benchmarks.md (other sections are kept). Quiet rows (served from
Shoal's reply cache) compare like with like only when both peers listed the same number
of objects; rows where they did not are marked `same_counts: false` and do not count
towards the goal. Rows under churn come in rounds that alternate the peers: each round
gives a Shoal / Docker ratio, and a row reports the median ratio and the range."""
import json
import statistics
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

# Under churn: per round and peer, one raw result per list and concurrency.
churn_meta = json.loads((raw / "churn-meta.json").read_text())
rounds = list(range(1, churn_meta["rounds"] + 1))
churn_res = {
    f"r{r}-{peer}-{what}-{c}": json.loads((raw / f"churn-r{r}-{peer}-{what}-{c}.json").read_text())
    for r in rounds
    for peer in ("shoal", "docker")
    for what in paths
    for c in concurrencies
}
snapshots = {
    f"r{r}-{peer}-{when}": json.loads((raw / f"churn-r{r}-{peer}-{when}.json").read_text())
    for r in rounds
    for peer in ("shoal", "docker")
    for when in ("start", "end")
}
scale_ops = {
    f"r{r}-{peer}": len((raw / f"churn-r{r}-{peer}-driver.txt").read_text().split("\n")) - 1
    for r in rounds
    for peer in ("shoal", "docker")
}
CHURN_KEYS = ("rps", "p50_ms", "p99_ms", "stale_index_p50", "stale_index_p99", "stale_ms_p50", "stale_ms_p99", "stale_share", "body_bytes", "index_steps", "seconds")


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


churn_rows = []
for what in paths:
    for c in concurrencies:
        per = {peer: [churn_res[f"r{r}-{peer}-{what}-{c}"] for r in rounds] for peer in ("shoal", "docker")}
        rps_ratios = [s["rps"] / max(d["rps"], 1e-9) for s, d in zip(per["shoal"], per["docker"])]
        p99_ratios = [s["p99_ms"] / max(d["p99_ms"], 1e-9) for s, d in zip(per["shoal"], per["docker"])]
        rr, pr = spread(rps_ratios), spread(p99_ratios)
        churn_rows.append(
            {
                "list": what,
                "concurrency": c,
                "rounds": len(rounds),
                "shoal": {k: spread([x[k] for x in per["shoal"]]) for k in CHURN_KEYS},
                "docker": {k: spread([x[k] for x in per["docker"]]) for k in CHURN_KEYS},
                "rps_ratio_per_round": rps_ratios,
                "p99_ratio_per_round": p99_ratios,
                "rps_ratio_shoal_over_docker": rr,
                "p99_ratio_shoal_over_docker": pr,
                "goal_met": rr["median"] >= RPS_GOAL and pr["median"] <= P99_GOAL,
            }
        )
churn_goal_met = all(r["goal_met"] for r in churn_rows)
summary = {
    "goal": f">= {RPS_GOAL:g}x Docker's requests/s with p99 <= {P99_GOAL:g}x Docker's, same counts",
    "goal_met": goal_met,
    "meta": meta,
    "rows": rows,
    "runs": res,
    "churn": {
        "goal": f"median over rounds of the paired ratios: >= {RPS_GOAL:g}x Docker's requests/s with p99 <= {P99_GOAL:g}x Docker's",
        "goal_met": churn_goal_met,
        "meta": churn_meta,
        "rows": churn_rows,
        "snapshots": snapshots,
        "scale_operations": scale_ops,
        "runs": churn_res,
    },
}
out_json.write_text(json.dumps(summary, indent=2) + "\n")

def ms(v):
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}"


# Plot: requests/s and p99 side by side, log scale (the peers can differ by orders of
# magnitude); top the quiet rows, bottom the medians under churn (bars show the range).
fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
for line, rs, kind in ((0, rows, "quiet (Shoal: reply cache)"), (1, churn_rows, f"under churn (median of {len(rounds)} rounds, range)")):
    labels = [f"{r['list']}\n{r['concurrency']} client(s)" for r in rs]
    x = range(len(rs))
    for ax, key, title in ((axes[line][0], "rps", "requests/s (higher is better)"), (axes[line][1], "p99_ms", "p99 latency, ms (lower is better)")):
        for off, peer, color in ((-0.2, "shoal", "#2a7"), (0.2, "docker", "#57a")):
            if line == 0:
                vals, err = [r[peer][key] for r in rs], None
                hatch = ["" if r["same_counts"] or peer == "docker" else "//" for r in rs]
            else:
                vals = [r[peer][key]["median"] for r in rs]
                err = [[v - r[peer][key]["min"] for v, r in zip(vals, rs)], [r[peer][key]["max"] - v for v, r in zip(vals, rs)]]
                hatch = [""] * len(rs)
            bars = ax.bar([i + off for i in x], vals, 0.4, color=color, label=peer, yerr=err, capsize=3)
            for bar, h, v in zip(bars, hatch, vals):
                bar.set_hatch(h)
                ax.annotate(f"{v:.0f}" if key == "rps" else ms(v), (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(list(x), labels, fontsize=8)
        ax.set_title(f"{kind}: {title}", fontsize=9)
axes[0][0].legend(fontsize=8)
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
    "The first table is a quiet cluster: nothing is written while a row runs, so after its first answer "
    "Shoal serves each list from its reply cache (the whole reply kept at the store index it shows); "
    "these rows measure the cache, not rendering while objects change. The second table is under churn."
)


def churn_row(r):
    s, d, rr, pr = r["shoal"], r["docker"], r["rps_ratio_shoal_over_docker"], r["p99_ratio_shoal_over_docker"]

    def stale(x):
        return (
            f"{x['stale_index_p50']['median']:.0f} / {x['stale_index_p99']['median']:.0f}; "
            f"{ms(x['stale_ms_p50']['median'])} / {ms(x['stale_ms_p99']['median'])}"
        )

    return (
        f"| `GET {r['list']}` | {r['concurrency']} | {s['rps']['median']:.0f} | "
        f"{ms(s['p50_ms']['median'])} / {ms(s['p99_ms']['median'])} | {stale(s)} | {d['rps']['median']:.0f} | "
        f"{ms(d['p50_ms']['median'])} / {ms(d['p99_ms']['median'])} | {stale(d)} | "
        f"{rr['median']:.1f}× ({rr['min']:.1f}–{rr['max']:.1f}) | {pr['median']:.3f}× ({pr['min']:.3f}–{pr['max']:.3f}) | "
        f"{'yes' if r['goal_met'] else 'no'} |"
    )


def changes():
    out = []
    for r in churn_rows:
        rate = {p: r[p]["index_steps"]["median"] / r[p]["seconds"]["median"] for p in ("shoal", "docker")}
        out.append(f"`GET {r['list']}` with {r['concurrency']}: {rate['shoal']:.1f} (Shoal) / {rate['docker']:.1f} (Docker)")
    return "; ".join(out)


def churn_verdict():
    parts = [f"**{'Met' if churn_goal_met else 'Not met'} under churn.**"]
    for met, word in ((True, "met"), (False, "missed")):
        rs = [f"`GET {r['list']}` with {r['concurrency']}" for r in churn_rows if r["goal_met"] == met]
        if rs:
            parts.append(f"{word.capitalize()}: {', '.join(rs)} client(s).")
    return " ".join(parts)


def counts_text(peer):
    starts = [snapshots[f"r{r}-{peer}-start"] for r in rounds] + [snapshots[f"r{r}-{peer}-end"] for r in rounds]
    svc = sorted({x["services"] for x in starts})
    tasks = [x["tasks"] for x in starts]
    running = [x["task_states"].get("running", 0) for x in starts]
    failed = [x["task_states"].get("failed", 0) for x in starts]
    ops = [scale_ops[f"r{r}-{peer}"] for r in rounds]
    return (
        f"{'/'.join(map(str, svc))} services, {min(tasks)}–{max(tasks)} tasks listed "
        f"({min(running)}–{max(running)} running, {min(failed)}–{max(failed)} failed) at the start and end of the rows; "
        f"{min(ops)}–{max(ops)} scale operations per round"
    )


cm = churn_meta
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
        "### Under churn",
        "",
        f"The same {cm['quiet_services']} pending services on both, plus containers running the same "
        f"busybox image (`deploy/images/busybox`, image id `{cm['image_id'][:19]}…`): `bench-restart`, "
        f"{cm['restart_replicas']} replicas of `sh -c '{cm['restart_cmd']}'` with restart condition any and "
        "delay 0s (Swarm's default delay is 5 s; both get 0s, given explicitly), and `bench-scale`, "
        f"`sh -c \"{cm['scale_cmd']}\"`, which a driver scales {cm['scale_low']} ↔ {cm['scale_high']} every "
        f"{cm['scale_every_seconds']} s (`service scale --detach`, each peer's own CLI). Rounds alternate the "
        f"peers (Shoal, Docker, Shoal, …; {len(rounds)} each, one peer at a time, each round a fresh daemon); "
        f"rows start after {cm['settle_seconds']} s of churn and last {cm['seconds']} s after "
        f"{cm['warmup_seconds']} s of warm-up. Every answer was 200.",
        "",
        "**What differs between the sides.** The two churned services are on an internal overlay network "
        "on both (`--internal`: no gateway bridge), because on this machine Shoal's task wiring into its "
        "gateway bridge failed (`netlink: create shg… Invalid argument`) for tasks without one; Shoal's "
        "daemon runs in a network namespace of its own (as in `bench/orchestration/run`), dockerd in the "
        "host's. Each peer restarts and replaces tasks at its own speed, so the churn each list sees is "
        "the same workload, not the same number of changes: the index steps each row saw are in "
        "`bench/results/api.json` (`index_steps`).",
        "",
        "**Staleness.** The index an answer reflects is Shoal's `X-Shoal-Index` (the per-kind store index "
        "of the list) and, for Docker, the largest `Version.Index` of the objects in the answer. A "
        "tracker in the client follows the newest index of the same list while the row runs: on Shoal a "
        "blocking query (`?limit=1&wait_index=N`, answered as soon as the index passes N); Docker has none, "
        f"so it polls the churned services' objects (`filters` on `bench-restart`, `bench-scale`) every "
        f"{cm['docker_track_every_ms']} ms after each answer, and answers readers get count too. When an "
        "answer at index i arrives and the newest index seen is L, it is L − i behind, and stale for "
        "the time since an index above i was first seen (0 if i is the newest). Index units differ: "
        "Shoal's count changes of the list's kind, Docker's is its raft index over all kinds. Docker's "
        "tracker is slower than Shoal's, so Docker's staleness is a lower bound. Deleted objects move "
        "Shoal's index but no Docker object's version. The client parses Docker's body (to read "
        "the versions) after the latency is taken; Shoal's answers need only the header.",
        "",
        "| request (under churn) | clients | shoal req/s | shoal p50 / p99 | shoal stale p50 / p99 "
        "(index; ms) | docker req/s | docker p50 / p99 | docker stale p50 / p99 (index; ms) | "
        "req/s ratio (range) | p99 ratio (range) | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[churn_row(r) for r in churn_rows],
        "",
        "Values are medians over the rounds; ratios are the median of the per-round Shoal / Docker "
        f"ratios, with their range. Goal under churn: the same. {churn_verdict()}",
        "",
        f"How often each list changed while its rows ran (new indexes seen per second, median): {changes()}. "
        "Docker's figure is what its slower answers and the tracker let the client see, a lower bound. "
        "Shoal's reply cache holds one answer per index: after each change the next answer is rendered "
        "and the ones until the following change come from the cache. Services change only at each "
        "scale operation; tasks change tens of times a second, so `GET tasks` under churn re-renders that "
        "often, but not on every request.",
        "",
        f"Shoal: {counts_text('shoal')}. Docker: {counts_text('docker')}. Task lists include each slot's "
        "history (5 per slot on both). Response sizes (median): services "
        f"{churn_rows[0]['shoal']['body_bytes']['median']:.0f} B (Shoal) vs "
        f"{churn_rows[0]['docker']['body_bytes']['median']:.0f} B (Docker); tasks "
        f"{churn_rows[-1]['shoal']['body_bytes']['median']:.0f} B vs {churn_rows[-1]['docker']['body_bytes']['median']:.0f} B.",
        "",
        f"Churn rounds run {cm['date']}; Shoal at {cm['commit']} ({cm['shoal_version']}, binary built "
        f"{cm['shoal_binary_mtime']}), Docker {cm['docker_version']} (API v{cm['docker_api_version']}).",
        "",
        "![cluster API benchmark](img/api.png)",
        "",
        "",
    ]
)
replace_section(doc, "## Cluster API: Shoal vs Docker", section)
print(json.dumps({"goal_met": goal_met, "churn_goal_met": churn_goal_met, "churn_rows": churn_rows}, indent=2))
