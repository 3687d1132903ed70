#!/usr/bin/env bash
# A headless browser for the browser tests (tests/system/test_docs_browser.py): Debian's Chromium and its
# chromedriver, at /usr/bin/chromium and /usr/bin/chromedriver.
#
#   source deploy/browser.sh && ensure_browser      # from another script (deploy/test.sh does)
#   bash deploy/browser.sh                          # on its own
#
# ensure_browser returns 0 when both are there (installing them with apt-get when missing, as root
# or through password-less sudo); otherwise it prints how to install them and returns 1. Sourcing
# this file changes no shell option.

BROWSER_BIN="${BROWSER_BIN:-/usr/bin/chromium}"
BROWSER_DRIVER="${BROWSER_DRIVER:-/usr/bin/chromedriver}"
# fonts-liberation: Chromium only recommends it, and without a font pages render as boxes.
BROWSER_PACKAGES=(chromium chromium-driver fonts-liberation)

_browser_log() { printf '[browser.sh] %s\n' "$*" >&2; }

_browser_present() {
  [ -x "$BROWSER_BIN" ] && [ -x "$BROWSER_DRIVER" ]
}

ensure_browser() {
  if _browser_present; then
    return 0
  fi
  local how="apt-get update && apt-get install -y --no-install-recommends ${BROWSER_PACKAGES[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    _browser_log "no Chromium at $BROWSER_BIN / $BROWSER_DRIVER and no apt-get to install it:"
    _browser_log "install Chromium and a matching chromedriver there (the browser tests are skipped until then)"
    return 1
  fi
  local -a root=()
  if [ "${EUID:-$(id -u)}" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      root=(sudo -n)
    else
      _browser_log "Chromium is not installed and this is not root (nor password-less sudo); as root run:"
      _browser_log "  $how"
      return 1
    fi
  fi
  _browser_log "installing ${BROWSER_PACKAGES[*]} with apt-get"
  local apt_log
  apt_log="$(mktemp "${TMPDIR:-/tmp}/browser-apt.XXXXXX")"
  if ! { "${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    "${root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${BROWSER_PACKAGES[@]}"; } >"$apt_log" 2>&1; then
    tail -n 20 "$apt_log" >&2
    _browser_log "apt-get failed (full log: $apt_log); to try by hand: $how"
    return 1
  fi
  rm -f "$apt_log"
  if ! _browser_present; then
    _browser_log "apt-get installed ${BROWSER_PACKAGES[*]} but $BROWSER_BIN or $BROWSER_DRIVER is still missing"
    return 1
  fi
  _browser_log "$("$BROWSER_DRIVER" --version 2>/dev/null | head -n 1)"
}

# Run on its own (not sourced): install, and exit with ensure_browser's status.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  ensure_browser
fi
