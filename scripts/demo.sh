#!/usr/bin/env bash
# The lab demo: a real control plane notices a dead machine, taints it, evicts its pods,
# and leaves them stuck Terminating because no kubelet will ever confirm.
set -euo pipefail
cd "$(dirname "$0")/.."

FIREPROOF=.venv/bin/fireproof
STATE_DIR=${FIREPROOF_DEMO_DIR:-$(mktemp -d -t fireproof-demo.XXXXXX)}
export KUBECONFIG="$STATE_DIR/kubeconfig"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
kc() { "$FIREPROOF" lab kubectl --state-dir "$STATE_DIR" "$@"; }
cleanup() {
  say "tearing the lab down"
  "$FIREPROOF" lab down --state-dir "$STATE_DIR" || true
}
wait_until() {  # wait_until SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start > limit )); then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 1
  done
  echo "  $what after $(( SECONDS - start )) s"
}

say "starting the lab (fast profile: 5 s node grace period, 10 s tolerations)"
"$FIREPROOF" lab up --state-dir "$STATE_DIR" --profile fast
trap cleanup EXIT

say "nodes, as the real kubectl sees them"
kc get nodes -o wide

say "deploying 3 replicas of a web app"
kc create namespace demo
kc create deployment web -n demo --image=nginx:1.27 --replicas=3
wait_until 60 "3 pods Running" \
  bash -c "[ \"\$($FIREPROOF lab kubectl --state-dir $STATE_DIR get pods -n demo --field-selector=status.phase=Running -o name | wc -l)\" -eq 3 ]"
kc get pods -n demo -o wide

VICTIM=$(kc get pods -n demo -o jsonpath='{.items[0].spec.nodeName}')
say "hard power-off of $VICTIM (like pulling the plug on its VM)"
"$FIREPROOF" lab power-off --state-dir "$STATE_DIR" "$VICTIM"
T0=$SECONDS

say "kube-controller-manager notices the silence"
wait_until 60 "$VICTIM Ready=Unknown" \
  bash -c "$FIREPROOF lab kubectl --state-dir $STATE_DIR get node $VICTIM -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx Unknown"
kc get nodes
echo "taints on $VICTIM:"
kc get node "$VICTIM" -o jsonpath='{range .spec.taints[*]}  {.key}:{.effect}{"\n"}{end}'

say "after the toleration, its pod is evicted and stays Terminating (no kubelet confirms)"
wait_until 60 "a pod Terminating on $VICTIM" \
  bash -c "$FIREPROOF lab kubectl --state-dir $STATE_DIR get pods -n demo -o jsonpath='{range .items[?(@.metadata.deletionTimestamp)]}{.spec.nodeName}{\"\n\"}{end}' | grep -qx $VICTIM"
sleep 3
kc get pods -n demo -o wide
echo "  T+$(( SECONDS - T0 )) s since power-off"

say "power back on: the kubelet reboots, cleans up, the node is Ready again"
"$FIREPROOF" lab power-on --state-dir "$STATE_DIR" "$VICTIM"
wait_until 60 "$VICTIM Ready" \
  bash -c "$FIREPROOF lab kubectl --state-dir $STATE_DIR get node $VICTIM -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
kc get nodes
kc get pods -n demo -o wide
