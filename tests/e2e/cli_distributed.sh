#!/usr/bin/env bash
# Data-parallel training through the command line (Gloo, 2 CPU processes on 127.0.0.1):
# fit/lr-find/predict/run with --nproc 2, workers started by hand with torchrun's variables,
# only rank 0 printing and writing, a checkpoint of 2 processes resumed by 1, and a killed
# worker ending the run with an error instead of a hang.
set -euo pipefail
cli=$1
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

"$cli" -q sample "$work/dl" --train 160 --test 10
"$cli" -q data prepare "$work/p" --from "$work/dl" --valid-per-class 16

# --nproc 2: one epoch table (rank 0's), the learner and its checkpoint written once.
"$cli" fit "$work/p" --arch resnet18 --size 32 --bs 16 --no-pretrained --lr 0.01 --cycles 2 --nproc 2 \
  >"$work/fit.out" 2>"$work/fit.err" || { cat "$work/fit.err"; fail "fit --nproc 2"; }
cat "$work/fit.out"
grep -q "Data-parallel: 2 processes (gloo" "$work/fit.out" || fail "no data-parallel line"
test "$(grep -c '^epoch' "$work/fit.out")" -eq 1 || fail "the epoch table is printed more than once"
test "$(grep -cE '^ +[0-9]+ +[0-9.]+ +[0-9.]+' "$work/fit.out")" -eq 2 || fail "two epoch rows expected"
test -f "$work/p/learner.json" && test -f "$work/p/models/current.safetensors" || fail "learner/checkpoint not written"

# lr-find and predict (sharded, gathered; rank 0 writes the curve and the submission).
"$cli" lr-find "$work/p" --csv "$work/lr.csv" --nproc 2 >"$work/lr.out" 2>"$work/lr.err" || { cat "$work/lr.err"; fail "lr-find"; }
grep -q "suggestions" "$work/lr.out" || fail "lr-find output"
test "$(wc -l <"$work/lr.csv")" -ge 20 || fail "lr-find CSV"
"$cli" -q predict "$work/p" --nproc 2 --tta 1 --precision fp32 --out "$work/sub2.csv" 2>"$work/pred.err" || { cat "$work/pred.err"; fail "predict --nproc 2"; }
"$cli" -q predict "$work/p" --tta 1 --precision fp32 --out "$work/sub1.csv"
python3 - "$work" <<'PY' || fail "2-process predictions differ from 1-process ones"
import csv, sys
w = sys.argv[1]
a = {r[0]: float(r[1]) for r in list(csv.reader(open(f"{w}/sub1.csv")))[1:]}
b = {r[0]: float(r[1]) for r in list(csv.reader(open(f"{w}/sub2.csv")))[1:]}
assert a.keys() == b.keys() and len(a) == 10, (len(a), len(b))
worst = max(abs(a[k] - b[k]) for k in a)
assert worst < 1e-4, worst
print(f"predict: 2 processes = 1 process (largest difference {worst:.1e})")
PY

# Workers started the way torchrun starts them; rank 1 prints nothing on stdout.
port=$(free_port)
for r in 1 0; do
  RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r LOCAL_WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port OMP_NUM_THREADS=1 \
    "$cli" fit "$work/p" --lr 0.005 --cycles 3 --json >"$work/rank$r.out" 2>"$work/rank$r.err" &
  pids+=($!)
done
wait "${pids[0]}" || { cat "$work/rank1.err"; fail "rank 1"; }
wait "${pids[1]}" || { cat "$work/rank0.err"; fail "rank 0"; }
pids=()
test ! -s "$work/rank1.out" || fail "rank 1 printed: $(cat "$work/rank1.out")"
test "$(grep -c '"event":"epoch"' "$work/rank0.out")" -eq 3 || fail "rank 0's JSON epochs"

# A checkpoint of 2 processes resumes on 1: stop the 2-process fit (Ctrl-C) after its first
# epoch, then continue it in one process to the end.
"$cli" fit "$work/p" --lr 0.005 --cycles 8 --nproc 2 --json >"$work/long.out" 2>"$work/long.err" &
launcher=$!
pids+=($launcher)
for _ in $(seq 1 600); do grep -q '"event":"epoch"' "$work/long.out" 2>/dev/null && break; sleep 0.1; done
grep -q '"event":"epoch"' "$work/long.out" || { cat "$work/long.err"; fail "no epoch from the long fit"; }
kill -INT "$launcher"
wait "$launcher" || { cat "$work/long.err"; fail "the stopped 2-process fit failed"; }
pids=()
grep -q "fit stopped" "$work/long.err" || fail "the stop was not reported: $(cat "$work/long.err")"
done2=$(grep -c '"event":"epoch"' "$work/long.out")
"$cli" fit "$work/p" --resume --json >"$work/resume.out" 2>"$work/resume.err" || { cat "$work/resume.err"; fail "resume on 1 process"; }
done1=$(grep -c '"event":"epoch"' "$work/resume.out")
test $((done2 + done1)) -eq 8 || fail "2 processes ran $done2 epochs, 1 process then $done1: not 8"
echo "resume: $done2 epochs on 2 processes, the other $done1 on 1 process"

# A worker killed mid-fit: the run ends with an error naming the rank, within the timeout.
"$cli" fit "$work/p" --lr 0.005 --cycles 40 --nproc 2 --dist-timeout 5 >"$work/kill.out" 2>"$work/kill.err" &
launcher=$!
pids+=($launcher)
worker=""
for _ in $(seq 1 300); do
  for c in $(pgrep -P "$launcher" || true); do
    if tr '\0' '\n' <"/proc/$c/environ" 2>/dev/null | grep -qx 'RANK=1'; then worker=$c; fi
  done
  [[ -n "$worker" ]] && grep -q "Data-parallel" "$work/kill.out" 2>/dev/null && break
  sleep 0.1
done
[[ -n "$worker" ]] || fail "no rank 1 worker found"
sleep 2
start=$(date +%s)
kill -9 "$worker"
if wait "$launcher"; then fail "the run succeeded although a worker was killed"; fi
pids=()
took=$(( $(date +%s) - start ))
cat "$work/kill.err"
grep -q "rank 1 of 2 was killed by signal 9" "$work/kill.err" || fail "the launcher did not name the killed rank"
grep -q "rank 0 of 2: rank 1 stopped answering" "$work/kill.err" || fail "rank 0 did not report its peer"
(( took <= 15 )) || fail "took ${took}s to end after a worker was killed"
echo "kill: the run ended ${took}s after rank 1 was killed"
echo "e2e distributed: all checks passed"
