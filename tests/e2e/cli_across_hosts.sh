#!/usr/bin/env bash
# Data-parallel training across hosts: ranks in different network namespaces (test hosts with
# private addresses on veth links, tests/distributed/netns_hosts.sh), each started the way an
# `srun` step starts it (SLURM variables, MASTER_ADDR = the first host, GLOO_SOCKET_IFNAME = its
# veth), talking over a real interface instead of 127.0.0.1.
#
#   cli_across_hosts.sh WHISKER_CLI          the main checks:
#     - 2 hosts train like one process with the same global batch (weights, every epoch's
#       metrics), and bit for bit like `--nproc 2` on 127.0.0.1 (only the network differs);
#     - a link taken down mid-epoch (2 hosts, LINK_DOWN_REPS times at different moments of a
#       batch, default 3; then 3 hosts) ends every rank within --dist-timeout with an error
#       naming the rank it cannot reach, exit code 3 (a peer failed), never 0: the error is
#       printed and the process has ended at most T + min(2 s, T/4) (the liveness probe) + 1.5 s
#       after the link went down, on every rank, every time;
#     - after that failure, `fit --resume` on 3 hosts continues the 2-host fit exactly (the
#       numbers of the uninterrupted one-process fit, to float rounding);
#     - a throttled link dropping packets (tc tbf) slows training but changes no result.
#   cli_across_hosts.sh WHISKER_CLI netem    added latency and loss (tc netem) change no result.
#
# Exit code 77 (ctest: skipped, not passed) when the test hosts cannot be made (no root, no
# network namespaces or veths), and for `netem` when the kernel has no sch_netem. Nothing is left
# behind (namespaces, veths, processes), also when a check fails: the last check makes sure.
set -uo pipefail
cli=$1
part=${2:-main}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../distributed/netns_hosts.sh
source "$here/../distributed/netns_hosts.sh"

if ! why=$(netns_require); then echo "SKIPPED (not passed): $why"; exit 77; fi
if [[ $part == netem ]] && ! why=$(netns_have_netem); then echo "SKIPPED (not passed): $why"; exit 77; fi
netns_sweep_stale

work=$(mktemp -d /tmp/whisker-across-hosts.XXXXXX)
netns_install_cleanup "$work"

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
die() { echo "FAIL: $*" >&2; exit 1; }
# Microseconds (bash 5's EPOCHREALTIME), and a duration in seconds with one decimal.
now_us() { echo $((${EPOCHREALTIME/./})); }
seconds_since() { local d=$(($(now_us) - $1)); printf '%d.%d' $((d / 1000000)) $((d % 1000000 / 100000)); }
show_errors() { local f; for f in "$@"; do [[ -s $f ]] && { echo "--- $f"; tail -n 5 "$f"; }; done >&2; }

# The sample competition: 96 training and 24 validation images; a global batch of 12 splits
# evenly over 1, 2 and 3 hosts (8 batches an epoch). resnet18 from scratch at 32 px, all of it
# trained (45 MB of gradients a batch cross the links), fp32 (the same arithmetic whatever the
# batch split), BatchNorm statistics fixed (they would be per rank).
TRAIN_IMAGES=96
"$cli" -q sample "$work/dl" --train 120 --test 4 || die "sample"
"$cli" -q data prepare "$work/base" --from "$work/dl" --valid-per-class 12 || die "data prepare"
learner=(--arch resnet18 --size 32 --bs 12 --no-pretrained --unfreeze --bn-freeze --precision fp32)
# The head's dropout masks are drawn per row of the global batch, so any number of hosts draws
# the same ones. lr 1e-3: summing gradients across ranks rounds differently from one batch
# (~1e-8); a random network at lr 1e-2 grows that tenfold a step, past the 1e-5 compared.
fit_args=(--lr 0.001 --cycles 2 --json)
new_project() { rm -rf "${work:?}/$1"; cp -a "$work/base" "$work/$1"; }

port=29400
# run_hosts N NAME TIMEOUT [ARGS…]: `fit` on N test hosts in project NAME; logs NAME.rank<r>.*.
# Sets RUN_SECONDS (wall time) and NETNS_RC (exit codes).
run_hosts() {
  local n=$1 name=$2 timeout=$3 r t0
  shift 3
  port=$((port + 1))
  NETNS_PORT=$port
  t0=$(now_us)
  for ((r = n - 1; r >= 0; --r)); do
    netns_launch "$r" "$work/$name.rank$r" "$cli" fit "$work/$name" --dist-timeout "$timeout" "$@"
  done
  netns_wait_ranks
  RUN_SECONDS=$(seconds_since "$t0")
}
all_zero() { local c; for c in "${NETNS_RC[@]}"; do [[ $c == 0 ]] || return 1; done; }

