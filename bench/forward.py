#!/usr/bin/env python3
"""Benchmark `manning forward` against socat, one run on this machine.

Measures, with the references taken in the same run:
  1. bulk bytes (a raw TCP source -> forwarder -> sink, >= 1 GiB per run, median of 3):
     direct, socat and manning forward, TCP->TCP and the seed's TCP->UNIX form
     (`-dd TCP-L:P,fork,bind=localhost UNIX:/path`); manning also with --no-splice;
  2. connection rate (connect + 1-byte echo + close, sequential) through the same paths;
  3. resident memory of `manning forward` idle and with 500 idle clients (socat: the sum
     of its processes, one per client, as PSS so shared pages are not counted 500 times).

Prints a table with ratios and the issue's targets (bulk >= 2 x socat, <= 30 MB with 500
idle clients). Needs socat and a release build (`cargo build --release`). Python 3 stdlib
only; the sink and echo servers are this same file started with --role.

The machine is shared and small, so numbers are noisy: compare within one run only.
"""

import argparse
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHUNK = 1 << 20


# --------------------------------------------------------------------------------------
# Addresses: ("tcp", port) or ("unix", path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(addr, timeout=None):
    if addr[0] == "tcp":
        s = socket.create_connection(("127.0.0.1", addr[1]), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr[1])
    return s


def listen(addr):
    if addr[0] == "tcp":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", addr[1]))
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(addr[1])
    s.listen(4096)
    return s


def wait_listening(addr, proc=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            sys.exit(f"bench: process for {addr} exited early with {proc.returncode}")
        try:
            connect(addr, timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"bench: nothing listens on {addr} after {timeout}s")


def parse_addr(s):
    kind, rest = s.split(":", 1)
    return (kind, int(rest)) if kind == "tcp" else (kind, rest)


def fmt_addr(addr):
    return f"{addr[0]}:{addr[1]}"


# --------------------------------------------------------------------------------------
# Server roles (run as subprocesses of this script)


def role_sink(addr):
    """Read each connection to EOF, answer with the byte count (8 bytes), close."""
    srv = listen(addr)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        c, _ = srv.accept()
        total = 0
        try:
            while True:
                n = c.recv_into(view)
                if n == 0:
                    break
                total += n
            c.sendall(total.to_bytes(8, "little"))
        except OSError:
            pass  # a readiness probe that hung up
        c.close()


def role_echo(addr):
    """Echo every connection until EOF, many at once (one thread, non-blocking)."""
    srv = listen(addr)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                while True:
                    try:
                        c, _ = srv.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, "conn")
            else:
                c = key.fileobj
                try:
                    data = c.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    try:
                        c.sendall(data)
                    except OSError:
                        pass
                else:
                    sel.unregister(c)
                    c.close()


# --------------------------------------------------------------------------------------
# Process handling: everything we start runs in its own session and is ended by group.


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, argv, name):
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        p.name = name
        self.procs.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        else:
            # socat children may outlive a dead parent for a moment.
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p)


def server(procs, role, addr):
    p = procs.start([sys.executable, os.path.abspath(__file__), "--role", role, fmt_addr(addr)], role)
    wait_listening(addr, p)
    return p


# --------------------------------------------------------------------------------------
# Measurements


def bulk_once(addr, nbytes, payload):
    view = memoryview(payload)
    t0 = time.perf_counter()
    s = connect(addr)
    sent = 0
    while sent < nbytes:
        n = min(len(view), nbytes - sent)
        s.sendall(view[:n])
        sent += n
    s.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < 8:
        part = s.recv(8 - len(got))
        if not part:
            break
        got += part
    dt = time.perf_counter() - t0
    s.close()
    if len(got) != 8 or int.from_bytes(got, "little") != nbytes:
        sys.exit(f"bench: bulk through {addr} lost bytes: sink counted {got!r}")
    return nbytes / dt / 1e9


def conn_rate(addr, n):
    for _ in range(50):  # warm-up
        one_echo(addr)
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        one_echo(addr)
        lat.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return n / total, statistics.median(lat) * 1e6


def one_echo(addr):
    s = connect(addr, timeout=10)
    s.sendall(b"x")
    if s.recv(1) != b"x":
        sys.exit(f"bench: echo through {addr} failed")
    s.close()


