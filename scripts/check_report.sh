#!/usr/bin/env bash
# Loads a Tandem HTML report (HTMLReport.render) in headless Chromium and checks that
#  (a) the page ran cleanly: Chromium logged no console message at all. The report logs
#      nothing itself, so any message is a fault: an uncaught exception, or an SVG
#      attribute Chromium rejected ("Error: <rect> attribute width: Expected length").
#  (b) every <svg> drew something: after load, the report's inline script writes
#      data-charts-total and data-charts-drawn onto <body> (charts with a data mark whose
#      box is not empty) and data-charts-empty (the ids of the others); drawn and total
#      must both equal the number of <svg> elements in the file.
# Installs Chromium (Debian 12 package `chromium`) when no Chromium or Chrome is found.
#
# Usage: scripts/check_report.sh REPORT.html
# Exit status: 0 passed, 1 a check failed, 2 bad usage, 3 no browser.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 REPORT.html" >&2
  exit 2
fi
if [ ! -f "$1" ]; then
  echo "check_report: no such file: $1" >&2
  exit 2
fi
path="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

find_browser() {
  local b
  for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
  done
  return 1
}

# MARK: - Chromium

browser="$(find_browser || true)"
if [ -z "$browser" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "check_report: installing Chromium with apt-get (a minute or so)"
  started="$(now)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q chromium >/dev/null
  echo "check_report: installed Chromium in $(since "$started") s"
  browser="$(find_browser || true)"
  if [ -z "$browser" ]; then
    echo "check_report: Chromium is still missing after apt-get install chromium" >&2
    exit 3
  fi
fi
# Debian's launcher script prints a harmless shell warning on some machines; drop it.
version="$("$browser" --version 2>/dev/null || echo "unknown browser")"

# MARK: - Load the page

profile="$(mktemp -d)"
dom="$(mktemp)"
log="$(mktemp)"
trap 'rm -rf "$profile" "$dom" "$log"' EXIT

url="file://${path//%/%25}"
url="${url// /%20}"
url="${url//#/%23}"
url="${url//\?/%3F}"

started="$(now)"
# --no-sandbox: Chromium refuses to run as root with its sandbox, and the page is a local
# file we wrote. --user-data-dir: a throwaway profile, so nothing is left in $HOME.
if ! timeout 120 "$browser" --headless=new --no-sandbox --disable-gpu --no-first-run \
    --user-data-dir="$profile" --enable-logging=stderr --v=0 --dump-dom "$url" >"$dom" 2>"$log"; then
  echo "check_report: FAILED: Chromium did not finish loading $path; its log ends:"
  tail -n 20 "$log"
  exit 1
fi
elapsed="$(since "$started")"

# MARK: - Checks

expected="$(grep -o '<svg[ >]' "$path" | wc -l | tr -d ' ')"
attribute() { grep -o "$1=\"[0-9]*\"" "$dom" | head -n 1 | grep -o '[0-9][0-9]*' || true; }
total="$(attribute data-charts-total)"
drawn="$(attribute data-charts-drawn)"
console="$(grep -E ':CONSOLE[:(]|Uncaught' "$log" || true)"

failed=0
if [ -n "$console" ]; then
  echo "check_report: FAILED: console messages:"
  echo "$console"
  failed=1
fi
if [ -z "$drawn" ] || [ -z "$total" ]; then
  echo "check_report: FAILED: the page's script did not mark <body> (no data-charts-drawn); did it run?"
  failed=1
elif [ "$total" != "$expected" ] || [ "$drawn" != "$expected" ]; then
  empty="$(grep -o 'data-charts-empty="[^"]*"' "$dom" | head -n 1 | sed 's/^data-charts-empty="//; s/"$//' || true)"
  echo "check_report: FAILED: $drawn of $total <svg> charts drew something (nothing drawn: ${empty:-?}); the file has $expected"
  failed=1
fi
if [ "$failed" -ne 0 ]; then
  exit 1
fi
echo "check_report: OK: $drawn/$expected charts drew something, no console messages ($version, page checked in $elapsed s)"
