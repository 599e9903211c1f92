#!/usr/bin/env python3
"""Push -> file in a running container, on the real node: an Artifact with
a 1-hour interval on a registry that notifies the operator (so the time is
the operator's reaction, the fetch and the last hop), PUSHES pushes, each
timed from the end of `oras push` until a container sees the new file,
through a ConfigMap volume (the kubelet's refresh) and through the agent
sidecar (its emptyDir). Once with the kubelet's syncFrequency at its
default (1m), once at 10s: a new cluster each. Prints the table of docs/src/operations/performance.md.

Usage: bench_push.py   (env PUSHES, default 10; OCISYNC_BIN as test_node.py)"""
import os
import pathlib
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cluster import Cluster  # noqa: E402
from test_node import TEAM, Suite  # noqa: E402

PUSHES = int(os.environ.get("PUSHES", "10"))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


rows = []
for freq in ["1m", "10s"]:
    d = tempfile.mkdtemp(prefix="ocisync-bench.")
    c = Cluster(d, sync_frequency=freq)
    try:
        s = Suite(c)
        s.images()
        c.install("ocisync", s.values)
        s.operator_pods()
        c.kubectl("create", "namespace", TEAM)
        for path, times in s.push_to_containers(PUSHES).items():
            if path == "agent sidecar" and freq != "1m":
                continue  # the kubelet's period does not touch the emptyDir
            what = f"{path} (kubelet syncFrequency {freq})" if path.startswith("ConfigMap") else path
            rows.append(f"| {what} | {statistics.median(times):.1f} s | {pct(times, 95):.1f} s "
                        f"| {max(times):.1f} s | {len(times)} |")
            print(rows[-1], flush=True)
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)
print("\n| push -> file in a running container | p50 | p95 | max | pushes |\n| --- | --- | --- | --- | --- |")
print("\n".join(rows))
