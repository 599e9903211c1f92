#!/usr/bin/env python3
"""The few `helm` commands the demo and the docs use, through Helm v4's own
engine (PyPI's helm-python-sdk), for machines without the helm binary:

  helm.py install NAME CHART [-n NS] [--create-namespace] [--set K=V]... [--wait]
  helm.py upgrade NAME CHART [-n NS] [--set K=V]... [--wait]
  helm.py test NAME [-n NS]
  helm.py uninstall NAME [-n NS] [--wait]

KUBECONFIG names the cluster. `--set` takes Helm's own syntax (a.b=c,d=e)."""
import argparse
import json
import sys

import helm_python as helm


def main():
    p = argparse.ArgumentParser(prog="helm.py")
    p.add_argument("verb", choices=["install", "upgrade", "test", "uninstall"])
    p.add_argument("name")
    p.add_argument("chart", nargs="?")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--create-namespace", action="store_true")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--wait", action="store_true")
    p.add_argument("--timeout", type=int, default=300)
    a = p.parse_args()
    values = {}
    for expr in a.set:
        merge(values, helm.parse_set_string(expr))
    wait = "watcher" if a.wait else None
    with helm.Config(namespace=a.namespace) as cfg:
        if a.verb == "install":
            out = cfg.install(helm.Chart.load(a.chart), a.name, values, namespace=a.namespace,
                              create_namespace=a.create_namespace, wait=wait, timeout=a.timeout)
            print(f"release {out['name']} {out['status']}, revision {out['revision']}")
        elif a.verb == "upgrade":
            out = cfg.upgrade(helm.Chart.load(a.chart), a.name, values, namespace=a.namespace, wait=wait,
                              timeout=a.timeout)
            print(f"release {out['name']} {out['status']}, revision {out['revision']}")
        elif a.verb == "test":
            out = cfg.test(a.name, timeout=a.timeout, logs=True)
            print(out.get("logs", "").strip() or json.dumps(out["release"]["status"]))
        else:
            out = cfg.uninstall(a.name, wait=wait, timeout=a.timeout)
            print(f"release {a.name} uninstalled")


def merge(into, new):
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = v


if __name__ == "__main__":
    sys.exit(main())
