#!/usr/bin/env python3
"""Benchmark of the proxy path, one run on this machine, every reference measured in the same run.

A real PostgreSQL 15 (initdb as the `postgres` user, trust auth, on loopback) is the backend.
A tiny HTTP responder stands in for the members' REST APIs: 200 for the primary, 503 for the
two replicas, so the checks behave as with Patroni. HAProxy and `manning proxy` read the
seed's haproxy.cfg, with only addresses and ports changed.

Rows (pgbench -S -c 8 TPS, and -C: a new connection per transaction):
  (a) direct                 pgbench -> postgres
  (b) haproxy                pgbench -> HAProxy (seed settings) -> postgres
  (c) manning proxy          pgbench -> manning proxy (same file) -> postgres
  (d) socat + haproxy        pgbench -> socat TCP-L -> UNIX socket -> HAProxy (the seed's path)
  (e) manning forward+proxy  pgbench -> manning forward -> UNIX socket -> manning proxy; the
      forwarder hands each client over to the proxy (net::handoff), so bytes take one hop
  (f) the same with `manning forward --no-handoff`: the forwarder copies every byte
      ((e) and (f) are skipped, with a note, when this build has no `manning forward`)
Then the resident memory of `manning proxy` (and HAProxy, for reference) idle and with 500
idle PostgreSQL sessions through it.

Targets: manning proxy >= 1.1 x HAProxy TPS; forward+proxy >= 1.3 x socat+HAProxy;
<= 30 MB RSS with 500 idle clients.

Each path runs --rounds times per mode, interleaved with the others, and the median is
reported, because this machine is shared and its load drifts; a ratio is the median of the
per-round ratios (two runs seconds apart share the load); the proxies' CPU time per
transaction is reported next to it (it does not depend on that load).

Usage: bench/proxy.py [--seconds N] [--rounds N] [--no-build] [--paths abc...] [--modes tps,conn]
                      [--no-memory] [--proxy-arg ARG ...]   (run as root: postgres runs as `postgres`)
--paths picks rows by letter (the direct row (a) always runs: the ratios need it); --proxy-arg
passes an extra argument to `manning proxy` (e.g. --proxy-arg=--threads=1), for experiments.
"""

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

PG_BIN = "/usr/lib/postgresql/15/bin"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANNING = os.path.join(ROOT, "target", "release", "manning")

SEED_CFG = """global
    maxconn 384

defaults
    log global
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s

listen stats
    mode http
    bind *:{stats_port}
    stats enable
    stats uri /

listen manning
    bind {sock}
    bind *:{port}
    option httpchk
    http-check expect status 200
    default-server inter 2500ms fall 4 rise 2 on-marked-down shutdown-sessions
    server manager 127.0.0.1:{pg_port} maxconn {server_maxconn} check port {ok_port}
    server worker-01 127.0.0.1:{pg_port} maxconn {server_maxconn} check port {bad_port}
    server worker-02 127.0.0.1:{pg_port} maxconn {server_maxconn} check port {bad_port}
"""

children = []


def die(msg):
    print(f"bench/proxy.py: {msg}", file=sys.stderr)
    sys.exit(1)


def need(path_or_name):
    p = path_or_name if os.path.isabs(path_or_name) else shutil.which(path_or_name)
    if not p or not os.path.exists(p):
        die(f"{path_or_name} is not installed (run `make deps`)")
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    die(f"{what} did not listen on port {port}")


def spawn(args, log, **kw):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, **kw)
    children.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if sig == signal.SIGINT:
                p.send_signal(signal.SIGQUIT)  # postgres' immediate mode, never SIGKILL
            else:
                p.kill()
            p.wait()


def as_postgres():
    pw = pwd.getpwnam("postgres")

    def demote():
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    return demote


