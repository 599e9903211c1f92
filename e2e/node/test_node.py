#!/usr/bin/env python3
"""ocisync as users run it, on a real node (e2e/setup/start-cluster.sh): the
chart installed, upgraded, tested and uninstalled with Helm v4's engine, the
operator pulled by containerd from a registry and run by the kubelet under
the chart's security context, and pods reading what it publishes: a
ConfigMap volume, the agent as a sidecar, the shared volume.

Usage: test_node.py [DIR]   (DIR: the cluster's directory; default a new
temporary one, stopped at the end). Run with the validators venv's python
(helm-python-sdk). Env: OCISYNC_BIN (the binary for the image; default a
release build), KEEP=1 leaves the cluster running.

The tests run in order, each on what the earlier ones left (one install,
upgraded along the way), and stop at the first failure."""
import base64
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cluster import RELEASE_NS, ROOT, Cluster, eventually  # noqa: E402

SELECTOR = "app.kubernetes.io/name=ocisync,app.kubernetes.io/instance=ocisync"
TEAM = "team-a"
DIGEST = "ocisync.dev/digest"


class Suite:
    def __init__(self, c):
        self.c = c
        self.reg = c.registry
        self.values = {"image": {"repository": f"{self.reg}/ocisync", "tag": "dev"}}

    def images(self):
        """The operator's image and the consumers' busybox, in the node's registry."""
        self.digest = self.c.operator_image("dev")
        self.busybox = self.c.busybox()

    def artifact(self, name, repo, tag="v1", registry=None, **spec):
        body = {"url": f"oci://{registry or self.reg}/{repo}", "insecure": True, "ref": {"tag": tag},
                "interval": "2s"}
        body.update(spec)
        self.c.apply({"apiVersion": "ocisync.dev/v1alpha1", "kind": "Artifact",
                      "metadata": {"name": name, "namespace": TEAM}, "spec": body})

    def synced(self, name, digest, timeout=60):
        def done():
            a = self.c.get("artifact", name, TEAM)
            return a and a.get("status", {}).get("lastSyncedDigest") == digest
        eventually(f"Artifact {name} synced {digest}", timeout, done)

    def leader(self):
        lease = self.c.get("lease", "ocisync-leader", RELEASE_NS)
        return lease and lease["spec"].get("holderIdentity")

    def operator_pods(self, n=1):
        return eventually(f"{n} operator pod(s) Ready", 180,
                          lambda: (lambda p: p if len(p) == n else None)(self.c.ready_pods(RELEASE_NS, SELECTOR)))

    def deployment(self, name, containers, volumes, ns=TEAM, sa=None, init=None, security=None):
        spec = {"containers": containers, "volumes": volumes, "terminationGracePeriodSeconds": 2}
        if sa:
            spec["serviceAccountName"] = sa
        if init:
            spec["initContainers"] = init
        if security:
            spec["securityContext"] = security
        self.c.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                               "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}})
        return eventually(f"Deployment {name} Ready", 180,
                          lambda: (self.c.ready_pods(ns, f"app={name}") or [None])[0])

    # ------------------------------------------------------------------------------
    def test_install_default_values(self):
        """helm install with default values: containerd pulls the image from
        the registry, the kubelet runs it as the chart says, it becomes Ready
        through its probes and takes the Lease under its downward-API name."""
        self.images()
        rel = self.c.install("ocisync", self.values)
        assert rel["status"] == "deployed", rel
        pod = self.operator_pods()[0]
        status = pod["status"]["containerStatuses"][0]
        assert status["imageID"].endswith(self.digest.split("@")[1]), status
        assert self.c.get("pod", pod["metadata"]["name"], RELEASE_NS)["spec"]["containers"][0]["image"] \
            == f"{self.reg}/ocisync:dev"
        eventually("the pod holds the Lease by its name", 60, lambda: self.leader() == pod["metadata"]["name"])
        pid = self.c.container_pid(pod, "operator")
        proc = dict(line.split(":", 1) for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines())
        assert proc["Uid"].split() == ["65532"] * 4, proc["Uid"]
        assert proc["Gid"].split() == ["65532"] * 4, proc["Gid"]
        assert int(proc["CapEff"], 16) == 0 and int(proc["CapBnd"], 16) == 0, (proc["CapEff"], proc["CapBnd"])
        assert proc["NoNewPrivs"].strip() == "1" and proc["Seccomp"].strip() == "2", proc
        root = next(line.split() for line in pathlib.Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
                    if line.split()[4] == "/")
        assert "ro" in root[5].split(","), root
        # A write outside its work dir fails in the pod; in it, it works.
        probe = self.c.push("probe/files", {"a.txt": b"probe\n"}, tag="v1")
        name = pod["metadata"]["name"]
        for out, ok in [("/etc/probe", False), ("/work/probe", True)]:
            r = self.c.kubectl("exec", "-n", RELEASE_NS, name, "-c", "operator", "--", "/usr/local/bin/ocisync",
                               "pull", "--insecure", "--no-progress", f"oci://{self.reg}/probe/files@{probe}",
                               "--out", out, check=False)
            got = self.c.read_in(pod, "operator", f"{out}/a.txt")
            assert (r.returncode == 0) == ok and (got == b"probe\n") == ok, (out, r.returncode, got)
        # Killed, the kubelet restarts it in the same pod, and it is Ready again.
        os.kill(pid, 9)

        def restarted():
            p = self.c.get("pod", name, RELEASE_NS)
            s = p["status"]["containerStatuses"][0]
            return s["restartCount"] == 1 and s["ready"] and p
        pod = eventually("the kubelet restarts the operator", 120, restarted)
        assert self.c.container_pid(pod, "operator") != pid

    def test_the_operator_can_do_what_the_readme_says(self):
        """kubectl auth can-i --list for the installed ServiceAccount."""
        sa = f"system:serviceaccount:{RELEASE_NS}:ocisync"
        self.c.kubectl("create", "namespace", TEAM)
        # (the node suite's release has no credential providers)
        rows = [line for line in (ROOT / "e2e/operator-permissions.txt").read_text().splitlines()
                if line and not line.startswith("#") and not line.startswith("token-attributes: ")]
        for ns, lease in [(RELEASE_NS, True), (TEAM, False)]:
            want = sorted(r.removeprefix("release-namespace: ") for r in rows
                          if lease or not r.startswith("release-namespace: "))
            assert permissions(self.c, sa, ns) == want, (ns, permissions(self.c, sa, ns))

    def test_a_deployment_reads_the_artifacts_configmap(self):
        """An Artifact's ConfigMap mounted by a Deployment: its container
        sees the file (pushes through it are timed in the notifications test
        below, where nothing but the push makes the operator look)."""
        v1 = self.c.push("apps/app-config", {"app.yaml": b"version: 1\n"}, tag="stable")
        self.artifact("app-config", "apps/app-config", tag="stable")
        self.synced("app-config", v1)
        pod = self.deployment("reader", [{"name": "reader", "image": self.busybox,
                                          "command": ["/bin/sh", "-c", "exec sleep 100000"],
                                          "volumeMounts": [{"name": "config", "mountPath": "/config"}]}],
                              [{"name": "config", "configMap": {"name": "app-config"}}])
        assert self.c.read_in(pod, "reader", "/config/app.yaml") == b"version: 1\n"

    def test_the_garbage_collector_removes_a_deleted_artifacts_configmap(self):
        cm = self.c.get("configmap", "app-config", TEAM)
        owner = cm["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Artifact" and owner["name"] == "app-config", owner
        self.c.kubectl("delete", "artifact", "-n", TEAM, "app-config")
        eventually("the ConfigMap is gone", 120, lambda: self.c.get("configmap", "app-config", TEAM) is None)

    def test_agent_sidecar_never_shows_a_torn_tree(self):
        """config/samples/deployment-agent.yaml with a reader for nginx: the
        init container puts the first revision in place, the sidecar the
        next 20 while the reader checks each revision it resolves against
        the revision's own file list."""
        files = lambda n: {"files": b"a.txt b.txt conf/c.txt\n", "a.txt": f"{n}\n".encode(),  # noqa: E731
                           "b.txt": f"{n}\n".encode(), "conf/c.txt": f"{n}\n".encode()}
        first = self.c.push("apps/web-config", files(0), tag="live")
        self.artifact("web-config", "apps/web-config", tag="live", interval="1s")
        self.synced("web-config", first)
        docs = list(yaml.safe_load_all((ROOT / "config/samples/deployment-agent.yaml").read_text()))
        for d in docs[:-1]:
            self.c.apply(d, ns=TEAM)
        dep = docs[-1]
        dep["spec"]["replicas"] = 1
        spec = dep["spec"]["template"]["spec"]
        spec["terminationGracePeriodSeconds"] = 2
        for ctr in spec["initContainers"] + spec["containers"]:
            if "ocisync" in ctr["image"]:
                ctr["image"] = f"{self.reg}/ocisync:dev"
        reader = next(ctr for ctr in spec["containers"] if ctr["name"] == "web")
        reader.update({"image": self.busybox, "command": ["/bin/sh", "-c", READER],
                       "volumeMounts": reader["volumeMounts"] + [{"name": "results", "mountPath": "/results"}]})
        spec["volumes"].append({"name": "results", "emptyDir": {}})
        self.c.apply(dep, ns=TEAM)
        pod = eventually("the web pod Ready", 180, lambda: (self.c.ready_pods(TEAM, "app=web") or [None])[0])
        seen = lambda: (self.c.read_in(pod, "web", "/results/seen") or b"").strip()  # noqa: E731
        eventually("the reader sees revision 0", 60, lambda: seen() == b"0")
        for n in range(1, 21):
            d = self.c.push("apps/web-config", files(n), tag="live")
            self.synced("web-config", d)
            eventually(f"the reader sees revision {n}", 60, lambda: seen() == str(n).encode(), every=0.1)
        torn = self.c.read_in(pod, "web", "/results/torn")
        checks = int(self.c.read_in(pod, "web", "/results/checks") or b"0")
        assert torn is None, torn.decode()
        assert checks > 20, checks

    def test_leader_failover_loses_nothing(self):
        """Two replicas; the leader's pod deleted: the other takes the Lease
        and syncs what is pushed next; every ConfigMap seen on the way is
        whole (its files are those of the digest it names)."""
        self.values["replicas"] = 2
        self.c.upgrade("ocisync", self.values)
        self.operator_pods(2)
        leader = eventually("a leader", 60, self.leader)
        content = {}
        v1 = self.c.push("apps/failover", {"app.yaml": b"failover: 1\n"}, tag="v")
        content[v1] = "failover: 1\n"
        self.artifact("failover", "apps/failover", tag="v", interval="1s")
        self.synced("failover", v1)
        self.c.kubectl("delete", "pod", "-n", RELEASE_NS, leader, "--wait=false")
        # The other replica or the one replacing the deleted pod, whichever
        # asks first once the leader released the Lease on SIGTERM.
        def taken():
            now = self.leader()
            return now and now != leader and now in [p["metadata"]["name"] for p in
                                                     self.c.ready_pods(RELEASE_NS, SELECTOR)]
        eventually("another replica takes the Lease", 90, taken)
        v2 = self.c.push("apps/failover", {"app.yaml": b"failover: 2\n"}, tag="v")
        content[v2] = "failover: 2\n"

        def whole():
            cm = self.c.get("configmap", "failover", TEAM)
            d = cm["metadata"]["annotations"][DIGEST]
            assert cm["data"]["app.yaml"] == content[d], cm
            return d == v2
        eventually("the new leader syncs v2", 60, whole)
        self.operator_pods(2)

    def test_a_push_reaches_running_containers_through_notifications(self):
        """Webhook on, an Artifact with a 1-hour interval on a registry that
        notifies the leader: each push reaches a container through the
        ConfigMap volume (the kubelet's refresh included) and through the
        agent sidecar (the chart's agentRoles giving it its Role)."""
        latencies = self.push_to_containers(pushes=1)
        for path, times in latencies.items():
            print(f"    push -> container via {path}: " + ", ".join(f"{t:.1f} s" for t in times))

    def push_to_containers(self, pushes):
        """Sets the webhook and both consumers up, then times `pushes`
        pushes until both containers see them; {path: [seconds]}."""
        if not self.c.get("secret", "ocisync-webhook", RELEASE_NS):
            self.c.kubectl("create", "secret", "generic", "-n", RELEASE_NS, "ocisync-webhook",
                           f"--from-literal=token={os.urandom(16).hex()}")
        token = base64.b64decode(self.c.get("secret", "ocisync-webhook", RELEASE_NS)["data"]["token"]).decode()
        self.values["webhook"] = {"enabled": True}
        self.values["agentRoles"] = [{"namespace": TEAM, "serviceAccount": "live", "artifacts": ["live"]}]
        self.c.upgrade("ocisync", self.values)
        n = self.values.get("replicas", 1)
        eventually("the webhook's pods alone", 180, lambda: len(self.c.pods(RELEASE_NS, SELECTOR)) == n and
                   len(self.c.ready_pods(RELEASE_NS, SELECTOR)) == n and all(
                       any(p.get("name") == "webhook" for p in pod["spec"]["containers"][0].get("ports", []))
                       for pod in self.c.pods(RELEASE_NS, SELECTOR)))
        leader = eventually("a leader among them", 90, lambda: (lambda name: name in [
            p["metadata"]["name"] for p in self.c.ready_pods(RELEASE_NS, SELECTOR)] and name)(self.leader()))
        ip = self.c.get("pod", leader, RELEASE_NS)["status"]["podIP"]
        # No kube-proxy here: the registry notifies the leader's pod, not the Service.
        host, proc = self.c.notifying_registry(f"http://{ip}:8443/v1/notify", token)
        try:
            content = lambda i: f"n: {i}\n".encode()  # noqa: E731
            v0 = self.c.push("apps/live", {"app.yaml": content(0)}, tag="v1", registry=host)
            self.artifact("live", "apps/live", tag="v1", registry=host, interval="1h")
            self.synced("live", v0)
            self.c.kubectl("create", "serviceaccount", "-n", TEAM, "live")
            cm_pod = self.deployment("live-configmap", [{
                "name": "app", "image": self.busybox, "command": ["/bin/sh", "-c", "exec sleep 100000"],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/live"}]}],
                [{"name": "config", "configMap": {"name": "live"}}])
            agent = {"image": f"{self.reg}/ocisync:{self.values['image']['tag']}",
                     "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
                     "volumeMounts": [{"name": "config", "mountPath": "/etc/live"}]}
            agent_pod = self.deployment("live-agent", [
                {"name": "app", "image": self.busybox, "command": ["/bin/sh", "-c", "exec sleep 100000"],
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/live", "readOnly": True}]},
                dict(agent, name="agent", args=["agent", "--artifact=$(POD_NAMESPACE)/live", "--dir=/etc/live"])],
                [{"name": "config", "emptyDir": {}}], sa="live",
                init=[dict(agent, name="init", args=["agent", "--artifact=$(POD_NAMESPACE)/live", "--dir=/etc/live",
                                                     "--one-time", "--listen=0"])],
                security={"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532})
            for pod in (cm_pod, agent_pod):
                assert self.c.read_in(pod, "app", "/etc/live/app.yaml") == content(0)
            times = {"ConfigMap volume": [], "agent sidecar": []}
            for i in range(1, pushes + 1):
                self.c.push("apps/live", {"app.yaml": content(i)}, tag="v1", registry=host)
                t0 = time.monotonic()
                pending = {"ConfigMap volume": cm_pod, "agent sidecar": agent_pod}
                while pending:
                    assert time.monotonic() - t0 < 180, f"push {i} not seen through {sorted(pending)} in 180 s"
                    for path, pod in list(pending.items()):
                        if self.c.read_in(pod, "app", "/etc/live/app.yaml") == content(i):
                            times[path].append(time.monotonic() - t0)
                            del pending[path]
                    time.sleep(0.05)
            return times
        finally:
            proc.terminate()
            proc.wait()

    def test_volume_mode_on_a_hostpath_persistent_volume(self):
        """volume.enabled with a PersistentVolume on a hostPath: a pod in the
        release namespace reads the Artifact's directory by subPath."""
        pv = self.c.dir / "pv"
        pv.mkdir(exist_ok=True)
        # fsGroup does not reach a hostPath (nor NFS): whoever provides the
        # share makes it writable by the operator's uid, as the install page says.
        os.chown(pv, 65532, 65532)
        self.c.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "ocisync-files"},
                      "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                               "storageClassName": "node-local", "hostPath": {"path": str(pv)}}})
        self.values["volume"] = {"enabled": True, "storageClassName": "node-local", "size": "1Gi"}
        self.c.upgrade("ocisync", self.values)
        self.operator_pods(2)
        v1 = self.c.push("apps/site", {"index.html": b"<p>one</p>\n"}, tag="v")
        self.artifact("site", "apps/site", tag="v", target={"volume": {"path": "site"}})
        self.synced("site", v1, timeout=120)
        pod = self.deployment("site-reader", [{"name": "reader", "image": self.busybox,
                                               "command": ["/bin/sh", "-c", "exec sleep 100000"],
                                               "volumeMounts": [{"name": "files", "mountPath": "/site",
                                                                 "subPath": f"{TEAM}/site", "readOnly": True}]}],
                              [{"name": "files", "persistentVolumeClaim": {"claimName": "ocisync-volume",
                                                                           "readOnly": True}}], ns=RELEASE_NS)
        assert self.c.read_in(pod, "reader", "/site/index.html") == b"<p>one</p>\n"
        v2 = self.c.push("apps/site", {"index.html": b"<p>two</p>\n"}, tag="v")
        self.synced("site", v2)
        eventually("the reader sees two", 30, lambda: self.c.read_in(pod, "reader", "/site/index.html")
                   == b"<p>two</p>\n")

    def test_upgrade_to_a_new_image_then_helm_test(self):
        """helm upgrade to another image and changed values: the pods roll to
        that image; helm test runs the chart's test hook."""
        new = self.c.operator_image("dev2", label="ocisync.dev/build=2")
        self.values["image"]["tag"] = "dev2"
        self.values["logLevel"] = "debug"
        rel = self.c.upgrade("ocisync", self.values)
        assert rel["status"] == "deployed", rel

        def rolled():
            pods = self.c.ready_pods(RELEASE_NS, SELECTOR)
            return len(pods) == 2 and all(p["status"]["containerStatuses"][0]["imageID"].endswith(
                new.split("@")[1]) for p in pods) and pods
        pods = eventually("both pods run the new image", 180, rolled)
        eventually("the old pods are gone", 120, lambda: len(self.c.pods(RELEASE_NS, SELECTOR)) == 2)
        env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
        assert env["OCISYNC_LOG"] == "debug", env
        v3 = self.c.push("apps/failover", {"app.yaml": b"failover: 3\n"}, tag="v")
        self.synced("failover", v3)
        # This cluster has no kube-proxy and no DNS, so the hook asks the
        # leader's pod by its address instead of the metrics Service.
        ip = next(p["status"]["podIP"] for p in pods if p["metadata"]["name"] == self.leader())
        self.values["tests"] = {"image": self.busybox, "url": f"http://{ip}:8080/readyz"}
        self.c.upgrade("ocisync", self.values)
        out = self.c.helm.test("ocisync", timeout=120, logs=True)
        assert out["release"]["status"] == "deployed", out

    def test_uninstall_keeps_crds_and_artifacts(self):
        """helm uninstall: the release's objects go (the claim once no pod
        uses it), the CRDs and the Artifacts stay, as Helm does with crds/."""
        self.c.kubectl("delete", "deployment", "-n", RELEASE_NS, "site-reader")
        self.c.helm.uninstall("ocisync", wait="watcher", timeout=120)
        eventually("the operator's pods are gone", 120, lambda: not self.c.pods(RELEASE_NS, SELECTOR))
        for kind in ["deployment", "serviceaccount", "service", "persistentvolumeclaim"]:
            assert self.c.get(kind, "ocisync" + ("-volume" if kind == "persistentvolumeclaim" else ""),
                              RELEASE_NS) is None, kind
        assert self.c.get("clusterrole", "ocisync") is None
        assert self.c.get("crd", "artifacts.ocisync.dev") is not None
        names = sorted(a["metadata"]["name"] for a in self.c.get("artifacts", ns=TEAM)["items"])
        assert names == ["failover", "live", "site", "web-config"], names


# The web container's loop: resolve ..data once, check that revision's files
# against its own list and each other, record what it saw.
READER = r"""
cd /etc/web
n=0
while :; do
  r=$(readlink ..data) || { sleep 0.05; continue; }
  v=$(cat "$r/a.txt")
  for f in $(cat "$r/files"); do
    test "$(cat "$r/$f" 2>/dev/null)" = "$v" || echo "$r: $f is not $v" >> /results/torn
  done
  test -f "$r/..ocisync.json" || echo "$r: no ..ocisync.json" >> /results/torn
  n=$((n+1)); echo $n > /results/checks.tmp && mv /results/checks.tmp /results/checks
  echo "$v" > /results/seen.tmp && mv /results/seen.tmp /results/seen
  sleep 0.05
done
"""


def permissions(c, user, ns):
    """`kubectl auth can-i --list` as sorted "resource [names] verbs" rows."""
    out = c.kubectl("auth", "can-i", "--list", "--as", user, "-n", ns).stdout
    rows = []
    for line in out.splitlines()[1:]:
        if not line or line.startswith(" "):
            continue
        cols = [col.strip().rstrip("]").strip() for col in line.split("[")]
        if len(cols) < 4:
            continue
        verbs = " ".join(sorted(cols[3].split()))
        rows.append(f"{cols[0]} [{cols[2]}] {verbs}")
    return sorted(r for r in rows if not r.startswith(" ["))


def main():
    keep = os.environ.get("KEEP") == "1"
    path = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ocisync-node.")
    t0 = time.monotonic()
    c = Cluster(path)
    print(f"cluster up in {time.monotonic() - t0:.0f} s ({path})", flush=True)
    suite = Suite(c)
    failed = None
    try:
        for name in [n for n in Suite.__dict__ if n.startswith("test_")]:
            t = time.monotonic()
            try:
                getattr(suite, name)()
            except Exception:  # noqa: BLE001 - reported, then the run stops
                failed = name
                print(f"FAIL {name}\n{traceback.format_exc()}", flush=True)
                for log in sorted((c.dir / "logs").glob("*.log")):
                    errors = [line for line in log.read_text(errors="replace").splitlines(True)
                              if line.startswith("E") or "level=error" in line]
                    print(f"--- errors in {log}, the last 8:\n" + "".join(errors[-8:]))
                break
            print(f"ok   {name} ({time.monotonic() - t:.0f} s)", flush=True)
    finally:
        if not keep:
            c.stop()
            if len(sys.argv) <= 1:
                subprocess.run(["rm", "-rf", path], check=False)
    print(f"node tests: {'FAILED ' + failed if failed else 'all passed'} in {time.monotonic() - t0:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
