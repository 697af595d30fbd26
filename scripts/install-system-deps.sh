#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, when they are missing.
# Needs root (or sudo) and apt-get; prints what it would need otherwise.
set -euo pipefail

# command → package that provides it
declare -A wanted=(
  [dot]=graphviz
)

missing=()
for command in "${!wanted[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${wanted[$command]}")
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
