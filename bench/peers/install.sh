#!/usr/bin/env bash
# Installs Postfix and Dovecot from Debian for the side-by-side benchmark,
# without starting or configuring any system service: the benchmark runs
# private instances from a temporary directory (see run.sh).
#
# - debconf is told "No configuration" for Postfix, so no /etc/postfix/main.cf
#   is written and nothing listens on port 25.
# - A policy-rc.d that refuses every start is put in place for the duration
#   of the install (and the one already there, if any, is kept).
# - Afterwards any postfix/dovecot daemon that an install script started
#   anyway is stopped.
set -euo pipefail

pkgs=(postfix dovecot-imapd dovecot-pop3d dovecot-lmtpd)
need=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

policy=/usr/sbin/policy-rc.d
restore=""
if [ -e "$policy" ]; then
  restore=$(mktemp)
  cp -p "$policy" "$restore"
fi
printf '#!/bin/sh\nexit 101\n' >"$policy"
chmod 755 "$policy"
cleanup() {
  if [ -n "$restore" ]; then mv "$restore" "$policy"; else rm -f "$policy"; fi
}
trap cleanup EXIT

apt_get() { apt-get -o DPkg::Lock::Timeout=600 -y -qq "$@"; }
# The package lists may be stale (404 on a superseded version): refresh once.
if ! apt_get install --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  apt_get update
  apt_get install --no-install-recommends "${need[@]}" >/dev/null
fi

# Nothing of the system's own may be left running.
if [ -x /usr/sbin/postfix ] && /usr/sbin/postfix status >/dev/null 2>&1; then
  /usr/sbin/postfix stop || true
fi
if [ -f /run/dovecot/master.pid ]; then
  kill "$(cat /run/dovecot/master.pid)" 2>/dev/null || true
fi
