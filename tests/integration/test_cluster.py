"""Redis Cluster routing against a real cluster (tests/cluster_util.py: 3 primaries + 3 replicas on loopback).

Both places volley speaks Redis are driven by small tools built from the real code:
  build/tools/redis-route  the blocking client of the command-line tools (queue/connect.c, queue/cluster_conn.c)
  build/tools/ring-route   a worker thread's ring link (engine/redis_link.c, engine/redis_cluster.c), on io_uring
                           and (--epoll) on the epoll backend
Each test keeps one tool process open across a topology change (slot moved, migration, failover), so the client
works from its old map, exactly as a long-running worker or push would. Keys are plain keys spread over every
primary; nothing depends on volley's key layout.
"""

import subprocess
import time

import pytest

from cluster_util import RedisCluster
from volley_itest import binary, wait_for

TOOLS = ["redis-route", "ring-route", "ring-route --epoll"]  # the ring link over both [worker] backends


class Session:
    """One tool process; send(line) returns its next output line."""

    def __init__(self, tool, url, ca=None):
        name, *flags = tool.split()
        self.p = subprocess.Popen([str(binary("tools/" + name)), *flags, url] + ([str(ca)] if ca else []), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, bufsize=1)
        self.ring = name == "ring-route"
        if self.ring:
            assert self.send("up") == "up"

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        out = self.p.stdout.readline().strip()
        if not out:
            raise AssertionError("tool ended: " + self.p.stderr.read()[-2000:])
        return out

    def pipeline(self, lines):
        for line in lines:
            self.p.stdin.write("|" + line + "\n")
        self.p.stdin.write(".\n")
        self.p.stdin.flush()
        return [self.p.stdout.readline().strip() for _ in lines]

    def close(self):
        self.p.stdin.close()
        assert self.p.wait(timeout=30) == 0, self.p.stderr.read()[-2000:]


def redirects(cluster):
    """MOVED and ASK replies the live nodes have sent so far (INFO errorstats)."""
    n = 0
    for p in cluster.alive():
        info = cluster.client(p).info("errorstats")
        n += sum(v["count"] for k, v in info.items() if k in ("errorstat_MOVED", "errorstat_ASK"))
    return n


def keys_on_every_primary(cluster, n=60, stem="k"):
    """n keys whose slots cover every primary."""
    keys = [f"{stem}{i}" for i in range(n)]
    owners = {cluster.node_of_slot(cluster.slot(k)) for k in keys}
    assert owners == set(cluster.primaries())
    return keys


@pytest.mark.parametrize("tool", TOOLS)
def test_routes_each_key_to_its_slot_owner(cluster, tool):
    """Every command lands on the primary serving its key: what one client wrote, each owner holds."""
    keys = keys_on_every_primary(cluster, stem=f"route-{tool.replace(' ', '')}-")
    before = redirects(cluster)
    s = Session(tool, cluster.url())
    for i, k in enumerate(keys[:30]):
        assert s.send(f"SET {k} v{i}") == "status OK"
    # a pipeline over all three primaries answers in the order sent
    assert s.pipeline([f"SET {k} v{i}" for i, k in enumerate(keys[30:], 30)]) == ["status OK"] * 30
    assert s.pipeline([f"GET {k}" for k in keys]) == [f"str v{i}" for i in range(len(keys))]
    assert s.send("PING") == "status PONG"
    s.close()
    # not one redirection: the slot volley computed (CRC16, hash tags) is the one Redis computes
    assert redirects(cluster) == before
    for i, k in enumerate(keys):
        owner = cluster.node_of_slot(cluster.slot(k))
        assert cluster.client(owner).execute_command("GET", k) == f"v{i}"  # on its owner, not redirected there
    # a script goes by its first KEY; a script without keys to any node
    s = Session(tool, cluster.url())
    assert s.send(f"EVAL return(redis.call('GET',KEYS[1])) 1 {keys[5]}") == "str v5"
    assert s.send("EVAL return(7) 0") == "int 7"
    s.close()


def test_periodic_refresh_learns_a_moved_slot_without_moved(cluster):
    """A slot moved while the clients were idle: after the periodic topology refresh (10 s) both send to the new
    owner directly, without a MOVED from the old one."""
    key = "refresh-key"
    slot = cluster.slot(key)
    sessions = [Session(t, cluster.url()) for t in TOOLS]
    assert sessions[0].send(f"SET {key} x") == "status OK"
    src = cluster.node_of_slot(slot)
    cluster.move_slot(slot, [p for p in cluster.primaries() if p != src][0])
    # the ring link refreshes on its own timer while the loop turns; the blocking client before its next command
    rings = [x for x in sessions if x.ring]
    for r in rings:  # both idle at once
        r.p.stdin.write("idle 11000\n")
        r.p.stdin.flush()
    assert [r.p.stdout.readline().strip() for r in rings] == ["idle"] * len(rings)
    before = redirects(cluster)
    for s in sessions:
        assert s.send(f"GET {key}") == "str x"
        s.close()
    assert redirects(cluster) == before


