#!/usr/bin/env python3
"""Benchmark a three-member cluster: `manning supervise` against Patroni from PyPI.

Each stack gets its own etcd, the seed's dynamic settings (ttl 20, loop_wait 2,
retry_timeout 5, maximum_lag_on_failover 1 MB, synchronous_mode and
synchronous_mode_strict on, use_pg_rewind, use_slots) and a proxy reading the seed's
haproxy.cfg with the three members (HAProxy for Patroni; `manning proxy --etcd` for manning,
which routes by the leader key instead of the checks).
In turn, for manning then Patroni:

  1. formation: the three members start at once on empty data directories; the time
     until both replicas stream, one of them synchronously, and the leader accepts a write;
  2. planned switchover (POST /switchover to the leader, to its synchronous standby) while
     a client writes every 20 ms through the proxy: the longest gap between acknowledged
     writes, and how many writes a read-only node refused;
  3. kill -9 of the leader's node (its supervisor and postgres) with the same client: the
     longest gap between acknowledged writes, and whether every acknowledged write is on
     the new leader;
  4. the killed node restarts: the time until it streams from the new leader again
     (pg_rewind when its WAL diverged).

Absolute times depend on this machine; the ratios are what to compare. Patroni comes from
`make deps` (/opt/manning-test/patroni); run as root.

Usage: bench/cluster.py [--no-build] [--only manning|patroni]
"""

import argparse
import http.client
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import supervise as S  # noqa: E402  (shared helpers: etcd, processes, ports)

PYTHON = "/opt/manning-test/patroni/bin/python"
HAPROXY = "/usr/sbin/haproxy"
SCOPE = "bench"
NAMES = ["m1", "m2", "m3"]

# The client: psycopg2 from the Patroni venv, one INSERT every 20 ms through the proxy,
# reconnecting at once after an error. Prints "ok <monotonic> <n> <server port>" or
# "err <monotonic> <message>"; CLOCK_MONOTONIC is shared by all processes.
WRITER = r"""
import sys, time, psycopg2
port, seconds, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[4])
end = time.monotonic() + seconds
conn = None
while time.monotonic() < end:
    try:
        if conn is None:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres",
                                    dbname="postgres", connect_timeout=1,
                                    password=sys.argv[3])
            conn.autocommit = True
        n += 1
        with conn.cursor() as c:
            c.execute("INSERT INTO w(n) VALUES (%s) RETURNING inet_server_port()", (n,))
            print("ok", time.monotonic(), n, c.fetchone()[0], flush=True)
    except Exception as e:
        print("err", time.monotonic(), str(e).replace("\n", " ")[:200], flush=True)
        try:
            conn.close()
        except Exception:
            pass
        conn = None
    time.sleep(0.02)
"""


def member_config(work, etcd, name, m):
    return f"""scope: {SCOPE}
namespace: /bench
name: {name}
restapi:
  listen: 127.0.0.1:{m['api']}
  connect_address: 127.0.0.1:{m['api']}
etcd3:
  host: {etcd.endpoint}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 2
    retry_timeout: 5
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    synchronous_node_count: 1
    postgresql:
      parameters:
        max_connections: 256
      use_pg_rewind: true
      use_slots: true
      remove_data_directory_on_diverged_timelines: false
      remove_data_directory_on_rewind_failure: true
  initdb:
    - encoding: UTF8
    - data-checksums
  pg_hba:
    - host replication replicator 0.0.0.0/0 md5
    - host all all 0.0.0.0/0 md5
postgresql:
  listen: 127.0.0.1:{m['pg']}
  connect_address: 127.0.0.1:{m['pg']}
  data_dir: {work}/{name}/data
  bin_dir: {S.PG_BIN}
  pgpass: {work}/{name}/pgpass
  parameters:
    unix_socket_directories: {work}/{name}
  authentication:
    replication:
      username: replicator
      password: "rep-pw"
    superuser:
      username: postgres
      password: "{S.SUPERUSER_PW}"
"""


def proxy_config(work, members, port, stats):
    servers = "".join(
        f"    server {n} 127.0.0.1:{m['pg']} maxconn 128 check port {m['api']}\n"
        for n, m in members.items())
    return f"""global
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
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /

listen bench
    bind 127.0.0.1:{port}
    option httpchk
    http-check expect status 200
    default-server inter 2500ms fall 4 rise 2 on-marked-down shutdown-sessions
{servers}"""


