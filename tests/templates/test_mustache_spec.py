"""The Mustache spec (interpolation, sections, inverted, comments) run through volley's renderer.

volley's variables are a flat map of strings, so JSON data maps as follows (documented in docs/templates.md):
string -> itself; number -> its JSON text as Python prints it (85, 1.21); true -> "true" (present, non-empty:
sections show); false -> "" (present, empty: sections hide, interpolates to nothing); null -> absent.
Cases whose data holds lists or objects, or whose template uses dotted names or the implicit iterator ".",
need context stacks volley does not have: they are skipped by name with the reason.
"""

import json
import re
import subprocess
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parent / "spec"
FILES = ["interpolation", "sections", "inverted", "comments"]


def load_cases():
    out = []
    for f in FILES:
        for t in json.loads((SPEC / f"{f}.json").read_text())["tests"]:
            out.append(pytest.param(t, id=f"{f}: {t['name']}"))
    return out


def skip_reason(case):
    data = case["data"]
    if not isinstance(data, dict) or any(isinstance(v, (list, dict)) for v in data.values()):
        return "data holds lists/objects: volley variables are a flat map of strings"
    if "partials" in case:
        return "partials are not supported"
    names = re.findall(r"\{\{[{&#^/]?\s*([^}\s]+)\s*\}?\}\}", case["template"])
    if any(n == "." for n in names):
        return "implicit iterator '.' needs a list/object context"
    if any("." in n for n in names):
        return "dotted names resolve through objects; volley looks 'a.b' up as one flat key"
    return None


def to_var(v):
    if v is None:
        return None
    if v is True:
        return "true"
    if v is False:
        return ""
    return str(v)


@pytest.mark.parametrize("case", load_cases())
def test_spec(case, tpl_render):
    why = skip_reason(case)
    if why:
        pytest.skip(f"{case['name']}: {why}")
    args = [tpl_render, "mustache", "--html", case["template"]]
    for k, v in case["data"].items():
        s = to_var(v)
        if s is not None:
            args.append(f"{k}={s}")
    r = subprocess.run(args, capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode() == case["expected"], case["desc"]
