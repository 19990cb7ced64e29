#!/usr/bin/env bash
# The TazLab incident on the lab, and how fireproof heals it: a worker dies hard, Traefik and
# the blog's database get stuck on their ReadWriteOnce volumes, `fireproof heal node` fences
# the machine through Proxmox, verifies it is off, releases the volumes and waits until both
# run elsewhere; `--recover` brings the machine back. Then the same failure again with
# `fireproof guard` running: recovered with no human step, the timeline printed.
set -euo pipefail
cd "$(dirname "$0")/.."

FIREPROOF=.venv/bin/fireproof
STATE_DIR=${FIREPROOF_DEMO_DIR:-$(mktemp -d -t fireproof-demo.XXXXXX)}
export FIREPROOF_LAB_DIR="$STATE_DIR"        # `--lab` acts on this lab
export XDG_STATE_HOME="$STATE_DIR/xdg"        # heal's JSON journal stays with the demo
export KUBECONFIG="$STATE_DIR/kubeconfig"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
kc() { "$FIREPROOF" lab kubectl "$@"; }
cleanup() {
  say "tearing the lab down"
  "$FIREPROOF" lab down || true
}
wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start > limit )); then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 1
  done
  echo "  $what: T+$(( SECONDS - T0 )) s"
}
node_of() { kc get pods -n "$1" -l "$2" -o jsonpath='{.items[0].spec.nodeName}'; }
ready_of() { kc get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}'; }

say "starting the lab: TazLab's shape (3 control planes + 4 workers on 2 Proxmox hosts), fast profile"
"$FIREPROOF" lab up --profile fast
trap cleanup EXIT
kc get pods -A -o wide
"$FIREPROOF" inventory show --lab

VICTIM=$(node_of traefik app.kubernetes.io/name=traefik)
DB_NODE=$(node_of blog app=postgres)
say "hard power-off of $VICTIM (it runs Traefik) through the Proxmox API"
"$FIREPROOF" lab power-off "$VICTIM"
T0=$SECONDS
DEAD=("$VICTIM")
if [[ "$DB_NODE" != "$VICTIM" ]]; then
  echo "the blog's postgres-0 runs on $DB_NODE: it loses power too (a whole rack in the incident)"
  "$FIREPROOF" lab power-off "$DB_NODE"
  DEAD+=("$DB_NODE")
fi

say "kube-controller-manager notices the silence, taints, evicts; the replacement gets stuck"
for node in "${DEAD[@]}"; do
  wait_until 60 "$node NotReady (Unknown)" bash -c "[ \"\$(.venv/bin/fireproof lab kubectl get node $node -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}')\" = Unknown ]"
done
wait_until 90 "Traefik's replacement refused its volume (FailedAttachVolume)" \
  bash -c "$FIREPROOF lab kubectl get events -n traefik --field-selector reason=FailedAttachVolume -o name | grep -q ."
kc get pods -n traefik -o wide
kc get pods -n blog -o wide
kc get events -n traefik --field-selector reason=FailedAttachVolume -o custom-columns=REASON:.reason,MESSAGE:.message | head -3
kc get volumeattachments
echo "(Kubernetes >= 1.37 words the refusal 'Waiting for detach'; up to 1.36 it was 'Multi-Attach error')"

say "fireproof heal: fence through Proxmox, verify off, release the volumes, wait for the workloads"
for node in "${DEAD[@]}"; do
  "$FIREPROOF" heal node "$node" --lab --yes
done
echo "  healed: T+$(( SECONDS - T0 )) s after the power-off"
kc get pods -n traefik -o wide
kc get pods -n blog -o wide
kc get volumeattachments

say "the machines come back: power on, wait Ready, remove the out-of-service taint, uncordon"
for node in "${DEAD[@]}"; do
  "$FIREPROOF" heal node "$node" --lab --recover --yes
done
kc get nodes

say "now with no human at the keyboard: fireproof guard watches Proxmox and the node Leases"
GUARD_CONFIG="$STATE_DIR/guard.yaml"
.venv/bin/python - "$FIREPROOF_LAB_DIR/fireproof.yaml" "$GUARD_CONFIG" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
# The lab's kubelets renew every second; a machine found off is started again after the release.
doc["guard"] = {"lease_stale_seconds": 5, "restart_stopped": True}
yaml.safe_dump(doc, open(sys.argv[2], "w"))
PY
"$FIREPROOF" guard run --config "$GUARD_CONFIG" --metrics-address 127.0.0.1:0 \
  > "$STATE_DIR/guard.log" 2>&1 &
