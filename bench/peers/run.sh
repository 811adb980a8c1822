#!/usr/bin/env bash
# make bench-peers: the same load against Posthorn and against Postfix
# delivering into Dovecot, on this machine, loopback only; prints one
# Markdown table with the Posthorn/peer ratio of each figure.
#
# Sizes (environment): BENCH_SYNC_MSGS (10000), BENCH_SYNC_MAX_BODY (30000),
# BENCH_SMTP_SECONDS (5 per step), BENCH_SMTP_CONNS (1,8,32),
# BENCH_SMTP_SIZES (1024,102400), BENCH_VISIBLE_TRIALS (20),
# BENCH_IDLE_CONNS (1000, opened twice), BENCH_APPENDS (1000), BENCH_BODY_FETCH (1000).
# BENCH_STEPS picks steps by name (comma-separated: memory, idle, smtp,
# visible, seed, sync, search, fetch, pop3, append; sync, search, fetch and
# pop3 need seed). BENCH_ONLY=posthorn|peers runs one side; BENCH_KEEP=1 keeps the work
# directory (logs, data) for a look afterwards; BENCH_OUT=FILE also writes
# the table there. PEERS_MAIL_FSYNC=always runs Dovecot with mail_fsync =
# always (see peers.sh) instead of its default, optimized.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
only=${BENCH_ONLY:-}

work=$(mktemp -d /tmp/posthorn-bench.XXXXXX)
chmod 755 "$work"
posthorn_pid=""
dns_pid=""
cleanup() {
  if [ -n "$dns_pid" ]; then kill "$dns_pid" 2>/dev/null || true; fi
  if [ -n "$posthorn_pid" ]; then kill "$posthorn_pid" 2>/dev/null || true; wait "$posthorn_pid" 2>/dev/null || true; fi
  bash "$root/bench/peers/peers.sh" stop "$work/peers" 2>/dev/null || true
  if [ "${BENCH_KEEP:-}" = 1 ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$only" = peers ] || go build -o "$work/bin/posthorn" ./cmd/posthorn
go build -o "$work/bin/loadgen" ./bench/loadgen
lg=$work/bin/loadgen
users=(alice@example.test bob@example.test carol@example.test)

wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

run_posthorn() {
  local d=$work/posthorn
  mkdir -p "$d/data"
  read -r smtp imap pop3 < <("$lg" ports 3 | paste -sd' ')
  # A resolver on loopback that answers at once (see loadgen dns).
  coproc DNS { exec "$lg" dns; }
  dns_pid=$DNS_PID
  read -r dns_addr <&"${DNS[0]}"
  cat >"$d/posthorn.toml" <<CONF
hostname = "mail.example.test"
data_dir = "data"
allow_plaintext_auth = true
log_level = "info"

[listen]
smtp = "127.0.0.1:$smtp"
submission = ""
submissions = ""
imap = "127.0.0.1:$imap"
imaps = ""
pop3 = "127.0.0.1:$pop3"
pop3s = ""
http = ""
metrics = ""

[outbound]
dns_server = "$dns_addr"

[limits]
max_connections = 100000
max_connections_per_ip = 100000
CONF
  export POSTHORN_CONFIG=$d/posthorn.toml
  "$work/bin/posthorn" domain add example.test
  for u in "${users[@]}"; do
    echo bench | "$work/bin/posthorn" user add --password-stdin "$u"
  done
  "$work/bin/posthorn" serve --config "$d/posthorn.toml" 2>"$d/posthorn.log" &
  posthorn_pid=$!
  wait_port "$smtp"; wait_port "$imap"; wait_port "$pop3"
  "$lg" run -name Posthorn -smtp "127.0.0.1:$smtp" -imap "127.0.0.1:$imap" -pop3 "127.0.0.1:$pop3" \
    -pid "$posthorn_pid" -out "$work/posthorn.json"
  kill "$posthorn_pid"
  wait "$posthorn_pid" || true
  posthorn_pid=""
  kill "$dns_pid" 2>/dev/null || true
  dns_pid=""
  unset POSTHORN_CONFIG
}

run_peers() {
  bash bench/peers/install.sh
  read -r smtp imap pop3 < <("$lg" ports 3 | paste -sd' ')
  mkdir -p "$work/peers"
  PEERS_PASSWORD_HASH=$("$lg" hash bench) \
    bash bench/peers/peers.sh start "$work/peers" "$smtp" "$imap" "$pop3" "${users[@]}"
  wait_port "$smtp"; wait_port "$imap"; wait_port "$pop3"
  "$lg" run -name Postfix+Dovecot -smtp "127.0.0.1:$smtp" -imap "127.0.0.1:$imap" -pop3 "127.0.0.1:$pop3" \
    -pid "$(bash bench/peers/peers.sh pids "$work/peers")" -out "$work/peers.json"
  bash bench/peers/peers.sh stop "$work/peers"
}

echo "fsync rate of this disk, 200 x 4 KiB O_DSYNC writes (for reference):" >&2
dd if=/dev/zero of="$work/fsync.test" bs=4k count=200 oflag=dsync 2>&1 | tail -1 >&2 || true
rm -f "$work/fsync.test"

[ "$only" = peers ] || run_posthorn
[ "$only" = posthorn ] || run_peers
if [ -z "$only" ]; then
  echo
  echo "Posthorn vs Postfix+Dovecot, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ), sync mailbox ${BENCH_SYNC_MSGS:-10000} msgs:"
  "$lg" table -a "$work/posthorn.json" -b "$work/peers.json" | tee ${BENCH_OUT:+"$BENCH_OUT"}
else
  cat "$work/$only.json"
fi
