#!/usr/bin/env bash
# Prepares examples/base/rootfs for the base image: Debian's busybox-static (installed when
# missing) plus the minimal files a Unix userland expects.
#   scripts/prepare-base-rootfs.sh           this machine's: examples/base/rootfs
#   scripts/prepare-base-rootfs.sh arm64     another Debian architecture's busybox-static,
#                                            downloaded (never committed): examples/base/rootfs-arm64
set -euo pipefail
arch="${1:-}"
base="$(cd "$(dirname "$0")/.." && pwd)/examples/base"
if [ -z "$arch" ] || [ "$arch" = "$(dpkg --print-architecture)" ]; then
  root="$base/rootfs"
  bash "$(dirname "$0")/install-system-deps.sh" busybox
  busybox="$(command -v busybox)"
  if ldd "$busybox" >/dev/null 2>&1; then
    echo "$busybox is dynamically linked; the base image needs Debian's busybox-static (apt-get install busybox-static)" >&2
    exit 1
  fi
else
  root="$base/rootfs-$arch"
  # The package of another architecture, unpacked (not installed): apt-get download needs the
  # architecture added to dpkg and its package lists.
  downloads="$(mktemp -d)"
  trap 'rm -rf "$downloads"' EXIT
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    dpkg --add-architecture "$arch"
    apt-get update -qq >/dev/null
  fi
  # An old package list may name a version the mirror no longer has: update once and try again.
  (cd "$downloads" && apt-get download -qq "busybox-static:$arch" >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null
    (cd "$downloads" && apt-get download -qq "busybox-static:$arch" >/dev/null)
  }
  unpacked="$downloads/unpacked"
  dpkg-deb -x "$downloads"/busybox-static_*_"$arch".deb "$unpacked"
  busybox="$unpacked/bin/busybox"
fi
rm -rf "$root"
mkdir -p "$root"/{bin,etc,root,tmp,proc,sys,dev,home/app,usr/bin,usr/sbin,sbin,var/tmp}
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
app:x:1000:
nogroup:x:65534:
GROUP
chown 1000:1000 "$root/home/app"
