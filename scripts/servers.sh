#!/usr/bin/env bash
# The servers and browser the integration tests start themselves on 127.0.0.1 (Debian/Ubuntu packages):
# redis-server (Redis online store), PostgreSQL's initdb (Airflow's metadata database),
# chromium and chromedriver (the search page test).
#   scripts/servers.sh check     list what is missing; exit 1 if anything is
#   scripts/servers.sh install   apt-get install what is missing (sudo when not root)
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
{ command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)

if [ "${1:-check}" = "check" ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "error: the tests need ${missing[*]}: run \`make servers\` (apt-get install ${missing[*]})," >&2
    echo "       or set SHOPRANK_SKIP_SERVERS=1 to skip the tests that use them" >&2
    exit 1
  fi
  exit 0
fi

[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# the packages start system-wide services; the tests start their own on free ports
$SUDO service redis-server stop >/dev/null 2>&1 || true
$SUDO service postgresql stop >/dev/null 2>&1 || true
