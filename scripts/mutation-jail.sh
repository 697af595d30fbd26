#!/usr/bin/env bash
# Runs one mutant's tests where the mutant cannot hurt the machine. A mutant of the code that
# deletes trees (removeAll, removeTree) can delete anything the process may: on 2026-12-07 one
# emptied /root through a mutated parent path. So the tests run in a private mount namespace
# where every mounted file system is read-only, and /tmp, /run and $HOME are fresh tmpfs.
#   scripts/mutation-jail.sh COMMAND...
set -euo pipefail
exec unshare --mount --propagation private bash -c '
  set -euo pipefail
  findmnt -rno TARGET | sort -r | while read -r target; do
    case "$target" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    mount -o remount,bind,ro "$target" 2>/dev/null || true
  done
  mount -t tmpfs -o mode=1777 tmpfs /tmp
  mount -t tmpfs -o mode=0755 tmpfs /run
  mount -t tmpfs -o mode=0700 tmpfs "$HOME"
  exec "$@"
' jail "$@"
