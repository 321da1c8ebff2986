#!/usr/bin/env bash
# The browser check of `inspect` (slow suite and `make fault-drill`) drives Debian's chromium with chromium-driver.
# Installs both when they are missing and this user may (root, or password-less sudo); otherwise fails with what to
# run, so a missing browser is a failed set-up rather than a quietly skipped test.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
packages=(chromium chromium-driver)
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "set-up failed: the browser check needs ${packages[*]}; run: sudo apt-get install ${packages[*]}" >&2
  exit 1
fi
echo "installing ${packages[*]} (Debian packages) for the browser check ..."
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null || {
  echo "set-up failed: ${packages[*]} did not install" >&2
  exit 1
}
