"""Turns bench/network/run's raw results into bench/results/network.json, a plot, and the
"Networking" section of docs/benchmarks.md (other sections are kept).

Paired measures (throughput, connection rate, DNS) are reported as the median of the
per-round ratios (Shoal's side over the reference side of the same round) with their
range; the LB update latency as p50/p99 over every (change, node) pair."""
import json
import re
import statistics
import sys
from datetime import datetime
from pathlib import Path

import matplotlib
from benchdoc import replace_section

matplotlib.use("Agg")
import matplotlib.pyplot as plt

GOALS = {"throughput": 0.9, "connrate": 0.95, "dns": 2.0, "lb_p99_ms": 10.0}
raw, out_json, out_png, doc = (Path(a) for a in sys.argv[1:5])
meta = json.loads((raw / "meta.json").read_text())


def rounds_of(prefix, a, b, value):
    """[(round, a_value, b_value)] for the rounds that have both sides."""
    out = []
    for r in range(1, 100):
        pa, pb = raw / f"{prefix}-{a}-{r}", raw / f"{prefix}-{b}-{r}"
        va, vb = value(pa), value(pb)
        if va is None and vb is None:
            break
        out.append((r, va, vb))
    return out


def iperf(p):
    p = p.with_suffix(".json")
    if not p.exists():
        return None
    return json.loads(p.read_text())["end"]["sum_received"]["bits_per_second"] / 1e9


def connrate(p):
    p = p.with_suffix(".json")
    if not p.exists():
        return None
    d = json.loads(p.read_text())
    return d["per_s"] if d["errors"] == 0 else None


def connrate_detail(p):
    p = p.with_suffix(".json")
    return json.loads(p.read_text()) if p.exists() else None


def dnsperf(p):
    p = p.with_suffix(".txt")
    if not p.exists():
        return None
    m = re.search(r"Queries per second:\s+([\d.]+)", p.read_text())
    return float(m.group(1)) if m else None


def dns_lost(p):
    m = re.search(r"Queries lost:\s+(\d+)", p.with_suffix(".txt").read_text()) if p.with_suffix(".txt").exists() else None
    return int(m.group(1)) if m else None


def paired(rows):
    ratios = [a / b for _, a, b in rows if a and b]
    if not ratios:
        return None
    return {
        "rounds": [{"round": r, "shoal": a, "ref": b, "ratio": (a / b if a and b else None)} for r, a, b in rows],
        "median_shoal": statistics.median([a for _, a, _ in rows if a]),
        "median_ref": statistics.median([b for _, _, b in rows if b]),
        "median_ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
    }


res = {
    "throughput": paired(rounds_of("iperf", "overlay", "direct", iperf)),
    "connrate": paired(rounds_of("connrate", "vip", "direct", connrate)),
    "dns": paired(rounds_of("dns", "shoal", "docker", dnsperf)),
}
if res["connrate"]:
    for r in res["connrate"]["rounds"]:
        for side in ("vip", "direct"):
            d = connrate_detail(raw / f"connrate-{side}-{r['round']}")
            r[f"{side}_p50_us"], r[f"{side}_p99_us"] = d["p50_us"], d["p99_us"]
if res["dns"]:
    for r in res["dns"]["rounds"]:
        r["shoal_lost"] = dns_lost(raw / f"dns-shoal-{r['round']}")
        r["docker_lost"] = dns_lost(raw / f"dns-docker-{r['round']}")


# --- LB update latency ------------------------------------------------------------------
def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


