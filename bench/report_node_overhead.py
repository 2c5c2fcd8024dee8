"""Turns the raw samples of bench/node-overhead into bench/results/node-overhead.json and
prints the "A node's own overhead" section for docs/benchmarks.md (to stdout).

report_node_overhead.py RAW_DIR OUT_JSON

A sample is one process's Rss and Pss (kB) at one replica count of one round; a round's
total is the sum over that peer's own processes. Shoal and Docker of the same round index
are a pair: the ratio reported is the median of the per-round ratios, with their range.
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

raw, out_json = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((raw / "meta.json").read_text())
samples = [json.loads(line) for line in (raw / "samples.jsonl").read_text().splitlines() if line.strip()]
n, half = meta["replicas"], meta["half"]

# totals[peer][round][replicas] = {"rss_kb", "pss_kb", "by_process": {name: {rss_kb, pss_kb, count}}}
totals = defaultdict(lambda: defaultdict(dict))
for s in samples:
    t = totals[s["peer"]][s["round"]].setdefault(s["replicas"], {"rss_kb": 0, "pss_kb": 0, "by_process": {}})
    t["rss_kb"] += s["rss_kb"]
    t["pss_kb"] += s["pss_kb"]
    p = t["by_process"].setdefault(s["process"], {"rss_kb": 0, "pss_kb": 0, "count": 0})
    p["rss_kb"] += s["rss_kb"]
    p["pss_kb"] += s["pss_kb"]
    p["count"] += 1


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


summary = {"meta": meta, "rounds": {peer: {str(r): v for r, v in rounds.items()} for peer, rounds in totals.items()}}
for peer, rounds in totals.items():
    full = [v[n] for v in rounds.values() if n in v]
    per_extra = {
        m: [(v[n][m] - v[half][m]) / (n - half) for v in rounds.values() if n in v and half in v]
        for m in ("rss_kb", "pss_kb")
    }
    summary[peer] = {
        "total_rss_mb_at_n": spread([t["rss_kb"] / 1024 for t in full]),
        "total_pss_mb_at_n": spread([t["pss_kb"] / 1024 for t in full]),
        "per_extra_container_rss_kb": spread(per_extra["rss_kb"]) if per_extra["rss_kb"] else None,
        "per_extra_container_pss_kb": spread(per_extra["pss_kb"]) if per_extra["pss_kb"] else None,
    }
    for name in sorted({name for t in full for name in t["by_process"]}):
        parts = [t["by_process"][name] for t in full if name in t["by_process"]]
        summary[peer][f"{name}_at_n"] = {
            "count": statistics.median(p["count"] for p in parts),
            "rss_mb": statistics.median(p["rss_kb"] / 1024 for p in parts),
            "pss_mb": statistics.median(p["pss_kb"] / 1024 for p in parts),
            "rss_kb_each": statistics.median(p["rss_kb"] / p["count"] for p in parts),
            "pss_kb_each": statistics.median(p["pss_kb"] / p["count"] for p in parts),
        }

# Memory that is no process's (Shoal's sealed copy of its binary, as far as unmapped) is in
# the totals; the "processes only" ratios leave it out, as a sum over processes would.
NOT_A_PROCESS = {"sealed-copy"}


def processes_only(t, m):
    return t[m] - sum(v[m] for k, v in t["by_process"].items() if k in NOT_A_PROCESS)


paired = sorted(set(totals.get("shoal", {})) & set(totals.get("docker", {})))
for m in ("rss_kb", "pss_kb"):
    both = [(totals["shoal"][r][n], totals["docker"][r][n]) for r in paired if n in totals["shoal"][r] and n in totals["docker"][r]]
    ratios = [s[m] / d[m] for s, d in both]
    summary[f"ratio_shoal_over_docker_{m[:3]}"] = spread(ratios) if ratios else None
    ratios = [processes_only(s, m) / processes_only(d, m) for s, d in both]
    summary[f"ratio_shoal_over_docker_{m[:3]}_processes_only"] = spread(ratios) if ratios else None
out_json.write_text(json.dumps(summary, indent=2) + "\n")


def mb(d):
    return f"{d['median']:.0f} ({d['min']:.0f}–{d['max']:.0f})"


def kb(d):
    return f"{d['median']:.0f} ({d['min']:.0f}–{d['max']:.0f})" if d else "–"


def ratio(d):
    return f"{d['median']:.3f}× ({d['min']:.3f}–{d['max']:.3f})" if d else "–"


rows = []
for peer in ("shoal", "docker"):
    if peer not in summary:
        continue
    s = summary[peer]
    parts = ", ".join(
        f"{name} {v['rss_mb']:.0f} MB" + (f" ({v['count']:.0f} × {v['rss_kb_each']:.0f} kB)" if v["count"] > 1 else "")
        for name, v in ((k[: -len("_at_n")], v) for k, v in s.items() if k.endswith("_at_n") and "count" in v)
    )
    rows.append(
        f"| {peer} | {mb(s['total_rss_mb_at_n'])} | {mb(s['total_pss_mb_at_n'])} | "
        f"{kb(s['per_extra_container_rss_kb'])} | {kb(s['per_extra_container_pss_kb'])} | {parts} |"
    )
rr, rp = summary.get("ratio_shoal_over_docker_rss"), summary.get("ratio_shoal_over_docker_pss")
rr0, rp0 = (summary.get(f"ratio_shoal_over_docker_{m}_processes_only") for m in ("rss", "pss"))
has_copy = any(
    k in NOT_A_PROCESS for by_n in totals.get("shoal", {}).values() for t in by_n.values() for k in t["by_process"]
)
if has_copy:
    how_shims_run = [
        f"processes only (without Shoal's sealed copy of its binary): RSS {ratio(rr0)}, PSS {ratio(rp0)}.",
        "The sealed copy is the memfd the daemon executes shims from when the kernel cannot give it a",
        "read-only view of its binary (before Linux 5.12): it is in RAM (shmem) and counted here as far as",
        "no process maps it.",
    ]
else:
    how_shims_run = [
        "The daemon starts each shim through a read-only view of its own binary (a detached bind mount),",
        "which holds no memory of its own; once the container runs, the shim executes the small static",
        "supervisor (`shoal-shim`), shared by all through the page cache.",
    ]
extra = summary.get("shoal", {}).get("per_extra_container_rss_kb")
if rr and extra:
    met = "met" if rr["median"] <= 0.1 and extra["median"] <= 1024 else "not met"
    goals = f"Goals: ≤ 0.1× Docker's total, ≤ 1 MB (1,024 kB) RSS of Shoal's own per extra container: {met}."
else:
    goals = "Goals: ≤ 0.1× Docker's total, ≤ 1 MB (1,024 kB) RSS of Shoal's own per extra container."

section = "\n".join(
    [
        "## A node's own overhead: Shoal vs Docker",
        "",
        f"`bench/node-overhead` (as root, commit {meta['commit']}, {meta['rounds']} rounds each, alternating): a",
        f"one-node swarm of each runs a service of {half}, then {n}, `{' '.join(meta['workload'])}` busybox containers;",
        "the memory of each one's own processes is summed from `/proc/PID/smaps_rollup` (Shoal: the daemon",
        "and its shims; Docker: dockerd, containerd and its shims; never the containers' processes).",
        f"Median (range) over rounds; at {n} containers; per extra container = (total({n}) − total({half})) / {n - half}.",
        "",
        f"| peer | RSS, MB | PSS, MB | kB RSS per extra container | kB PSS per extra container | at {n} (RSS) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Shoal / Docker, median of per-round ratios (range): RSS {ratio(rr)}, PSS {ratio(rp)}.",
        *how_shims_run,
        goals,
    ]
)
print(section)
