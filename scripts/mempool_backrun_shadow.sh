#!/usr/bin/env bash
# mempool_backrun_shadow.sh: a supervised shadow run of aether's mempool backrun path.
#
# Preflight refuses to start unless AETHER_SHADOW=1 and MEMPOOL_TRACKING=1, aether is
# installed, and the node answers (with no node configured it starts the embedded devnet,
# Uniswap V2 and V3 with victims on both: its generated AETHER_CONFIG holds the V3 [[dex]]
# block too; DEVNET_ARGS=--no-v3 leaves V3 out; and stops it at the end). While the run lasts (SHADOW_DURATION_SEC, default 1800) it
# polls aether's metrics and exits non-zero AT ONCE if
#   aether_executor_bundles_submitted_total{source="mempool_backrun"} ever increments
#   (or that of any other source: shadow submits nothing at all),
# if aether dies, or if a panic is counted. aether's own output (its SHADOW MODE: ENABLED
# banner first) goes to this terminal and is kept in the run directory (aether.out, with
# aether.log). At the end it writes shadow-run.json into the run directory and exits 0 only
# if >= 1 bundle was built, none submitted, nothing panicked and no risk HALT went on
# (aether_risk_halts_total{gate}: the seed's "no risk-breach halts").
#
# Exit codes: 0 clean run; 1 run failed its criteria; 2 preflight failed (nothing started);
# 3 a submission was detected during shadow.
set -euo pipefail
umask 077  # everything this run writes (summary, report, logs) is private, like aether's own files

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${SHADOW_DURATION_SEC:-1800}
POLL=${SHADOW_POLL_SEC:-2}
AETHER=${AETHER_BIN:-}
if [ -z "$AETHER" ]; then
    if [ -x "$ROOT/.venv/bin/aether" ]; then AETHER="$ROOT/.venv/bin/aether"; else AETHER=$(command -v aether || true); fi
fi
PY=${AETHER_PYTHON:-"$ROOT/.venv/bin/python"}
[ -x "$PY" ] || PY=$(command -v python3)

say()  { printf '[shadow-run] %s\n' "$*"; }
die()  { printf '[shadow-run] preflight failed: %s\n' "$*" >&2; exit 2; }

# ------------------------------------------------------------------ preflight
[ "${AETHER_SHADOW:-}" = "1" ] || die "AETHER_SHADOW must be exactly 1 (got '${AETHER_SHADOW:-<unset>}'); run: export AETHER_SHADOW=1"
[ "${MEMPOOL_TRACKING:-}" = "1" ] || die "MEMPOOL_TRACKING must be 1 (got '${MEMPOOL_TRACKING:-<unset>}'); run: export MEMPOOL_TRACKING=1"
case "$DURATION" in ''|*[!0-9]*) die "SHADOW_DURATION_SEC must be a whole number of seconds (got '$DURATION')";; esac
[ "$DURATION" -ge 1 ] || die "SHADOW_DURATION_SEC must be at least 1"
[ -n "$AETHER" ] && "$AETHER" --version >/dev/null 2>&1 || die "aether is not installed; run: make install (or scripts/bootstrap.sh)"
command -v curl >/dev/null || die "curl is needed to poll the metrics endpoint; install curl"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/aether-shadow.XXXXXX")
AETHER_PID=""
DEVNET_PID=""
RUN_DIR=""
keep_output() {  # aether's stdout (the banner) and log stay with the run, whatever the exit
    [ -n "$RUN_DIR" ] && [ -d "$RUN_DIR" ] || return 0
    [ -f "$WORK/aether.out" ] && cp "$WORK/aether.out" "$RUN_DIR/aether.out" 2>/dev/null
    [ -f "$WORK/aether.log" ] && cp "$WORK/aether.log" "$RUN_DIR/aether.log" 2>/dev/null
    return 0
}
cleanup() {
    local rc=$?
    [ -n "$AETHER_PID" ] && kill -TERM "$AETHER_PID" 2>/dev/null && wait "$AETHER_PID" 2>/dev/null || true
    [ -n "$DEVNET_PID" ] && kill -INT "$DEVNET_PID" 2>/dev/null && wait "$DEVNET_PID" 2>/dev/null || true
    keep_output || true
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP  # a closed terminal: same clean stop (aether drains on SIGTERM, exit 0)
exit_meaning() {  # aether's documented exit codes
    case "$1" in 0) echo "clean stop";; 2) echo "configuration error";; 3) echo "node unreachable, silent or sending no usable heads";;
        70) echo "actor panics past the restart intensity";; *) echo "killed or unknown";; esac
}

if [ -z "${AETHER_RPC_URL:-}" ]; then
    say "no node configured (AETHER_RPC_URL unset): starting the embedded devnet"
    "$AETHER" devnet --env-file "$WORK/devnet.env" --port "${DEVNET_PORT:-0}" \
        --workdir "$WORK/devnet" ${DEVNET_ARGS:-} >"$WORK/devnet.log" 2>&1 &
    DEVNET_PID=$!
    for _ in $(seq 1 120); do
        [ -s "$WORK/devnet.env" ] && break
        kill -0 "$DEVNET_PID" 2>/dev/null || { tail -n 20 "$WORK/devnet.log" >&2; die "the devnet exited during start-up"; }
        sleep 0.5
    done
    [ -s "$WORK/devnet.env" ] || die "the devnet was not ready within 60 s (log: $WORK/devnet.log)"
    set -a; . "$WORK/devnet.env"; set +a
