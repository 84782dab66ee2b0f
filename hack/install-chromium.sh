#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (test/browser) and the dashboard's
# screenshots (hack/screenshots). Idempotent: nothing is done when chromium is already there.
# It needs root (apt-get) and a reachable Debian mirror; without them it says so and exits 0,
# and the browser tests then skip outside CI (CI=true makes them fail instead).
set -euo pipefail

for b in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
  if [[ -n "$b" && -x "$b" ]]; then
    echo "install-chromium: $b is installed"
    exit 0
  fi
done

if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n "$0" "$@"
  fi
  echo "install-chromium: chromium is missing and installing it needs root (apt-get install -y chromium)" >&2
  [[ "${CI:-}" == true ]] && exit 1
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-chromium: chromium is missing and this is not a Debian-based system: install chromium and set CHROMIUM to its path" >&2
  [[ "${CI:-}" == true ]] && exit 1
  exit 0
fi

echo "install-chromium: installing Debian's chromium (apt-get install -y chromium)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends chromium fonts-dejavu-core; then
  apt-get update
  apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi
