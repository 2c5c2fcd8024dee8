"""LB update latency for bench/network/run: how long after the manager commits a change
of a service's serving tasks every node's client sandbox has it in its `ip shoal-lb`
table.

lbwatch.py SHOAL SOCKET OUT CHANGES SERVICE... -- NODE=SANDBOX_NETNS_PATH...

For each change in turn it scales one of the SERVICEs (which have 0 replicas) to 1, then
back to 0 (two changes). The commit time is when this process reads the task's event
from the manager's `/v1/events?type=task` stream (an SSE stream on the unix socket over
HTTP/1.0, so not chunked, read by a thread): the event whose task first serves (running, desired running) or
first stops serving (desired state no longer running). The seen time per node is when
this process reads the matching line from `nft monitor` run in that node's client
sandbox (one thread each): `dnat to <task address>` in the service's backend chain for
an add, `delete chain ... <chain>_0` for a removal. One clock (time.monotonic) for all.
Writes one JSON line per change to OUT.
"""
import json
import queue
import socket
import subprocess
import sys
import threading
import time

args = sys.argv[1:]
shoal, sock, out_path, changes = args[0], args[1], args[2], int(args[3])
sep = args.index("--")
services = args[4:sep]
nodes = dict(a.split("=", 1) for a in args[sep + 1:])

lines = {n: queue.Queue() for n in nodes}  # (t, line) per node
events = queue.Queue()  # (t, task)
procs = []


def monitor(node, path):
    p = subprocess.Popen(["nsenter", f"--net={path}", "nft", "monitor", "ruleset"], stdout=subprocess.PIPE,
                         text=True, bufsize=1)
    procs.append(p)
    for line in p.stdout:
        lines[node].put((time.monotonic(), line.strip()))


def event_stream():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"GET /v1/events?type=task HTTP/1.0\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
    buf = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return
        t = time.monotonic()
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.strip()
            if line.startswith(b"data:"):
                try:
                    ev = json.loads(line[5:])
                except ValueError:
                    continue
                obj = ev.get("object", {})
                task = obj.get("object") if obj.get("kind") == "task" else None
                if task:
                    events.put((t, ev.get("index"), task))


def sh(*a):
    return subprocess.run([shoal, "-H", f"unix://{sock}", *a], check=True, capture_output=True, text=True).stdout


for n, p in nodes.items():
    threading.Thread(target=monitor, args=(n, p), daemon=True).start()
threading.Thread(target=event_stream, daemon=True).start()
time.sleep(1.0)  # monitors and the stream connected

svc_info = {}
for name in services:
    svc = json.loads(sh("service", "inspect", name))
    svc = svc[0] if isinstance(svc, list) else svc
    vips = (svc.get("endpoint") or {}).get("virtual_ips") or []
    vip = vips[0]["addr"].split("/")[0]
    svc_info[name] = {"id": svc["id"], "vip": vip, "chain": "v_" + vip.replace(".", "_")}

serving = {}  # task id -> bool


def wait_commit(svc_id, want_serving, deadline):
    """The first event that flips a task of svc_id to want_serving: (t, index, address)."""
    while time.monotonic() < deadline:
        try:
            t, idx, task = events.get(timeout=0.2)
        except queue.Empty:
            continue
        st = (task.get("status") or {}).get("state")
        now_serving = st == "running" and task.get("desired_state") == "running"
        was = serving.get(task["id"], False)
        serving[task["id"]] = now_serving
        if task.get("service_id") == svc_id and now_serving != was and now_serving == want_serving:
            addrs = [a for n in task.get("networks") or [] for a in n.get("addresses") or []]
            return t, idx, task["id"], (addrs[0].split("/")[0] if addrs else None)
    return None


def wait_seen(node, match, deadline):
    while time.monotonic() < deadline:
        try:
            t, line = lines[node].get(timeout=0.2)
        except queue.Empty:
            continue
        if match(line):
            return t, line
    return None


wall_offset = time.time() - time.monotonic()  # to match the daemons' logs (UTC wall clock)
out = open(out_path, "w")
k = 0
i = 0
while k < changes:
    name = services[i % len(services)]
    i += 1
    info = svc_info[name]
    for replicas, want in ((1, True), (0, False)):
        if k >= changes:
            break
        for q in lines.values():  # only lines after this change counts
            while not q.empty():
                q.get_nowait()
        t_cmd = time.monotonic()
        sh("service", "scale", "--detach", f"{name}={replicas}")
        c = wait_commit(info["id"], want, time.monotonic() + 30)
        rec = {"change": k, "service": name, "vip": info["vip"], "op": "add" if want else "remove",
               "t_cmd": t_cmd}
        if c is None:
            rec["error"] = "no commit seen in 30 s"
        else:
            t_c, idx, task_id, addr = c
            rec.update(index=idx, task=task_id, addr=addr, commit_after_cmd_ms=round((t_c - t_cmd) * 1e3, 3),
                       commit_wall=round(t_c + wall_offset, 6))
            chain0 = info["chain"] + "_0"
            if want:
                match = lambda line, a=addr, ch=chain0: ch in line and f"dnat to {a}" in line
            else:
                match = lambda line, ch=chain0: line.startswith("delete chain") and line.split()[-1] == ch \
                    or (line.startswith("delete chain") and f" {ch} " in line + " ")
            seen = {}
            for n in nodes:
                s = wait_seen(n, match, time.monotonic() + 10)
                seen[n] = None if s is None else round((s[0] - t_c) * 1e3, 3)
            rec["ms_after_commit"] = seen
        out.write(json.dumps(rec) + "\n")
        out.flush()
        print(json.dumps({k2: rec.get(k2) for k2 in ("change", "service", "op", "ms_after_commit", "error")}),
              flush=True)
        k += 1
        time.sleep(0.2)
for p in procs:
    p.terminate()
