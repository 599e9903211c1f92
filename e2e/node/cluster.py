"""The pieces the node tests and the node bench share: a cluster from
e2e/setup/start-cluster.sh, kubectl, Helm v4's engine (helm-python-sdk),
oras and crane against the node's registry, and polling with a deadline.

Everything is read back as API objects (kubectl -o json), files the
containers see (through /proc/PID/root of their processes, found by the
pod's cgroup), or the registry; never as log text."""
import json
import os
import pathlib
import subprocess
import tempfile
import time

import helm_python as helm

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SETUP = ROOT / "e2e/setup"
TOOLS = pathlib.Path(os.environ.get("OCISYNC_TOOLS", "/var/tmp/ocisync/tools")) / "bin"
NODE = pathlib.Path(os.environ.get("OCISYNC_NODE", "/var/tmp/ocisync/node"))
CHART = ROOT / "charts/ocisync"
RELEASE_NS = "ocisync-system"


class Cluster:
    def __init__(self, path, sync_frequency=None):
        self.dir = pathlib.Path(path)
        env = dict(os.environ)
        if sync_frequency:
            env["KUBELET_SYNC_FREQUENCY"] = sync_frequency
        out = subprocess.run([SETUP / "start-cluster.sh", self.dir], env=env, check=True,
                             stdout=subprocess.PIPE, text=True)
        self.kubeconfig = out.stdout.strip()
        self.registry = (self.dir / "registry").read_text().strip()
        self.helm = helm.Config(kubeconfig_path=self.kubeconfig, namespace=RELEASE_NS)

    def stop(self):
        self.helm.close()
        subprocess.run([SETUP / "stop-cluster.sh", self.dir], check=False)

    # --- kubectl -----------------------------------------------------------
    def kubectl(self, *args, input=None, check=True):
        out = subprocess.run([TOOLS / "kubectl", "--kubeconfig", self.kubeconfig, *args], input=input,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {out.stderr.strip()}")
        return out

    def get(self, kind, name=None, ns=None, selector=None):
        args = ["get", kind] + ([name] if name else []) + (["-n", ns] if ns else [])
        args += ["-l", selector] if selector else []
        out = self.kubectl(*args, "-o", "json", check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr:
                return None
            raise AssertionError(out.stderr)
        return json.loads(out.stdout)

    def apply(self, obj, ns=None):
        self.kubectl("apply", *(["-n", ns] if ns else []), "-f", "-", input=json.dumps(obj))

    def pods(self, ns, selector):
        return self.get("pods", ns=ns, selector=selector)["items"]

    def ready_pods(self, ns, selector):
        def ready(p):
            return p["metadata"].get("deletionTimestamp") is None and any(
                c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        return [p for p in self.pods(ns, selector) if ready(p)]

    # --- what a container sees ------------------------------------------------
    def container_pid(self, pod, container):
        """A host pid of a container's process: one whose cgroup is the
        container's (cgroupfs names it after the container id). Every
        process of a container has the same /proc/PID/root."""
        cid = next(s["containerID"] for s in pod["status"]["containerStatuses"] if s["name"] == container)
        cid = cid.split("://", 1)[1]
        pids = []
        for proc in pathlib.Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cg = (proc / "cgroup").read_text()
            except OSError:
                continue
            if any(line.endswith("/" + cid) for line in cg.splitlines()):
                pids.append(int(proc.name))
        if not pids:
            raise AssertionError(f"no process of container {container} ({cid})")
        return min(pids)

    def read_in(self, pod, container, path):
        """A file as the container sees it, through its mount namespace."""
        pid = self.container_pid(pod, container)
        try:
            return (pathlib.Path(f"/proc/{pid}/root") / path.lstrip("/")).read_bytes()
        except FileNotFoundError:
            return None

    # --- registry --------------------------------------------------------------
    def push(self, repo, files, tag="latest", registry=None):
        """oras push of files {name: bytes} to REGISTRY/repo:tag; the digest."""
        ref = f"{registry or self.registry}/{repo}:{tag}"
        with tempfile.TemporaryDirectory() as d:
            for name, data in files.items():
                p = pathlib.Path(d) / name
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(data)
            subprocess.run([TOOLS / "oras", "push", "--plain-http", ref, *sorted(files)], cwd=d, check=True,
                           stdout=subprocess.DEVNULL)
        return crane("digest", "--insecure", ref).strip()

    # --- the cluster's own processes, for faults ---------------------------------
    def daemon(self, name):
        """(pids file, pid) of a process start-cluster.sh or
        start-control-plane.sh started (etcd, kube-apiserver, containerd...)."""
        for pids in (self.dir / "pids", self.dir / "cp/pids"):
            for line in pids.read_text().splitlines():
                n, pid, _ = line.split()
                if n == name:
                    return pids, int(pid)
        raise AssertionError(f"no {name} in the pids files")

    def restart(self, name):
        """Stop a daemon (SIGTERM, then SIGKILL after 10 s) and start it
        again as it was started: same argv, environment and directory,
        output appended to its log; its pids line updated for
        stop-cluster.sh."""
        import signal
        pids, pid = self.daemon(name)
        proc = pathlib.Path(f"/proc/{pid}")
        argv = proc.joinpath("cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        env = dict(kv.split(b"=", 1) for kv in proc.joinpath("environ").read_bytes().split(b"\0") if b"=" in kv)
        cwd = os.readlink(proc / "cwd")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while proc.exists() and proc.joinpath("stat").read_text().split(") ")[1][0] != "Z":
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        logs = {"kube-apiserver": self.dir / "cp/logs/kube-apiserver.log", "etcd": self.dir / "cp/logs/etcd.log"}
        log = open(logs.get(name, self.dir / "logs" / f"{name}.log"), "ab")
        new = subprocess.Popen(argv, env=env, cwd=cwd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                               start_new_session=True)
        log.close()
        start = pathlib.Path(f"/proc/{new.pid}/stat").read_text().split(") ")[1].split()[19]
        lines = [f"{name} {new.pid} {start}" if line.split()[0] == name else line
                 for line in pids.read_text().splitlines()]
        pids.write_text("\n".join(lines) + "\n")
        # not ours to wait for: stop-cluster.sh stops it by its pids line
        new.returncode = 0
        return new.pid

    def registry_process(self, name, host=None, accesslog=False):
        """Another distribution registry on the bridge (its data kept in
        DIR/NAME across restarts): (host:port, its process). `host` again
        restarts one on the same address."""
        import socket
        if host is None:
            with socket.socket() as s:
                s.bind(("10.217.0.1", 0))
                host = f"10.217.0.1:{s.getsockname()[1]}"
        d = self.dir / name
        d.mkdir(exist_ok=True)
        (d / "config.yml").write_text(json.dumps({
            "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": not accesslog}},
            "storage": {"filesystem": {"rootdirectory": str(d / "data")}}, "http": {"addr": host}}))
        log = open(self.dir / "logs" / f"{name}.log", "a")
        proc = subprocess.Popen([TOOLS / "docker-registry", "serve", d / "config.yml"], stdout=log, stderr=log)
        log.close()

        def up():
            assert proc.poll() is None, f"registry {name} exited"
            return subprocess.run(["curl", "-sf", f"http://{host}/v2/"], stdout=subprocess.DEVNULL).returncode == 0
        eventually(f"registry {name} answers", 20, up)
        return host, proc

    def notifying_registry(self, endpoint, token):
        """Another distribution registry on the bridge, one that notifies
        endpoint of every push (distribution's notifications.endpoints);
        (host:port, its process)."""
        import socket
        with socket.socket() as s:
            s.bind(("10.217.0.1", 0))
            host = f"10.217.0.1:{s.getsockname()[1]}"
        d = self.dir / f"notifying-registry-{host.split(':')[1]}"
        d.mkdir()
        (d / "config.yml").write_text(json.dumps({
            "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(d / "data")}}, "http": {"addr": host},
            "notifications": {"endpoints": [{"name": "ocisync", "url": endpoint, "timeout": "2s", "threshold": 10,
                                             "backoff": "1s",
                                             "headers": {"Authorization": [f"Bearer {token}"]}}]}}))
        log = open(self.dir / "logs" / f"{d.name}.log", "w")
        proc = subprocess.Popen([TOOLS / "docker-registry", "serve", d / "config.yml"], stdout=log, stderr=log)
        log.close()

        def up():
            assert proc.poll() is None, "the notifying registry exited"
            return subprocess.run(["curl", "-sf", f"http://{host}/v2/"], stdout=subprocess.DEVNULL).returncode == 0
        eventually("the notifying registry answers", 20, up)
        return host, proc

    def image(self, name, files, entrypoint, user=None):
        """A one-layer image of files {path-in-image: host-path or bytes} in the node's registry."""
        with tempfile.TemporaryDirectory() as d:
            root = pathlib.Path(d) / "root"
            for path, src in files.items():
                dest = root / path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(src, bytes):
                    dest.write_bytes(src)
                elif isinstance(src, str) and src.startswith("->"):
                    dest.symlink_to(src[2:])
                else:
                    dest.write_bytes(pathlib.Path(src).read_bytes())
                    dest.chmod(0o755)
            tar = pathlib.Path(d) / "layer.tar"
            subprocess.run(["tar", "-C", root, "--owner=0", "--group=0", "--sort=name", "--mtime=@0", "-cf",
                            tar, "."], check=True)
            ref = f"{self.registry}/{name}"
            crane("append", "--insecure", "--oci-empty-base", "-f", str(tar), "-t", ref)
            args = ["mutate", "--insecure", ref, "-t", ref, "--set-platform", "linux/amd64",
                    "--entrypoint", ",".join(entrypoint)]
            return crane(*args, *(["--user", user] if user else [])).strip()

    def busybox(self):
        """busybox-static from bookworm as an image: the consumers' shell."""
        files = {"/bin/busybox": str(NODE / "images/busybox")}
        for applet in ["sh", "cat", "sleep", "ls", "readlink", "sha256sum", "echo", "test", "date", "mkdir",
                       "wc", "mv", "wget", "stat"]:
            files[f"/bin/{applet}"] = "->busybox"
        return self.image("busybox:1.35", files, ["/bin/sh"])

    def operator_image(self, tag, label=None):
        """The runtime image (e2e/setup/build-image.sh) as REGISTRY/ocisync:TAG; its digest reference."""
        ref = f"{self.registry}/ocisync:{tag}"
        out = subprocess.run([SETUP / "build-image.sh", ref], check=True, stdout=subprocess.PIPE, text=True)
        if label:
            return crane("mutate", "--insecure", ref, "-t", ref, "-l", label).strip()
        return out.stdout.strip()

    # --- helm ----------------------------------------------------------------------
    def install(self, name, values, **kw):
        return self.helm.install(helm.Chart.load(str(CHART)), name, values, namespace=RELEASE_NS,
                                 create_namespace=True, wait="watcher", timeout=300, **kw)

    def upgrade(self, name, values, **kw):
        return self.helm.upgrade(helm.Chart.load(str(CHART)), name, values, namespace=RELEASE_NS,
                                 wait="watcher", timeout=300, **kw)


def crane(*args):
    out = subprocess.run([TOOLS / "crane", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise AssertionError(f"crane {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def eventually(what, timeout, fn, every=0.2):
    """fn() until it returns something truthy; its value. Fails with what."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            got = fn()
            if got:
                return got
        except AssertionError as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}" + (f" (last: {last})" if last else ""))
        time.sleep(every)
