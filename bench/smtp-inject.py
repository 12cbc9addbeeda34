#!/usr/bin/python3
"""
NAME
    smtp-inject.py - send the messages of a maildir to an SMTP server over S sessions (the bench's mta section)

SYNOPSIS
    bench/smtp-inject.py --maildir DIR --to HOST:PORT [--sessions 20] [--helo NAME]

DESCRIPTION
    Reads every file of DIR/new as volley-sink --maildir stored it: the two lines the sink prepends,
    "Return-Path: <from>" and "X-Volley-Sink-Rcpt: rcpt", give the envelope and are dropped; the rest is
    the message as it was sent. All messages are read, envelope parsed and dot-stuffed before the first
    connection, so the timed part is SMTP alone. Then S sessions (asyncio, one thread) take messages from
    one shared list: EHLO once, then per message MAIL, RCPT and DATA in one write (PIPELINING), the
    three replies, the body and its final dot, the reply; QUIT at the end. Any reply other than the
    expected 2xx/354 is an error: the session stops and the script exits 1.
    Prints one line: "injected=N start_ms=T seconds=S errors=E" (T: unix ms when the first session
    connected; S: from then to the last reply).
    Loopback use only (the bench): HOST must be an address in 127.0.0.0/8.
"""
import argparse
import asyncio
import ipaddress
import os
import sys
import time


def load(maildir):
    """[(mail_from, rcpt, dot-stuffed data ending in CRLF.CRLF)] from DIR/new, in name order."""
    out = []
    d = os.path.join(maildir, "new")
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            raw = f.read()
        rp, rest = raw.split(b"\r\n", 1)
        rc, body = rest.split(b"\r\n", 1)
        if not rp.startswith(b"Return-Path: <") or not rc.startswith(b"X-Volley-Sink-Rcpt: "):
            raise ValueError(f"{name}: not a volley-sink maildir file")
        mail_from = rp[len(b"Return-Path: <"):].rstrip(b">")
        rcpt = rc[len(b"X-Volley-Sink-Rcpt: "):].split(b",")[0].strip()
        if body.startswith(b"."):
            body = b"." + body
        body = body.replace(b"\r\n.", b"\r\n..")
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        out.append((mail_from, rcpt, body + b".\r\n"))
    return out


async def reply(r, want):
    """Read one (possibly multi-line) reply; raise unless its code starts with want."""
    while True:
        line = await r.readline()
        if not line:
            raise ConnectionError("connection closed by the server")
        if line[3:4] != b"-":
            break
    if not line.startswith(want):
        raise RuntimeError("unexpected reply: " + line[:200].decode("ascii", "replace").strip())


async def session(host, port, helo, msgs, state):
    r, w = await asyncio.open_connection(host, port)
    await reply(r, b"220")
    w.write(b"EHLO " + helo + b"\r\n")
    await reply(r, b"250")
    while state["next"] < len(msgs):
        mail_from, rcpt, data = msgs[state["next"]]
        state["next"] += 1
        w.write(b"MAIL FROM:<" + mail_from + b">\r\nRCPT TO:<" + rcpt + b">\r\nDATA\r\n")
        await reply(r, b"250")
        await reply(r, b"250")
        await reply(r, b"354")
        w.write(data)
        await reply(r, b"250")
        state["done"] += 1
    w.write(b"QUIT\r\n")
    await w.drain()
    w.close()


async def main_async(args, msgs):
    host, port = args.to.rsplit(":", 1)
    state = {"next": 0, "done": 0}
    res = await asyncio.gather(*(session(host, int(port), args.helo.encode(), msgs, state)
                                 for _ in range(args.sessions)), return_exceptions=True)
    errs = [e for e in res if isinstance(e, BaseException)]
    for e in errs[:3]:
        print(f"smtp-inject: {type(e).__name__}: {e}", file=sys.stderr)
    return state["done"], len(errs)


def main():
    ap = argparse.ArgumentParser(description="send a volley-sink maildir's messages over SMTP")
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--to", required=True, help="HOST:PORT, loopback only")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--helo", default="inject.bench.test")
    args = ap.parse_args()
    if not ipaddress.ip_address(args.to.rsplit(":", 1)[0]).is_loopback:
        sys.exit("smtp-inject: --to must be a loopback address")
    msgs = load(args.maildir)
    start_ms, t0 = int(time.time() * 1000), time.monotonic()
    done, errs = asyncio.run(main_async(args, msgs))
    print(f"injected={done} start_ms={start_ms} seconds={time.monotonic() - t0:.3f} errors={errs}")
    sys.exit(1 if errs or done != len(msgs) else 0)


if __name__ == "__main__":
    main()
