"""Turns bench/network/run's encrypted-overlay rounds (ONLY=sealed, or a full run) into the
"Networking: the encrypted overlay" section of docs/benchmarks.md (other sections are kept).

The cost is the median of the per-round ratios (encrypted over plain, the same round)
with their range; the sides alternate round by round."""
import json
import statistics
import sys
from pathlib import Path

from benchdoc import replace_section

raw, doc = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((raw / "meta.json").read_text())


def gbits(side, r):
    p = raw / f"iperf-{side}-{r}.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())["end"]["sum_received"]["bits_per_second"] / 1e9


rows = []
for r in range(1, 100):
    s, p = gbits("sealed", r), gbits("plain", r)
    if s is None and p is None:
        break
    rows.append((r, s, p))
ratios = [s / p for _, s, p in rows if s and p]
if not ratios:
    sys.exit("no complete round of the encrypted overlay's throughput")
med_s = statistics.median([s for _, s, _ in rows if s])
med_p = statistics.median([p for _, _, p in rows if p])
ratio = statistics.median(ratios)


DEBUG_NOTE = (
    "; **not a release build** (a release build did not finish on the shared machine in time): the dev "
    "profile with only the crates named in the binary's name at opt-level 3 (`cargo build --config "
    "'profile.dev.package.<crate>.opt-level=3'`), every other crate unoptimised, so this overstates the cost"
    if "release" not in meta.get("shoal_binary", "target/release/shoal")
    else ""
)


def f(x):
    return f"{x:.2f}"


retrans = sum(
    json.loads((raw / f"iperf-sealed-{r}.json").read_text())["end"]["sum_sent"].get("retransmits", 0)
    for r, s, _ in rows
    if s
)
per_round = ", ".join(f"{f(s)}/{f(p)}" for _, s, p in rows if s and p)
section = "\n".join([
    "## Networking: the encrypted overlay",
    "",
    "`bench/network/run` with `ONLY=sealed` (issue 17, item 6): the cluster and hosts of the section above, and a "
    "second overlay made with `--opt encrypted`, with its own `ssrv` (on w1) and `scli` (on m1). One iperf3 TCP "
    f"stream for {meta['iperf_seconds']} s after a 1 s warm-up (`-O 1`), task to task on both sides: `scli` → `ssrv` "
    "over the encrypted overlay (veth → bridge → TAP → Shoal's forwarder: AES-128-GCM (ring) and UDP over the "
    "underlay → the other node's forwarder → TAP → bridge → veth), against `cli` → `srv` over the plain overlay (the "
    f"kernel's VXLAN). {meta['rounds']} rounds, the sides alternating; the table gives the medians and the median of "
    f"the per-round ratios with its range. MTU: encrypted {meta['mtu_sealed']}, plain {meta['mtu_overlay']} "
    "(the sealed header and tag take 28 bytes more than VXLAN's).",
    "",
    "| measure | encrypted overlay | plain overlay | ratio (range) |",
    "|---|---|---|---|",
    f"| TCP throughput, one iperf3 stream, {meta['iperf_seconds']} s | {f(med_s)} Gbit/s | {f(med_p)} Gbit/s | "
    f"{ratio:.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) |",
    "",
    f"Per round, encrypted/plain Gbit/s: {per_round}.",
    "",
    f"Where the cost comes from: {f(med_s)} Gbit/s of {meta['mtu_sealed']}-byte frames is about "
    f"{med_s * 1e9 / 8 / meta['mtu_sealed'] / 1000:.0f}k frames/s, with {retrans} TCP retransmissions over all the "
    "encrypted rounds: nothing is lost, the forwarder's time per frame is the limit. Each frame is handled in "
    "userspace on both hosts, one frame per system call and no segmentation offload (the TAP hands over "
    "MTU-sized frames): a TAP read, the seal and a UDP send on the sender; a UDP receive, the open and a TAP "
    "write on the receiver. The AEAD is ring's AES-NI code. Both hosts' forwarders, iperf3 and the kernel's "
    "side of the plain overlay share the machine's 2 cores with other engineers' builds, and the plain overlay "
    "runs in softirq, ahead of any process. The kernel's ESP, WireGuard or MACsec would avoid the userspace "
    "trips, but this kernel has none of them (docs/networking.md). Next steps, in the order they should pay: "
    "batches of frames per system call (`recvmmsg`/`sendmmsg`, `IFF_MULTI_QUEUE` TAPs with a reader per "
    "core), `IFF_VNET_HDR` so the TAP carries 64 KiB TCP segments sealed as one datagram that the kernel "
    "fragments on the underlay.",
    "",
    f"The machine is shared with other engineers' builds and tests; the run held the bench and root locks "
    f"(load average {meta['loadavg_at_end']} at its end). Run {meta['date']} on {meta['cpu']} ({meta['cores']} "
    f"cores), kernel {meta['kernel']}; Shoal at {meta['commit']} (its sources last changed in "
    f"{meta['source_commit']}) ({meta['shoal_version']}, `{meta.get('shoal_binary', 'target/release/shoal')}` built "
    f"{meta['shoal_binary_mtime']}{DEBUG_NOTE}). Raw results: "
    "`bench/results/network-sealed-raw/`.",
    "",
])
replace_section(doc, "## Networking: the encrypted overlay", section)
