"""Turns bench/orchestration/run's raw timings into bench/results/orchestration.json, a
plot, and the Orchestration section of docs/benchmarks.md (other sections are kept).

Every figure is one run: the seconds from the command (or the kill) to the condition,
as seen by the same poller reading each one's API every 0.1 s. When Docker's failure
recovery was not measured (no docker-recover.json), the issue's reference figure is used
and the table says so."""
import json
import sys
from pathlib import Path

import matplotlib
from benchdoc import replace_section

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CONVERGE_GOAL, UPDATE_GOAL, RECOVER_GOAL = 0.03, 0.07, 5.0  # issue 16: with overlays on both sides
DOCKER_RECOVER_REFERENCE = 20.0  # issue 6: "Swarm ≈ 20 s" (5 s heartbeat × 3 + 5 s restart delay)
raw, out_json, out_png, doc = (Path(a) for a in sys.argv[1:5])
meta = json.loads((raw / "meta.json").read_text())


def load(name):
    p = raw / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def samples(name):
    p = raw / f"{name}.samples.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def secs(r):
    return None if r is None else r.get("seconds")


def fmt(v):
    return "—" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


res = {n: load(n) for n in (
    "shoal-converge", "docker-converge", "shoal-update", "docker-update",
    "shoal-converge-2", "docker-converge-2", "shoal-update-continue", "docker-update-continue",
    "shoal-recover", "docker-recover", "shoal-recover-hb1s", "docker-recover-hb1s",
)}

rows = []


def outcome(r):
    return "missing" if r is None else r.get("outcome", "timeout" if r.get("timed_out") else "done")


def ratio_row(key, label, goal):
    s, d = res.get(f"shoal-{key}"), res.get(f"docker-{key}")
    if s is None and d is None:
        return
    ss, ds = secs(s), secs(d)
    ratio = ss / ds if ss is not None and ds else None
    rows.append({
        "measure": key, "label": label, "shoal_s": ss, "docker_s": ds, "docker_measured": d is not None,
        "shoal_outcome": outcome(s), "docker_outcome": outcome(d),
        "shoal_failed_tasks": len((s or {}).get("failed_tasks", [])),
        "docker_failed_tasks": len((d or {}).get("failed_tasks", [])),
        "ratio_shoal_over_docker": ratio, "goal": f"<= {goal:g}x Docker",
        "goal_met": ratio is not None and ratio <= goal,
    })


n, upd_flags = meta["replicas"], f"parallelism {meta['update']['parallelism']}, delay {meta['update']['delay']}, monitor {meta['update']['monitor']}"
ratio_row("converge", f"new service to {n}/{n} replicas running", CONVERGE_GOAL)
ratio_row("update", f"rolling update of {n} replicas ({upd_flags}; failure action pause, the default) to completed", UPDATE_GOAL)
ratio_row("converge-2", f"new service to {n}/{n} replicas running, second sample", CONVERGE_GOAL)
ratio_row("update-continue", f"rolling update of {n} replicas, same, with `--update-failure-action continue`", UPDATE_GOAL)
for suffix, hb_label in (("", "default heartbeat (5 s)"), ("-hb1s", "heartbeat 1 s")):
    s, d = res[f"shoal-recover{suffix}"], res[f"docker-recover{suffix}"]
    if s is None and d is None:
        continue
    d_s, measured = secs(d), d is not None
    if not measured and not suffix:
        d_s = DOCKER_RECOVER_REFERENCE
    rows.append({
        "measure": f"recover{suffix}",
        "label": f"worker's daemon killed to {meta['fail_replicas']} tasks running on the manager, {hb_label}",
        "shoal_s": secs(s), "docker_s": d_s, "docker_measured": measured,
        "shoal_outcome": outcome(s), "docker_outcome": outcome(d) if measured else "reference",
        "shoal_failed_tasks": len((s or {}).get("failed_tasks", [])),
        "docker_failed_tasks": len((d or {}).get("failed_tasks", [])),
        "ratio_shoal_over_docker": secs(s) / d_s if secs(s) is not None and d_s else None,
        "goal": f"<= {RECOVER_GOAL:g} s", "goal_met": secs(s) is not None and secs(s) <= RECOVER_GOAL,
        "shoal_node_down_s": (s or {}).get("events", {}).get("node_down"),
        "docker_node_down_s": (d or {}).get("events", {}).get("node_down"),
    })
