#!/bin/sh
# Adds DEBIAN/md5sums to .deb files cargo-deb built (it writes none), so
# that `dpkg --verify` and debsums can check an installed package's files.
#   packaging/finish-deb.sh target/debian/*.deb
set -eu
for deb in "$@"; do
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    dpkg-deb -R "$deb" "$work/root"
    (
        cd "$work/root"
        # Conffiles are left out, as dh_md5sums does: dpkg keeps their
        # sums itself.
        find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
            while IFS= read -r f; do
                if [ -f DEBIAN/conffiles ] && grep -qxF "/$f" DEBIAN/conffiles; then continue; fi
                md5sum "$f"
            done >DEBIAN/md5sums
    )
    chmod 0644 "$work/root/DEBIAN/md5sums"
    # xz as Debian ships; DEB_COMPRESS=gzip is faster (tests).
    dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" -b "$work/root" "$deb.new" >/dev/null
    mv "$deb.new" "$deb"
    rm -rf "$work"
    trap - EXIT
    echo "finish-deb.sh: $deb: md5sums added"
done