lb = None
changes_path = raw / "lb-changes.jsonl"
if changes_path.exists():
    changes = [json.loads(x) for x in changes_path.read_text().splitlines() if x.strip()]
    lat = {}
    missing = 0
    for c in changes:
        for node, ms in (c.get("ms_after_commit") or {}).items():
            if ms is None:
                missing += 1
            else:
                lat.setdefault(node, []).append(ms)
        if "error" in c:
            missing += 1
    every = [max(v for v in (c.get("ms_after_commit") or {}).values() if v is not None)
             for c in changes if c.get("ms_after_commit") and all(v is not None for v in c["ms_after_commit"].values())]
    allv = [v for vs in lat.values() for v in vs]

    # The nodes' own part, from their logs' debug timings: for each change and node, the
    # first wiring that ended after the commit (its "wired" line: lock wait, resolvers,
    # desired state, data plane) and the `nft` runs in the client sandbox during it.
    clients = {}
    cp = raw / "lb-clients.txt"
    if cp.exists():
        for line in cp.read_text().splitlines():
            n, tid = line.split()
            clients[n] = tid

    def log_rows(node):
        p = raw / f"lb-{node}-wiring.log"
        rows = []
        if not p.exists():
            return rows
        for line in p.read_text().splitlines():
            parts = line.split(None, 3)
            if len(parts) < 4:
                continue
            try:
                ts = datetime.fromisoformat(parts[0].replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
            kv = dict(re.findall(r"(\w+)=(\S+)", parts[3]))
            msg = parts[3].split()[0] if parts[3].split() else ""
            rows.append((ts, msg, kv))
        return rows

    breakdown = {}
    for node in lat:
        rows = log_rows(node)
        tid = clients.get(node, "")
        per = {"before_wiring": [], "wiring": [], "data_plane": [], "nft_client": []}
        for c in changes:
            cw, seen = c.get("commit_wall"), (c.get("ms_after_commit") or {}).get(node)
            if cw is None or seen is None:
                continue
            w = next(((ts, kv) for ts, msg, kv in rows if msg == "wired" and ts >= cw and kv.get("full") == "false"), None)
            if not w:
                continue
            ts, kv = w
            dur = sum(int(kv.get(f"{k}_us", 0)) for k in ("lock", "dns", "view", "apply")) / 1e6
            start = ts - dur
            per["before_wiring"].append((start - cw) * 1e3)
            per["wiring"].append(dur * 1e3)
            per["data_plane"].append(int(kv.get("apply_us", 0)) / 1e3)
            nft = [int(kv2.get("us", 0)) / 1e3 for ts2, msg2, kv2 in rows
                   if msg2 == "nft" and start <= ts2 <= ts + 1e-3 and tid and tid in kv2.get("ns", "")]
            if nft:
                per["nft_client"].append(sum(nft))
        breakdown[node] = {k: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "n": len(v)} for k, v in per.items()}

    lb = {
        "changes": len(changes), "observations": len(allv), "missing": missing,
        "p50_ms": pct(allv, 0.5), "p99_ms": pct(allv, 0.99), "max_ms": max(allv) if allv else None,
        "every_node_p50_ms": pct(every, 0.5), "every_node_p99_ms": pct(every, 0.99),
        "by_op": {op: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "n": len(v)} for op in ("add", "remove")
                  for v in [[ms for c in changes if c.get("op") == op for ms in (c.get("ms_after_commit") or {}).values() if ms is not None]]},
        "by_node": {n: {"p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "n": len(v)} for n, v in lat.items()},
        "commit_after_command_p50_ms": pct([c["commit_after_cmd_ms"] for c in changes if "commit_after_cmd_ms" in c], 0.5),
        "node_breakdown": breakdown,
    }
    res["lb"] = lb

summary = {"goals": {"throughput": ">= 0.9x direct", "connrate": ">= 0.95x direct", "dns": ">= 2x Docker",
                     "lb": "p99 <= 10 ms after the manager's commit"}, "meta": meta, "results": res}
out_json.write_text(json.dumps(summary, indent=2) + "\n")

# --- plot ---------------------------------------------------------------------------------
COL = {"shoal": "#2a7", "ref": "#57a"}
fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
for ax, key, title, unit, labels in (
    (axes[0], "throughput", "TCP throughput, one stream", "Gbit/s", ("overlay (task→task)", "underlay (host→host)")),
    (axes[1], "connrate", "connections/s (connect, read, close)", "conn/s", ("via the VIP", "to the task address")),
    (axes[2], "dns", "DNS queries/s (dnsperf)", "queries/s", ("Shoal 127.0.0.11", "Docker 127.0.0.11")),
):
    d = res.get(key)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3, axis="y")
    if not d:
        ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
        continue
    rs = [r["round"] for r in d["rounds"]]
    ax.bar([x - 0.2 for x in rs], [r["shoal"] or 0 for r in d["rounds"]], 0.4, color=COL["shoal"], label=labels[0])
    ax.bar([x + 0.2 for x in rs], [r["ref"] or 0 for r in d["rounds"]], 0.4, color=COL["ref"], label=labels[1])
    ax.set_xticks(rs, [f"r{x}" for x in rs], fontsize=8)
    ax.set_xlabel(f"round (median ratio {d['median_ratio']:.2f}×)", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
ax = axes[3]
ax.set_title(f"LB update latency, {meta['services']} services", fontsize=9)
if lb:
    for n, marker in zip(sorted(lb["by_node"]), ("o", "s", "^")):
        xs = [c["change"] for c in changes if (c.get("ms_after_commit") or {}).get(n) is not None]
        ys = [c["ms_after_commit"][n] for c in changes if (c.get("ms_after_commit") or {}).get(n) is not None]
        ax.scatter(xs, ys, s=12, marker=marker, label=f"client sandbox on {n}")
    ax.axhline(GOALS["lb_p99_ms"], color="#c33", lw=0.8, ls="--", label="goal (p99)")
    ax.set_xlabel("change (even: scale 0→1, odd: 1→0)", fontsize=8)
    ax.set_ylabel("ms after the manager's commit")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
else:
    ax.text(0.5, 0.5, "not run", ha="center", transform=ax.transAxes)
fig.suptitle(f"Networking: Shoal's overlay at {meta['commit']}, alternating rounds, 2 hosts in network namespaces", fontsize=10)
fig.tight_layout()
fig.savefig(out_png, dpi=90)


# --- the doc section ----------------------------------------------------------------------
def f(v, nd=2):
    if v is None:
        return "—"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{nd}f}"


