#!/bin/sh
# deps.sh - install the Debian packages volley builds and tests with, when missing.
# Runs apt-get update first (a fresh machine's package lists may be empty).
set -e
PKGS="build-essential pkg-config liburing-dev libssl-dev openssl libhiredis-dev libjemalloc-dev libc-ares-dev
libcmocka-dev redis-server redis-tools python3 python3-aiosmtpd python3-dkim python3-nacl python3-pytest python3-redis
dnsmasq-base postfix opendkim opendkim-tools libseccomp-dev libsystemd-dev systemd lintian libcurl4-openssl-dev libmicrohttpd-dev curl
prometheus valgrind"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# postfix asks a question at install time; answer it here so the install is unattended
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections 2>/dev/null || true
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends $missing
