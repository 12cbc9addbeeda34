"""A real Redis Cluster on loopback for volley's tests: 3 primaries + 3 replicas (or any shape).

  cluster = RedisCluster(tmp_path)          # starts, creates (redis-cli --cluster create), waits for cluster_state:ok
  cluster.url()                             # "redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
  cluster.client(port) / cluster.primaries() / cluster.replicas_of(port) / cluster.node_of_slot(slot)
  cluster.slot(key)                         # CLUSTER KEYSLOT, asked of the cluster itself
  cluster.move_slot(slot, to_port)          # CLUSTER SETSLOT dance: MIGRATING/IMPORTING, MIGRATE keys, NODE
  cluster.begin_migration(slot, to_port)    # only MIGRATING/IMPORTING: keys moved one by one give ASK
  cluster.kill(port)                        # SIGKILL a node; wait_failover(port) until a replica took its slots
  cluster.stop()                            # every node stopped, also when a test failed (use the fixture)
  Volley(tmp, cluster.as_server())          # the volley_itest driver on the cluster: .url is the cluster url,
                                            # .client / .raw are redis-py cluster clients (keys found by slot)

Every node is a real redis-server in cluster mode with a short cluster-node-timeout, bound to 127.0.0.1 on
ports chosen at run time (the cluster bus is port + 10000, so both must be free). Meant for reuse by the
end-to-end tests (push, workers, failover, reshard mid-run) as well as the routing tests.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from volley_itest import stop_process, tail, wait_for, wait_port

NODE_TIMEOUT_MS = 1000


def _free_pair():
    """A port p with p and p + 10000 (the cluster bus) free on 127.0.0.1 a moment ago."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + 10000 > 65535:
            continue
        try:
            with socket.socket() as t:
                t.bind(("127.0.0.1", p + 10000))
        except OSError:
            continue
        return p
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    def __init__(self, tmp, primaries=3, replicas=1, extra_args=lambda port: [], password=None, tls=None):
        import redis  # python3-redis (scripts/deps.sh)

        self._redis = redis
        self.password = password  # requirepass and masterauth of every node (the default user)
        self.tls = tls  # (cert, key, ca): TLS only (port 0), cluster bus and replication over TLS too
        self.dir = Path(tmp)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = extra_args
        self.procs = {}
        self.ports = []
        try:
            for _ in range(primaries * (1 + replicas)):
                self._start_node(_free_pair())
            out = subprocess.run(["redis-cli", *self._cli_auth(), "--cluster", "create",
                                  *[f"127.0.0.1:{p}" for p in self.ports],
                                  "--cluster-replicas", str(replicas), "--cluster-yes"],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                raise RuntimeError("redis-cli --cluster create failed: " + out.stdout[-2000:] + out.stderr[-2000:])
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    def _migrate_auth(self):
        return ["AUTH", self.password] if self.password else []

    def _cli_auth(self):
        a = ["--no-auth-warning", "-a", self.password] if self.password else []
        if self.tls:
            a += ["--tls", "--cacert", str(self.tls[2])]
        return a

    # --- processes -------------------------------------------------------------------------------------------
    def _start_node(self, port):
        d = self.dir / str(port)
        d.mkdir(exist_ok=True)
        log = d / "redis.log"
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(d), "--logfile", str(log),
                # a test kills primaries on purpose: the rest of the cluster keeps serving its slots
                "--cluster-require-full-coverage", "no"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.tls:
            args[args.index("--port") + 1] = "0"
            args += ["--tls-port", str(port), "--tls-cluster", "yes", "--tls-replication", "yes",
                     "--tls-cert-file", str(self.tls[0]), "--tls-key-file", str(self.tls[1]),
                     "--tls-ca-cert-file", str(self.tls[2]), "--tls-auth-clients", "no"]
        self.procs[port] = subprocess.Popen(args + self.extra_args(port), stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
        if port not in self.ports:
            self.ports.append(port)
        if not wait_port(port):
            raise RuntimeError(f"cluster node {port} did not start: " + tail(log))

    def kill(self, port, sig=signal.SIGKILL):
        """Kill one node (SIGKILL: no goodbye to the cluster, as in a crash)."""
        p = self.procs.pop(port)
        p.send_signal(sig)
        p.wait(timeout=10)

    def restart(self, port):
        """Start a killed node again on its port; it rejoins from its nodes.conf (as a replica after a failover)."""
        self._start_node(port)

    def stop(self):
        for port in list(self.procs):
            stop_process(self.procs.pop(port))

    # --- views ---------------------------------------------------------------------------------------------
    def client(self, port, **kw):
        if self.tls:
            kw.update(ssl=True, ssl_ca_certs=str(self.tls[2]))
        return self._redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=10,
                                 password=self.password, **kw)

    def alive(self):
        return [p for p in self.ports if p in self.procs]

    def as_server(self):
        """What volley_itest.Volley expects of a RedisServer: url, client (text) and raw (bytes) redis-py clients
        that route by slot themselves (redis.cluster.RedisCluster), so the driver's Redis views work unchanged."""
        from redis.cluster import ClusterNode, RedisCluster as PyCluster

        nodes = [ClusterNode("127.0.0.1", p) for p in self.primaries()]
        view = type("ClusterAsServer", (), {})()
        view.url = self.url()
        view.client = PyCluster(startup_nodes=nodes, decode_responses=True, password=self.password)
        view.raw = PyCluster(startup_nodes=nodes, decode_responses=False, password=self.password)
        return view

    def url(self, ports=None, scheme=None, userinfo=None):
        """The seed-list url; userinfo: "user:pass" (default ":<password>" when the cluster has one)."""
        scheme = scheme or ("rediss+cluster" if self.tls else "redis+cluster")
        if userinfo is None and self.password:
            userinfo = ":" + self.password
        return scheme + "://" + (userinfo + "@" if userinfo else "") + ",".join(
            f"127.0.0.1:{p}" for p in (ports or self.primaries()))

    def _nodes(self, via=None):
        """CLUSTER NODES as seen by one live node: [{port, id, flags, primary_id, slots}]."""
        via = via or self.alive()[0]
        text = self.client(via).execute_command("CLUSTER", "NODES")
        if isinstance(text, dict):  # redis-py may parse it already
            text = "\n".join(f"{v['node_id']} {k} {v['flags']} {v['master_id']} - - - {v['connected']}"
                             for k, v in text.items())
        out = []
        for line in text.strip().splitlines():
            f = line.split()
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            slots = [s for s in f[8:] if not s.startswith("[")]
            out.append({"port": port, "id": f[0], "flags": f[2], "primary_id": f[3], "slots": slots})
        return out

    def node_id(self, port):
        return self.client(port).execute_command("CLUSTER", "MYID")

    def primaries(self):
        return [n["port"] for n in self._nodes() if "master" in n["flags"] and "fail" not in n["flags"]
                and n["slots"]]

    def replicas_of(self, port):
        pid = self.node_id(port)
        return [n["port"] for n in self._nodes() if n["primary_id"] == pid]

    def slot(self, key):
        return self.client(self.alive()[0]).execute_command("CLUSTER", "KEYSLOT", key)

    def node_of_slot(self, slot, via=None):
        for lo, hi, primary, *_ in self.client(via or self.alive()[0]).execute_command("CLUSTER", "SLOTS"):
            if lo <= slot <= hi:
                return primary[1]
        return None

    # --- state ---------------------------------------------------------------------------------------------
    def wait_ok(self, timeout=30.0):
        """Every live node says cluster_state:ok and agrees on the slot owners."""
        def ok():
            try:
                views = set()
                for p in self.alive():
                    info = self.client(p).execute_command("CLUSTER", "INFO")
                    if isinstance(info, bytes):
                        info = info.decode()
                    if isinstance(info, dict):
                        if info.get("cluster_state") != "ok":
                            return False
                    elif "cluster_state:ok" not in info:
                        return False
                    views.add(tuple(sorted((s[0], s[1], s[2][1]) for s in
                                           self.client(p).execute_command("CLUSTER", "SLOTS"))))
                return len(views) == 1
            except (self._redis.RedisError, OSError):
                return False
        if not wait_for(ok, timeout, step=0.2):
            raise RuntimeError("cluster not ok: " + "; ".join(tail(self.dir / str(p) / "redis.log", 5)
                                                               for p in self.alive()))

    def wait_failover(self, dead_port, timeout=30.0):
        """After kill(dead_port) of a primary: one of its replicas serves its slots; returns that port."""
        before = {n["port"]: n for n in self._nodes(via=[p for p in self.alive()][0])}
        dead_id = before[dead_port]["id"]
        reps = [p for p, n in before.items() if n["primary_id"] == dead_id and p in self.procs]
        found = []

        def promoted():
            for p in reps:
                try:
                    role = self.client(p).execute_command("ROLE")
                except (self._redis.RedisError, OSError):
                    continue
                if role and (role[0] == "master" or role[0] == b"master"):
                    found.append(p)
                    return True
            return False
        if not wait_for(promoted, timeout, step=0.2):
            raise RuntimeError(f"no replica of {dead_port} was promoted")
        self.wait_ok(timeout)
        return found[0]

    def _setslot(self, slot, src, dst):
        dst_id, src_id = self.node_id(dst), self.node_id(src)
        self.client(dst).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        self.client(src).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        return src_id, dst_id

    def begin_migration(self, slot, to_port):
        """Mark slot as moving from its owner to to_port (keys still on the source: ASK for moved keys)."""
        src = self.node_of_slot(slot)
        self._setslot(slot, src, to_port)
        return src

    def migrate_key(self, src, dst, key):
        self.client(src).execute_command("MIGRATE", "127.0.0.1", dst, key, 0, 5000, *self._migrate_auth())

    def finish_migration(self, slot, src, dst):
        """Move the slot's remaining keys and hand the slot to dst on every node (then MOVED for clients)."""
        c = self.client(src)
        while True:
            keys = c.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            c.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, *self._migrate_auth(), "KEYS", *keys)
        dst_id = self.node_id(dst)
        for p in self.alive():
            try:
                self.client(p).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
            except self._redis.ResponseError:
                pass  # a replica refuses SETSLOT; it learns the owner over the bus
        self.wait_ok()

    def move_slot(self, slot, to_port):
        """The whole CLUSTER SETSLOT procedure for one slot (what redis-cli --cluster reshard does per slot)."""
        src = self.node_of_slot(slot)
        if src == to_port:
            return src
        self._setslot(slot, src, to_port)
        self.finish_migration(slot, src, to_port)
        return src

    def reshard(self, src, dst, count):
        """redis-cli --cluster reshard: count slots from src's primary to dst's."""
        out = subprocess.run(["redis-cli", *self._cli_auth(), "--cluster", "reshard", f"127.0.0.1:{self.alive()[0]}",
                              "--cluster-from", self.node_id(src), "--cluster-to", self.node_id(dst),
                              "--cluster-slots", str(count), "--cluster-yes"],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError("reshard failed: " + out.stdout[-2000:] + out.stderr[-2000:])
        self.wait_ok()