def test_blocking_transaction_goes_to_its_keys_node(cluster):
    s = Session("redis-route", cluster.url())
    assert s.send("MULTI") == "status OK"
    assert s.send("SET {tx}a 1") == "status QUEUED"
    assert s.send("INCR {tx}a") == "status QUEUED"
    assert s.send("EXEC") == "array 2"
    assert s.send("GET {tx}a") == "str 2"
    # the slot moves under the session: the held-back MULTI meets MOVED, is discarded there and redone at the owner
    slot = cluster.slot("{tx}a")
    src = cluster.node_of_slot(slot)
    dst = [p for p in cluster.primaries() if p != src][0]
    cluster.move_slot(slot, dst)
    assert s.send("MULTI") == "status OK"
    assert s.send("INCR {tx}a") == "status QUEUED"
    assert s.send("EXEC") == "array 1"
    assert cluster.client(dst).execute_command("GET", "{tx}a") == "3"
    s.close()


@pytest.mark.parametrize("tool", TOOLS)
def test_moved_after_a_slot_moves(cluster, tool):
    """A client with the old map: the slot moved away under it (CLUSTER SETSLOT ... NODE); MOVED is followed."""
    key = "moved-" + tool.replace(" ", "")
    slot = cluster.slot(key)
    s = Session(tool, cluster.url())
    assert s.send(f"SET {key} before") == "status OK"
    src = cluster.node_of_slot(slot)
    dst = [p for p in cluster.primaries() if p != src][0]
    cluster.move_slot(slot, dst)
    assert cluster.node_of_slot(slot) == dst
    assert s.send(f"GET {key}") == "str before"
    assert s.send(f"SET {key} after") == "status OK"
    assert cluster.client(dst).execute_command("GET", key) == "after"
    # a whole pipeline of the moved slot and others, sent with the map learnt from MOVED
    cluster.move_slot(slot, src)
    assert s.pipeline([f"GET {key}", "GET nosuchkey", f"INCR {key}-n"]) == ["str after", "nil", "int 1"]
    s.close()


@pytest.mark.parametrize("tool", TOOLS)
def test_ask_during_a_migration(cluster, tool):
    """A slot half migrated: keys already moved answer ASK at the source; ASKING + the command at the target."""
    tag = tool.replace(" ", "")
    moved, stays = f"{{ask-{tag}}}moved", f"{{ask-{tag}}}stays"
    slot = cluster.slot(moved)
    c = cluster.client(cluster.node_of_slot(slot))
    c.execute_command("SET", moved, "m")
    c.execute_command("SET", stays, "s")
    s = Session(tool, cluster.url())
    assert s.send(f"GET {stays}") == "str s"  # map learnt before the migration starts
    src = cluster.node_of_slot(slot)
    dst = [p for p in cluster.primaries() if p != src][0]
    cluster.begin_migration(slot, dst)
    cluster.migrate_key(src, dst, moved)
    assert c.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 1  # only `stays` is left at the source
    assert s.send(f"GET {moved}") == "str m"  # ASK -> ASKING -> GET at dst
    assert s.send(f"GET {stays}") == "str s"  # still served by the source
    assert s.pipeline([f"GET {moved}", f"GET {stays}"]) == ["str m", "str s"]
    cluster.finish_migration(slot, src, dst)
    assert s.send(f"GET {moved}") == "str m"
    assert s.send(f"GET {stays}") == "str s"
    s.close()


def test_reshard_with_redis_cli(cluster):
    """redis-cli --cluster reshard moves many slots at once; both clients follow with the map they had."""
    keys = keys_on_every_primary(cluster, stem="reshard-")
    sessions = [Session(t, cluster.url()) for t in TOOLS]
    for i, k in enumerate(keys):
        assert sessions[0].send(f"SET {k} r{i}") == "status OK"
    a, b = cluster.primaries()[:2]
    cluster.reshard(a, b, 600)
    for s in sessions:
        assert s.pipeline([f"GET {k}" for k in keys]) == [f"str r{i}" for i in range(len(keys))]
        assert s.send(f"INCR {keys[0]}-count") == "int " + str(sessions.index(s) + 1)
        s.close()


