"""Where a Shoal node's time goes while it starts tasks: reads the debug timings of a
daemon's log (SHOAL_LOG=...,shoal_worker::network=debug,shoal_worker::agent::reconciler=debug)
and sums them per phase. Prints JSON.

profile.py LOG T_CONVERGE T_UPDATE T_END   (unix times that split the log into phases)

Lines used (worker/src/agent/reconciler.rs, worker/src/network/{wiring,nft}.rs):
  "task prepared" prepare_us        image check + sandbox + the node's wiring, per task
  "sandbox prepared" sandbox_us wire_us   the namespace (+ lo up); the wiring after it
  "container start returned" start_us     the runtime's create + start
  "wired" lock_us dns_us view_us apply_us one wiring of the whole node (serialised)
  "nft" us bytes ns                       one `nft -f -` process
"""
import json
import re
import statistics
import sys
from datetime import datetime

log, t1, t2, t3 = sys.argv[1], *map(float, sys.argv[2:5])
line_re = re.compile(r"^(\S+)\s+(\w+)\s+([\w:]+): (.*)$")
kv_re = re.compile(r'(\w+)=("[^"]*"|\S+)')
ansi = re.compile(r"\x1b\[[0-9;]*m")


def parse(line):
    m = line_re.match(ansi.sub("", line).strip())
    if not m:
        return None
    ts, _level, _target, rest = m.groups()
    try:
        t = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    kv = dict(kv_re.findall(rest))
    msg = kv_re.sub("", rest).strip()
    return t, msg, kv


phases = {"converge": (t1, t2), "update": (t2, t3)}
acc = {p: {"prepare": [], "sandbox": [], "wire_after_sandbox": [], "start": [], "lock": [], "dns": [], "view": [],
           "apply": [], "nft": [], "nft_sandbox": [], "nft_bytes": 0, "started": 0, "first": None, "last": None}
       for p in phases}
for line in open(log, errors="replace"):
    r = parse(line)
    if not r:
        continue
    t, msg, kv = r
    ph = next((p for p, (a, b) in phases.items() if a <= t < b), None)
    if ph is None:
        continue
    a = acc[ph]
    us = lambda k: int(kv[k]) / 1e6 if k in kv else None
    if msg.startswith("task prepared"):
        a["prepare"].append(us("prepare_us"))
    elif msg.startswith("sandbox prepared"):
        a["sandbox"].append(us("sandbox_us"))
        a["wire_after_sandbox"].append(us("wire_us"))
    elif msg.startswith("container start returned"):
        a["start"].append(us("start_us"))
    elif msg.startswith("task started"):
        a["started"] += 1
        a["first"] = a["first"] or t
        a["last"] = t
    elif msg.startswith("wired"):
        for k in ("lock", "dns", "view", "apply"):
            a[k].append(us(f"{k}_us"))
    elif msg == "nft":
        a["nft"].append(us("us"))
        a["nft_bytes"] += int(kv.get("bytes", 0))
        if kv.get("ns", "").strip('"').split("/")[-1].startswith("t-"):
            a["nft_sandbox"].append(us("us"))


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return {"n": len(xs), "sum_s": round(sum(xs), 3), "median_ms": round(statistics.median(xs) * 1e3, 2),
            "max_ms": round(max(xs) * 1e3, 2)}


out = []
for p, (a_t, b_t) in phases.items():
    a = acc[p]
    if b_t <= a_t:
        continue  # a phase not run
    held = sum(x for k in ("dns", "view", "apply") for x in a[k] if x is not None)
    out.append({
        "phase": p, "tasks_started": a["started"],
        "wall_s": round((a["last"] - a_t), 3) if a["last"] else None,
        "first_task_started_s": round(a["first"] - a_t, 3) if a["first"] else None,
        "wirings": len(a["apply"]), "wiring_held_s": round(held, 3),
        "nft_runs": len(a["nft"]), "nft_s": round(sum(a["nft"]), 3),
        "nft_runs_in_sandboxes": len(a["nft_sandbox"]), "nft_bytes": a["nft_bytes"],
        "per_task": {k: stats(a[k]) for k in ("prepare", "sandbox", "wire_after_sandbox", "start")},
        "per_wiring": {k: stats(a[k]) for k in ("lock", "dns", "view", "apply")},
        "nft": stats(a["nft"]),
    })
print(json.dumps({"phases": out}, indent=1))
