#!/usr/bin/env python3
"""Faults as clusters have them, on a real node (e2e/setup/start-cluster.sh),
each injected from outside and each checked on what a user or a consumer
pod sees: the Artifact's conditions and status, the ConfigMap, the files a
container reads through its mount namespace, the registry's access log.

  kill        the operator SIGKILLed while it writes a 256 MiB version
              into the shared volume
  full        the share full (a tmpfs of a fixed size); the work dir's
              emptyDir under a small sizeLimit with layers in flight
  memory      the largest layer the defaults accept (1 GiB) into the
              volume under the chart's default memory limit
  outage      the artifacts' registry gone for OUTAGE seconds
  control     the API server, then etcd, paused (SIGSTOP) 30 s; the API
              server restarted
  trickle     one registry that answers at 4 KiB/s, beside healthy ones
  many        200 Artifacts created while the operator is SIGKILLed
              three times
  containerd  containerd restarted under the running pods
  agent       SIGTERM to the agent sidecar (PID 1 of its container)

Usage: test_faults.py [DIR] (DIR: the cluster's directory; default a new
temporary one, stopped at the end). Env: OCISYNC_BIN, KEEP=1 (as
test_node.py), OUTAGE (seconds, default 120), FAULTS (names to run,
default all). Figures are printed as "figure: NAME VALUE" lines; the
book's "Faults" page (docs/src/operations/faults.md) quotes them."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cluster import RELEASE_NS, TOOLS, Cluster, crane, eventually  # noqa: E402

SELECTOR = "app.kubernetes.io/name=ocisync,app.kubernetes.io/instance=ocisync"
TEAM = "team-a"
DIGEST = "ocisync.dev/digest"
MiB = 1 << 20
FIGURES = {}


def figure(name, value):
    FIGURES[name] = value
    print(f"    figure: {name} {value}", flush=True)


class Faults:
    def __init__(self, c):
        self.c = c
        self.values = {"image": {"repository": f"{c.registry}/ocisync", "tag": "dev"},
                       "volume": {"enabled": True, "storageClassName": "node-local", "size": "8Gi",
                                  "grace": "5s"}}

    # --- set-up --------------------------------------------------------------------
    def setup(self):
        """The image, busybox, the artifacts' own registry (stopped and
        started by the tests; the node's image registry is never touched),
        a share on a hostPath with a 48 MiB tmpfs at team-a/tight (mounted
        before the operator starts, so its bind mount carries it), and
        the chart."""
        self.c.operator_image("dev")
        self.busybox = self.c.busybox()
        self.origin, self.origin_proc = self.c.registry_process("origin", accesslog=True)
        self.share = self.c.dir / "share"
        self.tight = self.share / TEAM / "tight"
        self.tight.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", self.tight], check=True)
        for d in (self.share, self.share / TEAM, self.tight):
            os.chown(d, 65532, 65532)
        self.c.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ocisync-share"},
                      "spec": {"capacity": {"storage": "8Gi"}, "accessModes": ["ReadWriteMany"],
                               "storageClassName": "node-local", "hostPath": {"path": str(self.share)}}})
        self.c.kubectl("create", "namespace", TEAM)
        rel = self.c.install("ocisync", self.values)
        assert rel["status"] == "deployed", rel
        self.operator()

    def artifact(self, name, repo, tag="v1", registry=None, ns=TEAM, **spec):
        body = {"url": f"oci://{registry or self.origin}/{repo}", "insecure": True, "ref": {"tag": tag},
                "interval": "2s"}
        body.update(spec)
        return {"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact",
                "metadata": {"name": name, "namespace": ns}, "spec": body}

    def status(self, name, ns=TEAM):
        a = self.c.get("artifact", name, ns)
        return (a or {}).get("status", {})

    def ready(self, name, ns=TEAM):
        return next((c for c in self.status(name, ns).get("conditions", []) if c["type"] == "Ready"), {})

    def synced(self, name, digest, timeout=90, ns=TEAM):
        eventually(f"Artifact {name} synced {digest}", timeout,
                   lambda: self.status(name, ns).get("lastSyncedDigest") == digest)

    def operator(self):
        """The one operator pod (a rollout over: no other left), Ready and
        holding the Lease."""
        def one():
            pods, ready = self.c.pods(RELEASE_NS, SELECTOR), self.c.ready_pods(RELEASE_NS, SELECTOR)
            return len(pods) == 1 and len(ready) == 1 and ready[0]
        pod = eventually("the operator Ready, alone", 240, one)
        eventually("it holds the Lease", 90, lambda: (self.c.get("lease", "ocisync-leader", RELEASE_NS) or {})
                   .get("spec", {}).get("holderIdentity") == pod["metadata"]["name"])
        return pod

    def operator_state(self):
        pod = self.c.pods(RELEASE_NS, SELECTOR)[0]
        return pod, pod["status"]["containerStatuses"][0]

    def kill_operator(self, sig=signal.SIGKILL):
        pod, st = self.operator_state()
        os.kill(self.c.container_pid(pod, "operator"), sig)
        return st["restartCount"]

    def restarted(self, before, timeout=180):
        """After a kill: the kubelet has restarted it (restartCount past
        `before`) and it leads again."""
        eventually("the kubelet restarts the operator", timeout,
                   lambda: self.operator_state()[1]["restartCount"] > before)
        return self.operator()

    def work_dir(self):
        """The operator's work dir (its emptyDir) on the host."""
        pod, _ = self.operator_state()
        return self.c.dir / "kubelet/pods" / pod["metadata"]["uid"] / "volumes/kubernetes.io~empty-dir/work"

    def reader(self, name, sub):
        """A pod that mounts the share at sub and checks every revision it
        resolves for being whole (the READER loop)."""
        spec = {"containers": [{"name": "reader", "image": self.busybox, "command": ["/bin/sh", "-c", READER],
                                "volumeMounts": [{"name": "files", "mountPath": "/files", "subPath": sub,
                                                  "readOnly": True},
                                                 {"name": "results", "mountPath": "/results"}]}],
                "volumes": [{"name": "files", "persistentVolumeClaim": {"claimName": "ocisync-volume",
                                                                        "readOnly": True}},
                            {"name": "results", "emptyDir": {}}],
                "terminationGracePeriodSeconds": 1}
        self.c.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": RELEASE_NS},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                               "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})
        pod = eventually(f"{name} Ready", 120, lambda: (self.c.ready_pods(RELEASE_NS, f"app={name}") or [None])[0])
        return Reader(self.c, pod)

    def push_tree(self, repo, version, big=(), tag="v"):
        """A version: v.txt and the `files` list (name and size of each
        file) that the reader checks, plus `big` random files of the sizes
        given."""
        files = {f"big-{i}.bin": os.urandom(n) for i, n in enumerate(big)}
        files["v.txt"] = f"{version}\n".encode()
        listing = "".join(f"{n} {len(d)}\n" for n, d in sorted(files.items()))
        files["files"] = listing.encode()
        return self.c.push(repo, files, tag=tag, registry=self.origin)

    # --- faults --------------------------------------------------------------------
    def test_kill(self):
        """SIGKILL while a 256 MiB version is being written into the
        volume: the reader sees the old tree or the new one whole, never a
        mix; the restarted operator publishes the new one; no staging or
        half revision is left using space."""
        v1 = self.push_tree("apps/big", 1)
        self.c.apply(self.artifact("big", "apps/big", tag="v", target={"volume": {"path": "big"}}))
        self.synced("big", v1)
        reader = self.reader("big-reader", f"{TEAM}/big")
        eventually("the reader sees 1", 60, lambda: reader.seen() == b"1")
        d = self.share / TEAM / "big"
        for attempt in range(2, 6):
            v = self.push_tree("apps/big", attempt, big=[64 * MiB] * 4)
            # the moment a staging tree holds part of it
            deadline = time.monotonic() + 60
            while du(d, staging=True) < 16 * MiB:
                assert time.monotonic() < deadline, "no staging seen in 60 s"
                if self.status("big").get("lastSyncedDigest") == v:
                    break
                time.sleep(0.005)
            if self.status("big").get("lastSyncedDigest") == v:
                print(f"    attempt {attempt}: published before the kill; again", flush=True)
                continue
            staged = du(d, staging=True)
            t0 = time.monotonic()
            before = self.kill_operator()
            assert reader.seen() in (str(attempt - 1).encode(),), reader.seen()
            self.restarted(before)
            self.synced("big", v, timeout=180)
            figure("kill.republished_s", round(time.monotonic() - t0, 1))
            figure("kill.staged_at_kill_mib", staged // MiB)
            eventually(f"the reader sees {attempt}", 60, lambda: reader.seen() == str(attempt).encode())
            break
        else:
            raise AssertionError("never caught it writing")
        assert reader.torn() is None, reader.torn()
        assert reader.checks() > 10, reader.checks()
        eventually("no staging left in the volume", 30, lambda: du(d, staging=True) == 0)
        leftovers = [p.name for p in d.iterdir() if p.name.startswith(("..tmp", "...tmp"))]
        assert not leftovers, leftovers
        # what remains is whole revisions, each with its marker
        revs = [p for p in d.iterdir() if p.name.startswith("..r")]
        assert all((r / "..ocisync.json").is_file() for r in revs), revs
        assert not [p for p in self.work_dir().iterdir() if p.name != ".blob-cache"], list(self.work_dir().iterdir())

    def test_kill_configmap(self):
        """SIGKILL while a version of 900 KiB (about what a ConfigMap
        holds) is being fetched for a ConfigMap, slowly (64 KiB/s through
        a proxy): the ConfigMap, read every 50 ms, always holds one
        version whole, the one its digest annotation names; the restarted
        operator publishes the new one; its work dir keeps no staging."""
        proxy = Trickle(self.origin, rate=64 << 10, shared=True)
        try:
            parts = {v: {f"part-{i}.txt": os.urandom(22 << 10).hex().encode() for i in range(20)} for v in (1, 2)}

            def files(v):
                return parts[v]
            content = {}
            for v in (1, 2):
                content[self.c.push("apps/cm", files(v), tag="v", registry=self.origin)] = files(v)
                if v == 1:
                    v1 = list(content)[0]
                    self.c.apply(self.artifact("cm", "apps/cm", tag="v", registry=proxy.host, timeout="2m"))
                    self.synced("cm", v1, timeout=120)
            v2 = list(content)[1]
            seen = set()

            def whole():
                cm = self.c.get("configmap", "cm", TEAM)
                d = cm["metadata"]["annotations"][DIGEST]
                want = {k: b.decode() for k, b in content[d].items()}
                assert cm["data"] == want, f"ConfigMap torn at {d}"
                seen.add(d)
                return d
            work = self.work_dir()

            def staging():
                return du(work) - du(work / ".blob-cache")
            eventually("v2 being fetched into the work dir", 60, lambda: whole() and staging() > 128 << 10,
                       every=0.05)
            assert whole() == v1
            staged = staging()
            before = self.kill_operator()
            t0 = time.monotonic()
            eventually("v2 published after the restart", 180, lambda: whole() == v2, every=0.05)
            figure("kill_configmap.republished_s", round(time.monotonic() - t0, 1))
            figure("kill_configmap.staged_at_kill_kib", staged >> 10)
            assert self.operator_state()[1]["restartCount"] > before
            assert seen == {v1, v2}, seen
            self.operator()
            assert not [p for p in self.work_dir().iterdir() if p.name != ".blob-cache"], \
                list(self.work_dir().iterdir())
        finally:
            proxy.close()
        self.c.kubectl("delete", "artifact", "-n", TEAM, "cm")

    def test_full(self):
        """The share full: a version that does not fit says NoSpace and
        names the path; the current one stays whole and served; what was
        written for the failed one is removed; one that fits publishes."""
        v1 = self.push_tree("apps/tight", 1, big=[4 * MiB])
        self.c.apply(self.artifact("tight", "apps/tight", tag="v", target={"volume": {"path": "tight"}}))
        self.synced("tight", v1)
        reader = self.reader("tight-reader", f"{TEAM}/tight")
        eventually("the reader sees 1", 60, lambda: reader.seen() == b"1")
        used = du(self.tight)
        v2 = self.push_tree("apps/tight", 2, big=[24 * MiB, 24 * MiB])
        cond = eventually("Ready False, NoSpace", 90, lambda: (lambda c: c.get("reason") == "NoSpace" and c)(
            self.ready("tight")))
        assert cond["status"] == "False", cond
        assert str(pathlib.Path("/volume") / TEAM / "tight") in cond["message"], cond["message"]
        st = self.status("tight")
        assert st["lastSyncedDigest"] == v1, st
        assert reader.seen() == b"1" and reader.torn() is None, (reader.seen(), reader.torn())
        eventually("what the failed sync wrote is removed", 30, lambda: du(self.tight, staging=True) == 0)
        assert du(self.tight) <= used + 64 << 10, (du(self.tight), used)
        figure("full.reason", cond["reason"])
        v3 = self.push_tree("apps/tight", 3, big=[8 * MiB])
        self.synced("tight", v3, timeout=120)
        eventually("the reader sees 3", 60, lambda: reader.seen() == b"3")
        assert reader.torn() is None, reader.torn()
        assert v2 != v3

    def test_work_dir_limit(self):
        """The work dir's emptyDir with a 64 MiB sizeLimit (the blob cache
        left at its default, 512 MiB), six 15 MiB layers fetched at once
        (at 2 MiB/s each, through a proxy, so that they overlap): the cache
        is cut to fit the limit, and its downloads in flight hold room
        under its bound, so the directory never passes the limit (sampled
        every 50 ms) and the kubelet never evicts the pod."""
        self.values.update({"workDir": {"sizeLimit": "64Mi"}})
        self.c.upgrade("ocisync", self.values)
        pod = self.operator()
        work = self.work_dir()
        names = [f"wide-{i}" for i in range(6)]
        digests = {n: self.c.push(f"apps/{n}", {"blob.bin": os.urandom(15 * MiB)}, tag="v", registry=self.origin)
                   for n in names}
        proxy = Trickle(self.origin, rate=2 * MiB)
        peak, stop = [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], du(work))
                time.sleep(0.05)
        t = threading.Thread(target=sample)
        t.start()
        try:
            self.c.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
                self.artifact(n, f"apps/{n}", tag="v", registry=proxy.host, target={"volume": {"path": n}})
                for n in names]}))
            for n in names:
                self.synced(n, digests[n])
        finally:
            stop.set()
            t.join()
            proxy.close()
        figure("workdir.peak_mib", round(peak[0] / MiB, 1))
        assert 15 * MiB <= peak[0] <= 64 * MiB, peak[0]
        now = self.c.get("pod", pod["metadata"]["name"], RELEASE_NS)
        assert now and now["status"].get("reason") != "Evicted", now["status"]
        for n in names:
            self.c.kubectl("delete", "artifact", "-n", TEAM, n)

    def test_memory(self):
        """The largest layer the defaults accept (limits.maxLayerBytes:
        1 GiB) streamed into the volume under the chart's default memory
        limit (256 MiB): no OOM kill, no restart, and helm test passes."""
        self.values.pop("workDir", None)
        self.c.upgrade("ocisync", self.values)
        pod = self.operator()
        assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "256Mi", pod["spec"]
        _, before = self.operator_state()
        with tempfile.TemporaryDirectory(dir=self.c.dir) as d:
            f = pathlib.Path(d) / "huge.bin"
            with open(f, "wb") as out:
                for _ in range(1024):
                    out.write(os.urandom(MiB))
            ref = f"{self.origin}/apps/huge:v"
            subprocess.run([TOOLS / "oras", "push", "--plain-http", ref, "huge.bin"], cwd=d, check=True,
                           stdout=subprocess.DEVNULL)
        digest = crane("digest", "--insecure", ref).strip()
        t0 = time.monotonic()
        self.c.apply(self.artifact("huge", "apps/huge", tag="v", target={"volume": {"path": "huge"}},
                                   timeout="10m"))
        self.synced("huge", digest, timeout=600)
        figure("memory.huge_sync_s", round(time.monotonic() - t0, 1))
        pod, st = self.operator_state()
        assert st["restartCount"] == before["restartCount"], st
        assert "lastState" not in st or st["lastState"].get("terminated", {}).get("reason") != "OOMKilled", st
        pid = self.c.container_pid(pod, "operator")
        hwm = int(next(line.split()[1] for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("VmHWM:")))
        figure("memory.peak_rss_mib", round(hwm / 1024, 1))
        assert (self.share / TEAM / "huge/huge.bin").stat().st_size == 1 << 30
        ip = pod["status"]["podIP"]
        self.values["tests"] = {"image": self.busybox, "url": f"http://{ip}:8080/readyz"}
        self.c.upgrade("ocisync", self.values)
        out = self.c.helm.test("ocisync", timeout=120, logs=True)
        assert out["release"]["status"] == "deployed", out
        self.c.kubectl("delete", "artifact", "-n", TEAM, "huge")

    def test_outage(self):
        """The artifacts' registry gone for OUTAGE seconds: Ready False
        (Unreachable), the last good digest kept in status, the ConfigMap
        and the files a pod reads unchanged; once it is back, the next
        push arrives within the backoff's cap (5 min) plus the interval."""
        v1 = self.c.push("apps/steady", {"app.yaml": b"n: 1\n"}, tag="v", registry=self.origin)
        self.c.apply(self.artifact("steady", "apps/steady", tag="v"))
        self.synced("steady", v1)
        pod = self.consumer("steady")
        self.origin_proc.terminate()
        self.origin_proc.wait()
        t0 = time.monotonic()
        cond = eventually("Ready False, Unreachable", 60, lambda: (lambda c: c.get("reason") == "Unreachable" and c)(
            self.ready("steady")))
        figure("outage.noticed_s", round(time.monotonic() - t0, 1))
        outage = float(os.environ.get("OUTAGE", "120"))
        while time.monotonic() - t0 < outage:
            assert self.status("steady")["lastSyncedDigest"] == v1
            assert self.c.get("configmap", "steady", TEAM)["data"]["app.yaml"] == "n: 1\n"
            assert self.c.read_in(pod, "app", "/etc/steady/app.yaml") == b"n: 1\n"
            time.sleep(2)
        assert self.ready("steady")["status"] == "False", cond
        self.origin, self.origin_proc = self.c.registry_process("origin", host=self.origin, accesslog=True)
        v2 = self.c.push("apps/steady", {"app.yaml": b"n: 2\n"}, tag="v", registry=self.origin)
        t1 = time.monotonic()
        self.synced("steady", v2, timeout=300 + 10)
        figure("outage.recovered_s", round(time.monotonic() - t1, 1))
        eventually("the pod reads n: 2", 120, lambda: self.c.read_in(pod, "app", "/etc/steady/app.yaml") == b"n: 2\n")
        assert self.ready("steady")["status"] == "True"

    def consumer(self, name):
        """A pod reading the ConfigMap `name` at /etc/NAME."""
        self.c.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"{name}-app",
                                                                                  "namespace": TEAM},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": f"{name}-app"}},
                               "template": {"metadata": {"labels": {"app": f"{name}-app"}}, "spec": {
                                   "terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "app", "image": self.busybox,
                                                   "command": ["/bin/sh", "-c", "exec sleep 100000"],
                                                   "volumeMounts": [{"name": "c", "mountPath": f"/etc/{name}"}]}],
                                   "volumes": [{"name": "c", "configMap": {"name": name}}]}}}})
        return eventually(f"{name}-app Ready", 120, lambda: (self.c.ready_pods(TEAM, f"app={name}-app") or [None])[0])

    def test_control(self):
        """The API server paused 30 s, then etcd paused 30 s, then each
        restarted: each time syncing resumes by itself, the next push
        arrives within 120 s, and the operator leads (again)."""
        n = [2]

        def push_and_wait(what):
            n[0] += 1
            v = self.c.push("apps/steady", {"app.yaml": f"n: {n[0]}\n".encode()}, tag="v", registry=self.origin)
            t = time.monotonic()
            self.synced("steady", v, timeout=120)
            figure(f"control.{what}_next_push_s", round(time.monotonic() - t, 1))
            cm = self.c.get("configmap", "steady", TEAM)
            assert cm["data"]["app.yaml"] == f"n: {n[0]}\n" and cm["metadata"]["annotations"][DIGEST] == v, cm

        for name in ("kube-apiserver", "etcd"):
            _, before = self.operator_state()
            _, pid = self.c.daemon(name)
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(30)
            finally:
                os.kill(pid, signal.SIGCONT)
            push_and_wait(f"{name}_paused")
            _, after = self.operator_state()
            figure(f"control.{name}_paused_restarts", after["restartCount"] - before["restartCount"])
            self.operator()
        for name in ("kube-apiserver", "etcd"):
            _, before = self.operator_state()
            self.c.restart(name)
            eventually("the API server answers", 60, lambda: self.c.kubectl("get", "--raw", "/readyz", check=False)
                       .returncode == 0)
            push_and_wait(f"{name}_restarted")
            self.operator()
            _, after = self.operator_state()
            figure(f"control.{name}_restarted_restarts", after["restartCount"] - before["restartCount"])

    def test_trickle(self):
        """One registry (a proxy in front of the origin) that trickles 4
        KiB/s, for one Artifact with a 10 s timeout: it ends Timeout and is
        retried; meanwhile the others keep their sync times."""
        proxy = Trickle(self.origin, rate=4 << 10)
        try:
            v = self.c.push("apps/slow", {"blob.bin": os.urandom(2 * MiB)}, tag="v", registry=self.origin)
            self.c.apply(self.artifact("slow", "apps/slow", tag="v", registry=proxy.host, timeout="10s",
                                       target={"volume": {"path": "slow"}}))
            cond = eventually("Ready False, Timeout", 90, lambda: (lambda c: c.get("reason") == "Timeout" and c)(
                self.ready("slow")))
            assert "fetching" in cond["message"], cond
            times = []
            for i in range(3):
                d = self.c.push("apps/steady", {"app.yaml": f"n: fast-{i}\n".encode()}, tag="v", registry=self.origin)
                t = time.monotonic()
                self.synced("steady", d, timeout=60)
                times.append(time.monotonic() - t)
            figure("trickle.others_sync_s", " ".join(f"{t:.1f}" for t in times))
            assert max(times) < 15, times
            tries = proxy.connections
            eventually("the slow one is retried", 90, lambda: proxy.connections > tries)
            assert self.status("slow").get("lastSyncedDigest") != v
        finally:
            proxy.close()
        self.c.kubectl("delete", "artifact", "-n", TEAM, "slow")

    def test_many(self):
        """200 Artifacts created at once while the operator is SIGKILLed
        three times: each ends Ready with its own repository's content in
        exactly one ConfigMap, and the work dir holds no staging."""
        repos = {f"fleet/r{i}": self.c.push(f"fleet/r{i}", {"id.txt": f"r{i}\n".encode()}, tag="v",
                                            registry=self.origin) for i in range(10)}
        self.c.kubectl("create", "namespace", "fleet")
        items = [self.artifact(f"many-{i}", f"fleet/r{i % 10}", tag="v", ns="fleet", interval="1m")
                 for i in range(200)]
        t0 = time.monotonic()
        self.c.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        for k in range(3):
            time.sleep(2)
            before = self.kill_operator()
            self.restarted(before, timeout=240)

        def all_ready():
            arts = self.c.get("artifacts", ns="fleet")["items"]
            ok = [a for a in arts if any(c["type"] == "Ready" and c["status"] == "True"
                                         for c in a.get("status", {}).get("conditions", []))]
            return len(ok) == 200
        eventually("all 200 Ready", 300, all_ready, every=2)
        figure("many.all_ready_s", round(time.monotonic() - t0, 1))
        cms = self.c.get("configmaps", ns="fleet", selector="app.kubernetes.io/managed-by=ocisync")["items"]
        assert len(cms) == 200, len(cms)
        by_name = {cm["metadata"]["name"]: cm for cm in cms}
        for i in range(200):
            cm = by_name[f"many-{i}"]
            owners = cm["metadata"].get("ownerReferences", [])
            assert [o["name"] for o in owners] == [f"many-{i}"], owners
            assert cm["data"]["id.txt"] == f"r{i % 10}\n", cm["data"]
            assert cm["metadata"]["annotations"][DIGEST] == repos[f"fleet/r{i % 10}"]
        assert not [p for p in self.work_dir().iterdir() if p.name != ".blob-cache"], list(self.work_dir().iterdir())
        # The namespace deleted: its ConfigMaps go before its Artifacts, and
        # nothing is downloaded again for a namespace on its way out.
        gets = self.blob_gets()
        self.c.kubectl("delete", "namespace", "fleet", "--timeout=120s")
        assert self.blob_gets() == gets, (self.blob_gets() - gets, "blob GETs while the namespace was deleted")

    def test_containerd(self):
        """containerd restarted under running pods: the operator and an
        agent sidecar keep running (or come back), and nothing is fetched
        again that the volume or the agent's emptyDir already holds (the
        registry's access log shows no blob GET)."""
        self.agent_pod = self.agent()
        pod, st = self.operator_state()
        agent_ids = {s["name"]: s["containerID"] for s in self.agent_pod["status"]["containerStatuses"]}
        gets = self.blob_gets()
        assert gets > 0, "the access log counts blob GETs"
        self.c.restart("containerd")
        eventually("the node Ready", 120, lambda: any(c["type"] == "Ready" and c["status"] == "True"
                                                      for c in self.c.get("node", "ocisync-node")["status"]
                                                      ["conditions"]))
        time.sleep(10)
        self.operator()
        agent = eventually("the agent pod Ready", 120, lambda: (self.c.ready_pods(TEAM, "app=agent") or [None])[0])
        now = {s["name"]: s["containerID"] for s in agent["status"]["containerStatuses"]}
        figure("containerd.agent_containers_kept", sum(now[k] == v for k, v in agent_ids.items()))
        _, st2 = self.operator_state()
        figure("containerd.operator_restarts", st2["restartCount"] - st["restartCount"])
        assert self.c.read_in(agent, "app", "/etc/steady/app.yaml") is not None
        assert self.blob_gets() == gets, (self.blob_gets() - gets, "blob GETs after the restart")

    def agent(self):
        """A pod with the agent as a sidecar, syncing `steady` into an
        emptyDir; its ServiceAccount granted by the chart's agentRoles."""
        if not self.c.get("serviceaccount", "agent", TEAM):
            self.c.kubectl("create", "serviceaccount", "-n", TEAM, "agent")
            self.values["agentRoles"] = [{"namespace": TEAM, "serviceAccount": "agent", "artifacts": ["steady"]}]
            self.c.upgrade("ocisync", self.values)
        image = f"{self.c.registry}/ocisync:dev"
        env = [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
        mount = [{"name": "files", "mountPath": "/etc/steady"}]
        self.c.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "agent", "namespace": TEAM},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "agent"}},
                               "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                                   "serviceAccountName": "agent", "terminationGracePeriodSeconds": 30,
                                   "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532},
                                   "containers": [
                                       {"name": "app", "image": self.busybox, "volumeMounts": mount,
                                        "command": ["/bin/sh", "-c", "exec sleep 100000"]},
                                       {"name": "agent", "image": image, "env": env, "volumeMounts": mount,
                                        "args": ["agent", "--artifact=$(POD_NAMESPACE)/steady", "--dir=/etc/steady"]}],
                                   "volumes": [{"name": "files", "emptyDir": {}}]}}}})
        pod = eventually("the agent pod Ready", 180, lambda: (self.c.ready_pods(TEAM, "app=agent") or [None])[0])
        eventually("the agent wrote the files", 60, lambda: self.c.read_in(pod, "app", "/etc/steady/app.yaml"))
        return pod

    def blob_gets(self):
        log = (self.c.dir / "logs/origin.log").read_text(errors="replace")
        return sum(1 for line in log.splitlines() if '"GET /v2/' in line and "/blobs/" in line)

    def test_agent_sigterm(self):
        """SIGTERM to the agent sidecar, PID 1 of its container: it exits
        at once with status 0 (as a pod's deletion would have it), and the
        kubelet starts it again."""
        pod = eventually("the agent pod Ready", 120, lambda: (self.c.ready_pods(TEAM, "app=agent") or [None])[0])
        st = next(s for s in pod["status"]["containerStatuses"] if s["name"] == "agent")
        pid = self.c.container_pid(pod, "agent")
        t0 = time.monotonic()
        os.kill(pid, signal.SIGTERM)
        eventually("the agent's process ends", 10, lambda: not pathlib.Path(f"/proc/{pid}").exists()
                   or pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z", every=0.05)
        figure("agent.sigterm_exit_s", round(time.monotonic() - t0, 2))

        def restarted():
            p = self.c.get("pod", pod["metadata"]["name"], TEAM)
            s = next(s for s in p["status"]["containerStatuses"] if s["name"] == "agent")
            return s["restartCount"] > st["restartCount"] and s
        s = eventually("the kubelet starts it again", 60, restarted)
        assert s["lastState"]["terminated"]["exitCode"] == 0, s["lastState"]


class Reader:
    def __init__(self, c, pod):
        self.c, self.pod = c, pod

    def _read(self, name):
        return self.c.read_in(self.pod, "reader", f"/results/{name}")

    def seen(self):
        return (self._read("seen") or b"").strip()

    def torn(self):
        return self._read("torn")

    def checks(self):
        return int(self._read("checks") or b"0")


# Resolve ..data once; check that revision's files against its own list
# (name and size) and its marker; record what it saw.
READER = r"""
cd /files
n=0
while :; do
  r=$(readlink ..data) || { sleep 0.05; continue; }
  test -f "$r/..ocisync.json" || echo "$r: no ..ocisync.json" >> /results/torn
  while read -r f size; do
    got=$(stat -c %s "$r/$f" 2>/dev/null)
    test "$got" = "$size" || echo "$r: $f is ${got:-missing}, not $size" >> /results/torn
  done < "$r/files"
  n=$((n+1)); echo $n > /results/checks.tmp && mv /results/checks.tmp /results/checks
  cat "$r/v.txt" > /results/seen.tmp && mv /results/seen.tmp /results/seen
  sleep 0.05
done
"""


def du(d, staging=False):
    """Bytes under d (`staging`: only in the staging trees, ..tmp-* and
    ...tmp-*), as allocated on disk."""
    total = 0
    try:
        entries = list(pathlib.Path(d).iterdir())
    except OSError:
        return 0
    for e in entries:
        if staging and not e.name.startswith(("..tmp", "...tmp")):
            continue
        for root, dirs, files in os.walk(e) if e.is_dir() and not e.is_symlink() else [(d, [], [e.name])]:
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_blocks * 512
                except OSError:
                    pass
    return total


class Trickle:
    """A TCP proxy on the bridge to `upstream` that sends the answers on at
    `rate` bytes a second, on each connection or (`shared`) on all of them
    together; requests go through at full speed."""

    def __init__(self, upstream, rate, shared=False):
        self.upstream = upstream.split(":")
        self.rate = rate
        self.shared = threading.Lock() if shared else None
        self.next = time.monotonic()
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("10.217.0.1", 0))
        self.sock.listen(64)
        self.host = f"10.217.0.1:{self.sock.getsockname()[1]}"
        self.closed = threading.Event()
        self.open = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            up = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            self.open += [client, up]
            threading.Thread(target=self.pump, args=(client, up, None), daemon=True).start()
            threading.Thread(target=self.pump, args=(up, client, self.rate), daemon=True).start()

    def pump(self, src, dst, rate):
        try:
            while not self.closed.is_set():
                data = src.recv(max(1024, min(65536, rate // 20)) if rate else 65536)
                if not data:
                    break
                dst.sendall(data)
                if rate and self.shared:
                    with self.shared:
                        now = time.monotonic()
                        self.next = max(self.next, now) + len(data) / rate
                        wait = self.next - now
                    time.sleep(wait)
                elif rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed.set()
        self.sock.close()
        for s in self.open:
            try:
                s.close()
            except OSError:
                pass


ORDER = ["kill", "kill_configmap", "full", "work_dir_limit", "memory", "outage", "control", "trickle", "many", "containerd",
         "agent_sigterm"]


def main():
    keep = os.environ.get("KEEP") == "1"
    path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ocisync-faults.")
    only = os.environ.get("FAULTS", "").split()
    t0 = time.monotonic()
    # the kubelet refreshes ConfigMap volumes every 10 s, not every minute:
    # what a pod reads is asserted sooner
    c = Cluster(path, sync_frequency="10s")
    print(f"cluster up in {time.monotonic() - t0:.0f} s ({path})", flush=True)
    suite = Faults(c)
    failed = None
    try:
        suite.setup()
        for name in ORDER:
            if only and name not in only:
                continue
            t = time.monotonic()
            try:
                getattr(suite, f"test_{name}")()
            except Exception:  # noqa: BLE001 - reported, then the run stops
                failed = name
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
                break
            print(f"ok   {name} ({time.monotonic() - t:.0f} s)", flush=True)
    except Exception:  # noqa: BLE001
        failed = "setup"
        print(f"FAIL setup\n{traceback.format_exc()}", flush=True)
    finally:
        try:
            suite.origin_proc.terminate()
            suite.origin_proc.wait()
        except AttributeError:
            pass
        if not keep:
            c.stop()
            if len(sys.argv) <= 1:
                subprocess.run(["rm", "-rf", path], check=False)
    print(f"fault tests: {'FAILED ' + failed if failed else 'all passed'} in {time.monotonic() - t0:.0f} s")
    print("figures: " + json.dumps(FIGURES))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