def test_failover_both_clients_follow_the_promoted_replica(own_cluster):
    """SIGKILL of a primary: its replica is promoted; the ring link has an outage (NULL replies, as for one
    server) and then serves the slot from the new primary; the blocking client, between commands, reconnects
    to the new primary. Data replicated before the kill is there."""
    cluster = own_cluster
    keys = keys_on_every_primary(cluster, stem="fo-")
    ring = Session("ring-route", cluster.url())
    block = Session("redis-route", cluster.url())
    for i, k in enumerate(keys):
        assert ring.send(f"SET {k} f{i}") == "status OK"
    victim = cluster.node_of_slot(cluster.slot(keys[0]))
    assert cluster.client(victim).execute_command("WAIT", 1, 5000) >= 1  # on the replica before the kill
    # the first seed is the victim: a client started after the kill must get past it
    seeds = cluster.url([victim] + [p for p in cluster.primaries() if p != victim])
    cluster.kill(victim)
    promoted = cluster.wait_failover(victim)
    assert promoted != victim and cluster.node_of_slot(cluster.slot(keys[0])) == promoted

    def ring_serves():
        return ring.send(f"GET {keys[0]}") == "str f0"
    assert wait_for(ring_serves, 30, step=0.2)
    assert ring.pipeline([f"GET {k}" for k in keys]) == [f"str f{i}" for i in range(len(keys))]
    # the blocking client: a command may fail once (its connection to the dead node), the next one follows
    deadline = time.monotonic() + 30
    while block.send(f"GET {keys[0]}") != "str f0":
        assert time.monotonic() < deadline
    assert block.pipeline([f"GET {k}" for k in keys]) == [f"str f{i}" for i in range(len(keys))]
    ring.close()
    block.close()
    # a fresh client whose first seed is the dead node starts from the next seed
    fresh = Session("redis-route", seeds)
    assert fresh.send(f"GET {keys[1]}") == "str f1"
    fresh.close()
    fresh = Session("ring-route", seeds)
    assert fresh.send(f"GET {keys[1]}") == "str f1"
    fresh.close()


def test_volley_push_on_a_cluster(cluster, tmp_path):
    """`volley push` (the blocking client's pipelined XADDs, the campaign's MULTI/EXEC) and `volley status` with a
    redis+cluster:// url: every job is in the jobs stream on the primary that serves it, the campaign hash on its
    own node, status counts them. On a cluster the keys carry their shard's hash tag even with shards = 1
    (q_keys_force_tags: each script's keys share one slot)."""
    from volley_itest import Volley, make_recipients

    jobs_key = "volley:{0}:jobs"
    owner = cluster.node_of_slot(cluster.slot(jobs_key))
    v = Volley(tmp_path, cluster.as_server())
    v.write_conf()
    cid = v.push_rows(make_recipients(1500))
    assert v.r.xlen(jobs_key) == 1500  # the driver's own views work on the cluster
    assert cluster.client(owner).execute_command("XLEN", jobs_key) == 1500
    camp_key = f"volley:{{0}}:campaign:{cid}"
    camp_owner = cluster.node_of_slot(cluster.slot(camp_key))
    assert cluster.client(camp_owner).execute_command("HEXISTS", camp_key, "created_ms") == 1
    # the same campaign again after its hash's slot moved to another primary
    cluster.move_slot(cluster.slot(camp_key), [p for p in cluster.primaries() if p != camp_owner][0])
    assert v.push_rows(make_recipients(10, prefix="again"), cid=cid) == cid
    owner = cluster.node_of_slot(cluster.slot(jobs_key))  # the same tag: the jobs moved with the campaign
    assert cluster.client(owner).execute_command("XLEN", jobs_key) == 1510
    st = v.run("status", "-c", v.conf)
    assert st.returncode == 0, st.stderr
    assert "redis+cluster://" in st.stdout
    # the campaigns table comes first (the per-class feedback tables after it name the campaign again)
    assert [ln.split()[1] for ln in st.stdout.splitlines() if ln.strip().startswith(cid)][0] == "1510"


