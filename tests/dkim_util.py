"""DKIM helpers of the tests (tests/templates/test_dkim_verify.py, tests/integration/test_dkim_e2e.py).

  make_dkim_keys(dir, domain)   RSA-2048 + Ed25519 keys made with `openssl genpkey`, the [dkim] lines
                                for volley.conf and the TXT records a user would publish (docs/dkim.md)
  signatures(raw)               the DKIM-Signature fields of a message as tag dicts, in header order
  verify_each(raw, records)     python3-dkim's verdict for every signature (idx=0, 1, ...)
  check_wire(raw)               CRLF only, no NUL, no line over 998 octets
  check_no_defects(msg)         the email package found nothing wrong in any part or header
"""

import base64
import re
from pathlib import Path

import dkim

from volley_itest import openssl


def make_dkim_keys(d, domain, rsa_sel="e2er", ed_sel="e2ee"):
    """Generate both keys; returns {"dkim": the [dkim] section (conf_text(dkim=...)),
    "records": {qname bytes: TXT bytes}, ...}."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rsa, ed = d / f"{domain}.{rsa_sel}.pem", d / f"{domain}.{ed_sel}.pem"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa)
    openssl("genpkey", "-algorithm", "ED25519", "-out", ed)
    rsa.chmod(0o600)
    ed.chmod(0o600)
    rsa_der = openssl("pkey", "-in", rsa, "-pubout", "-outform", "DER")
    ed_der = openssl("pkey", "-in", ed, "-pubout", "-outform", "DER")
    # RSA: base64 of the SubjectPublicKeyInfo; Ed25519: the raw 32-byte key (RFC 8463), the SPKI's tail
    records = {
        f"{rsa_sel}._domainkey.{domain}.".encode(): b"v=DKIM1; k=rsa; p=" + base64.b64encode(rsa_der),
        f"{ed_sel}._domainkey.{domain}.".encode(): b"v=DKIM1; k=ed25519; p=" + base64.b64encode(ed_der[-32:]),
    }
    dkim = {"key": [f"{domain} {rsa_sel} rsa {rsa}", f"{domain} {ed_sel} ed25519 {ed}"]}
    return {"dkim": dkim, "records": records, "domain": domain, "selectors": [rsa_sel, ed_sel]}


def signatures(raw):
    """DKIM-Signature fields of raw (bytes), unfolded and split into tag dicts, in header order."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", errors="replace")
    fields = re.findall(r"^DKIM-Signature:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, flags=re.M | re.I)
    out = []
    for f in fields:
        f = re.sub(r"\s+", "", f)
        out.append(dict(t.split("=", 1) for t in f.split(";") if t))
    return out


def verify_each(raw, records):
    """[verdict of signature idx for idx in range(#signatures)]; a dkimpy exception counts as False."""

    def dnsfunc(name, timeout=5):
        return records.get(name)

    out = []
    for i in range(len(signatures(raw))):
        try:
            out.append(bool(dkim.DKIM(raw).verify(idx=i, dnsfunc=dnsfunc)))
        except dkim.DKIMException:
            out.append(False)
    return out


def check_wire(raw, label=""):
    assert b"\0" not in raw, f"{label}: NUL on the wire"
    assert re.search(rb"(?<!\r)\n", raw) is None, f"{label}: bare LF on the wire"
    assert re.search(rb"\r(?!\n)", raw) is None, f"{label}: bare CR on the wire"
    longest = max(len(line) for line in raw.split(b"\r\n"))
    assert longest <= 998, f"{label}: a line of {longest} octets"
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(b < 0x80 for b in head), f"{label}: 8-bit bytes in the header block"


def check_no_defects(msg, label=""):
    assert msg.defects == [], f"{label}: {msg.defects}"
    for part in msg.walk():
        assert part.defects == [], f"{label}: {part.get_content_type()}: {part.defects}"
        for name, value in part.items():
            assert getattr(value, "defects", ()) == (), f"{label}: header {name}: {value.defects}"
