"""Fixtures for the templates/ tests.

  tpl_render   path of build/tools/tpl-render (under $VOLLEY_BUILD, default "build")
  render_msg   render_msg(fields, vars, to=, uniq=, now=, count=) -> list of message bytes (CompletedProcess on error)
"""

import subprocess

import pytest

from volley_itest import binary


@pytest.fixture(scope="session")
def tpl_render():
    return str(binary("tools/tpl-render"))


@pytest.fixture
def render_msg(tpl_render):
    def render(fields, vars=None, to="rcpt@example.net", uniq="1700000000000-0", now=1700000000, count=1,
               check=True):
        args = [tpl_render, "message", "--to", to, "--uniq", uniq, "--now", str(now), "--count", str(count)]
        args += [f"f:{k}={v}" for k, v in fields.items()]
        args += [f"v:{k}={v}" for k, v in (vars or {}).items()]
        r = subprocess.run(args, capture_output=True, timeout=30)
        if not check:
            return r
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        return r.stdout.split(b"\0")

    return render