def responder(port, code):
    """A member's REST API as HAProxy sees Patroni's: a bare status line, then close."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    reason = "OK" if code == 200 else "Service Unavailable"

    def serve():
        while True:
            c, _ = s.accept()
            try:
                c.settimeout(2)
                c.recv(1024)
                c.sendall(f"HTTP/1.0 {code} {reason}\r\n\r\n".encode())
            except OSError:
                pass
            finally:
                c.close()

    threading.Thread(target=serve, daemon=True).start()


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def cpu_seconds(pid):
    """User + system CPU of a process and its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def pgbench(port, seconds, connect_each, clients=8):
    args = [need("pgbench"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n", "-S",
            "-c", str(clients), "-j", "2", "-T", str(seconds)]
    if connect_each:
        args.append("-C")
    out = subprocess.run(args + ["postgres"], capture_output=True, text=True)
    m = re.search(r"tps = ([\d.]+)", out.stdout)
    tx = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
    if out.returncode != 0 or not m or not tx:
        return None, 0, (out.stderr or out.stdout).strip().splitlines()[-1:]
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    if failed and int(failed.group(1)) > 0:
        return None, 0, [f"{failed.group(1)} failed transactions"]
    return float(m.group(1)), int(tx.group(1)), None


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def pg_session(port):
    """Open a PostgreSQL session (trust auth) and leave it idle."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    params = b"user\0postgres\0database\0postgres\0\0"
    body = struct.pack("!I", 196608) + params
    s.sendall(struct.pack("!I", len(body) + 4) + body)
    buf = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed during startup")
        buf += chunk
        while len(buf) >= 5:
            kind = buf[0:1]
            length = struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + length:
                break
            if kind == b"E":
                raise OSError("error from the server during startup")
            if kind == b"Z":
                return s
            buf = buf[1 + length:]


def wait_for_up(stats_port, what, timeout=15.0):
    """Wait for the steady state on a stats page (HAProxy's or manning's): the primary UP and
    both replicas DOWN. HAProxy starts every server UP and cuts the replicas' sessions when
    their first checks fail, which would abort a pgbench run started before that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = socket.create_connection(("127.0.0.1", stats_port), timeout=1)
            c.sendall(b"GET /;csv HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                data += d
            c.close()
            status = {}
            for line in data.decode(errors="replace").splitlines():
                cells = line.split(",")
                if len(cells) > 17:
                    status[cells[1]] = cells[17]
            if status.get("manager") == "UP" and status.get("worker-01") == "DOWN" \
                    and status.get("worker-02") == "DOWN":
                return
        except OSError:
            pass
        time.sleep(0.1)
    die(f"{what}: the primary never came UP (or the replicas never went DOWN)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=6, help="pgbench duration per run (default 6)")
    ap.add_argument("--rounds", type=int, default=5, help="runs per path and mode, interleaved (default 5)")
    ap.add_argument("--no-build", action="store_true", help="use target/release/manning as it is")
    ap.add_argument("--paths", default="abcdef", help="rows to run, by letter (default abcdef)")
    ap.add_argument("--modes", default="tps,conn", help="tps (pgbench -S), conn (pgbench -S -C) or both")
    ap.add_argument("--no-memory", action="store_true", help="skip the resident memory measurement")
    ap.add_argument("--proxy-arg", action="append", default=[], help="extra argument for manning proxy")
    args = ap.parse_args()
    modes = [m for m, name in ((False, "tps"), (True, "conn")) if name in args.modes.split(",")]
    if not modes:
        die("--modes: say tps, conn or tps,conn")
    if os.geteuid() != 0:
        die("run as root (PostgreSQL runs as the `postgres` user)")
    for tool in ["pgbench", "socat", "/usr/sbin/haproxy", f"{PG_BIN}/initdb", f"{PG_BIN}/postgres"]:
        need(tool)
    if not args.no_build:
        print("building: cargo build --release", flush=True)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    need(MANNING)
    has_forward = subprocess.run([MANNING, "forward", "--help"], capture_output=True).returncode == 0

    work = tempfile.mkdtemp(prefix="manning-bench-")
    os.chmod(work, 0o755)
    pw = pwd.getpwnam("postgres")
    pgdir = os.path.join(work, "pg")
    os.mkdir(pgdir)
    os.chown(pgdir, pw.pw_uid, pw.pw_gid)
    log = open(os.path.join(work, "bench.log"), "w")
    postgres = None
    try:
        pg_port = free_port()
        subprocess.run([f"{PG_BIN}/initdb", "-D", f"{pgdir}/data", "-U", "postgres", "--auth=trust",
                        "--no-sync", "-E", "UTF8"], preexec_fn=as_postgres(), check=True,
                       stdout=subprocess.DEVNULL, stderr=log)
        postgres = spawn([f"{PG_BIN}/postgres", "-D", f"{pgdir}/data", "-c", f"port={pg_port}",
               "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={pgdir}",
               "-c", "fsync=off", "-c", "max_connections=700", "-c", "shared_buffers=256MB"],
              log, preexec_fn=as_postgres())
        wait_port(pg_port, "postgres")
        time.sleep(0.5)
        subprocess.run([need("pgbench"), "-i", "-q", "-s", "10", "-h", "127.0.0.1", "-p", str(pg_port),
                        "-U", "postgres", "postgres"], check=True, stdout=subprocess.DEVNULL, stderr=log)
        ok_port, bad_port = free_port(), free_port()
        responder(ok_port, 200)
        responder(bad_port, 503)

        def cfg(name, server_maxconn=128, global_maxconn=384):
            port, stats_port = free_port(), free_port()
            sock = os.path.join(work, f"{name}.sock")
            text = SEED_CFG.format(stats_port=stats_port, sock=sock, port=port, pg_port=pg_port,
                                   ok_port=ok_port, bad_port=bad_port, server_maxconn=server_maxconn)
            text = text.replace("maxconn 384", f"maxconn {global_maxconn}", 1)
            path = os.path.join(work, f"{name}.cfg")
            with open(path, "w") as f:
                f.write(text)
            return path, port, stats_port, sock

        # Everything runs at once and the rounds interleave the paths, so that load from
        # outside (the machine is shared) falls on every path alike; the median is reported.
        # Proxy CPU per transaction (user + system of the proxy processes, socat's children
        # included) does not depend on that load and is the steadier comparison.
        ha_cfg, ha_port, ha_stats, ha_sock = cfg("haproxy")
        ha = spawn(["/usr/sbin/haproxy", "-db", "-f", ha_cfg], log)
        m_cfg, m_port, m_stats, m_sock = cfg("manning")
        mp = spawn([MANNING, "proxy", "-f", m_cfg] + args.proxy_arg, log)
        wait_for_up(ha_stats, "haproxy")
        wait_for_up(m_stats, "manning proxy")
        socat_port = free_port()
        so = spawn([need("socat"), f"TCP-L:{socat_port},fork,bind=localhost", f"UNIX:{ha_sock}"], log)
        wait_port(socat_port, "socat")
        paths = [("(a) direct", pg_port, []), ("(b) haproxy", ha_port, [ha]),
                 ("(c) manning proxy", m_port, [mp]), ("(d) socat + haproxy", socat_port, [so, ha])]
        if has_forward:
            fwd_port = free_port()
            fw = spawn([MANNING, "forward", f"TCP-L:{fwd_port},fork,bind=localhost", f"UNIX:{m_sock}"], log)
            wait_port(fwd_port, "manning forward")
            paths.append(("(e) manning forward + proxy", fwd_port, [fw, mp]))
            # The same two processes with the forwarder copying bytes instead of handing
            # clients over to the proxy (net::handoff), for comparison.
            cp_port = free_port()
            cp = spawn([MANNING, "forward", "--no-handoff", f"TCP-L:{cp_port},fork,bind=localhost",
                        f"UNIX:{m_sock}"], log)
            wait_port(cp_port, "manning forward --no-handoff")
            paths.append(("(f) forward --no-handoff + proxy", cp_port, [cp, mp]))
        paths = [p for p in paths if p[0][1] == "a" or p[0][1] in args.paths]
        print(f"work dir {work}; postgres on {pg_port}; {args.rounds} rounds of {args.seconds} s per path and mode",
              flush=True)
        pgbench(pg_port, 3, False)  # warm-up: caches, autovacuum after pgbench -i
        runs = {label: {False: {}, True: {}} for label, _, _ in paths}
        cpu = {label: {False: [0.0, 0], True: [0.0, 0]} for label, _, _ in paths}
        errors = {}
        for connect_each in modes:
            for r in range(args.rounds):
                for label, port, procs in paths:
                    mode = "-C " if connect_each else ""
                    print(f"  round {r + 1}: {label}: pgbench -S {mode}-c 8 -T {args.seconds}", flush=True)
                    before = sum(cpu_seconds(p.pid) for p in procs)
                    tps, tx, err = pgbench(port, args.seconds, connect_each)
                    time.sleep(0.3)  # let socat's children exit and be reaped
                    used = sum(cpu_seconds(p.pid) for p in procs) - before
                    if err:
                        errors[label] = "; ".join(err)
                        continue
                    runs[label][connect_each][r] = tps
                    cpu[label][connect_each][0] += used
                    cpu[label][connect_each][1] += tx
        results = {label: tuple(median(list(runs[label][c].values())) for c in (False, True)) for label, _, _ in paths}
        cpu_per_tx = {label: tuple(cpu[label][c][0] / cpu[label][c][1] * 1e6 if cpu[label][c][1] else None
                                   for c in (False, True)) for label, _, _ in paths}
        notes = dict(errors)
        if not has_forward:
            for label in ["(e) manning forward + proxy", "(f) forward --no-handoff + proxy"]:
                results[label] = (None, None)
                cpu_per_tx[label] = (None, None)
                notes[label] = "skipped: forward role not built"
        for p in [so] + ([fw, cp] if has_forward else []) + [mp, ha]:
            stop(p)

        # Memory: a config that lets 500 sessions through (the seed's maxconn 128 would queue
        # the rest and close them after `timeout queue`); otherwise the seed's settings.
        memory = {}
        for name, cmd in [] if args.no_memory else [("manning proxy", lambda c: [MANNING, "proxy", "-f", c]),
                          ("haproxy", lambda c: ["/usr/sbin/haproxy", "-db", "-f", c])]:
            c, port, stats_port, _ = cfg(f"mem-{name.split()[0]}", server_maxconn=600, global_maxconn=1100)
            p = spawn(cmd(c), log)
            wait_for_up(stats_port, name)
            time.sleep(1.0)
            idle = rss_mb(p.pid)
            sessions = [pg_session(port) for _ in range(500)]
            time.sleep(1.0)
            loaded = rss_mb(p.pid)
            for s in sessions:
                s.close()
            stop(p)
            memory[name] = (idle, loaded)

        print()
        print(f"pgbench -S, 8 clients, median of {args.rounds} runs of {args.seconds} s, PostgreSQL 15 on "
              f"loopback, {os.cpu_count()} CPUs shared by pgbench, postgres and the proxies")
        print(f"{'path':<30} {'TPS':>8} {'/direct':>8} {'CPU us/tx':>10} {'conn/s -C':>10} {'/direct':>8} "
              f"{'CPU us/conn':>12}")
        direct_tps, direct_cps = results["(a) direct"]
        for label, (tps, cps) in results.items():
            if tps is None and cps is None:
                print(f"{label:<30} {notes.get(label, 'failed')}")
                continue
            ct, cc = cpu_per_tx[label]
            t = f"{tps:>8.0f} {tps / direct_tps:>8.2f}" if tps and direct_tps else f"{'-':>8} {'':>8}"
            t += f" {ct:>10.1f}" if ct and label != "(a) direct" else f" {'':>10}"
            c = f"{cps:>10.0f} {cps / direct_cps:>8.2f}" if cps and direct_cps else f"{'-':>10} {'':>8}"
            c += f" {cc:>12.1f}" if cc and label != "(a) direct" else f" {'':>12}"
            print(f"{label:<30} {t} {c}" + (f"   ({notes[label]})" if label in notes else ""))

        def ratio(a, b, what, target):
            """The median of per-round ratios: the two runs of a round are seconds apart, so
            they share the machine's load far more than two medians over the whole bench do."""
            if a not in results or b not in results:
                return
            for i, kind in [(0, "TPS"), (1, "conn/s")]:
                mode = bool(i)
                paired = sorted(runs[a][mode][r] / runs[b][mode][r]
                                for r in runs[a][mode] if r in runs[b][mode])
                if paired:
                    r = median(paired)
                    verdict = "meets" if r >= target else "MISSES"
                    ca, cb = cpu_per_tx[a][i], cpu_per_tx[b][i]
                    extra = f"; proxy CPU per {'tx' if i == 0 else 'conn'} {ca / cb:.2f} x" if ca and cb else ""
                    spread = f" (rounds {paired[0]:.2f}..{paired[-1]:.2f})" if len(paired) > 1 else ""
                    print(f"  {what} {kind}: {r:.2f} x{spread} (target >= {target}: {verdict}){extra}")
                elif results[a][i] is not None or results[b][i] is not None:
                    print(f"  {what} {kind}: not measured ({notes.get(a, notes.get(b, 'failed'))})")

        print("ratios:")
        ratio("(c) manning proxy", "(b) haproxy", "manning proxy / haproxy", 1.1)
        ratio("(e) manning forward + proxy", "(d) socat + haproxy", "forward+proxy / socat+haproxy", 1.3)
        ratio("(f) forward --no-handoff + proxy", "(d) socat + haproxy",
              "forward --no-handoff+proxy / socat+haproxy", 1.3)
        print("resident memory (VmRSS), maxconn raised to 600 per server for the 500 sessions:")
        for name, (idle, loaded) in memory.items():
            target = "  (target <= 30 MB: " + ("meets" if loaded <= 30 else "MISSES") + ")" \
                if name == "manning proxy" else "  (reference)"
            print(f"  {name:<14} idle {idle:6.1f} MB, 500 idle sessions {loaded:6.1f} MB{target}")
    finally:
        for p in reversed(children):
            # postgres: fast shutdown (SIGINT), its own mode
            stop(p, signal.SIGINT if p is postgres else signal.SIGTERM)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
