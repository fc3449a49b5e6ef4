#!/bin/sh
# Installs Cutover on a host without the .deb packages, or removes it.
# Idempotent: running it twice changes nothing the second time; existing
# configs are never overwritten.
#
#   packaging/install.sh [--agent] [--coordinator] [--bin-dir DIR] [--root DIR]
#   packaging/install.sh --uninstall [--purge] [--agent] [--coordinator] [--root DIR]
#
# Without --agent/--coordinator: both. --bin-dir: where the built binaries
# are (default: target/release next to this script, and the agent from
# target/release-agent if it was built there and is newer, the size-optimized
# build the .deb ships: `cargo build --profile release-agent -p cutover-agent`).
# --root: install into another root (a chroot, an image, a test). --purge
# with --uninstall also removes configs and state (the host identity,
# releases, the CA!).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=""
bin_dir="$here/../target/release"
agent_bin_dir=""
agent=0
coordinator=0
uninstall=0
purge=0
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) agent=1 ;;
        --coordinator) coordinator=1 ;;
        --bin-dir) bin_dir="$2"; agent_bin_dir="$2"; shift ;;
        --root) root="$2"; shift ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ $agent = 0 ] && [ $coordinator = 0 ]; then agent=1; coordinator=1; fi
if [ "$(id -u)" != 0 ]; then echo "install.sh: run as root" >&2; exit 1; fi

say() { echo "install.sh: $*"; }

# put SRC DEST MODE: copies when missing or different.
put() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        chmod "$3" "$2"
        return
    fi
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.new.$$"
    chmod "$3" "$2.new.$$"
    mv -f "$2.new.$$" "$2"
    say "installed $2"
}

# config SRC DEST MODE: never overwrites an existing config.
config() {
    if [ -e "$2" ]; then return; fi
    put "$1" "$2" "$3"
}

reload() {
    if [ -z "$root" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
}

if [ $uninstall = 1 ]; then
    for c in agent coordinator; do
        eval "want=\$$c"
        [ "$want" = 1 ] || continue
        unit="cutover-$c.service"
        if [ -z "$root" ] && [ -d /run/systemd/system ]; then
            systemctl disable --now "$unit" 2>/dev/null || true
        fi
        rm -f "$root/etc/systemd/system/$unit"
        if [ $c = agent ]; then
            rm -f "$root/usr/bin/cutover-agent" "$root/usr/lib/sysctl.d/60-cutover-agent.conf"
            [ $purge = 1 ] && rm -rf "$root/etc/cutover/agent.toml" "$root/var/lib/cutover"
        else
            rm -f "$root/usr/bin/cutover"
            [ $purge = 1 ] && rm -rf "$root/etc/cutover/coordinator.toml" "$root/var/lib/cutover-coordinator"
        fi
        say "removed cutover-$c$( [ $purge = 1 ] && echo ' (with config and state)')"
    done
    rmdir "$root/etc/cutover" 2>/dev/null || true
    reload
    exit 0
fi

if [ -z "$agent_bin_dir" ]; then
    # The size-optimized agent, unless target/release has a newer one (a
    # later `cargo build --release` must not install a stale agent).
    small="$here/../target/release-agent/cutover-agent"
    if [ -x "$small" ] && { [ ! -x "$bin_dir/cutover-agent" ] || [ "$small" -nt "$bin_dir/cutover-agent" ]; }; then
        agent_bin_dir="$here/../target/release-agent"
    else
        agent_bin_dir="$bin_dir"
    fi
fi

need() {
    if [ ! -x "$1/$2" ]; then
        echo "install.sh: $1/$2 not found: build with \`cargo build --release --bins\` or pass --bin-dir" >&2
        exit 1
    fi
}

if [ $agent = 1 ]; then
    need "$agent_bin_dir" cutover-agent
    echo "install.sh: the agent from $agent_bin_dir"
    put "$agent_bin_dir/cutover-agent" "$root/usr/bin/cutover-agent" 755
    put "$here/systemd/cutover-agent.service" "$root/etc/systemd/system/cutover-agent.service" 644
    put "$here/sysctl/60-cutover-agent.conf" "$root/usr/lib/sysctl.d/60-cutover-agent.conf" 644
    config "$here/examples/agent.toml" "$root/etc/cutover/agent.toml" 640
    mkdir -p "$root/var/lib/cutover"
    # Traversable, not listable (apps with their own run.user reach their
    # releases; identity and journal are root-only below).
    chmod 711 "$root/var/lib/cutover"
fi

if [ $coordinator = 1 ]; then
    need "$bin_dir" cutover
    put "$bin_dir/cutover" "$root/usr/bin/cutover" 755
    put "$here/systemd/cutover-coordinator.service" "$root/etc/systemd/system/cutover-coordinator.service" 644
    config "$here/examples/coordinator.toml" "$root/etc/cutover/coordinator.toml" 640
    mkdir -p "$root/etc"
    if ! grep -q '^cutover:' "$root/etc/passwd" 2>/dev/null; then
        if command -v systemd-sysusers >/dev/null 2>&1; then
            systemd-sysusers --root="${root:-/}" "$here/systemd/cutover-coordinator.sysusers"
        else
            useradd --root "${root:-/}" --system --user-group --home-dir /var/lib/cutover-coordinator \
                --no-create-home --shell /usr/sbin/nologin cutover
        fi
        say "created user cutover"
    fi
    mkdir -p "$root/var/lib/cutover-coordinator"
    chmod 700 "$root/var/lib/cutover-coordinator"
    if [ -z "$root" ]; then
        chown cutover:cutover "$root/var/lib/cutover-coordinator"
        chgrp cutover "$root/etc/cutover/coordinator.toml"
    else
        # Names resolve inside the root, not here: use its numbers.
        uid=$(awk -F: '$1 == "cutover" { print $3 }' "$root/etc/passwd")
        gid=$(awk -F: '$1 == "cutover" { print $4 }' "$root/etc/passwd")
        chown "$uid:$gid" "$root/var/lib/cutover-coordinator"
        chgrp "$gid" "$root/etc/cutover/coordinator.toml"
    fi
fi

reload
say "done. Next steps: docs/operator-guide.md"