by = {r["measure"]: r for r in rows}

summary = {
    "goals": {
        "converge": f"<= {CONVERGE_GOAL:g}x Docker's time",
        "update": f"<= {UPDATE_GOAL:g}x Docker's time",
        "recover": f"<= {RECOVER_GOAL:g} s (Shoal's default heartbeat, and a 1 s heartbeat reported apart)",
    },
    "meta": meta,
    "rows": rows,
    "runs": res,
}
out_json.write_text(json.dumps(summary, indent=2) + "\n")

# --- plot: one bar chart of the headline numbers, then the timelines behind them ---------
COL = {"shoal": "#2a7", "docker": "#57a"}
fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
ax = axes[0][0]
short = {"converge": "converge", "update": "update\n(pause)", "converge-2": "converge\n(2nd)",
         "update-continue": "update\n(continue)", "recover": "recovery\nhb 5 s", "recover-hb1s": "recovery\nhb 1 s"}
xs = list(range(len(rows)))
top = max([v for r in rows for v in (r["shoal_s"], r["docker_s"]) if v] + [1])
for off, peer in ((-0.2, "shoal"), (0.2, "docker")):
    vals = [r[f"{peer}_s"] or 0 for r in rows]
    bars = ax.bar([x + off for x in xs], vals, 0.4, color=COL[peer], label=peer)
    for bar, r, v in zip(bars, rows, vals):
        ref = peer == "docker" and not r["docker_measured"]
        if ref:
            bar.set_hatch("//")
            bar.set_alpha(0.5)
        text = ("ref. " if ref else "") + fmt(r[f"{peer}_s"])
        if r[f"{peer}_s"] is None:
            text = r.get(f"{peer}_outcome", "—")
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom", fontsize=7,
                    rotation=90 if r[f"{peer}_s"] is None else 0)
ax.set_ylim(0, top * 1.15)
ax.set_xticks(xs, [short[r["measure"]] for r in rows], fontsize=8)
ax.set_ylabel("seconds (lower is better)")
ax.set_title("time to the goal state, one run each", fontsize=10)
ax.legend(fontsize=8)


def timeline(ax, names, key, title, ylabel, xlabel="seconds since the command"):
    for name in names:
        ss = [s for s in samples(name) if "error" not in s]
        if not ss:
            continue
        peer = name.split("-")[0]
        style = "--" if name.endswith(("-2", "-continue", "-hb1s")) else "-"
        ax.plot([s["t"] for s in ss], [key(name, s) for s in ss], style, color=COL[peer], label=name, lw=1.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=7)


timeline(axes[0][1], ["shoal-converge", "docker-converge", "shoal-converge-2", "docker-converge-2"],
         lambda _, s: s["running"], f"convergence: `service create --replicas {n}`", "tasks running")
timeline(axes[1][0], ["shoal-update", "docker-update", "shoal-update-continue", "docker-update-continue"],
         lambda _, s: s.get("new", 0), f"rolling update ({upd_flags})", "running tasks with the new spec")
rec_names = [k for k in ("shoal-recover", "shoal-recover-hb1s", "docker-recover", "docker-recover-hb1s") if res[k]]
timeline(axes[1][1], rec_names, lambda name, s: s["per_node"].get(res[name]["manager"], 0),
         "failure recovery: worker's daemon killed (vertical: worker seen down)",
         f"tasks running on the manager (of {meta['fail_replicas']})", "seconds since kill -9 of the worker's daemon")