def met(ok):
    return "**met**" if ok else "**not met**"


rows = []
t, c, d = res["throughput"], res["connrate"], res["dns"]
if t:
    rows.append(f"| TCP throughput, one iperf3 stream, {meta['iperf_seconds']} s | overlay, task on h1 → task on h2: "
                f"{f(t['median_shoal'])} Gbit/s | underlay, h1 → h2: {f(t['median_ref'])} Gbit/s | "
                f"{t['median_ratio']:.2f}× ({t['ratio_min']:.2f}–{t['ratio_max']:.2f}) | ≥ 0.9× | "
                f"{met(t['median_ratio'] >= GOALS['throughput'])} |")
if c:
    rows.append(f"| connections/s, {meta['conns']} connect + read + close | to the service's VIP: {f(c['median_shoal'])} | "
                f"to the task's address: {f(c['median_ref'])} | {c['median_ratio']:.2f}× ({c['ratio_min']:.2f}–"
                f"{c['ratio_max']:.2f}) | ≥ 0.95× | {met(c['median_ratio'] >= GOALS['connrate'])} |")
if d:
    rows.append(f"| DNS queries/s, dnsperf {meta['dns_seconds']} s, `srv` and `tasks.srv` | Shoal: {f(d['median_shoal'])} | "
                f"Docker {meta['docker_version']}: {f(d['median_ref'])} | {d['median_ratio']:.2f}× "
                f"({d['ratio_min']:.2f}–{d['ratio_max']:.2f}) | ≥ 2× Docker | {met(d['median_ratio'] >= GOALS['dns'])} |")
