#!/usr/bin/env bash
# Installs the Debian packages that provide the given commands, when they are missing.
#   scripts/install-system-deps.sh            what the tests need
#   scripts/install-system-deps.sh b3sum      also what a benchmark needs
# Needs root (or sudo) and apt-get; says what is missing otherwise.
set -euo pipefail

# command → Debian package
declare -A package_of=(
  [dot]=graphviz
  [git]=git
  [b3sum]=b3sum
  [setpriv]=util-linux
  [busybox]=busybox-static
  [crun]=crun
  [skopeo]=skopeo
  [umoci]=umoci
  [dockerd]=docker.io
  [wrk]=wrk
  [nginx]=nginx-light
  [docker-registry]=docker-registry
  [htpasswd]=apache2-utils
  [openssl]=openssl
  [chromium]=chromium
  [ssh-agent]=openssh-client
  [tmux]=tmux
  [zsh]=zsh
  [fish]=fish
  [rpm]=rpm
  [pg_ctlcluster]=postgresql
  [ceph-mon]=ceph-mon
  [ceph-osd]=ceph-osd
  [radosgw]=radosgw
  [ceph]=ceph-common
  [slirp4netns]=slirp4netns
  [qemu-aarch64-static]=qemu-user-static
)
commands=("$@")
[ ${#commands[@]} -eq 0 ] && commands=(git dot setpriv busybox crun slirp4netns qemu-aarch64-static skopeo umoci docker-registry htpasswd openssl dockerd chromium ssh-agent tmux zsh fish rpm pg_ctlcluster ceph-mon ceph-osd radosgw ceph)

missing=()
for command in "${commands[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${package_of[$command]:-$command}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "missing packages: ${missing[*]} (run as root or install them with apt-get)" >&2
    exit 1
  fi
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a registry on :5000 (all interfaces); the tests run their own on loopback.
if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
