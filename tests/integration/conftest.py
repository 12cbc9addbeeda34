"""Fixtures of the integration tests beyond tests/conftest.py.

  dnsmasq   session-wide dnsmasq on loopback serving the test zone of engine_dns.py; .conf is the
            [dns] section that points a worker at it
  cluster   a Redis Cluster (tests/cluster_util.py: 3 primaries + 3 replicas) shared by one test module
  own_cluster  the same for one test alone (tests that kill or restart nodes)
"""

import pytest

from cluster_util import RedisCluster
from engine_dns import Dnsmasq


@pytest.fixture(scope="session")
def dnsmasq(tmp_path_factory):
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"))
    yield d
    d.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = RedisCluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture
def own_cluster(tmp_path):
    c = RedisCluster(tmp_path / "cluster")
    yield c
    c.stop()