for name in rec_names:
    down = res[name]["events"].get("node_down")
    if down is not None:
        axes[1][1].axvline(down, color=COL[name.split("-")[0]], ls=":" if "hb1s" not in name else "-.", lw=0.8)
fig.suptitle(
    f"Orchestration: Shoal vs Docker {meta['docker_version']} swarm, busybox, one run each, polled every "
    f"{meta['poll_interval_s']:g} s", fontsize=10)
fig.tight_layout()
fig.savefig(out_png, dpi=90)


# --- the doc section ----------------------------------------------------------------------
def goal_cell(r):
    if r["shoal_s"] is None:
        return f"no: Shoal's run ended {r['shoal_outcome']}"
    if r["docker_s"] is None:
        return f"n/a: Docker's run ended {r['docker_outcome']}"
    return "yes" if r["goal_met"] else "no"


def ratio_cell(r):
    if r["ratio_shoal_over_docker"] is None:
        return "—"
    return f"{r['ratio_shoal_over_docker']:.2f}×" + ("" if r["docker_measured"] else " (vs ref.)")


def time_cell(r, peer):
    if peer == "docker" and not r["docker_measured"]:
        return f"≈ {r['docker_s']:g} (reference, not measured)"
    if r[f"{peer}_s"] is None:
        return f"— ({r[f'{peer}_outcome']})"
    return fmt(r[f"{peer}_s"])


def table_row(r):
    goal = r["goal"].replace("<=", "≤").replace("x Docker", "× Docker")
    return f"| {r['label']} | {time_cell(r, 'shoal')} | {time_cell(r, 'docker')} | {ratio_cell(r)} | {goal} | {goal_cell(r)} |"


def ev(name, key):
    r = res.get(name)
    v = (r or {}).get("events", {}).get(key)
    if v is not None:
        return fmt(v) + " s"
    return f"never (it ended {outcome(r)})" if r else "— (not run)"


def met(r):
    return "**met**" if r["goal_met"] else "**not met**"


verdict = []
conv = [by[k] for k in ("converge", "converge-2") if k in by]
if conv:
    verdict.append(f"Convergence (≤ {CONVERGE_GOAL:g}× Docker): " + ", ".join(
        f"{met(r)} ({ratio_cell(r)})" for r in conv) + (" in the two samples." if len(conv) > 1 else "."))
for key, what in (("update", "with the default failure action (pause)"), ("update-continue", "with `--update-failure-action continue`")):
    r = by.get(key)
    if not r:
        continue
    if r["shoal_s"] is None:
        msg = (res.get(f"shoal-{key}") or {}).get("update_message")
        verdict.append(f"Rolling update {what}: **not met**: Shoal's rollout ended `{r['shoal_outcome']}`"
                       + (f" (\"{msg}\")" if msg else "") + ".")
    else:
        verdict.append(f"Rolling update {what} (≤ {UPDATE_GOAL:g}× Docker): {met(r)} ({ratio_cell(r)}).")
rec5, rec1 = by.get("recover"), by.get("recover-hb1s")
if rec5:
    verdict.append(
        f"Failure recovery ≤ {RECOVER_GOAL:g} s: {met(rec5)} with the default heartbeat ({fmt(rec5['shoal_s'])} s: a "
        "worker is declared down after 3 heartbeat periods of silence, 15 s with the 5 s default, as in Swarm)"
        + (f"; {met(rec1)} with `shoal cluster update --dispatcher-heartbeat 1s` ({fmt(rec1['shoal_s'])} s)" if rec1 else "")
        + ". The 5 s goal can only be reached with a heartbeat shorter than the default.")

FALSE_FAILURES = ("the container's shim was killed", "the task's container disappeared")