# compare.py MODE A.json-lines B.json-lines A.safetensors B.safetensors [FIRST_EPOCH]
#   MODE exact: every number equal; close: relative differences below 1e-5 (the order of float
#   additions differs with the batch split: measured 3e-7 to 5e-7 here; a run in another
#   precision, bf16 say, is 1e-3 away). Epochs from FIRST_EPOCH on (those in both files).
cat >"$work/compare.py" <<'PY'
import array, json, struct, sys
mode, ja, jb, wa, wb = sys.argv[1:6]
first = int(sys.argv[6]) if len(sys.argv) > 6 else 0
tol = 0.0 if mode == "exact" else 1e-5
def epochs(path):
    out = {}
    for line in open(path):
        if '"event":"epoch"' in line:
            e = json.loads(line)
            if e["epoch"] >= first: out[e["epoch"]] = e
    return out
def weights(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n)); data = f.read()
    codes = {"F32": "f", "F64": "d", "I64": "q", "I32": "i"}
    return {k: array.array(codes[v["dtype"]], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in head.items() if k != "__metadata__"}
ea, eb = epochs(ja), epochs(jb)
assert ea and sorted(ea) == sorted(eb), f"epochs {sorted(ea)} vs {sorted(eb)}"
worst_metric, where = 0.0, ""
for k in ea:
    for m in ("trn_loss", "val_loss", "accuracy", "log_loss"):
        d = abs(ea[k][m] - eb[k][m]) / (1 + abs(eb[k][m]))
        if d > worst_metric: worst_metric, where = d, f"epoch {k} {m}: {ea[k][m]} vs {eb[k][m]}"
xa, xb = weights(wa), weights(wb)
assert xa.keys() == xb.keys(), "different tensors"
worst_weight, wkey = 0.0, ""
for k in xa:
    if not xa[k]: continue
    d = max(abs(p - q) for p, q in zip(xa[k], xb[k])) / (1 + max(abs(q) for q in xb[k]))
    if d > worst_weight: worst_weight, wkey = d, k
print(f"{len(ea)} epochs, largest difference: metrics {worst_metric:.1e}, weights {worst_weight:.1e}")
ok = worst_metric <= tol and worst_weight <= tol
if not ok: print(f"  worst metric: {where}; worst weight: {wkey} (allowed {tol:g})")
sys.exit(0 if ok else 1)
PY
compare() { python3 "$work/compare.py" "$@"; }
# images/s of training: the training images of an epoch over its seconds (with validation), the
# first epoch of a fit left out when there are more (it decodes the images into the cache).
images_per_second() {
  python3 - "$1" "$TRAIN_IMAGES" <<'PY'
import json, sys
e = [json.loads(l) for l in open(sys.argv[1]) if '"event":"epoch"' in l]
s = [x["seconds"] for x in e if x["epoch"] > 0 or len(e) == 1]
print(f"{len(s) * int(sys.argv[2]) / sum(s):.0f}" if s else "?")
PY
}

# link_down_run N NAME DOWN_HOST TIMEOUT [DELAY]: the 2-epoch fit on N hosts, and host
# DOWN_HOST's link goes down in the middle of epoch 1 (after epoch 0 and its checkpoint,
# autosave), DELAY seconds (default 0) after rank 0 reported the epoch's first batch, so that
# repetitions catch the ranks at different moments of a batch (forward, gradient all-reduce,
# loss all-reduce). Checks every rank: exit code 3 (a peer failed); its error printed and the
# process ended within the bound below of the link going down; the error naming the rank(s) it
# cannot reach. The bound: a collective gives up TIMEOUT after it started (when the link went
# down, or within the batch after), the liveness probe takes up to min(2 s, TIMEOUT/4), and
# 1.5 s is left for printing, ending the process and a loaded machine (0.1 to 0.5 s here).
link_down_run() {
  local n=$1 name=$2 down=$3 timeout=$4 delay=${5:-0} r ended=() ended_us=() said=() said_us=() left t_down
  local bound_us=$((timeout * 1000000 + (timeout * 250000 < 2000000 ? timeout * 250000 : 2000000) + 1500000))
  local bound=$(printf '%d.%d' $((bound_us / 1000000)) $((bound_us % 1000000 / 100000)))
  new_project "$name"
  port=$((port + 1))
  NETNS_PORT=$port
  for ((r = n - 1; r >= 0; --r)); do
    netns_launch "$r" "$work/$name.rank$r" "$cli" fit "$work/$name" --dist-timeout "$timeout" "${learner[@]}" \
      "${fit_args[@]}"
  done
  local out0="$work/$name.rank0.out"
  for _ in $(seq 1 1200); do grep -q '"epoch":1,"event":"batch"' "$out0" 2>/dev/null && break; sleep 0.05; done
  if ! grep -q '"epoch":1,"event":"batch"' "$out0"; then
    show_errors "$work/$name".rank*.err
    fail "$n hosts, link down: the fit did not reach epoch 1"
    netns_hosts_down
    return
  fi
  [[ $delay == 0 ]] || sleep "$delay"
  netns_link_down "$down"
  t_down=$(now_us)
  # Each rank's error line and end, to 50 ms.
  left=$n
  while ((left > 0)); do
    for ((r = 0; r < n; ++r)); do
      if [[ -z ${said[r]:-} ]] && grep -q '^error: ' "$work/$name.rank$r.err" 2>/dev/null; then
        said_us[r]=$(($(now_us) - t_down))
        said[r]=$(seconds_since "$t_down")
      fi
      [[ -z ${ended[r]:-} ]] || continue
      if ! kill -0 "${NETNS_RANK_PIDS[r]}" 2>/dev/null; then
        ended_us[r]=$(($(now_us) - t_down))
        ended[r]=$(seconds_since "$t_down")
        left=$((left - 1))
      fi
    done
    if (($(now_us) - t_down > (timeout + 60) * 1000000)); then
      fail "$n hosts, link down: ranks still running $((timeout + 60)) s after the link went down (--dist-timeout $timeout)"
      break
    fi
    sleep 0.05
  done
  netns_wait_ranks
  LINK_DOWN_REPORT="$n hosts, host $down's link down mid-epoch 1 (+${delay} s), --dist-timeout $timeout (bound $bound s):"
  for ((r = 0; r < n; ++r)); do
    local err="$work/$name.rank$r.err" msg rc=${NETNS_RC[r]}
    msg=$(grep -m1 '^error: ' "$err" || true)
    [[ -n ${said[r]:-} || -z $msg ]] || { said[r]=${ended[r]:-}; said_us[r]=${ended_us[r]:-}; }   # printed as it ended
    LINK_DOWN_REPORT+=$'\n'"  rank $r: error after ${said[r]:-?} s, exit $rc after ${ended[r]:-?} s: ${msg:-(no error message)}"
    [[ $rc != 0 ]] || fail "$n hosts, link down: rank $r exited 0"
    [[ $rc == 3 ]] || fail "$n hosts, link down: rank $r exited $rc, not 3 (a peer failed)"
    [[ -n ${said_us[r]:-} ]] && ((said_us[r] <= bound_us)) ||
      fail "$n hosts, link down: rank $r printed its error ${said[r]:-never} s after the link went down, not within $bound s (--dist-timeout $timeout)"
    [[ -n ${ended_us[r]:-} ]] && ((ended_us[r] <= bound_us)) ||
      fail "$n hosts, link down: rank $r ended ${ended[r]:-never} s after the link went down, not within $bound s (--dist-timeout $timeout)"
    [[ $msg == "error: rank $r of $n: "* ]] || fail "$n hosts, link down: rank $r's error does not say which rank it is: $msg"
    [[ $msg == *"timeout $timeout s"* ]] || fail "$n hosts, link down: rank $r's error does not give the timeout: $msg"
    # The rank(s) this rank cannot reach: the cut-off host from the others, everyone else from it.
    local q names=()
    if ((r == down)); then for ((q = 0; q < n; ++q)); do ((q == r)) || names+=("$q"); done; else names=("$down"); fi
    local named=1
    if ((${#names[@]} == 1)); then
      [[ $msg =~ :\ rank\ ${names[0]}[^0-9] ]] || named=0
    else
      for q in "${names[@]}"; do [[ $msg =~ ranks?\ ([0-9]+,\ |[0-9]+\ and\ )*${q}[^0-9] ]] || named=0; done
    fi
    [[ $msg != *"another rank"* ]] || named=0
    ((named)) || fail "$n hosts, link down: rank $r's error does not name the rank(s) it cannot reach (${names[*]}): $msg"
  done
  echo "$LINK_DOWN_REPORT"
}

# ---------------------------------------------------------------------------------------------
if [[ $part == netem ]]; then
  netns_hosts_up 2 || die "cannot make 2 test hosts"
  new_project plain
  run_hosts 2 plain 120 "${learner[@]}" "${fit_args[@]}"
  all_zero || { show_errors "$work"/plain.rank*.err; die "2 hosts: fit failed (${NETNS_RC[*]})"; }
  plain_s=$RUN_SECONDS
  netns_hosts_up 2 || die "cannot make 2 test hosts"
  for h in 0 1; do
    ip netns exec "${NETNS_HOSTS[h]}" tc qdisc add dev "$NETNS_IFNAME" root netem delay 5ms 2ms loss 0.5% ||
      die "tc netem on host $h"
  done
  new_project netem
  run_hosts 2 netem 120 "${learner[@]}" "${fit_args[@]}"
  all_zero || { show_errors "$work"/netem.rank*.err; die "2 hosts with netem: fit failed (${NETNS_RC[*]})"; }
  dropped=$(ip netns exec "${NETNS_HOSTS[0]}" tc -s qdisc show dev "$NETNS_IFNAME" | awk '/dropped/ {gsub(",", "", $7); print $7; exit}')
  echo "netem (delay 5±2 ms, loss 0.5% each way): ${RUN_SECONDS} s (${plain_s} s without), $dropped packets dropped on host 0"
  [[ ${dropped:-0} -gt 0 ]] || fail "netem dropped no packet: the loss was not exercised"
  compare exact "$work/netem.rank0.out" "$work/plain.rank0.out" \
    "$work/netem/models/current.safetensors" "$work/plain/models/current.safetensors" ||
    fail "2 hosts with latency and loss: not the result of the same hosts without"
else
  # One process: the reference (one thread, as each rank has: two spinning threads on a busy
  # 2-core machine are slower than one).
  new_project one
  t0=$(now_us)
  OMP_NUM_THREADS=1 "$cli" --threads 1 fit "$work/one" "${learner[@]}" "${fit_args[@]}" >"$work/one.out" 2>"$work/one.err" ||
    { cat "$work/one.err"; die "one process: fit"; }
  one_s=$(seconds_since "$t0")
  echo "1 process (1 thread): ${one_s} s, $(images_per_second "$work/one.out") training images/s"

  # Two hosts: one process's numbers.
  netns_hosts_up 2 || die "cannot make 2 test hosts"
  new_project two
  run_hosts 2 two 60 "${learner[@]}" "${fit_args[@]}"
  if all_zero; then
    two_s=$RUN_SECONDS
    echo "2 hosts (veth, global batch 12): ${two_s} s, $(images_per_second "$work/two.rank0.out") training images/s"
    grep -q "Data-parallel: 2 processes (gloo" "$work/two.rank0.out" || fail "2 hosts: no data-parallel line on rank 0"
    [[ ! -s "$work/two.rank1.out" ]] || fail "2 hosts: rank 1 printed on stdout"
    compare close "$work/two.rank0.out" "$work/one.out" "$work/two/models/current.safetensors" "$work/one/models/current.safetensors" ||
      fail "2 hosts do not train like one process with the same global batch"
    # The same two ranks on 127.0.0.1: only the network differs, so every bit is the same.
    new_project loop
    OMP_NUM_THREADS=1 "$cli" fit "$work/loop" --nproc 2 "${learner[@]}" "${fit_args[@]}" >"$work/loop.out" 2>"$work/loop.err" ||
      { cat "$work/loop.err"; die "--nproc 2 on 127.0.0.1"; }
    compare exact "$work/two.rank0.out" "$work/loop.out" "$work/two/models/current.safetensors" "$work/loop/models/current.safetensors" ||
      fail "2 hosts over veth differ from 2 processes on 127.0.0.1"
  else
    show_errors "$work"/two.rank*.err
    fail "2 hosts: fit failed (exit codes ${NETNS_RC[*]})"
  fi

  # A link down mid-epoch, 2 hosts: both ranks end with an error; then --resume on 3 hosts
  # continues from the last checkpoint (epoch 0) to the one-process result (the log of the
  # resumed run replaces the failed one's: the epochs it ran).
  netns_hosts_up 2 || die "cannot make 2 test hosts"
  link_down_run 2 cut2 1 5
  netns_hosts_down
  if [[ -f "$work/cut2/models/autosave.json" ]]; then
    done2=$(grep -c '"event":"epoch"' "$work/cut2.rank0.out")
    netns_hosts_up 3 || die "cannot make 3 test hosts"
    # No --precision: the fit ran in fp32 and must resume in fp32 although `auto` (the default)
    # is bf16 on a CPU with AVX512-BF16 or AMX (which alone would put the result 1e-3 away).
    run_hosts 3 cut2 60 --resume --json
    if all_zero; then
      done3=$(grep -c '"event":"epoch"' "$work/cut2.rank0.out")
      echo "resume: $done2 epoch(s) on 2 hosts, the link cut, the other $done3 on 3 hosts ($(images_per_second "$work/cut2.rank0.out") training images/s)"
      ((done2 + done3 == 2)) || fail "resume: $done2 + $done3 epochs, not 2"
      compare close "$work/cut2.rank0.out" "$work/one.out" "$work/cut2/models/current.safetensors" "$work/one/models/current.safetensors" "$done2" ||
        fail "--resume on 3 hosts after a failure on 2 does not continue exactly (the one-process fit's numbers)"
    else
      show_errors "$work"/cut2.rank*.err
      fail "--resume on 3 hosts failed (exit codes ${NETNS_RC[*]})"
    fi
  else
    fail "2 hosts, link down: no autosave checkpoint from epoch 0"
  fi

  # The link down again at other moments of a batch: every rank ends in time every time.
  reps=${LINK_DOWN_REPS:-3}
  for ((k = 1; k < reps; ++k)); do
    netns_hosts_up 2 || die "cannot make 2 test hosts"
    link_down_run 2 "cut2_$k" 1 5 "0.$((k * 37 % 10))"
    netns_hosts_down
  done

  # A link down mid-epoch, 3 hosts on a bridge: the two connected ranks name the cut-off one.
  netns_hosts_up 3 || die "cannot make 3 test hosts"
  link_down_run 3 cut3 2 5
  netns_hosts_down

  # A throttled link (no netem needed): 2 hosts behind token buckets with short queues, so the
  # gradients' bursts overflow them and TCP retransmits dropped packets. Slower, same bits.
  if [[ -n ${two_s:-} ]]; then
    netns_hosts_up 2 || die "cannot make 2 test hosts"
    for h in 0 1; do
      ip netns exec "${NETNS_HOSTS[h]}" tc qdisc add dev "$NETNS_IFNAME" root tbf rate 1gbit burst 256kb latency 2ms ||
        die "tc tbf on host $h"
    done
    new_project slow
    run_hosts 2 slow 120 "${learner[@]}" "${fit_args[@]}"
    stats=$(ip netns exec "${NETNS_HOSTS[0]}" tc -s qdisc show dev "$NETNS_IFNAME")
    dropped=$(awk '/dropped/ {gsub(",", "", $7); print $7; exit}' <<<"$stats")
    if all_zero; then
      echo "throttled link (1 Gbit/s, 2 ms queue): ${RUN_SECONDS} s (${two_s} s unthrottled), $(images_per_second "$work/slow.rank0.out") training images/s, $dropped packets dropped on host 0"
      [[ ${dropped:-0} -gt 0 ]] || fail "the throttled link dropped no packet: $stats"
      compare exact "$work/slow.rank0.out" "$work/two.rank0.out" "$work/slow/models/current.safetensors" "$work/two/models/current.safetensors" ||
        fail "a throttled link changed the result"
    else
      show_errors "$work"/slow.rank*.err
      fail "2 hosts on a throttled link: fit failed (exit codes ${NETNS_RC[*]})"
    fi
    netns_hosts_down
  fi
fi

# Nothing left behind: namespaces (and with them the veths) and processes of this test.
netns_hosts_down
left=$(netns_leftovers)
[[ -z $left ]] || fail "left behind: $left"
if ((failures > 0)); then echo "e2e across hosts ($part): $failures check(s) failed" >&2; exit 1; fi
echo "e2e across hosts ($part): all checks passed"