lb_rows = []
if lb:
    lb_rows = [
        f"| every observation (change × node), n = {lb['observations']} | {f(lb['p50_ms'])} | {f(lb['p99_ms'])} | {f(lb['max_ms'])} |",
        f"| the last node to have it, per change | {f(lb['every_node_p50_ms'])} | {f(lb['every_node_p99_ms'])} | — |",
        *[f"| scale {'0 → 1' if op == 'add' else '1 → 0'} (n = {v['n']}) | {f(v['p50_ms'])} | {f(v['p99_ms'])} | — |"
          for op, v in lb["by_op"].items()],
        *[f"| client sandbox on {n} (n = {v['n']}) | {f(v['p50_ms'])} | {f(v['p99_ms'])} | — |" for n, v in sorted(lb["by_node"].items())],
    ]


def wiring_text():
    if not lb:
        return ""
    parts = []
    for n, b in sorted(lb["node_breakdown"].items()):
        if not b["wiring"]["n"]:
            continue
        parts.append(f"{n}: from the commit to the start of the node's wiring p50 {f(b['before_wiring']['p50_ms'])} ms "
                     f"(p99 {f(b['before_wiring']['p99_ms'])}), the wiring p50 {f(b['wiring']['p50_ms'])} ms (p99 "
                     f"{f(b['wiring']['p99_ms'])}), of which the data plane {f(b['data_plane']['p50_ms'])} ms and the "
                     f"`nft` process in the client sandbox {f(b['nft_client']['p50_ms'])} ms (p99 "
                     f"{f(b['nft_client']['p99_ms'])}); n = {b['wiring']['n']}")
    return "; ".join(parts)


shared = (f"The machine was shared: another engineer's builds and tests ran on it at the same time "
          f"(load average {meta['loadavg_at_end']} at the end of the run)."
          if meta.get("other_builds_running_at_end") else
          f"The machine is shared with another engineer's builds and tests; the run held the bench and root locks "
          f"(load average {meta['loadavg_at_end']} at its end).")