def cpu_seconds(pid):
    """User + system CPU of `pid` and of its reaped children (socat's per-connection forks)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")": state is field 0, so utime/stime/cutime/cstime are 11..14.
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def proc_group_pids(pgid):
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: pgrp
                pids.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return pids


def status_kb(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mb(p):
    """(RSS of the main process, PSS summed over its process group) in MB."""
    pids = proc_group_pids(p.pid) or [p.pid]
    return status_kb(p.pid, "VmRSS") / 1024, sum(pss_kb(x) for x in pids) / 1024, len(pids)


def hold_idle_clients(addr, n):
    clients = []
    for _ in range(n):
        s = connect(addr, timeout=10)
        s.sendall(b"x")
        if s.recv(1) != b"x":
            sys.exit("bench: idle client echo failed")
        clients.append(s)
    return clients


# --------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", nargs=2, metavar=("ROLE", "ADDR"), help=argparse.SUPPRESS)
    ap.add_argument("--manning", default=os.path.join(ROOT, "target", "release", "manning"))
    ap.add_argument("--gib", type=float, default=2.0, help="GiB per bulk run (default 2)")
    ap.add_argument("--reps", type=int, default=3, help="bulk runs per path (median)")
    ap.add_argument("--conns", type=int, default=2000, help="connections per rate run")
    ap.add_argument("--idle", type=int, default=500, help="idle clients for the memory run")
    args = ap.parse_args()

    if args.role:
        role, addr = args.role
        {"sink": role_sink, "echo": role_echo}[role](parse_addr(addr))
        return

    socat = shutil.which("socat")
    if not socat:
        sys.exit("bench: socat is not installed (make deps)")
    if not os.access(args.manning, os.X_OK):
        sys.exit(f"bench: {args.manning} not found; run `cargo build --release` first")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tmp = tempfile.mkdtemp(prefix="manning-bench-")
    procs = Procs()
    nbytes = int(args.gib * (1 << 30))
    payload = os.urandom(CHUNK)

    def forwarder(kind, target, extra=()):
        """Start socat or manning in the seed's form toward `target`; return (proc, addr)."""
        port = free_port()
        if target[0] == "unix":
            # The seed's exact form.
            spec = ["-dd", f"TCP-L:{port},fork,bind=localhost", f"UNIX:{target[1]}"]
        else:
            spec = [f"TCP-L:{port},fork,reuseaddr,bind=127.0.0.1", f"TCP:127.0.0.1:{target[1]}"]
        argv = [socat] + spec if kind == "socat" else [args.manning, "forward", *extra] + spec
        p = procs.start(argv, kind)
        addr = ("tcp", port)
        wait_listening(addr, p)
        return p, addr

    results = {}
    try:
        # ---------------- bulk
        sink_tcp = ("tcp", free_port())
        sink_unix = ("unix", os.path.join(tmp, "sink.sock"))
        server(procs, "sink", sink_tcp)
        server(procs, "sink", sink_unix)
        bulk_paths = [
            ("direct TCP", None, sink_tcp, ()),
            ("direct UNIX", None, sink_unix, ()),
            ("socat TCP->TCP", "socat", sink_tcp, ()),
            ("manning TCP->TCP", "manning", sink_tcp, ()),
            ("socat TCP->UNIX (seed)", "socat", sink_unix, ()),
            ("manning TCP->UNIX (seed)", "manning", sink_unix, ()),
            ("manning TCP->UNIX --no-splice", "manning", sink_unix, ("--no-splice",)),
        ]
        print(f"bulk: {args.gib:g} GiB per run, median of {args.reps} ...", file=sys.stderr)
        for name, kind, target, extra in bulk_paths:
            if kind is None:
                p, addr = None, target
            else:
                p, addr = forwarder(kind, target, extra)
            cpu0 = cpu_seconds(p.pid) if p else 0.0
            runs = [bulk_once(addr, nbytes, payload) for _ in range(args.reps)]
            time.sleep(0.3)  # let socat reap its children so their CPU time is counted
            cpu = (cpu_seconds(p.pid) - cpu0) / (args.reps * args.gib) if p else None
            results[("bulk", name)] = statistics.median(runs)
            results[("cpu", name)] = cpu
            cpu_txt = f"  forwarder CPU {cpu:.2f} s/GiB" if cpu is not None else ""
            print(f"  {name:32} {results[('bulk', name)]:.2f} GB/s  runs {['%.2f' % r for r in runs]}{cpu_txt}", file=sys.stderr)
            if p:
                procs.stop(p)

        # ---------------- connection rate
        echo_tcp = ("tcp", free_port())
        echo_unix = ("unix", os.path.join(tmp, "echo.sock"))
        server(procs, "echo", echo_tcp)
        server(procs, "echo", echo_unix)
        rate_paths = [
            ("direct TCP", None, echo_tcp),
            ("socat TCP->TCP", "socat", echo_tcp),
            ("manning TCP->TCP", "manning", echo_tcp),
            ("socat TCP->UNIX (seed)", "socat", echo_unix),
            ("manning TCP->UNIX (seed)", "manning", echo_unix),
        ]
        print(f"connection rate: {args.conns} sequential connect+echo+close ...", file=sys.stderr)
        for name, kind, target in rate_paths:
            if kind is None:
                p, addr = None, target
            else:
                p, addr = forwarder(kind, target)
            results[("rate", name)] = conn_rate(addr, args.conns)
            r, p50 = results[("rate", name)]
            print(f"  {name:32} {r:8.0f} conn/s  p50 {p50:.0f} us", file=sys.stderr)
            if p:
                procs.stop(p)
                time.sleep(0.5)  # let socat's children finish

        # ---------------- memory
        print(f"memory: idle and with {args.idle} idle clients ...", file=sys.stderr)
        for kind in ("manning", "socat"):
            p, addr = forwarder(kind, echo_unix)
            time.sleep(0.3)
            idle = memory_mb(p)
            clients = hold_idle_clients(addr, args.idle)
            time.sleep(0.5)
            loaded = memory_mb(p)
            results[("mem", kind)] = (idle, loaded)
            for c in clients:
                c.close()
            procs.stop(p)
            time.sleep(0.5)
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    report(results, args)


