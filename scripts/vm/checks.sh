#!/bin/bash
# Runs inside the VM that scripts/systemd-vm-test boots: installs the package the way the
# README says and checks what the README, `run --help` and the unit claim, on a real systemd.
# One line per check: "CHECK PASS name" or "CHECK FAIL name: why". Ends with "CHECKS DONE".
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
DB=/var/lib/tiktok-forwarder/outbox.sqlite
TOKEN=vm-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
pass() { echo "CHECK PASS $1"; }
fail() { echo "CHECK FAIL $1: $2"; }
check() { local name="$1"; shift; if "$@" >/tmp/check.out 2>&1; then pass "$name"; else fail "$name" "$(tail -c 400 /tmp/check.out | tr '\n' ' ')"; fi; }
wait_for() { local seconds="$1"; shift; for _ in $(seq 1 "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done; "$@"; }
prop() { systemctl show -p "$2" --value "$1"; }
insert() {  # user count prefix
  local sql="PRAGMA busy_timeout = 5000; BEGIN;"
  for i in $(seq 1 "$2"); do
    sql+="INSERT INTO outbox (event_id, payload) VALUES ('$3-$i', '{\"event_name\":\"purchase\",\"value\":$i,\"currency\":\"EUR\",\"user\":{\"email\":\"buyer$i@example.com\"},\"url\":\"https://shop.example/checkout\"}') ON CONFLICT (event_id) DO NOTHING;"
  done
  sql+="COMMIT;"
  runuser -u "$1" -- sqlite3 "$DB" "$sql"
}
count() { sqlite3 "$DB" "SELECT count(*) FROM outbox_rows WHERE state = '$1'"; }
recorded() { local n; n=$(grep -c "\"$1-" /root/record.ndjson 2>/dev/null); echo "${n:-0}"; }
# Conditions re-evaluated on every try of wait_for (an argument like "$(count x)" would not be).
recorded_at_least() { local total=0 prefix; for prefix in "${@:2}"; do total=$(( total + $(recorded "$prefix") )); done; [ "$total" -ge "$1" ]; }
count_is() { [ "$(count "$1")" "$2" "$3" ]; }
# The daemon's threads as "name policy nice" (/proc stat fields 41 and 19; policy 0 normal, 5 SCHED_IDLE).
thread_policies() { local t; for t in /proc/"$(prop tiktok-forwarder MainPID)"/task/*; do echo "$(cat "$t/comm") $(cut -d' ' -f41 "$t/stat") $(cut -d' ' -f19 "$t/stat")"; done; }
workers_low_writer_normal() {
  thread_policies | awk '/^delivery-/ { d++; if ($2 != 0 || $3 != 10) bad++ } /^sqlite-writer/ { w++; if ($2 != 0 || $3 != 0) bad++ } END { exit !(d > 0 && w == 1 && !bad) }'
}

echo "INFO systemd $(systemctl --version | head -n 1 | awk '{print $2}')"
echo "INFO kernel $(uname -r)"

# --- install, as the README says --------------------------------------------------------
check "apt-get install /root/tiktok-forwarder_*.deb (the README's apt install of the .deb; no network)" \
  bash -c 'cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/tiktok-forwarder_*.deb'
check "the binary runs without the Swift toolchain" bash -c '! ls -d /opt/swift* 2>/dev/null && tiktok-forwarder --version'
check "man page and completions installed" bash -c 'man -w tiktok-forwarder 2>/dev/null || test -f /usr/share/man/man1/tiktok-forwarder.1.gz; test -s /usr/share/bash-completion/completions/tiktok-forwarder'
check "system user and group, setgid state directory 2770" \
  bash -c 'getent passwd tiktok-forwarder && getent group tiktok-forwarder && [ "$(stat -c %a:%U:%G /var/lib/tiktok-forwarder)" = "2770:tiktok-forwarder:tiktok-forwarder" ]'
check "the env file is a conffile" bash -c 'dpkg-query -W -f="\${Conffiles}" tiktok-forwarder | grep -q /etc/tiktok-forwarder/tiktok-forwarder.env'

# --- a local TikTok stand-in inside the VM ------------------------------------------------
echo "$TOKEN" > /root/sandbox-token
systemd-run --unit=sandbox --quiet tiktok-forwarder sandbox --port 18080 --access-token-file /root/sandbox-token --record /root/record.ndjson --delay-ms 5
wait_for 30 curl -sf http://127.0.0.1:18080/_sandbox/stats >/dev/null

# --- configure as the README says ---------------------------------------------------------
install -m 600 /dev/stdin /etc/tiktok-forwarder/access-token <<<"$TOKEN"
cat >> /etc/tiktok-forwarder/tiktok-forwarder.env <<EOF
TIKTOK_FORWARDER_PIXEL_CODE=CVMTESTPIXEL0000001
TIKTOK_FORWARDER_ENDPOINT=http://127.0.0.1:18080
TIKTOK_FORWARDER_METRICS_LISTEN=127.0.0.1:9464
TIKTOK_FORWARDER_DELIVERY_LINGER=50ms
EOF
check "config check as the service runs it (systemd-run: its user, credential, environment)" \
  systemd-run --wait --pipe --quiet -p User=tiktok-forwarder -p Group=tiktok-forwarder \
    -p LoadCredential=access-token:/etc/tiktok-forwarder/access-token \
    -p EnvironmentFile=/etc/tiktok-forwarder/tiktok-forwarder.env \
    -p Environment=TIKTOK_FORWARDER_DB=$DB tiktok-forwarder config check

# --- start: Type=notify returns after READY=1 --------------------------------------------
check "systemctl enable --now returns with the service active (READY=1 received)" \
  bash -c 'systemctl enable --now tiktok-forwarder && [ "$(systemctl show -p ActiveState --value tiktok-forwarder)" = active ] && [ "$(systemctl show -p SubState --value tiktok-forwarder)" = running ]'
check "the credential resolved (started, not paused, no token on the command line or in the environment)" \
  bash -c "journalctl -u tiktok-forwarder -o cat | grep -q 'NOTICE started' && ! tr '\0' ' ' < /proc/\$(systemctl show -p MainPID --value tiktok-forwarder)/cmdline | grep -q '$TOKEN' && ! grep -qa '$TOKEN' /proc/\$(systemctl show -p MainPID --value tiktok-forwarder)/environ"
check "the database is 0660 in the group" bash -c "[ \"\$(stat -c %a:%G $DB)\" = 660:tiktok-forwarder ]"
check "delivery workers at nice 10 (worker_priority: low), the SQLite writer at the service's (the unit's syscall filter allows it)" \
  bash -c "$(declare -f prop thread_policies workers_low_writer_normal); workers_low_writer_normal || { thread_policies; false; }"
check "core dumps are off for the daemon" bash -c 'grep -E "^Max core file size +0 +0" /proc/$(systemctl show -p MainPID --value tiktok-forwarder)/limits'

# --- a producer in the group --------------------------------------------------------------
useradd --create-home --shell /bin/bash app >/dev/null 2>&1
usermod -aG tiktok-forwarder app
check "a producer in the group inserts (its own uid, the service running)" insert app 200 prod
check "the producer's 200 events reach the sandbox" wait_for 120 recorded_at_least 200 prod
check "a user outside the group cannot write the outbox" bash -c "useradd -M nobody2 >/dev/null 2>&1; ! runuser -u nobody2 -- sqlite3 $DB \"INSERT INTO outbox (event_id, payload) VALUES ('x', '{}')\""
check "nothing clear-text reached TikTok (emails hashed)" bash -c '! grep -q "example.com" /root/record.ndjson'

# --- journal priorities -------------------------------------------------------------------
check "journal priorities: 'started' is a notice, not a warning" \
  bash -c 'journalctl -u tiktok-forwarder -p notice -o cat | grep -q "NOTICE started" && ! journalctl -u tiktok-forwarder -p warning -o cat | grep -q "NOTICE started" && journalctl -u tiktok-forwarder -o json | grep "NOTICE started" | grep -q "\"PRIORITY\":\"5\""'

# --- metrics as the unprivileged service user --------------------------------------------
check "metrics scraped from the unprivileged daemon" bash -c 'curl -sf http://127.0.0.1:9464/metrics | grep -q "tiktok_forwarder_rows"'

# --- idle CPU (emulated CPU: an upper bound) ---------------------------------------------
pid=$(prop tiktok-forwarder MainPID)
t0=$(awk '{print $14 + $15}' /proc/$pid/stat); sleep 20; t1=$(awk '{print $14 + $15}' /proc/$pid/stat)
echo "INFO idle CPU over 20 s (emulated): $(( (t1 - t0) * 100 / (20 * $(getconf CLK_TCK)) ))% of a core"

# --- watchdog keep-alives over 3 minutes ---------------------------------------------------
restarts=$(prop tiktok-forwarder NRestarts)
for minute in 1 2 3; do insert app 50 "wd$minute" >/dev/null 2>&1; sleep 62; done
check "watchdog: 3+ minutes with WatchdogSec=90s, no timeout, no restart" \
  bash -c "[ \"\$(systemctl show -p NRestarts --value tiktok-forwarder)\" = $restarts ] && ! journalctl -u tiktok-forwarder | grep -qi 'watchdog timeout' && [ \"\$(systemctl show -p ActiveState --value tiktok-forwarder)\" = active ]"
check "events inserted during the watchdog window delivered" wait_for 60 recorded_at_least 150 wd1 wd2 wd3

# --- token rotation as documented: write the file, restart (a reload cannot see it) ------
check "systemctl reload is refused (the unit has no reload: rotation is a restart)" bash -c '! systemctl reload tiktok-forwarder'
NEW=rotated-$TOKEN
curl -sf -X PUT --data "$NEW" http://127.0.0.1:18080/_sandbox/access-token >/dev/null
install -m 600 /dev/stdin /etc/tiktok-forwarder/access-token <<<"$NEW"
insert app 50 rot >/dev/null
check "token rotation: write the file, systemctl restart, delivery goes on" \
  bash -c "systemctl restart tiktok-forwarder && for i in \$(seq 1 90); do [ \"\$(grep -c '\"rot-' /root/record.ndjson)\" -ge 50 ] && exit 0; sleep 1; done; exit 1"
check "no row paused or dead after the rotation" bash -c "[ \"\$(sqlite3 $DB \"SELECT count(*) FROM outbox_rows WHERE state IN ('dead','pending','inflight')\")\" = 0 ] && ! tiktok-forwarder status --db $DB | grep -q PAUSED"

# --- restart on SIGKILL ---------------------------------------------------------------------
restarts=$(prop tiktok-forwarder NRestarts)
old=$(prop tiktok-forwarder MainPID)
systemctl kill -s KILL tiktok-forwarder
check "restarted after SIGKILL (Restart=on-failure)" \
  wait_for 60 bash -c "[ \"\$(systemctl show -p NRestarts --value tiktok-forwarder)\" -gt $restarts ] && [ \"\$(systemctl show -p ActiveState --value tiktok-forwarder)\" = active ] && [ \"\$(systemctl show -p MainPID --value tiktok-forwarder)\" != $old ]"

# --- stop drains what is in flight and exits 0 ---------------------------------------------
systemctl stop sandbox
systemd-run --unit=sandbox-slow --quiet tiktok-forwarder sandbox --port 18080 --access-token-file /etc/tiktok-forwarder/access-token --record /root/record.ndjson --delay-ms 3000
wait_for 30 curl -sf http://127.0.0.1:18080/_sandbox/stats >/dev/null
insert app 3000 stop >/dev/null
wait_for 60 count_is inflight -gt 0
check "systemctl stop with requests in flight: exit 0, nothing left in flight, nothing dead" \
  bash -c "systemctl stop tiktok-forwarder && [ \"\$(systemctl show -p ExecMainStatus --value tiktok-forwarder)\" = 0 ] && [ \"\$(systemctl show -p Result --value tiktok-forwarder)\" = success ] && [ \"\$(sqlite3 $DB \"SELECT count(*) FROM outbox_rows WHERE state IN ('inflight','dead')\")\" = 0 ]"
check "the journal shows the graceful stop" bash -c 'journalctl -u tiktok-forwarder -o cat | grep -q "stopping: finishing requests in flight" && journalctl -u tiktok-forwarder -o cat | grep -q "NOTICE stopped"'

# --- the syscall filter ---------------------------------------------------------------------
check "no syscall refused by the filter (no SIGSYS, no EPERM in the log)" \
  bash -c '! journalctl -b | grep -qiE "tiktok-forwarder.*(SIGSYS|bad system call|seccomp)" && ! journalctl -u tiktok-forwarder -o cat | grep -qiE "operation not permitted|EPERM" && [ "$(systemctl show -p ExecMainCode --value tiktok-forwarder)" = 1 ]'

# --- live exposure ---------------------------------------------------------------------------
systemctl start tiktok-forwarder
score=$(systemd-analyze security tiktok-forwarder 2>/dev/null | grep 'Overall exposure level' | grep -oE ': [0-9]+(\.[0-9]+)?' | tr -d ': ')
echo "INFO systemd-analyze security (live): ${score:-none}"
check "systemd-analyze security on the running unit <= 2.0" awk -v s="$score" 'BEGIN { exit !(s ~ /^[0-9]+(\.[0-9]+)?$/ && s + 0 <= 2.0) }'
check "the remaining 'stop' rows delivered after the restart" wait_for 300 count_is pending -eq 0
echo "CHECKS DONE"
