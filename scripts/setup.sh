#!/usr/bin/env bash
# Installs what Tandem opens at run time on this kind of machine (Debian/Ubuntu): OpenBLAS.
# Safe to run again; does nothing when a BLAS is already there.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep 'libopenblas\.so\.0' >/dev/null; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q libopenblas0-pthread >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q libopenblas0-pthread >/dev/null
}
echo "setup: installed OpenBLAS"
