#!/usr/bin/env python3
"""Benchmark `manning supervise` against Patroni from PyPI, one run on this machine.

Both get the same single-member configuration (the seed's patroni.yml timings: ttl 20,
loop_wait 2, retry_timeout 5; synchronous replication off, since one member has no
standby), each with its own etcd, in turn:

  1. start-up: from starting the supervisor on an empty data directory to the first write
     accepted by the new primary;
  2. resident memory (VmRSS) of the supervisor process itself (not postgres), idle;
  3. an etcd outage longer than ttl (etcd frozen with SIGSTOP) while a client writes every
     50 ms: how long after the freeze the last write was accepted, and whether it came
     before the earliest moment etcd could have expired the leader's lease (its remaining
     TTL read just before the freeze, minus a second of rounding).

Patroni comes from `make deps` (/opt/manning-test/patroni); run as root (postgres runs as
the `postgres` user; Patroni itself runs as `postgres`, manning starts as root and drops).

Usage: bench/supervise.py [--no-build]
"""

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANNING = os.path.join(ROOT, "target", "release", "manning")
PATRONI = "/opt/manning-test/patroni/bin/patroni"
PG_BIN = "/usr/lib/postgresql/15/bin"
SUPERUSER_PW = "su-pw'#x"
children = []


def die(msg):
    print(f"bench/supervise.py: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_postgres():
    pw = pwd.getpwnam("postgres")

    def demote():
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return demote


def spawn(args, log, **kw):
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, **kw)
    children.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=90):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGQUIT)
            p.wait(30)


