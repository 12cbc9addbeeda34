"""Fixtures of the queue/ command tests (tests/conftest.py has the rest: redis_server, volley, ...).

  shop_campaign  factory: shop_campaign(cid=, subject=, extra=) writes a CAMPAIGN.ini with comments, both
                 bodies, [headers] and [defaults] (the dialect `volley push` reads) and returns its path
"""

import pytest


def _write_campaign(tmp_path, cid="spring", subject="Hello {{first_name}}; welcome", extra=""):
    (tmp_path / "body.txt").write_text("Dear {{first_name}},\nyour code is {{token}}.\n")
    (tmp_path / "body.html").write_text("<p>Dear {{first_name}}</p>\n")
    ini = tmp_path / "campaign.ini"
    ini.write_text(
        "# a comment\n[campaign]\n" + (f"id = {cid}\n" if cid else "") +
        '; another comment\nfrom = "Shop" <news@shop.example>\n'
        f"subject = {subject}\ntext_file = body.txt\nhtml_file = body.html\n"
        "mail_from = bounces@shop.example\nlist_unsubscribe = https://shop.example/u/{{token}}\n"
        "feedback_id = spring:shop\n" + extra +
        "[headers]\nX-Campaign = spring\n[defaults]\nfirst_name = friend\n")
    return ini


@pytest.fixture
def shop_campaign(tmp_path):
    def make(cid="spring", subject="Hello {{first_name}}; welcome", extra=""):
        return _write_campaign(tmp_path, cid=cid, subject=subject, extra=extra)

    return make