def test_password_on_every_node(tmp_path):
    """A cluster whose nodes all want a password: the url's credentials reach every node, through a MOVED too;
    a wrong password is refused at once with the server's reason, never the password."""
    cluster = RedisCluster(tmp_path / "cluster", password="s3cret-pw")
    try:
        keys = keys_on_every_primary(cluster, stem="auth-")
        for tool in TOOLS:
            s = Session(tool, cluster.url())
            tag = tool.replace(" ", "")
            assert s.pipeline([f"SET {k} {tag}" for k in keys]) == ["status OK"] * len(keys)
            slot = cluster.slot(keys[0])
            src = cluster.node_of_slot(slot)
            cluster.move_slot(slot, [p for p in cluster.primaries() if p != src][0])
            assert s.send(f"GET {keys[0]}") == f"str {tag}"
            s.close()
        bad = subprocess.run([str(binary("tools/redis-route")), cluster.url(userinfo=":wrong-pw")], input="PING\n",
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode == 1
        assert "authentication failed" in bad.stderr and "wrong-pw" not in bad.stderr
        assert "redis+cluster://:***@" in bad.stderr
    finally:
        cluster.stop()


def test_tls_cluster(tmp_path, test_ca):
    """rediss+cluster://: TLS to every node (port 0, tls-port, tls-cluster), the certificate checked against
    [redis] ca_file and the node's address; topology from the nodes' tls-port."""
    # the cluster bus always wants a client certificate: the nodes' certificate serves both ways
    from volley_itest import openssl
    base = tmp_path / "node"
    key, csr, crt, ext = (base.with_suffix(x) for x in (".key", ".csr", ".pem", ".ext"))
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
                   "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", test_ca.pem, "-CAkey", test_ca.key, "-CAcreateserial", "-days", "2",
            "-out", crt, "-extfile", ext)
    cluster = RedisCluster(tmp_path / "cluster", tls=(crt, key, test_ca.pem), password="tls-pw")
    try:
        assert cluster.url().startswith("rediss+cluster://:tls-pw@")
        keys = keys_on_every_primary(cluster, stem="tls-")
        for tool in TOOLS:
            s = Session(tool, cluster.url(), ca=test_ca.pem)
            tag = tool.replace(" ", "")
            assert s.pipeline([f"SET {k} {tag}" for k in keys]) == ["status OK"] * len(keys)
            assert s.pipeline([f"GET {k}" for k in keys]) == [f"str {tag}"] * len(keys)
            s.close()
        # without the CA the certificate does not verify: refused at once
        bad = subprocess.run([str(binary("tools/redis-route")), cluster.url()], input="PING\n", capture_output=True,
                             text=True, timeout=30)
        assert bad.returncode == 1 and "verif" in bad.stderr, bad.stderr
    finally:
        cluster.stop()


@pytest.mark.parametrize("tool", [t for t in TOOLS if t.startswith("ring-route")])
def test_ring_wait_goes_to_the_keys_primary(cluster, tool):
    """redis_link_wait (replicas_ack's WAIT) has no key of its own: it goes to the primary of the key it names,
    after the write sent there, and that primary's replica acknowledges it."""
    key = "wait-" + tool.replace(" ", "")
    owner = cluster.node_of_slot(cluster.slot(key))
    calls = {p: cluster.client(p).info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
             for p in cluster.primaries()}
    s = Session(tool, cluster.url())
    assert s.send(f"SET {key} v") == "status OK"
    assert s.send(f"wait {key} 1 5000") == "int 1"
    s.close()
    after = {p: cluster.client(p).info("commandstats").get("cmdstat_wait", {}).get("calls", 0) for p in calls}
    assert {p: after[p] - calls[p] for p in calls} == {p: int(p == owner) for p in calls}


def test_replicas_ack_waits_for_a_replica(volley, redis_server, volley_sink, recipients, tmp_path):
    """[redis] replicas_ack = 1: after each outcome batch the worker sends WAIT 1 <ms> to the server that recorded
    it and lets go of the batch only then. With a replica attached the counters are on the replica when the worker
    is done; with the replica gone each WAIT times out, the worker says so and still finishes."""
    from volley_itest import RedisServer

    redis_server.client.config_set("repl-diskless-sync-delay", 0)  # the replica's first sync at once, not in 5 s
    replica = RedisServer(tmp_path / "replica", extra_args=lambda p: ["--replicaof", "127.0.0.1",
                                                                      str(redis_server.port)])
    try:
        assert wait_for(lambda: redis_server.client.info("replication").get("slave0", {}).get("state") == "online",
                        20)
        sink = volley_sink()
        volley.write_conf(sink.hostport, redis={"replicas_ack": 1, "replicas_ack_ms": 1500})
        rows = recipients(300)
        cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
        run = volley.run_worker()
        assert volley.stats(cid).get("delivered") == len(rows)
        waits = redis_server.client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)
        assert waits >= 1
        assert "replicas_ack" not in run.log
        # what the worker let go of is on the replica (WAIT returned only once it was)
        assert int(replica.client.hget(volley.key("stats", cid), "delivered")) == len(rows)

        replica.stop()
        assert wait_for(lambda: redis_server.client.info("replication")["connected_slaves"] == 0, 20)
        rows2 = recipients(40)
        cid2 = volley.push(volley.write_campaign(cid="alone"), volley.write_recipients(rows2, name="r2.csv"))
        run = volley.run_worker()
        assert volley.stats(cid2).get("delivered") == len(rows2)
        assert "replicas_ack: 0 of 1 replicas acknowledged" in run.log
        assert redis_server.client.info("commandstats")["cmdstat_wait"]["calls"] > waits
    finally:
        replica.stop()
