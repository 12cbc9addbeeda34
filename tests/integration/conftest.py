"""Fixtures for volley's end-to-end tests (helpers live in volley_itest.py).

  redis_server   a throwaway redis-server on a free loopback port; .client is a redis.Redis
  tls_cert       (cert, key) of a self-signed certificate made with openssl at test time
  smtp_receiver  factory: aiosmtpd receiver(tls=, require_tls=, reject=[globs], defer=[globs])
  volley_sink    factory: build/volley-sink(*extra args, tls=) with a maildir and stats file
  volley         a Volley driver bound to redis_server: conf/campaign/CSV writers,
                 push, worker (always with a timeout), status, Redis views
  recipients     make_recipients(n): rows {email, name, token}

Every process a fixture starts is stopped in its teardown, also when the test fails.
"""

import subprocess

import pytest

from volley_itest import RedisServer, SmtpReceiver, Volley, VolleySink, make_recipients


@pytest.fixture
def redis_server(tmp_path):
    r = RedisServer(tmp_path / "redis")
    yield r
    r.stop()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed RSA certificate for 127.0.0.1 / localhost, made at test time."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture
def smtp_receiver(tls_cert):
    made = []

    def make(tls=False, require_tls=False, reject=(), defer=()):
        r = SmtpReceiver(cert=tls_cert if tls else None, require_tls=require_tls, reject=reject, defer=defer)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def volley_sink(tmp_path, tls_cert):
    made = []

    def make(*args, tls=False):
        s = VolleySink(tmp_path / f"sink{len(made)}", args=args, cert=tls_cert if tls else None)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def volley(tmp_path, redis_server):
    v = Volley(tmp_path / "volley", redis_server)
    yield v
    v.stop()


@pytest.fixture
def recipients():
    return make_recipients