def http_ok(port, path="/health"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            return s.recv(64).split()[1] == b"200"
    except (OSError, IndexError):
        return False


def etcdctl(endpoint, *args):
    out = subprocess.run(["etcdctl", f"--endpoints={endpoint}", *args], capture_output=True,
                         text=True, env=dict(os.environ, ETCDCTL_API="3"))
    return out.stdout


class Etcd:
    def __init__(self, work, log):
        self.client, peer = free_port(), free_port()
        self.endpoint = f"127.0.0.1:{self.client}"
        url, purl = f"http://{self.endpoint}", f"http://127.0.0.1:{peer}"
        self.proc = spawn(["etcd", "--name=b", f"--data-dir={work}/etcd", f"--listen-client-urls={url}",
                           f"--advertise-client-urls={url}", f"--listen-peer-urls={purl}",
                           f"--initial-advertise-peer-urls={purl}", f"--initial-cluster=b={purl}",
                           "--log-level=warn"], log)
        deadline = time.time() + 30
        while not http_ok(self.client):
            if time.time() > deadline:
                die("etcd did not start")
            time.sleep(0.05)


def config(work, etcd, api, pg, secrets_inline):
    pw = SUPERUSER_PW if secrets_inline else '{{ secret "superuser" }}'
    rep = "rep-pw" if secrets_inline else '{{ secret "replication" }}'
    return f"""scope: bench
namespace: /bench
name: m1
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  host: {etcd.endpoint}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: false
    postgresql:
      parameters:
        max_connections: 256
      use_pg_rewind: true
      use_slots: true
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - host replication replicator 0.0.0.0/0 md5
    - host all all 0.0.0.0/0 md5
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {work}/data
  bin_dir: {PG_BIN}
  pgpass: {work}/pgpass
  parameters:
    unix_socket_directories: {work}
  authentication:
    replication:
      username: replicator
      password: "{rep}"
    superuser:
      username: postgres
      password: "{pw}"
"""


def psql(port, sql):
    return subprocess.run(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                           "-d", "postgres", "-c", sql], capture_output=True, text=True,
                          env=dict(os.environ, PGCONNECT_TIMEOUT="2", PGPASSWORD=SUPERUSER_PW))


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_one(name, base, log):
    work = os.path.join(base, name)
    os.mkdir(work)
    pw = pwd.getpwnam("postgres")
    os.chown(work, pw.pw_uid, pw.pw_gid)
    os.chmod(work, 0o755)
    etcd = Etcd(work, log)
    api, pg = free_port(), free_port()
    cfg = os.path.join(work, "patroni.yml")
    with open(cfg, "w") as f:
        f.write(config(work, etcd, api, pg, secrets_inline=(name == "patroni")))
    os.chmod(cfg, 0o644)
    if name == "manning":
        secrets = os.path.join(work, "secrets")
        os.mkdir(secrets)
        for k, v in [("superuser", SUPERUSER_PW), ("replication", "rep-pw")]:
            with open(os.path.join(secrets, k), "w") as f:
                f.write(v + "\n")
        cmd, kw = [MANNING, "supervise", cfg], {"env": dict(os.environ, MANNING_SECRETS_DIR=secrets)}
    else:
        cmd, kw = [PATRONI, cfg], {"preexec_fn": as_postgres(), "cwd": work,
                                   "env": dict(os.environ, HOME=work)}
    t0 = time.monotonic()
    sup = spawn(cmd, log, **kw)
    deadline = t0 + 300
    while True:
        if psql(pg, "CREATE TABLE IF NOT EXISTS w(at timestamptz default now()); INSERT INTO w DEFAULT VALUES").returncode == 0:
            break
        if sup.poll() is not None or time.monotonic() > deadline:
            die(f"{name} did not bring up a writable primary (see {log.name})")
        time.sleep(0.05)
    startup = time.monotonic() - t0
    time.sleep(10)
    rss = rss_mb(sup.pid)

    # Writer: one persistent psql session, an insert every 50 ms.
    last_ok = [None]
    writer = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-p", str(pg), "-U", "postgres",
                               "-d", "postgres"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, PGPASSWORD=SUPERUSER_PW))
    stop_writer = threading.Event()

    def read():
        for line in writer.stdout:
            if line.strip() == "ok":
                last_ok[0] = time.monotonic()

    def write():
        while not stop_writer.is_set():
            try:
                writer.stdin.write("INSERT INTO w DEFAULT VALUES RETURNING 'ok';\n")
                writer.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return
            time.sleep(0.05)
    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()
    time.sleep(1)
    leader = json.loads(etcdctl(etcd.endpoint, "get", "/bench/bench/leader", "-w", "json"))
    lease = leader["kvs"][0]["lease"]
    asked = time.monotonic()
    ttl_out = etcdctl(etcd.endpoint, "lease", "timetolive", format(lease, "x"))
    remaining = int(re.search(r"remaining\((\d+)s\)", ttl_out).group(1))
    earliest_expiry = asked + max(remaining - 1, 0)
    etcd.proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    time.sleep(28)
    stop_writer.set()
    etcd.proc.send_signal(signal.SIGCONT)
    try:
        writer.stdin.close()
    except OSError:
        pass
    writer.kill()
    last = last_ok[0]
    writes_for = (last - frozen) if last else float("nan")
    safe = last is not None and last < earliest_expiry
    stop(sup)
    stop(etcd.proc)
    return {"startup": startup, "rss": rss, "writes_for": writes_for, "expiry_after": earliest_expiry - frozen,
            "safe": safe}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true", help="use target/release/manning as it is")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("run as root (postgres runs as the `postgres` user)")
    for tool in ["etcd", "etcdctl", "psql"]:
        if not shutil.which(tool):
            die(f"{tool} is missing: run `make deps`")
    if not os.path.exists(PATRONI):
        die(f"{PATRONI} is missing: run `make deps`")
    if not args.no_build:
        print("building: cargo build --release", flush=True)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    base = tempfile.mkdtemp(prefix="manning-bench-sup-")
    os.chmod(base, 0o755)
    log = open(os.path.join(base, "bench.log"), "w")
    results = {}
    try:
        for name in ["manning", "patroni"]:
            print(f"  {name}: bootstrap, idle, etcd frozen for 28 s ...", flush=True)
            results[name] = run_one(name, base, log)
    finally:
        for p in children:
            if p.poll() is None:
                stop(p, timeout=30)
    m, p = results["manning"], results["patroni"]
    print("\nsingle member, seed timings (ttl 20, loop_wait 2, retry_timeout 5), same machine, same run")
    print(f"{'':44s}{'manning':>12s}{'Patroni':>12s}{'ratio':>9s}")
    print(f"{'empty data dir -> first write accepted (s)':44s}{m['startup']:12.2f}{p['startup']:12.2f}"
          f"{m['startup'] / p['startup']:9.2f}")
    print(f"{'supervisor resident memory, idle (MB)':44s}{m['rss']:12.1f}{p['rss']:12.1f}{m['rss'] / p['rss']:9.2f}")
    print(f"{'etcd frozen: writes accepted for (s)':44s}{m['writes_for']:12.1f}{p['writes_for']:12.1f}")
    print(f"{'earliest lease expiry after the freeze (s)':44s}{m['expiry_after']:12.1f}{p['expiry_after']:12.1f}")
    print(f"{'last write before the earliest expiry':44s}{str(m['safe']):>12s}{str(p['safe']):>12s}")
    print(f"targets: supervisor <= 10 MB resident: {'meets' if m['rss'] <= 10 else 'MISSES'}; "
          f"no write after the lease could expire: {'meets' if m['safe'] else 'MISSES'}")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
