"""A redis-server locked down the way the README's "Securing Redis" says, for test_redis_auth.py.

  make_pki(dir)          a test CA, a server certificate for 127.0.0.1/localhost, a client
                         certificate, and an unrelated CA, all made with openssl at test time
  SecureRedis(dir, ...)  redis-server with the default user off, an `admin` user for the test's
                         own views and a `volley` user with VOLLEY_ACL (least privilege);
                         db: the database volley and the views use.
                         tls=True: TLS only (port 0, tls-port), client certificates optional
                         or required. .client / .raw are redis-py clients as admin, so the
                         Volley driver's Redis views work unchanged; .url is the volley URL.
  redis_keys(...)        the [redis] section volley.conf needs for it

Everything binds loopback; stop() (RedisServer's) ends the server.
"""

import subprocess
from pathlib import Path

from volley_itest import RedisServer

VOLLEY_USER, VOLLEY_PASS = "volley", "s3cr:et@/pw%"  # URL-special characters on purpose
ADMIN_PASS = "admin-pw"

# The least privilege volley needs (README "Securing Redis"): its own keys only, no channels, and
# exactly the commands it issues, directly or from its Lua scripts (found with INFO commandstats
# over the whole spine: push, worker, status, campaign, suppress, warmup, throttle).
VOLLEY_COMMANDS = (
    "auth select ping "
    "xadd xreadgroup xack xclaim xgroup|create xpending xlen xrange xdel xtrim xinfo|groups xinfo|consumers "
    "xinfo|stream hset hget hgetall hmget hincrby "
    "sadd srem smembers smismember scard sscan "
    "zadd zrem zcard zrange zrangebyscore zremrangebyscore "
    "get set del exists pexpire pttl incrby decrby type "
    "eval evalsha scan multi exec time"
)
VOLLEY_ACL = (f"{VOLLEY_USER} on >{VOLLEY_PASS} resetkeys ~volley:* resetchannels -@all "
              + " ".join("+" + c for c in VOLLEY_COMMANDS.split()))


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=cwd)


def make_pki(d):
    """CA, server (127.0.0.1, localhost) and client certificates signed by it, and a second CA."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "wrong-ca"):
        openssl("req", "-x509", *ec, "-days", "2", "-subj", f"/CN=volley test {ca}", "-keyout", f"{ca}.key",
                "-out", f"{ca}.pem", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                      ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-new", *ec, "-subj", f"/CN=volley test {name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    for k in d.glob("*.key"):
        k.chmod(0o600)
    return d


class SecureRedis(RedisServer):
    def __init__(self, tmp, tls=False, pki=None, client_auth="optional", acl=VOLLEY_ACL, db=0):
        self.tls, self.pki, self.db = tls, pki, db

        def args(port):
            # 127.0.0.2 too: a test reaches it by an address the server certificate does not name
            a = ["--bind", "127.0.0.1", "127.0.0.2", "--user", "default", "off",
                 "--user", "admin", "on", f">{ADMIN_PASS}", "~*", "&*", "+@all", "--user", *acl.split()]
            if tls:
                a += ["--port", "0", "--tls-port", str(port),
                      "--tls-cert-file", str(pki / "server.pem"), "--tls-key-file", str(pki / "server.key"),
                      "--tls-ca-cert-file", str(pki / "ca.pem"), "--tls-auth-clients", client_auth]
            return a

        kw = {"username": "admin", "password": ADMIN_PASS, "db": db}
        if tls:
            kw.update(ssl=True, ssl_ca_certs=str(pki / "ca.pem"), ssl_certfile=str(pki / "client.pem"),
                      ssl_keyfile=str(pki / "client.key"))
        super().__init__(tmp, extra_args=args, client_kw=kw)

    def volley_url(self, password=True):
        from urllib.parse import quote

        scheme = "rediss" if self.tls else "redis"
        cred = f"{VOLLEY_USER}:{quote(VOLLEY_PASS, safe='')}" if password else VOLLEY_USER
        return f"{scheme}://{cred}@127.0.0.1:{self.port}/{self.db}"

    @property
    def url(self):
        return self.volley_url()


def redis_keys(url, password_file=None, ca=None, client_cert=None, verify=None):
    """The [redis] section volley.conf needs (conf_text(redis=...))."""
    keys = {"url": url, "password_file": password_file, "ca_file": ca, "verify": verify}
    if client_cert:
        keys.update(cert_file=client_cert[0], key_file=client_cert[1])
    return keys
