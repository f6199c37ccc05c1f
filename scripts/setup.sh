#!/usr/bin/env bash
# Installs what Tandem opens at run time, and what its tests use, on this kind of machine
# (Debian/Ubuntu). Safe to run again: only what is missing is installed.
#   required  OpenBLAS (GEMM)
#   optional  Chromium (the report's headless-browser check); without it that test skips
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# Present when the shared library is in the loader's cache (grep without -q: under
# pipefail, -q would close the pipe early and fail the check).
has_library() { ldconfig -p 2>/dev/null | grep "$1" >/dev/null; }
has_command() { command -v "$1" >/dev/null 2>&1; }

updated=0
install() {   # install PACKAGE...: apt-get update only when the first try fails
  $SUDO apt-get install -y -q "$@" >/dev/null 2>&1 && return 0
  [ "$updated" -eq 1 ] && return 1
  updated=1
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "$@" >/dev/null
}

if ! has_library 'libopenblas\.so\.0'; then
  install libopenblas0-pthread
  echo "setup: installed OpenBLAS"
fi

if [ "${TANDEM_BROWSER_TESTS:-1}" != "0" ] && ! has_command chromium && ! has_command google-chrome; then
  if install chromium; then
    echo "setup: installed Chromium (for the report's browser check)"
  else
    echo "setup: could not install Chromium; the report's browser check will be skipped" >&2
  fi
fi

# MPI, both ABI families side by side (Debian: mpirun.openmpi + libmpi.so.40, mpirun.mpich +
# libmpich.so.12), for --backend mpi and its tests; iproute2 and util-linux for the
# multi-host tests (network namespaces).
# Best effort: without them the MPI tests skip with a message.
if ! has_library 'libmpi\.so\.40' || ! has_command mpirun.openmpi; then
  if install openmpi-bin libopenmpi3; then echo "setup: installed Open MPI"; else echo "setup: could not install Open MPI; its tests will be skipped" >&2; fi
fi
if ! has_library 'libmpich\.so\.12' || ! has_command mpirun.mpich; then
  if install mpich libmpich12; then echo "setup: installed MPICH"; else echo "setup: could not install MPICH; its tests will be skipped" >&2; fi
fi
if ! has_command ip || ! has_command unshare; then
  if install iproute2 util-linux; then echo "setup: installed iproute2"; else echo "setup: could not install iproute2; the multi-host tests will be skipped" >&2; fi
fi