fi

rpc_ok=$(curl -s -m 5 -H 'content-type: application/json' \
    --data '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$AETHER_RPC_URL" || true)
case "$rpc_ok" in *'"result"'*) ;; *) die "the node at AETHER_RPC_URL does not answer eth_chainId";; esac

if [ -z "${AETHER_METRICS_ADDR:-}" ]; then
    port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    export AETHER_METRICS_ADDR="127.0.0.1:$port"
fi
METRICS_URL="http://${AETHER_METRICS_ADDR}/metrics"
export AETHER_REPORTS_DIR=${AETHER_REPORTS_DIR:-reports}

# ------------------------------------------------------------------ run
RUN_CMD=("$AETHER" run)
if [ "$(uname -s)" = "Darwin" ] && command -v caffeinate >/dev/null; then
    RUN_CMD=(caffeinate -i "${RUN_CMD[@]}")   # keep the Mac awake for the whole window
fi
say "starting: ${RUN_CMD[*]} (duration ${DURATION}s, metrics $METRICS_URL)"
# stdout (the banner, then aether's closing lines) reaches this terminal live and a file;
# stderr (the log) goes to a file and is tailed here on failure.
"${RUN_CMD[@]}" > >(tee "$WORK/aether.out") 2>"$WORK/aether.log" &
AETHER_PID=$!

metric() {  # metric NAME [LABEL_FILTER] -> sum of matching samples (integer)
    printf '%s\n' "$SCRAPE" | awk -v n="$1" -v f="${2:-}" '
        $1 ~ "^"n"({|$)" && index($1, f) { s += $NF } END { printf "%d\n", s }'
}

up=""
for _ in $(seq 1 120); do
    kill -0 "$AETHER_PID" 2>/dev/null || break
    if SCRAPE=$(curl -sf -m 2 "$METRICS_URL"); then up=1; break; fi
    sleep 0.5
done
if [ -z "$up" ]; then
    tail -n 5 "$WORK/aether.log" >&2 || true
    if kill -0 "$AETHER_PID" 2>/dev/null; then
        why="still running: stopped by the cleanup"  # AETHER_PID stays set, so the EXIT trap stops it
    else
        rc=0; wait "$AETHER_PID" || rc=$?; AETHER_PID=""; why="exit $rc: $(exit_meaning $rc)"
    fi
    die "aether did not start or its metrics endpoint $METRICS_URL did not answer ($why)"
fi
if [ -n "${AETHER_PROMETHEUS_URL:-}" ]; then
    # Prometheus must list this aether's metrics endpoint among its active targets, healthy.
    up_in_prom=""
    for _ in $(seq 1 30); do
        if curl -sf -m 5 "$AETHER_PROMETHEUS_URL/api/v1/targets" | "$PY" -c '
import json, sys
url = sys.argv[1]
targets = json.load(sys.stdin)["data"]["activeTargets"]
sys.exit(0 if any(t.get("scrapeUrl") == url and t.get("health") == "up" for t in targets) else 1)
' "$METRICS_URL"; then up_in_prom=1; break; fi
        sleep 2
    done
    [ -n "$up_in_prom" ] || die "Prometheus at AETHER_PROMETHEUS_URL does not list $METRICS_URL as an up target (add it to its scrape config: docs/observability/prometheus.yml)"
fi
RUN_DIR=$(sed -n 's/^  dumps: \(.*\)\/bundles$/\1/p' "$WORK/aether.out" | head -n 1)
say "run directory: ${RUN_DIR:-<unknown>}"
# aether prints its banner before it serves metrics; tee may still be copying it.
BANNER=0
for _ in $(seq 1 50); do
    if grep -q 'SHADOW MODE: ENABLED' "$WORK/aether.out" 2>/dev/null; then BANNER=1; break; fi
    sleep 0.2
done
if [ "$BANNER" = 1 ]; then
    say "aether's SHADOW MODE: ENABLED banner is shown above and kept in ${RUN_DIR:-the run directory}/aether.out"
else
    # Not fatal at once: the submission check below still runs (and exits 3 on the first one);
    # the verdict fails at the end.
    echo "[shadow-run] WARNING: aether did not print its SHADOW MODE: ENABLED banner; this run cannot pass" >&2
fi
keep_output

