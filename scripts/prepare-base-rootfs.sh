#!/usr/bin/env bash
# Prepares examples/base/rootfs for the base image: Debian's busybox-static (installed when
# missing) plus the minimal files a Unix userland expects.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)/examples/base/rootfs"
bash "$(dirname "$0")/install-system-deps.sh" busybox
busybox="$(command -v busybox)"
if ldd "$busybox" >/dev/null 2>&1; then
  echo "$busybox is dynamically linked; the base image needs Debian's busybox-static (apt-get install busybox-static)" >&2
  exit 1
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
