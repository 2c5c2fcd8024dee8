"""Turns bench/raft's raw numbers into bench/results/raft.json, a plot, and the Raft
section of docs/benchmarks.md (other sections are kept)."""
import json
import sys
from pathlib import Path

import matplotlib
from benchdoc import replace_section

matplotlib.use("Agg")
import matplotlib.pyplot as plt

raw, out_json, out_png, doc = (Path(a) for a in sys.argv[1:5])
res = {f"{s}-{c}": json.loads((raw / f"{s}-{c}.json").read_text()) for s in ("shoal", "etcd") for c in (1, 64)}
ratio64 = res["shoal-64"]["writes_per_s"] / max(res["etcd-64"]["writes_per_s"], 1e-9)
summary = {"runs": res, "throughput_ratio_64_clients_shoal_over_etcd": ratio64}
out_json.write_text(json.dumps(summary, indent=2) + "\n")

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, c in zip(axes, (1, 64)):
    labels = ["shoal", "etcd"]
    ax.bar(labels, [res[f"{s}-{c}"]["writes_per_s"] for s in labels], color=["#2a7", "#57a"])
    ax.set_title(f"{c} client(s): committed writes/s")
    for i, s in enumerate(labels):
        r = res[f"{s}-{c}"]
        ax.annotate(f"p50 {r['p50_ms']:.1f} ms\np99 {r['p99_ms']:.1f} ms", (i, r["writes_per_s"]), ha="center", va="bottom", fontsize=8)
fig.suptitle("Shoal Raft store (openraft + redb) vs etcd, 3 members on loopback, fsync on, one run")
fig.tight_layout()
fig.savefig(out_png, dpi=90)


def row(c):
    s, e = res[f"shoal-{c}"], res[f"etcd-{c}"]
    return (
        f"| {c} | {s['writes_per_s']:.0f} | {s['p50_ms']:.1f} / {s['p99_ms']:.1f} | "
        f"{e['writes_per_s']:.0f} | {e['p50_ms']:.1f} / {e['p99_ms']:.1f} | {s['writes_per_s'] / max(e['writes_per_s'], 1e-9):.2f}× |"
    )


section = "\n".join(
    [
        "## Raft store: Shoal vs etcd",
        "",
        "`bench/raft`: 3 members of each on loopback, on this machine (2 cores shared by all",
        "processes), in one run; every write is committed by a majority and fsynced. Clients write",
        "to the leader: Shoal through its `Propose` RPC (one service-create transaction per write),",
        "etcd through its v3 JSON gateway (a put of a value of the same size).",
        "",
        "| clients | shoal writes/s | shoal p50 / p99 ms | etcd writes/s | etcd p50 / p99 ms | throughput ratio |",
        "|---|---|---|---|---|---|",
        row(1),
        row(64),
        "",
        f"Goal: ≥ 2× etcd's throughput at 64 clients with p99 no worse. Measured: {ratio64:.2f}× "
        f"(p99 {res['shoal-64']['p99_ms']:.1f} ms vs {res['etcd-64']['p99_ms']:.1f} ms).",
        "",
        "![raft benchmark](img/raft.png)",
        "",
    ]
)
replace_section(doc, "## Raft store: Shoal vs etcd", section)
print(json.dumps(summary, indent=2))
