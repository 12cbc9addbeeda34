#!/bin/sh
# mkdeb.sh - build $BUILD/deb/volley_<VERSION>_<arch>.deb (make deb)
#
# dpkg-deb from a staged `make install` (PREFIX=/usr, units in /lib/systemd/system as bookworm's
# systemd expects), built in its own tree ($BUILD-deb) with Debian's hardening flags (dpkg-buildflags):
# binaries stripped, man pages and changelog compressed, Depends from dpkg-shlibdeps, the config a
# conffile, md5sums. packaging/deb/ holds the control template, copyright and maintainer scripts.
# Env: BUILD (default build), VERSION (the VERSION file's), MAKE.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VERSION=${VERSION:-$(cat VERSION)}
MAKE=${MAKE:-make}
ARCH=$(dpkg --print-architecture)
OUT=$BUILD/deb
STAGE=$OUT/volley
DEBBUILD=$BUILD-deb

rm -rf "$OUT"
mkdir -p "$STAGE/DEBIAN"
TOP=$(pwd)
# hardening and reproducibility flags as a Debian build would use them
CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
LDFLAGS=$(dpkg-buildflags --get LDFLAGS)
$MAKE --no-print-directory -s BUILD="$DEBBUILD" CFLAGS="$CFLAGS" LDFLAGS="$LDFLAGS" \
    PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system DESTDIR="$TOP/$STAGE" install >/dev/null

for b in usr/bin/volley usr/lib/volley/volley-sink; do
    strip --remove-section=.comment --remove-section=.note --strip-unneeded "$STAGE/$b"
done
gzip -9n "$STAGE/usr/share/man/man1/volley.1" "$STAGE/usr/share/man/man5/volley.conf.5"

DOC=$STAGE/usr/share/doc/volley
mkdir -p "$DOC"
install -m 0644 packaging/deb/copyright "$DOC/copyright"
# a native package (the version is VERSION's, no Debian revision): changelog.gz. Its date is the last commit's, so the same tree makes the same package
DATE=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'volley (%s) unstable; urgency=medium\n\n  * volley %s, built from %s.\n\n -- volley maintainers <volley@example.org>  %s\n' \
    "$VERSION" "$VERSION" "$(git describe --always --dirty 2>/dev/null || echo 'a source tree')" "$DATE" \
    | gzip -9n >"$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"

# Depends: the shared libraries the binaries link (dpkg-shlibdeps reads debian/control in its cwd)
SHL=$OUT/shlibs
mkdir -p "$SHL/debian"
printf 'Source: volley\n\nPackage: volley\nArchitecture: any\n' >"$SHL/debian/control"
DEPS=$(cd "$SHL" && dpkg-shlibdeps -O -e"$TOP/$STAGE/usr/bin/volley" -e"$TOP/$STAGE/usr/lib/volley/volley-sink" 2>/dev/null |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$DEPS" ] || { echo "mkdeb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
sed -e "s|@VERSION@|$VERSION|" -e "s|@ARCH@|$ARCH|" -e "s|@SIZE@|$SIZE|" -e "s|@DEPENDS@|$DEPS, systemd|" \
    packaging/deb/control.in >"$STAGE/DEBIAN/control"
install -m 0644 packaging/deb/conffiles "$STAGE/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/postrm "$STAGE/DEBIAN/"
(cd "$STAGE" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums"
find "$STAGE" -type d -exec chmod 0755 {} +

DEB=$OUT/volley_${VERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
echo "mkdeb: $DEB"