GUARD_PID=$!
trap 'kill $GUARD_PID 2>/dev/null || true; cleanup' EXIT
sleep 3  # guard takes the leader Lease and looks once
VICTIM=$(node_of traefik app.kubernetes.io/name=traefik)
OLD_POD=$(kc get pods -n traefik -o jsonpath='{.items[0].metadata.name}')
say "hard power-off of $VICTIM (Traefik's node) again; nobody types anything"
"$FIREPROOF" lab power-off "$VICTIM"
T0=$SECONDS
wait_until 60 "Traefik Running on another node" bash -c \
  "$FIREPROOF lab kubectl get pods -n traefik -o wide --no-headers | grep -v $OLD_POD | grep Running | grep -vq $VICTIM"
wait_until 90 "$VICTIM back: Ready, untainted, schedulable" bash -c \
  "[ \"\$($FIREPROOF lab kubectl get node $VICTIM -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}{.spec.unschedulable}{.spec.taints[*].key}')\" = True ]"
kc get pods -n traefik -o wide
echo "guard's timeline for $VICTIM (from the journal):"
.venv/bin/python - "$XDG_STATE_HOME/fireproof/journal.jsonl" "$VICTIM" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r["playbook"] == "guard" and r["node"] == sys.argv[2]]
for r in rows:
    print(f"  {r['at']}  {r['status']:<7} {r['step']:<10} {r['message']}")
PY
"$FIREPROOF" guard status --lab
kill "$GUARD_PID" 2>/dev/null || true
wait "$GUARD_PID" 2>/dev/null || true

say "fire drills: the same power-off as a repeatable test, with a timeline and SLO verdicts"
REPORTS="$STATE_DIR/reports"
mkdir -p "$REPORTS"
echo "first without any recovery, the report's own experience (this drill is meant to fail):"
rc=0
"$FIREPROOF" drill run drills/traefik-worker-no-recovery.yaml --lab --yes \
  --save "$REPORTS/before.json" --html "$REPORTS/before.html" || rc=$?
if (( rc != 3 )); then echo "expected the drill to fail its SLO (exit 3), got $rc" >&2; exit 1; fi

echo "then with guard running (drills/traefik-worker-power-off.yaml, exactly as shipped):"
"$FIREPROOF" guard run --lab --metrics-address 127.0.0.1:0 > "$STATE_DIR/guard-drill.log" 2>&1 &
GUARD_PID=$!
trap 'kill $GUARD_PID 2>/dev/null || true; cleanup' EXIT
wait_until 30 "guard holds its Lease" bash -c "$FIREPROOF guard status --lab | grep -q epoch"
"$FIREPROOF" drill run drills/traefik-worker-power-off.yaml --lab --yes \
  --save "$REPORTS/after.json" --html "$REPORTS/after.html" --junit "$REPORTS/after.xml"
kill "$GUARD_PID" 2>/dev/null || true

say "before and after guard, side by side"
"$FIREPROOF" drill compare "$REPORTS/before.json" "$REPORTS/after.json" --html "$REPORTS/compare.html"

say "the report's whole session as one game day (drills/baptism-of-fire): IP change, power-off"
echo "without and with guard, Traefik scaled to 2, the 5-minute test. The drills without"
echo "recovery fail where the report failed (guard is paused for them); guard's pass."
"$FIREPROOF" guard run --lab --metrics-address 127.0.0.1:0 > "$STATE_DIR/guard-gameday.log" 2>&1 &
GUARD_PID=$!
trap 'kill $GUARD_PID 2>/dev/null || true; cleanup' EXIT
wait_until 30 "guard holds its Lease" bash -c "$FIREPROOF guard status --lab | grep -q epoch"
rc=0
"$FIREPROOF" drill run drills/baptism-of-fire/*.yaml --lab --yes \
  --save "$REPORTS/game-day.json" --html "$REPORTS/game-day.html" || rc=$?
kill "$GUARD_PID" 2>/dev/null || true
if (( rc != 3 )); then echo "expected the game day to fail where the report failed (exit 3), got $rc" >&2; exit 1; fi
.venv/bin/python - "$REPORTS/game-day.json" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))["runs"]
verdicts = {r["spec"]["name"]: r["verdict"] for r in runs}
want = {"1-ip-change-no-recovery": "fail", "2-power-off-no-recovery": "fail",
        "3-power-off-with-guard": "pass", "4-traefik-scaled-to-2": "fail",
        "5-five-minute-test": "pass"}
if verdicts != want:
    sys.exit(f"the game day did not end as the report did: {verdicts}")
print("game day: every scene ended as in the report, and guard's runs passed")
PY
echo
echo "HTML reports (self-contained, open them in a browser):"
echo "  $REPORTS/before.html  $REPORTS/after.html  $REPORTS/compare.html  $REPORTS/game-day.html"
echo "journal of every action: $XDG_STATE_HOME/fireproof/journal.jsonl"
