"""Fixtures of the integration tests beyond tests/conftest.py.

  dnsmasq   session-wide dnsmasq on loopback serving the test zone of engine_dns.py; .conf is the
            [dns] section that points a worker at it
"""

import pytest

from engine_dns import Dnsmasq


@pytest.fixture(scope="session")
def dnsmasq(tmp_path_factory):
    d = Dnsmasq(tmp_path_factory.mktemp("dnsmasq"))
    yield d
    d.stop()
