"""An authenticating relay (smarthost) for the engine tests: aiosmtpd with AUTH PLAIN/LOGIN over TLS.

  AuthRelay(cert, key, user, password, implicit=False, mechanisms=("PLAIN", "LOGIN"))
    implicit=False: the "587" flavour, STARTTLS required before anything else;
    implicit=True:  the "465" flavour, TLS on the listening socket from the first byte.
    AUTH is required before MAIL and only offered under TLS; mechanisms not listed are not offered.
    .auths: (mechanism, login, ok) per attempt; .messages: (mail_from, rcpts, tls, authenticated)

Listens on 127.0.0.1; tests route to it as `localhost:PORT` so the certificate's name matches.
"""

import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from volley_itest import free_port


class _Handler:
    def __init__(self, owner):
        self.owner = owner

    async def handle_DATA(self, server, session, envelope):
        with self.owner.lock:
            # session.ssl is only set by STARTTLS; the transport knows about implicit TLS too
            tls = server.transport.get_extra_info("ssl_object") is not None
            self.owner.messages.append((envelope.mail_from, list(envelope.rcpt_tos), tls,
                                        bool(session.authenticated)))
        return "250 2.0.0 OK relayed"


class AuthRelay:
    def __init__(self, cert, key, user, password, implicit=False, mechanisms=("PLAIN", "LOGIN")):
        self.lock = threading.Lock()
        self.user, self.password = user, password
        self.auths = []
        self.messages = []
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        kw = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": True,
              "auth_exclude_mechanism": [m for m in ("PLAIN", "LOGIN") if m not in mechanisms]}
        if implicit:
            # aiosmtpd 1.4.3 only counts STARTTLS as TLS for auth_require_tls and would offer no AUTH
            # at all on an implicit-TLS socket; the socket is TLS from the first byte anyway
            kw["auth_require_tls"] = False
            kw["ssl_context"] = ctx
        else:
            kw["tls_context"] = ctx
            kw["require_starttls"] = True
        self.port = free_port()
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     server_hostname="relay.test", ready_timeout=10, **kw)
        self.controller.start()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user
              and auth_data.password.decode() == self.password)
        with self.lock:
            self.auths.append((mechanism, auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None,
                               ok))
        # handled=False: aiosmtpd itself answers a failure with 535 5.7.8 (the default sends nothing)
        return AuthResult(success=ok, handled=False)

    def snapshot(self):
        with self.lock:
            return list(self.auths), list(self.messages)

    def stop(self):
        try:
            self.controller.stop()
        except Exception:
            pass
