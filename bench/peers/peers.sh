#!/usr/bin/env bash
# Private Postfix + Dovecot instances for the side-by-side benchmark.
#
#   peers.sh start DIR SMTP_PORT IMAP_PORT POP3_PORT USER...
#   peers.sh stop DIR
#   peers.sh pids DIR        # master PIDs of both, comma-separated
#
# Everything lives under DIR: Postfix gets its own config_directory,
# queue_directory and data_directory (postfix -c DIR/postfix/etc), Dovecot
# its own base_dir, state and log (dovecot -c DIR/dovecot/dovecot.conf).
# Only 127.0.0.1 ports are used; the system's /etc/postfix and
# /etc/dovecot configurations are neither read for the instances nor
# changed, and no system service is started.
#
# Configured like Posthorn: Postfix accepts mail for example.test on a
# port-25 stand-in and hands it to Dovecot over LMTP (a unix socket);
# Dovecot serves IMAP and POP3 with passwd-file users (password "bench",
# argon2id-hashed with Posthorn's parameters when PEERS_PASSWORD_HASH is set),
# maildir, fsync kept at Dovecot's durable default (mail_fsync =
# optimized: a delivered message is fsynced before it is reported saved),
# and plaintext authentication allowed without TLS, as Posthorn is run
# with allow_plaintext_auth = true for the benchmark.
#
# PEERS_MAIL_FSYNC=always sets mail_fsync = always: Dovecot then also
# fsyncs its index and dovecot-uidlist before answering, so that the UID
# an APPEND reported survives a crash, as Posthorn's does (with optimized
# a crash can lose the uidlist and the message gets a new UID).
set -euo pipefail

cmd=${1:?usage: peers.sh start|stop|pids DIR ...}
dir=${2:?DIR}
pf=$dir/postfix
dc=$dir/dovecot

start() {
  local smtp=$1 imap=$2 pop3=$3
  shift 3
  mkdir -p "$pf/etc" "$pf/queue" "$pf/data" "$dc/run" "$dc/state" "$dir/mail"
  chmod 755 "$dir" "$dir/mail"
  chown postfix "$pf/data"
  chown nobody:nogroup "$dir/mail"

  # The password "bench", hashed as Posthorn hashes it when PEERS_PASSWORD_HASH
  # is given (run.sh passes `loadgen hash bench`), so that a login costs both
  # servers the same.
  local pw="{PLAIN}bench"
  if [ -n "${PEERS_PASSWORD_HASH:-}" ]; then pw="{ARGON2ID}$PEERS_PASSWORD_HASH"; fi
  local users=() inline=""
  for u in "$@"; do
    users+=("$u:$pw:65534:65534::$dir/mail/$u::")
    inline+="$u=ok, "
  done
  printf '%s\n' "${users[@]}" >"$dc/users"
  chmod 644 "$dc/users"

  cat >"$dc/dovecot.conf" <<CONF
base_dir = $dc/run
state_dir = $dc/state
log_path = $dc/dovecot.log
instance_name = posthorn-bench-dovecot
protocols = imap pop3 lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mail_fsync = ${PEERS_MAIL_FSYNC:-optimized}
first_valid_uid = 1000
mail_max_userip_connections = 100000
default_process_limit = 4000
default_client_limit = 8000
default_vsz_limit = 1G
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dc/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $dc/users
}
# The built-in services cap imap at 1024 processes (one per connection);
# the idle-connection figure needs 2,000.
service imap {
  process_limit = 5000
}
service pop3 {
  process_limit = 5000
}
service imap-login {
  process_limit = 5000
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $pop3
  }
  inet_listener pop3s {
    port = 0
  }
}
service auth {
  client_limit = 20000
}
service anvil {
  client_limit = 20000
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@example.test
}
namespace inbox {
  inbox = yes
  separator = /
}
CONF

  cat >"$pf/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.test
mydomain = example.test
myorigin = \$mydomain
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtp_dns_support_level = disabled
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
alias_maps =
alias_database =
local_recipient_maps =
biff = no
message_size_limit = 52428800
smtpd_banner = \$myhostname ESMTP
virtual_mailbox_domains = example.test
virtual_mailbox_maps = inline:{ ${inline%, } }
virtual_transport = lmtp:unix:$dc/run/lmtp
default_process_limit = 200
CONF

  cat >"$pf/etc/master.cf" <<CONF
127.0.0.1:$smtp inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF

  dovecot -c "$dc/dovecot.conf"
  # Postfix reports fatal errors only to syslog unless stderr is a tty;
  # script(1) gives it one so that a bad configuration is visible here.
  script -qec "postfix -c '$pf/etc' check && postfix -c '$pf/etc' start" /dev/null
}

stop() {
  if [ -f "$pf/etc/main.cf" ]; then
    postfix -c "$pf/etc" stop 2>/dev/null || true
  fi
  if [ -f "$dc/run/master.pid" ]; then
    kill "$(cat "$dc/run/master.pid")" 2>/dev/null || true
  fi
  # Wait for both masters to be gone.
  for _ in $(seq 50); do
    if ! pids >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
}

pids() {
  local out=()
  for f in "$pf/queue/pid/master.pid" "$dc/run/master.pid"; do
    [ -f "$f" ] || continue
    local p
    p=$(tr -d ' \n' <"$f")
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then out+=("$p"); fi
  done
  [ ${#out[@]} -gt 0 ] || return 1
  (IFS=,; echo "${out[*]}")
}

case $cmd in
  start) shift 2; start "$@" ;;
  stop) stop ;;
  pids) pids ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