SUB_FILTER='source="mempool_backrun"'
# Every source counts: in shadow not one bundle may be submitted, mempool or block-driven.
base_sub=$(metric aether_executor_bundles_submitted_total)
start=$(date +%s)
verdict=""
while :; do
    now=$(date +%s); elapsed=$((now - start))
    if ! kill -0 "$AETHER_PID" 2>/dev/null; then
        rc=0; wait "$AETHER_PID" || rc=$?; AETHER_PID=""
        verdict="aether died (exit $rc: $(exit_meaning $rc))"; break
    fi
    if SCRAPE=$(curl -sf -m 2 "$METRICS_URL"); then
        sub=$(metric aether_executor_bundles_submitted_total)
        if [ "$sub" -gt "$base_sub" ]; then
            mem=$(metric aether_executor_bundles_submitted_total "$SUB_FILTER")
            echo "[shadow-run] SUBMISSION DETECTED: aether_executor_bundles_submitted_total went $base_sub -> $sub (source=\"mempool_backrun\": $mem)" >&2
            kill -KILL "$AETHER_PID" 2>/dev/null || true
            AETHER_PID=""
            exit 3
        fi
        panics=$(metric aether_actor_panics_total)
        if [ "$panics" -gt 0 ]; then verdict="panic counted ($panics)"; break; fi
        built=$(metric aether_bundles_built_total "$SUB_FILTER")
        blocked=$(metric aether_executor_bundles_shadow_blocked_total "$SUB_FILTER")
        rejected=$(metric aether_mempool_risk_rejected_total)
        arb_rejected=$(metric aether_block_arb_risk_rejected_total)
        halts=$(metric aether_risk_halts_total)
        printf '[shadow-run] %5ss elapsed %5ss left | mempool bundles built %s, shadow-blocked %s | risk rejections %s (block-driven %s) | halts %s\n' \
            "$elapsed" "$((DURATION - elapsed > 0 ? DURATION - elapsed : 0))" "$built" "$blocked" "$rejected" \
            "$arb_rejected" "$halts"
    fi
    [ "$elapsed" -ge "$DURATION" ] && break
    sleep "$POLL"
done

if [ -n "$verdict" ]; then
    echo "[shadow-run] FAILED: $verdict" >&2
    tail -n 30 "$WORK/aether.log" >&2 || true
    exit 1
fi

# one last look before stopping, then a clean stop (dumps in progress complete)
SCRAPE=$(curl -sf -m 2 "$METRICS_URL" || true)
sub=$(metric aether_executor_bundles_submitted_total)
if [ "$sub" -gt "$base_sub" ]; then
    echo "[shadow-run] SUBMISSION DETECTED at the end of the run" >&2
    exit 3
fi
kill -TERM "$AETHER_PID"
rc=0; wait "$AETHER_PID" || rc=$?
AETHER_PID=""
[ "$rc" -eq 0 ] || { echo "[shadow-run] FAILED: aether exited $rc on SIGTERM" >&2; tail -n 30 "$WORK/aether.log" >&2; exit 1; }

[ -n "$RUN_DIR" ] && [ -f "$RUN_DIR/summary.json" ] || { echo "[shadow-run] FAILED: no summary.json in '$RUN_DIR'" >&2; exit 1; }
keep_output
rc=0
"$PY" - "$RUN_DIR" "$DURATION" "$BANNER" <<'EOF' || rc=$?
import json, sys, pathlib
run = pathlib.Path(sys.argv[1]); s = json.loads((run / "summary.json").read_text())
src = s["sources"]
built = src["mempool_backrun"]["built"]; submitted = sum(v["submitted"] for v in src.values())
# No record of halts is no evidence of none: fail closed when the summary lacks it.
halts = s.get("risk_halts")
halted = {g: n for g, n in (halts or {}).items() if n}
failures = []
if built < 1:
    failures.append("no mempool backrun was built")
if submitted:
    failures.append(f"{submitted} bundle(s) submitted during shadow")
if s["panics"]:
    failures.append(f"{s['panics']} panic(s)")
if sys.argv[3] != "1":
    failures.append("aether did not print its SHADOW MODE: ENABLED banner")
if halts is None:
    failures.append("risk halts were not recorded (summary.json has no risk_halts)")
elif halted:
    failures.append("risk-breach halts during the run: " + ", ".join(f"{g}={n}" for g, n in sorted(halted.items())))
doc = {"duration_s": int(sys.argv[2]), "mempool_backrun_built": built,
       "block_arb_built": src["block_arb"]["built"], "submitted": submitted, "panics": s["panics"],
       "risk_halts": halts, "halted": bool(halted) or halts is None, "shadow_banner": sys.argv[3] == "1",
       "shadow_blocked": {k: v["shadow_blocked"] for k, v in src.items()},
       "risk_rejected": s["risk_rejected"], "block_arb_risk_rejected": s.get("block_arb_risk_rejected"),
       "dump_files": len(list((run / "bundles").glob("*.json"))),
       "failures": failures, "passed": not failures}
(run / "shadow-run.json").write_text(json.dumps(doc, indent=2) + "\n")
print(json.dumps(doc, indent=2))
for line in failures:
    print(f"[shadow-run] FAILED: {line}", file=sys.stderr)
sys.exit(0 if not failures else 1)
EOF
"$AETHER" report "$RUN_DIR" --html "$RUN_DIR/report.html" >"$RUN_DIR/report.txt" 2>&1 || true
if [ "$rc" -eq 0 ]; then say "PASSED: run directory $RUN_DIR"; else echo "[shadow-run] FAILED: criteria not met (see $RUN_DIR/shadow-run.json)" >&2; fi
exit $rc
