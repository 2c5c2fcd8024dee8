"""Turns bench/tls/run's raw numbers into bench/results/tls.json and the "Cost of mutual
TLS" section of docs/benchmarks.md (other sections are kept). The two builds ran in the
same rounds, taking turns; for each measure the figure is the median over rounds of the
per-round ratio TLS / plain (pairing the two runs of one round cancels the machine's drift
between rounds), with its range; each build's median is given too.

report_tls.py RAW_DIR OUT_JSON DOC"""
import json
import re
import statistics
import sys
from pathlib import Path

from benchdoc import replace_section

raw, out_json, doc = (Path(a) for a in sys.argv[1:4])
parts = {p: json.loads((raw / f"meta-{p}.json").read_text()) for p in ("raft", "orchestration") if (raw / f"meta-{p}.json").exists()}
meta = next(iter(parts.values()))
when = "; ".join(f"{p} {m['date']}, load {m['load_at_end']} at its end" for p, m in parts.items())

# measure -> round -> {"tls": value, "plain": value}
rounds = {}
errors = {"tls": 0, "plain": 0}
for f in sorted(raw.glob("raft-*.json")):
    m = re.fullmatch(r"raft-(tls|plain)-(\d+)-r(\d+)\.json", f.name)
    if not m:
        continue
    sys_, clients, r = m[1], int(m[2]), int(m[3])
    run = json.loads(f.read_text())
    errors[sys_] += run["errors"]
    for metric in ("writes_per_s", "p50_ms", "p99_ms"):
        rounds.setdefault(f"raft {clients} client{'s' if clients > 1 else ''} {metric}", {}).setdefault(r, {})[sys_] = run[metric]

orch_outcomes = []
for d in sorted(raw.glob("orch-*-r*")):
    m = re.fullmatch(r"orch-(tls|plain)-r(\d+)", d.name)
    if not m or not d.is_dir():
        continue
    sys_, r = m[1], int(m[2])
    for name, measure in (("shoal-converge", "orchestration converge s"), ("shoal-update", "orchestration rolling update s")):
        f = d / f"{name}.json"
        if not f.exists():
            continue
        run = json.loads(f.read_text())
        orch_outcomes.append({"build": sys_, "round": r, "measure": name, "outcome": run["outcome"], "seconds": run["seconds"]})
        if run["outcome"] == "done":
            rounds.setdefault(measure, {}).setdefault(r, {})[sys_] = run["seconds"]

summary = {"meta": parts, "raft_errors": errors, "orchestration_outcomes": orch_outcomes, "measures": {}}
for measure, per_round in rounds.items():
    paired = {r: v for r, v in sorted(per_round.items()) if "tls" in v and "plain" in v}
    ratios = [v["tls"] / v["plain"] for v in paired.values() if v["plain"]]
    if not ratios:
        continue
    summary["measures"][measure] = {
        "rounds": {str(r): v for r, v in paired.items()},
        "ratios_tls_over_plain": ratios,
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "median_tls": statistics.median(v["tls"] for v in paired.values()),
        "median_plain": statistics.median(v["plain"] for v in paired.values()),
        "paired_rounds": len(ratios),
    }
out_json.write_text(json.dumps(summary, indent=2) + "\n")


def fmt(measure, x):
    if measure.endswith("writes_per_s"):
        return f"{x:.0f}"
    if measure.endswith("_ms"):
        return f"{x:.1f}"
    return f"{x:.1f}"


LABELS = {"writes_per_s": "committed writes/s", "p50_ms": "latency p50 (ms)", "p99_ms": "latency p99 (ms)"}


def label(measure):
    for k, v in LABELS.items():
        if measure.endswith(k):
            return measure[: -len(k)] + v
    return measure.replace(" s", " (s)")


ms = summary["measures"]
rows = []
ORDER = [f"raft {c} {metric}" for c in ("1 client", "64 clients") for metric in LABELS] + [
    "orchestration converge s", "orchestration rolling update s"]
for measure in [m for m in ORDER if m in ms]:
    s = ms[measure]
    rows.append(
        f"| {label(measure)} | {fmt(measure, s['median_plain'])} | {fmt(measure, s['median_tls'])} | "
        f"**{s['median_ratio']:.2f}×** | {s['min_ratio']:.2f}–{s['max_ratio']:.2f}× | {s['paired_rounds']} |"
    )

failed = [o for o in orch_outcomes if o["outcome"] != "done"]
section = f"""## Cost of mutual TLS

Written by `bench/tls/run` ({when}; {meta['cpu']}, {meta['cores']} cores shared with
other work). Shoal with mutual TLS between every node
(commit `{meta['tls_commit']}`: rustls, crate `pki/`; the Raft and dispatcher gRPC and the
bench's client all on mutual TLS) against the last commit before it (`{meta['plain_commit']}`:
the same gRPC in plain text). Only TLS differs: the same machine, the same benches, the same
durability (fsync on, redb), both builds `--release`, run in the same session and taking
turns, the order alternating each round. Each ratio is TLS / plain within one round; the
table gives the median of those ratios and their range over rounds (above 1× is slower for
times, faster for writes/s), and each build's median.

- Raft: `bench/raft`'s Shoal side, 3 fresh managers on loopback per build and round, unary
  `Propose` of one service object with 1 and 64 clients on one HTTP/2 connection for
  {parts.get('raft', meta)['raft_seconds_per_run']} s (errors: plain {errors['plain']}, TLS {errors['tls']}).
- Orchestration: `bench/orchestration/run` with `PEERS=shoal ONLY="converge update"
  SHOAL_BIN=…`, one manager in a network namespace: 100 replicas created until all run, then
  `service update --env-add V=2` (parallelism 10, monitor 1 s) until the rollout completes.
  In one node the agent talks to its own dispatcher over the same (TLS or plain) gRPC.

| measure | plain (median) | TLS (median) | TLS / plain (median of rounds) | range | rounds |
|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
if failed:
    section += "\nRuns that did not complete (left out): " + ", ".join(
        f"{o['build']} round {o['round']} {o['measure']}: {o['outcome']}" for o in failed) + ".\n"
# Which differences stand out from the round-to-round noise: those whose every round
# falls on the same side of 1×.
clear = [label(m) + f" {ms[m]['median_ratio']:.2f}×" for m in ORDER if m in ms and (ms[m]["min_ratio"] > 1 or ms[m]["max_ratio"] < 1)]
noisy = [label(m) for m in ORDER if m in ms and ms[m]["min_ratio"] <= 1 <= ms[m]["max_ratio"]]
section += (
    "\nReading: every round on the same side of 1× (TLS consistently different): "
    + (", ".join(clear) if clear else "none")
    + ". Rounds on both sides of 1× (the difference is within this machine's round-to-round "
    "noise; the median ratio is the best estimate, not a bound): "
    + (", ".join(noisy) if noisy else "none") + ".\n"
)
section += "\nRaw runs: `bench/results/tls-raw/`; summary: `bench/results/tls.json`.\n"
replace_section(doc, "## Cost of mutual TLS", section)
print(json.dumps({k: {x: v[x] for x in ("median_plain", "median_tls", "median_ratio", "min_ratio", "max_ratio")} for k, v in ms.items()}, indent=1))
