"""Through the whole worker: messages are DKIM-signed (RSA and Ed25519 dual
signatures verified by python3-dkim against the published public keys), and
`[tls] mode = required` never sends a message in the clear."""

import base64
import subprocess

import dkim

from volley_itest import make_recipients


def _keypair(tmp, algo):
    key = tmp / f"{algo}.pem"
    if algo == "rsa":
        gen = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key)]
    else:
        gen = ["openssl", "genpkey", "-algorithm", "ED25519", "-out", str(key)]
    subprocess.run(gen, check=True, capture_output=True, timeout=60)
    der = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                         capture_output=True, timeout=30).stdout
    pub = der if algo == "rsa" else der[-32:]  # RFC 8463: the raw 32-byte key
    k = "rsa" if algo == "rsa" else "ed25519"
    return key, b"v=DKIM1; k=%s; p=%s" % (k.encode(), base64.b64encode(pub))


def test_messages_are_dkim_signed_rsa_and_ed25519(volley, smtp_receiver, tmp_path):
    rx = smtp_receiver()
    rsa_key, rsa_txt = _keypair(tmp_path, "rsa")
    ed_key, ed_txt = _keypair(tmp_path, "ed25519")
    dns = {b"s1r._domainkey.sender.test.": rsa_txt, b"s1e._domainkey.sender.test.": ed_txt}

    def dnsfunc(name, timeout=5):
        if not name.endswith(b"."):
            name += b"."
        return dns.get(name)

    volley.write_conf(rx.hostport,
                      dkim={"key": [f"sender.test s1r rsa {rsa_key}", f"sender.test s1e ed25519 {ed_key}"]})
    rows = make_recipients(20)
    cid = volley.push(volley.write_campaign(
        sender="News <news@sender.test>",
        extra={"list_unsubscribe": "https://unsub.sender.test/u/{{token}}"}), volley.write_recipients(rows))
    volley.run_worker()
    msgs = rx.snapshot()
    assert len(msgs) == len(rows)
    for m in msgs:
        sigs = m.msg.get_all("DKIM-Signature") or []
        algos = sorted(str(s).replace(" ", "").split("a=", 1)[1].split(";", 1)[0] for s in sigs)
        assert algos == ["ed25519-sha256", "rsa-sha256"], f"expected a dual signature, got {algos}"
        d = dkim.DKIM(m.data)
        for i in range(len(sigs)):
            assert d.verify(idx=i, dnsfunc=dnsfunc), f"signature {i} of the message to {m.rcpt_tos} failed"
        # RFC 8058: the unsubscribe headers must be covered by the signature
        for s in sigs:
            h = str(s).replace(" ", "").replace("\t", "").lower().split("h=", 1)[1].split(";", 1)[0].split(":")
            assert "from" in h and "subject" in h and "list-unsubscribe" in h, h
    assert volley.stats(cid).get("delivered") == len(rows)


def test_tls_required_never_sends_in_the_clear(volley, smtp_receiver):
    """A server that does not offer STARTTLS gets nothing: the jobs are deferred (kept for retry), not
    bounced, and not delivered in the clear."""
    rx = smtp_receiver(tls=False)
    volley.write_conf(rx.hostport, tls="required")
    rows = make_recipients(5)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    volley.run_worker(timeout=20)
    assert rx.snapshot() == [], "a message went out without TLS"
    ev = volley.events()
    assert sorted(e["to"] for e in ev) == sorted(r["email"] for r in rows)
    assert all(e["status"] == "deferred" for e in ev), ev
    assert "tls" in ev[0]["reply"].lower() or "starttls" in ev[0]["reply"].lower(), ev[0]
    assert volley.r.zcard(volley.key("retry")) == len(rows)
    assert volley.stats(cid).get("deferred") == len(rows)


def test_tls_required_delivers_over_starttls(volley, smtp_receiver):
    rx = smtp_receiver(tls=True, require_tls=True)
    volley.write_conf(rx.hostport, tls="required")
    rows = make_recipients(20)
    cid = volley.push(volley.write_campaign(), volley.write_recipients(rows))
    volley.run_worker()
    msgs = rx.snapshot()
    assert sorted(m.rcpt_tos[0] for m in msgs) == sorted(r["email"] for r in rows)
    assert all(m.tls for m in msgs)
    assert volley.stats(cid).get("delivered") == len(rows)