def failures_of(name):
    """(all failed tasks seen, how many of them failed after the measure began)."""
    r, ss = res.get(name), samples(name)
    ft = (r or {}).get("failed_tasks") or []
    before = ss[0].get("failed", 0) if ss else 0
    return ft, max(0, len(ft) - before)


failure_rows, false_total = [], 0
for name in res:
    ft, during = failures_of(name)
    if not ft:
        continue
    kinds = {}
    for f in ft:
        kinds[f"{f['state']}: {f['error']}"] = kinds.get(f"{f['state']}: {f['error']}", 0) + 1
        false_total += any(k in (f["error"] or "") for k in FALSE_FAILURES)
    row = f"`{name}` {during}" + (f" (and {len(ft) - during} before it began)" if len(ft) > during else "")
    failure_rows.append(row + ": " + ", ".join(f"{v}× \"{k}\"" for k, v in sorted(kinds.items())))
fail_note = "No task failed during the measured runs." if not failure_rows else (
    "Tasks that failed (each is replaced after the restart delay, 5 s by default, and a failure pauses a rollout "
    "whose failure action is pause): " + "; ".join(failure_rows) + ". None failed on Docker's side."
    * all(not failures_of(k)[0] for k in res if k.startswith("docker"))
)
if false_total:
    lines = []
    for name in ("shoal-recover", "shoal-recover-hb1s"):
        r, ss = res.get(name), samples(name)
        k = failures_of(name)[1]
        if not r or not k or not ss:
            continue
        goal_n = meta["fail_replicas"] - k
        t = next((x["t"] for x in ss if x.get("per_node", {}).get(r["manager"], 0) >= goal_n), None)
        if t is not None and r.get("seconds") is not None:
            lines.append(f"{goal_n} of {meta['fail_replicas']} tasks ran on the manager {fmt(t)} s after the kill "
                         f"and the rest at {fmt(r['seconds'])} s ({r['heartbeat']} heartbeat)")
    fail_note += (
        " **Shoal's \"shim was killed\" and \"container disappeared\" failures are false**: in a reproduction "
        "(`service create --replicas 100` on one fresh manager: about a third of the tasks) the containers of such "
        "tasks had a live shim and ran until the manager stopped them, exiting 0. The agent reports them a few "
        "milliseconds after its own \"task started\" log line, when many tasks start at once; a likely cause is "
        "that `reconcile` (worker/src/agent/mod.rs) reads the containers' states before it checks which tasks have "
        "an action under way, so a start that ends in between is judged on a state read mid-creation (no "
        "`started.json` yet: lost; no container yet: gone). Most of Shoal's time above is these restarts"
        + (": " + "; ".join(lines) + "." if lines else ".")
    )
