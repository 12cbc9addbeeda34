#!/bin/sh
# deb-check.sh - the package built by `make deb` installs, works and goes away cleanly (make deb-check)
#
#   lintian: no errors (warnings and info are printed, not fatal)
#   dpkg -i; volley --version is VERSION's; volley check accepts the installed /etc/volley/volley.conf;
#   the man pages are found; systemd-analyze verify passes for an instance of the installed unit;
#   dpkg -P removes every file (the volley system user stays, as Debian's policy wants).
# Needs root (dpkg -i) and refuses to touch a volley package that is installed already.
# Env: BUILD (default build), VERSION.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VERSION=${VERSION:-$(cat VERSION)}
DEB=$BUILD/deb/volley_${VERSION}_$(dpkg --print-architecture).deb
[ -f "$DEB" ] || { echo "deb-check: $DEB missing (run make deb)" >&2; exit 1; }

echo "== lintian $DEB"
lintian --fail-on error --tag-display-limit 0 "$DEB" 2>&1 | grep -v 'running with root privileges' || true
lintian --fail-on error "$DEB" >/dev/null 2>&1 || { echo "deb-check: lintian reports errors" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || { echo "deb-check: dpkg -i needs root; stopping after lintian" >&2; exit 2; }
if dpkg-query -W -f='${Status}' volley 2>/dev/null | grep -q "installed"; then
    echo "deb-check: a volley package is installed already; not replacing it" >&2
    exit 2
fi

echo "== dpkg -i"
dpkg -i "$DEB"
TMP=$(mktemp -d)
trap 'dpkg -P volley >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT
passed=1 # lintian
failed=0
# check NAME CMD... - one check of the installed package; its result counted, the next one run regardless
check() {
    name=$1
    shift
    if "$@"; then
        echo "ok: $name"
        passed=$((passed + 1))
    else
        echo "FAILED: $name" >&2
        failed=$((failed + 1))
    fi
}
version_is() { [ "$(/usr/bin/volley --version)" = "volley $VERSION" ]; }
check "volley --version is 'volley $VERSION'" version_is
check "volley check -c /etc/volley/volley.conf" /usr/bin/volley check -c /etc/volley/volley.conf
check "man volley, man volley.conf" sh -c 'man -w volley >/dev/null && man -w volley.conf >/dev/null'
# an instance of the installed template, as systemctl would load it
cp /lib/systemd/system/volley-worker@.service "$TMP/volley-worker@ci.service"
check "systemd-analyze verify volley-worker@ci.service" systemd-analyze verify "$TMP/volley-worker@ci.service"

echo "== dpkg -P"
dpkg -P volley
trap 'rm -rf "$TMP"' EXIT
gone() {
    for f in /usr/bin/volley /lib/systemd/system/volley-worker@.service /etc/volley/volley.conf \
        /usr/share/man/man1/volley.1.gz; do
        [ ! -e "$f" ] || { echo "$f is still there" >&2; return 1; }
    done
}
check "dpkg -P removes every file" gone
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