class Stack:
    def __init__(self, kind, base, log):
        self.kind, self.log = kind, log
        self.work = os.path.join(base, kind)
        os.mkdir(self.work)
        pw = pwd.getpwnam("postgres")
        os.chown(self.work, pw.pw_uid, pw.pw_gid)
        os.chmod(self.work, 0o755)
        self.etcd = S.Etcd(self.work, log)
        self.members = {n: {"pg": S.free_port(), "api": S.free_port()} for n in NAMES}
        self.procs = {}
        for n in NAMES:
            d = os.path.join(self.work, n)
            os.mkdir(d)
            os.chown(d, pw.pw_uid, pw.pw_gid)
            cfg = os.path.join(d, "patroni.yml")
            with open(cfg, "w") as f:
                f.write(member_config(self.work, self.etcd, n, self.members[n]))
            os.chmod(cfg, 0o644)
            self.members[n]["cfg"] = cfg

    def start(self, name):
        cfg = self.members[name]["cfg"]
        if self.kind == "manning":
            cmd, kw = [S.MANNING, "supervise", cfg], {}
        else:
            d = os.path.dirname(cfg)
            cmd, kw = [S.PATRONI, cfg], {"preexec_fn": S.as_postgres(), "cwd": d,
                                        "env": dict(os.environ, HOME=d)}
        self.procs[name] = S.spawn(cmd, self.log, **kw)

    def kill_node(self, name):
        """kill -9 of the member's supervisor and of its postmaster (a dead node)."""
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()
        try:
            with open(os.path.join(self.work, name, "data", "postmaster.pid")) as f:
                os.kill(int(f.readline()), signal.SIGKILL)
        except (OSError, ValueError):
            pass  # manning's postmaster already went with its supervisor

    def key(self, k):
        out = S.etcdctl(self.etcd.endpoint, "get", f"/bench/{SCOPE}/{k}", "--print-value-only")
        return out.strip() or None

    def leader(self):
        return self.key("leader")

    def replication(self, name):
        r = S.psql(self.members[name]["pg"],
                   "SELECT application_name || '|' || state || '|' || sync_state FROM pg_stat_replication")
        return r.stdout.split() if r.returncode == 0 else []

    def start_proxy(self):
        self.proxy_port, stats = S.free_port(), S.free_port()
        cfg = os.path.join(self.work, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(proxy_config(self.work, self.members, self.proxy_port, stats))
        if self.kind == "manning":
            # manning's proxy follows the leader key (the stack's point); HAProxy polls.
            cmd = [S.MANNING, "proxy", "-f", cfg, "--etcd", self.etcd.endpoint, "--scope", SCOPE,
                   "--namespace", "/bench"]
        else:
            cmd = [HAPROXY, "-db", "-f", cfg]
        self.proxy = S.spawn(cmd, self.log)
        wait("the proxy to route to the leader", 30,
             lambda: S.psql(self.proxy_port, "SELECT 1").returncode == 0)

    def stop_all(self):
        S.stop(self.proxy, timeout=10)
        for p in self.procs.values():
            S.stop(p)
        S.stop(self.etcd.proc)


def wait(what, timeout, ok):
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            S.die(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic()


def writer(stack, seconds, first):
    """The client; its inserts are numbered from `first` + 1."""
    return subprocess.Popen([PYTHON, "-c", WRITER, str(stack.proxy_port), str(seconds), S.SUPERUSER_PW,
                             str(first)],
                            stdout=subprocess.PIPE, stderr=stack.log, text=True)


def read_writer(p):
    oks, errs = [], []
    for line in p.stdout:
        parts = line.split(" ", 2)
        if parts[0] == "ok":
            t, n = float(parts[1]), int(parts[2].split()[0])
            oks.append((t, n))
        elif parts[0] == "err":
            errs.append((float(parts[1]), parts[2].strip()))
    p.wait()
    return oks, errs


def longest_gap(oks, since):
    ts = [t for t, _ in oks if t >= since - 1]
    return max((b - a for a, b in zip(ts, ts[1:])), default=float("nan"))


def sync_ready(stack, leader):
    rows = stack.replication(leader)
    streaming = [r for r in rows if r.split("|")[1] == "streaming"]
    return len(streaming) == 2 and any(r.endswith("|sync") for r in streaming)


def run_stack(kind, base, log):
    st = Stack(kind, base, log)
    res = {}
    # 1. formation
    t0 = time.monotonic()
    for n in NAMES:
        st.start(n)
    wait("a leader", 300, lambda: st.leader() in NAMES)
    leader = st.leader()
    wait("two streaming replicas, one synchronous", 300, lambda: sync_ready(st, leader))
    wait("a write on the leader", 60, lambda: S.psql(
        st.members[leader]["pg"], "CREATE TABLE IF NOT EXISTS w(n int); INSERT INTO w VALUES (0)").returncode == 0)
    res["formation"] = time.monotonic() - t0
    st.start_proxy()

    # 2. switchover to the synchronous standby
    def published_sync():
        try:
            return json.loads(st.key("sync") or "{}").get("sync_standby")
        except ValueError:
            return None
    wait("a synchronous standby in the sync key", 120, lambda: published_sync() is not None)
    sync = published_sync()
    w = writer(st, 16, 0)
    time.sleep(2)
    asked = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", st.members[leader]["api"], timeout=60)
    c.request("POST", "/switchover", json.dumps({"leader": leader, "candidate": sync}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    answer = f"{r.status} {r.read().decode().strip()}"
    oks, errs = read_writer(w)
    res["switchover_answer"] = answer
    res["switchover_gap"] = longest_gap(oks, asked)
    res["switchover_readonly"] = sum(1 for _, e in errs if "read-only" in e)
    wait(f"the new leader after the switchover ({answer})", 60,
         lambda: st.leader() not in (None, leader))
    leader = st.leader()
    wait("the cluster to be synchronous again", 120, lambda: sync_ready(st, leader))

    # 3. kill -9 of the leader's node while the client writes
    w = writer(st, 40, 1_000_000)
    time.sleep(2)
    killed = time.monotonic()
    st.kill_node(leader)
    oks, errs = read_writer(w)
    res["kill_gap"] = longest_gap(oks, killed)
    new_leader = st.leader()
    acked = {n for t, n in oks}
    r = S.psql(st.members[new_leader]["pg"], "SELECT n FROM w") if new_leader in NAMES else None
    have = {int(x) for x in r.stdout.split()} if r and r.returncode == 0 else set()
    res["kill_lost"] = len(acked - have)

    # 4. the dead node comes back
    t0 = time.monotonic()
    st.start(leader)
    wait(f"{leader} to stream from {new_leader}", 300,
         lambda: any(r.startswith(f"{leader}|streaming") for r in st.replication(new_leader)))
    res["rejoin"] = time.monotonic() - t0
    st.stop_all()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-build", action="store_true", help="use target/release/manning as it is")
    ap.add_argument("--only", choices=["manning", "patroni"], help="run one stack only")
    args = ap.parse_args()
    if os.geteuid() != 0:
        S.die("run as root (postgres runs as the `postgres` user)")
    for tool in ["etcd", "etcdctl", "psql", HAPROXY, S.PATRONI, PYTHON]:
        if not shutil.which(tool) and not os.path.exists(tool):
            S.die(f"{tool} is missing: run `make deps`")
    if not args.no_build:
        print("building: cargo build --release", flush=True)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=S.ROOT, check=True)
    base = tempfile.mkdtemp(prefix="manning-bench-cluster-")
    os.chmod(base, 0o755)
    log = open(os.path.join(base, "bench.log"), "w")
    kinds = [args.only] if args.only else ["manning", "patroni"]
    results = {}
    try:
        for kind in kinds:
            print(f"  {kind}: formation, switchover, kill -9 of the leader, rejoin ...", flush=True)
            results[kind] = run_stack(kind, base, log)
    finally:
        for p in S.children:
            if p.poll() is None:
                S.stop(p, timeout=30)
    rows = [
        ("3 members: empty dirs -> sync-replicated (s)", "formation", "{:.1f}"),
        ("switchover: longest write gap (s)", "switchover_gap", "{:.2f}"),
        ("switchover: writes refused as read-only", "switchover_readonly", "{}"),
        ("kill -9 of the leader: longest write gap (s)", "kill_gap", "{:.1f}"),
        ("kill -9: acknowledged writes lost", "kill_lost", "{}"),
        ("killed node streaming again after restart (s)", "rejoin", "{:.1f}"),
    ]
    print("\nthree members, seed settings (ttl 20, strict synchronous), same machine, same run")
    print(f"{'':48s}" + "".join(f"{k:>12s}" for k in kinds) + ("   ratio" if len(kinds) == 2 else ""))
    for label, key, fmt in rows:
        vals = [results[k][key] for k in kinds]
        line = f"{label:48s}" + "".join(f"{fmt.format(v):>12s}" for v in vals)
        if len(kinds) == 2 and isinstance(vals[0], float) and vals[1]:
            line += f"{vals[0] / vals[1]:8.2f}"
        print(line)
    for k in kinds:
        print(f"{k} switchover answer: {results[k]['switchover_answer']}")
    if "manning" in results:
        m = results["manning"]
        print(f"targets: formation <= 10 s: {'meets' if m['formation'] <= 10 else 'MISSES'}; "
              f"switchover gap <= 1 s and no read-only refusals: "
              f"{'meets' if m['switchover_gap'] <= 1 and m['switchover_readonly'] == 0 else 'MISSES'}; "
              f"kill -9 gap <= ttl + 0.5 s: {'meets' if m['kill_gap'] <= 20.5 else 'MISSES'}; "
              f"no acknowledged write lost: {'meets' if m['kill_lost'] == 0 else 'MISSES'}; "
              f"rejoin <= 3 s: {'meets' if m['rejoin'] <= 3 else 'MISSES'}")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
