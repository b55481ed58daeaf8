#!/usr/bin/env python3
"""Instructions the evhost binary executes per message, counted by callgrind.

On a shared VM the rates and even the CPU time per message move by 20-30 %
between runs, far more than most changes to the hot path. An instruction
count moves by a few per message (the number of /metrics scrapes): use this to compare two builds of the host (an A/B of a
change), then confirm with the `overhead` benchmark.

    host/benches/instructions.py target/release/evhost [OTHER_BUILD ...]
        [--plugin noop] [--messages 20000] [--wasm-dir target/bench-wasm/wasm32-wasip2/release]

For each binary it runs the host twice under `valgrind --tool=callgrind`
(with a nats-server of its own on a free port), once handling 2 000 messages
(128 bytes for noop, the benchmark's one-item order for payment) and once
2 000 + N, and prints (Ir(second) - Ir(first)) / N:
start-up and shutdown cancel out. Messages are published in bursts of 200
with at most 4 000 outstanding (read from the host's /metrics, every 0.5 s), so core NATS
never drops one. The plugins come from the `overhead` benchmark's build
(`cargo bench -p evhost --bench overhead` builds them). Needs valgrind and
nats-server on PATH.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

FIRST = 2000
BURST = 200
OUTSTANDING = 4000
SUBJECTS = {"noop": "bench.noop", "payment": "orders.order.created"}
# The payment plugin's input: the benchmark's order, with one item.
ORDER = (
    b'{"event_id":"7b0c7a64-0f5e-4c59-a3c3-1f1e8a3a9d10","order_id":"o-1",'
    b'"customer_id":"c-1","total_cents":100,"created_at":"2026-11-22T10:00:00Z",'
    b'"items":[{"product_id":"p-0000","quantity":1,"price_cents":100}]}'
)


def free_ports(n):
    """n distinct free ports (all held open until each is known)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_get(url):
    """The body at `url`, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.read()
    except OSError:
        return None


def handled(addr):
    """Messages the host has handled (outcome ok), from its /metrics."""
    body = http_get(f"http://{addr[0]}:{addr[1]}/metrics") or b""
    return sum(
        int(line.rsplit(" ", 1)[1])
        for line in body.decode().splitlines()
        if line.startswith("evhost_messages_total{") and 'outcome="ok"' in line
    )


def subscriptions(monitor_port, subject):
    """How many client subscriptions nats-server holds on `subject`."""
    body = http_get(f"http://127.0.0.1:{monitor_port}/connz?subs=1")
    try:
        connz = json.loads(body) if body else {}
    except ValueError:
        return 0
    return sum(c.get("subscriptions_list", []).count(subject)
               for c in connz.get("connections") or [])


def wait_until(check, what, timeout=300, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(every)
    sys.exit(f"timed out waiting for {what}")


def count(binary, plugin, wasm_dir, messages):
    """Total instructions of one host run that handles `messages` messages."""
    port, metrics_port, monitor_port = free_ports(3)
    metrics = ("127.0.0.1", metrics_port)
    server = subprocess.Popen(
        ["nats-server", "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port)],
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: _listening(("127.0.0.1", port)), "nats-server to start")
    plugins = tempfile.mkdtemp()
    out = os.path.join(plugins, "callgrind.out")
    try:
        shutil.copy(os.path.join(wasm_dir, f"{plugin}.wasm"), plugins)
        with open(os.path.join(plugins, f"{plugin}.toml"), "w") as f:
            f.write("[limits]\nconcurrency = 256\n")
        env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
        env["EVHOST_LOG"] = "warn"
        args = [binary, "run", "--nats", f"nats://127.0.0.1:{port}", "--plugins", plugins,
                "--metrics", f"{metrics[0]}:{metrics[1]}"]
        # Compile once natively, into the compiled-code cache: Cranelift
        # under valgrind would take minutes.
        warm = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(lambda: _listening(metrics) or warm.poll() is not None, "the host to start")
        if warm.poll() is not None:
            sys.exit(f"{binary} exited: {warm.stderr.read().decode()}")
        time.sleep(4)  # loading (and caching) the plugin may finish after that
        warm.send_signal(signal.SIGTERM)
        warm.wait()
        host = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + args,
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        # One subscription per lane, a lane per CPU the process may run on
        # (as the host counts them): core NATS drops what is published
        # before them.
        lanes = len(os.sched_getaffinity(0))
        wait_until(lambda: subscriptions(monitor_port, SUBJECTS[plugin]) >= lanes,
                   f"the host under valgrind to subscribe {lanes} lanes")
        payload = ORDER if plugin == "payment" else b"x" * 128
        pub = b"PUB %s %d\r\n%s\r\n" % (SUBJECTS[plugin].encode(), len(payload), payload)
        with socket.create_connection(("127.0.0.1", port)) as nats:
            nats.recv(4096)  # INFO
            nats.sendall(b'CONNECT {"verbose":false}\r\n')
            sent = 0
            while sent < messages:
                burst = min(BURST, messages - sent)
                nats.sendall(pub * burst)
                sent += burst
                # Each look is a /metrics scrape, which the host's count
                # includes: look seldom, so that scrapes stay a small part
                # of what is measured (about 25 a second cost ~100
                # instructions per message with prometheus-client's encoder).
                while sent - handled(metrics) > OUTSTANDING:
                    time.sleep(0.5)
            wait_until(lambda: handled(metrics) >= messages, "every message to be handled",
                       every=0.5)
        done = handled(metrics)
        host.send_signal(signal.SIGTERM)
        host.wait()
        with open(out) as f:
            total = next(int(l.split()[1]) for l in f if l.startswith(("summary:", "totals:")))
        return total, done
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(plugins, ignore_errors=True)


def _listening(addr):
    try:
        socket.create_connection(addr, timeout=1).close()
        return True
    except OSError:
        return False


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("binaries", nargs="+")
    p.add_argument("--plugin", default="noop", choices=sorted(SUBJECTS))
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--wasm-dir", default="target/bench-wasm/wasm32-wasip2/release")
    a = p.parse_args()
    for tool in ("valgrind", "nats-server"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not on PATH")
    for binary in a.binaries:
        base, base_done = count(binary, a.plugin, a.wasm_dir, FIRST)
        more, more_done = count(binary, a.plugin, a.wasm_dir, FIRST + a.messages)
        per = (more - base) / (more_done - base_done)
        print(f"{binary} {a.plugin}: {per:.0f} instructions/msg "
              f"({base} Ir for {base_done} msgs, {more} Ir for {more_done})")


if __name__ == "__main__":
    main()
