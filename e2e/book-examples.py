#!/usr/bin/env python3
"""Runs the book's runnable examples: every ```console,run block of
docs/src, page by page, each page in a fresh directory, against a real
distribution registry on loopback (the examples say localhost:5000; it is
put where the registry listens). A block is `$ command` lines, each
followed by what it must print on stdout: line for line, where `…` in a
line stands for any text (digests, sizes, times); stderr (progress,
summaries) is not compared. A command that fails, or
prints other lines, fails the run with the page, the command and both
outputs.

Usage: book-examples.py [DOCS_SRC]   (default docs/src)
Env: OCISYNC_BIN (the ocisync binary), OCISYNC_TOOLS (docker-registry, oras)."""
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOLS = pathlib.Path(os.environ.get("OCISYNC_TOOLS", "/var/tmp/ocisync/tools")) / "bin"
BIN = pathlib.Path(os.environ.get("OCISYNC_BIN",
                                  pathlib.Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/ocisync-target"))
                                  / "debug/ocisync"))


def blocks(page):
    """[(line number, [(command, [expected lines])])] of a page's runnable blocks."""
    out = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```console,run"):
            start, steps = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                if lines[i].startswith("$ "):
                    steps.append((lines[i][2:], []))
                elif steps:
                    steps[-1][1].append(lines[i])
                i += 1
            out.append((start, steps))
        i += 1
    return out


def matches(expected, got):
    if len(expected) != len(got):
        return False
    for e, g in zip(expected, got):
        pattern = "".join(".*" if part == "…" else re.escape(part) for part in re.split("(…)", e))
        if not re.fullmatch(pattern, g):
            return False
    return True


def registry(workdir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    config = workdir / "registry.yml"
    config.write_text(f"version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\n"
                      f"storage: {{filesystem: {{rootdirectory: {workdir}/registry}}}}\nhttp: {{addr: {host}}}\n")
    proc = subprocess.Popen([TOOLS / "docker-registry", "serve", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["curl", "-sf", f"http://{host}/v2/"], stdout=subprocess.DEVNULL).returncode == 0:
            return host, proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the registry did not start")


def main():
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs/src")
    work = pathlib.Path(tempfile.mkdtemp(prefix="ocisync-book."))
    host, proc = registry(work)
    bindir = work / "bin"
    bindir.mkdir()
    (bindir / "ocisync").symlink_to(BIN)
    env = dict(os.environ, PATH=f"{bindir}:{TOOLS}:{os.environ['PATH']}", HOME=str(work / "home"))
    failed, ran = [], 0
    try:
        for page in sorted(src.rglob("*.md")):
            found = blocks(page)
            if not found:
                continue
            cwd = work / page.relative_to(src).with_suffix("")
            cwd.mkdir(parents=True)
            for start, steps in found:
                for command, expected in steps:
                    ran += 1
                    run = command.replace("localhost:5000", host)
                    out = subprocess.run(["bash", "-c", run], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, timeout=120)
                    got = [line.replace(host, "localhost:5000") for line in out.stdout.splitlines()]
                    if out.returncode != 0 or not matches(expected, got):
                        failed.append(f"{page.relative_to(src)}:{start}: $ {command}\n  exit {out.returncode}\n"
                                      f"  expected:\n    " + "\n    ".join(expected) +
                                      "\n  got:\n    " + "\n    ".join(got) +
                                      "\n  stderr:\n    " + "\n    ".join(out.stderr.splitlines()))
                        break
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    for f in failed:
        print(f)
    print(f"book examples: {ran} commands run, {len(failed)} failed")
    sys.exit(1 if failed or ran == 0 else 0)


if __name__ == "__main__":
    main()
