#!/usr/bin/env bash
# Installs Debian packages for the project's scripts: `apt-install.sh <why> <package>...`.
# Runs apt-get directly as root, through passwordless sudo otherwise; fails with one line saying
# what to install by hand when neither is possible. Output goes to stderr.
set -euo pipefail
why="$1"
shift
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "$why: this user cannot run apt-get (install Debian's $* packages)" >&2
    exit 1
  fi
fi
echo "$why: installing Debian's $*" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2 || true
$sudo apt-get install -y -qq --no-install-recommends "$@" >&2
