"""Fixtures of volley's Python tests (the helpers behind them live in volley_itest.py).

  redis_server   a throwaway redis-server on a free loopback port; .client is a redis.Redis
  aof_redis      the same with AOF (appendfsync always): .kill() and .start() keep port and data
  tls_cert       (cert, key) of a self-signed certificate made with openssl at test time
  test_ca        a throwaway certificate authority: .pem, .issue(names) -> (cert, key)
  smtp_receiver  factory: aiosmtpd receiver(tls=, require_tls=, reject=[globs], defer=[globs], rule=fn)
  volley_sink    factory: build/volley-sink(*extra args, tls=) with a maildir and stats file
  volley         a Volley driver bound to redis_server: volley.conf builder, campaign/CSV writers,
                 push, the worker launcher (always with a timeout), status, Redis views
  aof_volley     a Volley driver bound to aof_redis
  recipients     make_recipients(n): rows {email, name, token}

Every process a fixture starts is stopped in its teardown, also when the test fails.
"""

import pytest

from volley_itest import (RedisServer, SmtpReceiver, TestCA, Volley, VolleySink, make_recipients, self_signed_cert,
                          stopped_at_teardown)


@pytest.fixture
def redis_server(tmp_path):
    r = RedisServer(tmp_path / "redis")
    yield r
    r.stop()


@pytest.fixture
def aof_redis(tmp_path):
    r = RedisServer(tmp_path / "redis-aof", aof=True)
    yield r
    r.stop()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    return TestCA(tmp_path_factory.mktemp("testca"))


@pytest.fixture
def smtp_receiver(tls_cert):
    def make(_n, tls=False, require_tls=False, reject=(), defer=(), rule=None):
        return SmtpReceiver(cert=tls_cert if tls else None, require_tls=require_tls, reject=reject, defer=defer,
                            rule=rule)

    yield from stopped_at_teardown(make)


@pytest.fixture
def volley_sink(tmp_path, tls_cert):
    def make(n, *args, tls=False):
        return VolleySink(tmp_path / f"sink{n}", args=args, cert=tls_cert if tls else None)

    yield from stopped_at_teardown(make)


@pytest.fixture
def volley(tmp_path, redis_server):
    v = Volley(tmp_path / "volley", redis_server)
    yield v
    v.stop()


@pytest.fixture
def aof_volley(tmp_path, aof_redis):
    v = Volley(tmp_path / "volley", aof_redis)
    yield v
    v.stop()


@pytest.fixture
def recipients():
    return make_recipients