docker_rec_note = (
    "Docker's recovery was measured in this run with two `dockerd`, each in a network namespace of its own "
    "(own data and exec roots, own containerd, containers under the `shoal-bench` cgroup), joined as a swarm "
    "manager and worker over a veth bridge; the worker's `dockerd` is killed with `kill -9`, like Shoal's worker "
    "daemon (the containers outlive both)."
    if rec5 and rec5["docker_measured"]
    else f"**Docker's failure-recovery figure is the reference from issue 6 (≈ {DOCKER_RECOVER_REFERENCE:g} s: "
    "Swarm's 5 s heartbeat × 3 before a node is down, then its 5 s restart delay), not measured in this run.**"
)
def profile_text():
    p = load("shoal-profile")
    if not p:
        return "Where Shoal's time goes: not profiled in this run."
    out = []
    for ph in p["phases"]:
        pt, pw = ph["per_task"], ph["per_wiring"]
        med = lambda d, k: (d.get(k) or {}).get("median_ms")
        tot = lambda d, k: (d.get(k) or {}).get("sum_s")
        out.append(
            f"{ph['phase']}: {ph['tasks_started']} tasks started in {fmt(ph['wall_s'])} s "
            f"(first after {fmt(ph['first_task_started_s'])} s); per task (median) preparing {fmt(med(pt, 'prepare'))} ms, "
            f"of which the sandbox namespace {fmt(med(pt, 'sandbox'))} ms and the node's wiring after it "
            f"{fmt(med(pt, 'wire_after_sandbox'))} ms, then the container's create + start {fmt(med(pt, 'start'))} ms; "
            f"{ph['wirings']} wirings of the node (one at a time) held it {fmt(ph['wiring_held_s'])} s in all "
            f"(resolvers {fmt(tot(pw, 'dns'))} s, desired state {fmt(tot(pw, 'view'))} s, data plane "
            f"{fmt(tot(pw, 'apply'))} s), of which {ph['nft_runs']} `nft` processes {fmt(ph['nft_s'])} s "
            f"({ph['nft_runs_in_sandboxes']} in sandboxes, median {fmt((ph.get('nft') or {}).get('median_ms'))} ms, "
            f"{ph['nft_bytes'] / 1e6:.1f} MB of rules)")
    conv = next((ph for ph in p["phases"] if ph["phase"] == "converge"), None)
    why = ""
    if conv and conv["tasks_started"]:
        why = (f" Each task that starts adds a backend to its service's VIP, and the VIP's chain is in every "
               f"sandbox on the network: the data plane rewrites it in each of them, one `nft` process per sandbox, "
               f"so {conv['tasks_started']} tasks made {conv['nft_runs_in_sandboxes']} `nft` runs in sandboxes "
               f"(≈ {conv['nft_runs_in_sandboxes'] / conv['tasks_started']:.0f} per task). A task's own sandbox is "
               "wired alone (`Wiring::prepare` → `Dataplane::apply_one`, worker/src/network/wiring.rs), but it waits "
               "for the data plane while a full wiring of the node holds it; full wirings run one at a time and "
               "gather the changes that came meanwhile. So the cost still grows with the square of the tasks of "
               "one network on one node, bounded by how many full wirings fit in the burst: one `nft` process "
               "(~20 ms) per sandbox is what to remove next (nftables over netlink, or the eBPF connect4 option).")
    return ("Where Shoal's time goes (a separate run of the single node, same commands, with debug timings in its "
            "log, `shoal-profile.json`; not in the table): " + "; ".join(out) + "." + why)


