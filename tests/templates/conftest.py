"""Fixtures for the templates/ tests.

  tpl_render   path of build/tools/tpl-render (under $VOLLEY_BUILD, default "build", relative to the repo root)
  render_msg   render_msg(fields, vars, to=, uniq=, now=, count=) -> list of message bytes (CompletedProcess on error)
"""

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tool_path():
    build = Path(os.environ.get("VOLLEY_BUILD", "build"))
    if not build.is_absolute():
        build = ROOT / build
    return build / "tools" / "tpl-render"


@pytest.fixture(scope="session")
def tpl_render():
    p = tool_path()
    if not os.access(p, os.X_OK):
        pytest.fail(f"{p} is missing: build it with `make {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}`")
    return str(p)


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
