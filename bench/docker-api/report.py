"""Reads bench/docker-api/run's raw samples (meta.json, times.tsv: round, peer, command,
run, milliseconds) and writes the summary JSON, the plot and the "Docker Engine API"
section of docs/benchmarks.md.

    report.py RAW_DIR OUT_JSON OUT_PNG BENCHMARKS_MD
"""
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402
from benchdoc import replace_section  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

raw, out_json, out_png, doc = (Path(a) for a in sys.argv[1:5])
meta = json.loads((raw / "meta.json").read_text())
samples = defaultdict(list)  # (round, peer, command) -> [ms]
for line in (raw / "times.tsv").read_text().splitlines():
    r, peer, cmd, _, ms = line.split("\t")
    samples[(int(r), peer, cmd)].append(float(ms))

rounds = sorted({k[0] for k in samples})
commands = [c for c in ("ls", "ps", "ps-all") if any(k[2] == c for k in samples)]
labels = {
    "ls": "`docker service ls`",
    "ps": f"`docker service ps {meta['ps_one']}`",
    "ps-all": f"`docker service ps` of all {meta['wanted']['services']} services",
}
expect = {
    "ls": f"{meta['wanted']['services']} services",
    "ps": f"{meta['wanted']['replicas']} tasks",
    "ps-all": f"{meta['wanted']['tasks']} tasks",
}


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


summary = {"meta": meta, "commands": {}}
for c in commands:
    per_round = []
    for r in rounds:
        s, d = samples[(r, "shoal", c)], samples[(r, "docker", c)]
        per_round.append(
            {
                "round": r,
                "shoal_median_ms": statistics.median(s),
                "docker_median_ms": statistics.median(d),
                "ratio": statistics.median(s) / statistics.median(d),
            }
        )
    ratios = [x["ratio"] for x in per_round]
    every = {p: [v for r in rounds for v in samples[(r, p, c)]] for p in ("shoal", "docker")}
    summary["commands"][c] = {
        "label": labels[c],
        "rounds": per_round,
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        **{
            f"{p}_{k}_ms": f(every[p])
            for p in ("shoal", "docker")
            for k, f in (("median", statistics.median), ("p10", lambda v: pct(v, 10)), ("p90", lambda v: pct(v, 90)))
        },
        "output_lines": meta["output_lines"][c],
    }
out_json.write_text(json.dumps(summary, indent=2) + "\n")

fig, axes = plt.subplots(1, len(commands), figsize=(4.2 * len(commands), 4))
if len(commands) == 1:
    axes = [axes]
for ax, c in zip(axes, commands):
    for peer, color, dx in (("shoal", "tab:blue", -0.15), ("docker", "tab:orange", 0.15)):
        xs = [r + dx for r in rounds for _ in samples[(r, peer, c)]]
        ys = [v for r in rounds for v in samples[(r, peer, c)]]
        ax.scatter(xs, ys, s=10, color=color, alpha=0.6, label=peer)
        ax.plot(rounds, [statistics.median(samples[(r, peer, c)]) for r in rounds], color=color)
    ax.set_title(labels[c].replace("`", ""), fontsize=10)
    ax.set_xlabel("round")
    ax.set_ylabel("wall time, ms")
    ax.set_xticks(rounds)
    ax.set_ylim(bottom=0)
    ax.legend()
fig.suptitle(
    f"docker CLI 20.10 against Shoal's Docker API and Docker {meta['docker_version']}: "
    f"{meta['wanted']['services']} services x {meta['wanted']['replicas']} pending tasks"
)
fig.tight_layout()
fig.savefig(out_png, dpi=90)