section = "\n".join([
    "## Orchestration: Shoal vs Docker swarm",
    "",
    "`bench/orchestration/run` (issues 6 and 16): one run of each on this machine, one after the other, never together. "
    "Both run the same image (`deploy/images/busybox`: imported into Shoal; `docker load`ed into Docker and named "
    f"there by its id `{meta['image_id'][:19]}…`, so that Swarm never tries to pull it, like Shoal's `--pull never`) "
    f"and the same workload, `sh -c '{meta['workload'][2]}'`, which exits at once on SIGTERM. The same poller "
    f"reads each one's task list over its unix socket every {meta['poll_interval_s']:g} s (Docker's "
    "`GET /tasks?filters=…`, Shoal's `GET /v1/tasks?service=…`); a task counts when it is desired running and "
    "reported running. Times start just before the command (or the kill). Docker "
    f"{meta['docker_version']} (Debian `docker.io`) with Swarm's defaults otherwise; Shoal with its defaults.",
    "",
    f"- **Convergence** (one node: one Shoal manager in a network namespace of its own; Docker `swarm init` in "
    f"this host's namespace): `service create --replicas "
    f"{n}` until {n} tasks run.",
    f"- **Rolling update** (the same service, after {meta['settle_s']:g} s of quiet): `service update --env-add V=2` "
    f"with `--update-parallelism {meta['update']['parallelism']} --update-delay {meta['update']['delay']} "
    f"--update-monitor {meta['update']['monitor']}` (stop-first, both defaults) until the rollout says completed "
    f"and {n} running tasks have `V=2`. A second sample (service removed, a new one created and converged, then "
    "updated) adds `--update-failure-action continue` on both sides, so that one failed task does not pause the "
    "rollout.",
    f"- **Failure recovery** (a manager and a worker, each in a network namespace, joined by a bridge): a service "
    f"of {meta['fail_replicas']} replicas spread over both, then `kill -9` of the worker's daemon, until "
    f"{meta['fail_replicas']} tasks run, all on the manager. Once with the default heartbeat (5 s, node down after "
    "15 s of silence) and once with a 1 s heartbeat (down after 3 s), set on both sides and labelled. After the "
    "change the run waits 7 s before it creates the service: Shoal marks the manager's own node down about 3 s "
    "after `cluster update --dispatcher-heartbeat 1s` (its agent keeps the 5 s period until its next heartbeat), "
    "which would move the manager's tasks in the middle of the measure.",
    "",
    "| measure | shoal s | docker s | shoal / docker | goal | met |",
    "|---|---|---|---|---|---|",
    *[table_row(r) for r in rows],
    "",
    " ".join(verdict),
    "",
    "Where the time goes: the first task ran after "
    f"{ev('shoal-converge', 'first_running')} (Shoal) and {ev('docker-converge', 'first_running')} (Docker); "
    f"in the update, all {n} running tasks had the new spec after {ev('shoal-update', 'all_new_running')} "
    f"(Shoal) and {ev('docker-update', 'all_new_running')} (Docker), with `continue` after "
    f"{ev('shoal-update-continue', 'all_new_running')} and {ev('docker-update-continue', 'all_new_running')}, "
    f"and both rollouts said completed after {ev('shoal-update', 'update_completed')} and "
    f"{ev('shoal-update-continue', 'update_completed')} (Shoal), {ev('docker-update', 'update_completed')} and "
    f"{ev('docker-update-continue', 'update_completed')} (Docker): each watches the last batch for its "
    f"{meta['update']['monitor']} monitor before it ends; the killed worker "
    f"was seen down after {ev('shoal-recover', 'node_down')} (Shoal) and {ev('docker-recover', 'node_down')} "
    f"(Docker) with the default heartbeat, {ev('shoal-recover-hb1s', 'node_down')} and "
    f"{ev('docker-recover-hb1s', 'node_down')} with a 1 s heartbeat. Swarm then waits for its restart policy's "
    "delay (5 s) before it starts a replacement; Shoal moves a lost node's tasks at once (not a failure of the task).",
    "",
    fail_note,
    "",
    docker_rec_note,
    "",
    "The same networking on both sides: every service is attached to an overlay network made for the run "
    "(`docker network create -d overlay`, `shoal network create`; `--network`), so each task gets an address on "
    "it, a VIP for its service and the embedded DNS; each Docker task also gets Docker's `docker_gwbridge` and each "
    "Shoal task Shoal's gateway bridge, for egress. Shoal's daemons run in network namespaces the script makes "
    "(the single node too, `--dns-upstream none`); Docker's single node runs in this host's namespace.",
    "",
    profile_text(),
    "",
    f"Run {meta['date']} on {meta['cpu']} ({meta['cores']} cores shared by the daemons, the containers and the "
    f"poller), kernel {meta['kernel']}; Shoal at {meta['commit']}"
    + (f" (its sources last changed in {meta['source_commit']})" if meta.get("source_commit", meta["commit"]) != meta["commit"] else "")
    + (f" plus {meta['source_files_changed_since_commit']} uncommitted source file(s) older than the binary"
       if meta.get("source_files_changed_since_commit") else "")
    + f" ({meta['shoal_version']}, binary built {meta['shoal_binary_mtime']}). Raw samples: "
    "`bench/results/orchestration-raw/`.",
    "",
    "![orchestration benchmark](img/orchestration.png)",
    "",
    "",
])
replace_section(doc, "## Orchestration: Shoal vs Docker swarm", section)
print(json.dumps({"rows": rows}, indent=2))