def report(r, args):
    def bulk(name):
        return r[("bulk", name)]

    print()
    print(f"## manning forward vs socat  ({os.cpu_count()} CPUs, {args.gib:g} GiB per bulk run, median of {args.reps})")
    print()
    print("| bulk bytes | GB/s | vs socat (same form) | vs direct TCP | forwarder CPU s/GiB | CPU vs socat |")
    print("|---|---:|---:|---:|---:|---:|")
    ref = {
        "socat TCP->TCP": "socat TCP->TCP",
        "manning TCP->TCP": "socat TCP->TCP",
        "socat TCP->UNIX (seed)": "socat TCP->UNIX (seed)",
        "manning TCP->UNIX (seed)": "socat TCP->UNIX (seed)",
        "manning TCP->UNIX --no-splice": "socat TCP->UNIX (seed)",
    }
    for name in ["direct TCP", "direct UNIX", "socat TCP->TCP", "manning TCP->TCP",
                 "socat TCP->UNIX (seed)", "manning TCP->UNIX (seed)", "manning TCP->UNIX --no-splice"]:
        vs = f"{bulk(name) / bulk(ref[name]):.2f}x" if name in ref else "-"
        cpu = r[("cpu", name)]
        cpu_txt = f"{cpu:.2f}" if cpu is not None else "-"
        cpu_vs = f"{r[('cpu', ref[name])] / cpu:.2f}x less" if name in ref and cpu else "-"
        print(f"| {name} | {bulk(name):.2f} | {vs} | {bulk(name) / bulk('direct TCP'):.2f} | {cpu_txt} | {cpu_vs} |")
    print()
    print(f"| connection rate ({args.conns} x connect + 1-byte echo + close) | conn/s | p50 µs | vs socat (same form) |")
    print("|---|---:|---:|---:|")
    rref = {"manning TCP->TCP": "socat TCP->TCP", "manning TCP->UNIX (seed)": "socat TCP->UNIX (seed)",
            "socat TCP->TCP": "socat TCP->TCP", "socat TCP->UNIX (seed)": "socat TCP->UNIX (seed)"}
    for name in ["direct TCP", "socat TCP->TCP", "manning TCP->TCP", "socat TCP->UNIX (seed)", "manning TCP->UNIX (seed)"]:
        rate, p50 = r[("rate", name)]
        vs = f"{rate / r[('rate', rref[name])][0]:.2f}x" if name in rref else "-"
        print(f"| {name} | {rate:.0f} | {p50:.0f} | {vs} |")
    print()
    print(f"| resident memory (seed form, TCP->UNIX) | idle MB | {args.idle} idle clients MB | processes |")
    print("|---|---:|---:|---:|")
    (mi, ml) = r[("mem", "manning")]
    (si, sl) = r[("mem", "socat")]
    print(f"| manning forward (VmRSS) | {mi[0]:.1f} | {ml[0]:.1f} | {ml[2]} |")
    print(f"| socat (PSS summed over its processes) | {si[1]:.1f} | {sl[1]:.1f} | {sl[2]} |")
    print()
    seed_ratio = bulk("manning TCP->UNIX (seed)") / bulk("socat TCP->UNIX (seed)")
    tcp_ratio = bulk("manning TCP->TCP") / bulk("socat TCP->TCP")
    ok = lambda b: "met" if b else "NOT met"
    print("(the client, the sink and the forwarder share the CPUs, so GB/s is bounded by the whole")
    print(" machine; the forwarder's CPU per GiB shows its own cost)")
    print()
    print("targets:")
    print(f"  bulk >= 2 x socat: seed form {seed_ratio:.2f}x, TCP->TCP {tcp_ratio:.2f}x  "
          f"-> {ok(seed_ratio >= 2 and tcp_ratio >= 2)}")
    print(f"  <= 30 MB resident with {args.idle} idle clients: {ml[0]:.1f} MB -> {ok(ml[0] <= 30)}")


if __name__ == "__main__":
    main()