def ms(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


rows = []
for c in commands:
    x = summary["commands"][c]
    lines = x["output_lines"]
    same = "yes" if lines["shoal"] == lines["docker"] else f"**no** ({lines['shoal']} / {lines['docker']})"
    rows.append(
        f"| {x['label']} | {expect[c]} | {ms(x['shoal_median_ms'])} ({ms(x['shoal_p10_ms'])}–{ms(x['shoal_p90_ms'])}) "
        f"| {ms(x['docker_median_ms'])} ({ms(x['docker_p10_ms'])}–{ms(x['docker_p90_ms'])}) "
        f"| {x['ratio_median']:.2f}× ({x['ratio_min']:.2f}–{x['ratio_max']:.2f}) | {same} |"
    )
round_rows = []
for c in commands:
    for x in summary["commands"][c]["rounds"]:
        round_rows.append(
            f"| {x['round']} | {labels[c]} | {ms(x['shoal_median_ms'])} | {ms(x['docker_median_ms'])} | {x['ratio']:.2f}× |"
        )
counts = meta["counts"]
floor = [v for r in rounds for v in samples.get((r, "cli", "floor"), [])]
floor_text = (
    f" The CLI's own floor, `docker --version` (a process that contacts no daemon), took {ms(statistics.median(floor))} ms"
    f" ({ms(pct(floor, 10))}–{ms(pct(floor, 90))}) in the same rounds."
    + " Above that floor (each median minus the floor's, a rough split): "
    + "; ".join(
        f"{labels[c]} {ms(summary['commands'][c]['shoal_median_ms'] - statistics.median(floor))} ms (Shoal) vs "
        f"{ms(summary['commands'][c]['docker_median_ms'] - statistics.median(floor))} ms (Docker)"
        for c in commands
    )
    + ". Most of a short command's time is the CLI's own start, which is the same on both sides."
    if floor
    else ""
)
summary["cli_floor_median_ms"] = statistics.median(floor) if floor else None
out_json.write_text(json.dumps(summary, indent=2) + "\n")


def states(s):
    return ", ".join(f"{k} {v}" for k, v in sorted(s.items())) or "none"


img = Path("img") / out_png.name
section = f"""## Docker Engine API: the docker CLI against Shoal and Docker

`bench/docker-api/run` (issue 19): wall time of Debian's docker CLI ({meta['cli_version']}, API 1.41, the same
binary and the same empty client config for both) from start to exit, against Docker {meta['docker_version']}
(Debian `docker.io`, swarm mode, one node, API v{meta['docker_api_version']}, `/var/run/docker.sock`) and against
Shoal's Docker Engine API (one manager, `--docker-socket`), in one run on this machine. Each holds
{meta['wanted']['services']} services × {meta['wanted']['replicas']} replicas of the same busybox image
(`deploy/images/busybox`, image id `{meta['image_id'][:19]}…`), created through each one's own CLI with a
placement constraint no node meets (`node.labels.shoalbench==none`): **every task is pending on both sides**
and no container runs. Both daemons are up for the whole run (Shoal's in a network namespace of its own,
dockerd in the host's); the {len(rounds)} rounds alternate which peer goes first, and in each round every
command runs {meta['warmup']} times unmeasured, then {meta['runs']} times measured, per peer. Each CLI process
makes its own `HEAD /_ping` and connection, as a user's would. `service ls` is one `GET /services?status=true`
(both serve `ServiceStatus`, so the CLI makes no `/tasks` and `/nodes` calls); `service ps X` resolves X
(two `GET /services` with filters), lists its tasks, then looks up each node and service name once.

Milliseconds, median (p10–p90) over all measured runs; the ratio is Shoal / Docker, the median of the
per-round ratios of medians, with their range; "same output" compares the number of lines the CLI printed.

| command | lists | shoal ms | docker ms | shoal / docker (range) | same output |
|---|---|---|---|---|---|
{chr(10).join(rows)}
{chr(10) + floor_text.strip() + chr(10) if floor_text else ""}
Every round (medians, ms):

| round | command | shoal | docker | ratio |
|---|---|---|---|---|
{chr(10).join(round_rows)}

Counts through each Engine API: Docker {counts['docker']['services']} services, {counts['docker']['tasks']} tasks
({states(counts['docker']['task_states'])}; {counts['docker']['tasks_after']} after the rounds); Shoal
{counts['shoal']['services']} services, {counts['shoal']['tasks']} tasks ({states(counts['shoal']['task_states'])};
{counts['shoal']['tasks_after']} after the rounds).

Run {meta['date']} on {meta['cpu']} ({meta['cores']} cores, shared by both daemons and the CLI), kernel
{meta['kernel']}; Shoal at {meta['commit']} ({meta['shoal_version']}, binary built {meta['shoal_binary_mtime']}).
Raw samples: `bench/results/docker-api-raw/`.

![docker CLI against Shoal and Docker]({img})
"""
replace_section(doc, "## Docker Engine API: the docker CLI against Shoal and Docker", section)