section = "\n".join([
    "## Networking: Shoal's overlay",
    "",
    "`bench/network/run` (issue 16). A Shoal cluster in network namespaces the script makes: a switch namespace "
    "with a bridge, host h1 (the manager m1) and host h2 (the worker w1), a real `shoal daemon` each "
    "(`--dns-upstream none`, `--pull never` after `image import` of `deploy/images/busybox`), all services on one "
    "overlay network: `srv` (one task, on w1) and `cli` (one task, on m1), both the busybox image running a shell "
    "that sleeps. Tools run in a task's sandbox with `nsenter --net=<data>/net/netns/t-<task id>`. The two sides of "
    f"each paired measure alternate round by round ({meta['rounds']} rounds, {meta['dns_rounds']} for DNS); the "
    "table gives the medians, and the median of the per-round ratios with its range.",
    "",
    f"- **Throughput**: `{meta['iperf3']}` (Debian), one TCP stream for {meta['iperf_seconds']} s after a 1 s warm-up "
    "(`-O 1`), from `cli`'s sandbox to `srv`'s task address over the overlay (veth → bridge → VXLAN in the overlay "
    "namespace → the hosts' veths → the same on the other side), against h1's namespace to h2's address over the "
    f"underlay (the same veths and bridge, no VXLAN). Overlay MTU {meta['mtu_overlay']}, underlay MTU "
    f"{meta['mtu_underlay']} (the VXLAN header's 50 bytes).",
    f"- **Connection rate**: `bench/network/connrate.c`, {meta['conns']} sequential connections (connect, read the "
    "3-byte answer to EOF, close; the server closes first), from `cli`'s sandbox to `srv`'s VIP (Shoal's nftables "
    "DNAT in `cli`'s sandbox picks the one task) against the same server at the task's address. The server is the "
    "same tool, in `srv`'s sandbox; a 300-connection warm-up on both paths first. Both paths cross the overlay; "
    "conntrack runs on both (the sandbox has a nat table), so the difference is the VIP's map lookup and DNAT.",
    f"- **DNS**: dnsperf ({meta['dnsperf']}, its defaults: one client, up to 100 queries outstanding) for "
    f"{meta['dns_seconds']} s against 127.0.0.11 in `cli`'s sandbox (Shoal's resolver, a hickory server in the "
    "daemon, reached through the sandbox's DNAT), against the same in Docker's `cli` task's namespace (`nsenter -t "
    "<container pid> -n`): Docker's embedded DNS. Docker is a single-node swarm whose `dockerd` runs in a third "
    "namespace h3 on the same switch, with the same image and services (`srv`, `cli`, one replica each) on an "
    "overlay network. The query file is the same: `srv A` and `tasks.srv A` (both answered from the resolvers' own "
    "tables, nothing forwarded).",
    f"- **LB update latency**: {meta['services']:,} services with 0 replicas on one network (`--subnet "
    "10.99.0.0/16`), then a global service `lbcli` (a client task on each node), then "
    f"{meta['lb_changes']} changes: scale one of the services 0 → 1, then 1 → 0, each in turn. "
    "`bench/network/lbwatch.py` times, on one clock, the commit (when it reads the task's event from the manager's "
    "`/v1/events?type=task`: the task starts serving, running and desired running, or stops, desired state no "
    "longer running) and, in each node's client sandbox, `nft monitor ruleset` printing the change (`dnat to "
    "<task address>` in the service's backend chain, or that chain deleted). The event reaches the bench through "
    "the API on a unix socket: the commit is a little earlier than measured, so these latencies are a little "
    "short, by the stream's delivery time.",
    "",
    "| measure | Shoal | reference | ratio (range) | goal | met |",
    "|---|---|---|---|---|---|",
    *rows,
    "",
    *([
        f"LB update latency after the manager's commit, {lb['changes']} changes × 2 nodes"
        + (f" ({lb['missing']} not seen within 10 s)" if lb["missing"] else "") + ":",
        "",
        "| ms after the commit | p50 | p99 | max |",
        "|---|---|---|---|",
        *lb_rows,
        "",
        f"Goal p99 ≤ 10 ms after the manager commits: {met((lb['p99_ms'] or 1e9) <= GOALS['lb_p99_ms'])}. "
        f"Where the time goes, from the nodes' debug timings matched to each change ({wiring_text()}). "
        "\"From the commit to the wiring\" is the manager's assignments stream (it recomputes the node's "
        "assignments, the 1,000 services' VIPs included, for every store event, and gathers a burst into one "
        "message per 20 ms: `manager/src/dispatcher/mod.rs`), the gRPC hop and the agent's hand-over to its wiring "
        "loop; \"the wiring\" is the worker's `Wiring::wire` (`worker/src/network/wiring.rs`), which starts one "
        "`nft -f -` process per sandbox whose table changed.",
        "",
    ] if lb else []),
    *([f"DNS: lost queries per round, Shoal {[r['shoal_lost'] for r in d['rounds']]}, Docker "
       f"{[r['docker_lost'] for r in d['rounds']]}.", ""] if d else []),
    "What differs between the sides: the overlay's MTU is 50 bytes smaller than the underlay's; the VIP path "
    "has one nftables DNAT more than the direct one; Docker's resolver runs in `dockerd` in its own namespace on "
    "the same switch, Shoal's in its daemon on h1; both are reached through a DNAT to 127.0.0.11 inside the "
    "container's namespace.",
    "",
    shared + f" Run {meta['date']} on {meta['cpu']} ({meta['cores']} cores shared by the daemons, the tools and "
    f"their peers), kernel {meta['kernel']}; Shoal at {meta['commit']}"
    + (f" (its sources last changed in {meta['source_commit']})" if meta.get("source_commit") != meta["commit"] else "")
    + f" ({meta['shoal_version']}, binary built {meta['shoal_binary_mtime']}). Raw results: `bench/results/network-raw/`.",
    "",
    "![networking benchmark](img/network.png)",
    "",
    "",
])
replace_section(doc, "## Networking: Shoal's overlay", section)
print(json.dumps({k: ({kk: vv for kk, vv in v.items() if kk != "rounds"} if isinstance(v, dict) else v)
                  for k, v in res.items()}, indent=1))
