# shellcheck shell=bash
# Test hosts made of Linux network namespaces, for data-parallel runs "across machines" on one
# machine. Source it from a bash test script (needs root: CI runs as root).
#
#   source tests/distributed/netns_hosts.sh
#   netns_require || exit 77                 # says why when namespaces cannot be made
#   netns_hosts_up 3                         # hosts a, b, c: 10.213.0.1, .2, .3 on veth0
#   netns_launch 0 "$log_dir/rank0" cli fit …    # rank 0 in host a, the way srun starts it
#   netns_link_down 2                        # host c's cable pulled
#   netns_hosts_down                         # (also done on exit, even on failure)
#
# Topology: every host is a network namespace `whk<pid><letter>` holding lo and one interface,
# veth0, with the private address 10.213.0.<1+i>/24. Two hosts: one veth pair between them, a
# crossover cable. Three or more: a star, each host's veth0 paired with a port of a Linux bridge
# in a switch namespace `whk<pid>sw`. Every interface is made inside a namespace, never in the
# machine's own, so no traffic can leave them and deleting the namespaces removes every veth.
#
# Clean-up: netns_hosts_down kills what runs in the namespaces and deletes them; an EXIT trap
# calls it, and a watcher process (its own session, so it outlives a SIGKILL of the test, as from
# ctest's timeout) does the same when the test process ends without it. Namespaces left by a
# test process that no longer exists (its pid is in the name) are removed on the next start.

NETNS_PREFIX="whk$$"
NETNS_SUBNET="10.213.0"
NETNS_IFNAME="veth0"
NETNS_HOSTS=()          # namespace of host i
NETNS_SWITCH=""         # the bridge's namespace (3+ hosts)
NETNS_RANK_PIDS=()      # pid of rank r (the `ip netns exec` process, which execs whisker-cli)
NETNS_WATCHER=""

netns_host_addr() { echo "$NETNS_SUBNET.$(($1 + 1))"; }

# 0 when this process may make namespaces and veths; otherwise prints why and returns 1.
netns_require() {
  if ! command -v ip >/dev/null 2>&1; then echo "cannot make test hosts: the 'ip' command (iproute2) is missing"; return 1; fi
  if [[ $(id -u) -ne 0 ]]; then echo "cannot make test hosts: network namespaces need root (this runs as uid $(id -u))"; return 1; fi
  local probe="${NETNS_PREFIX}probe" err
  if ! err=$(ip netns add "$probe" 2>&1); then echo "cannot make test hosts: 'ip netns add' failed: $err"; return 1; fi
  if ! err=$(ip -n "$probe" link add veth0 type veth peer name veth1 2>&1); then
    ip netns del "$probe" 2>/dev/null
    echo "cannot make test hosts: no veth devices in this kernel: $err"; return 1
  fi
  ip netns del "$probe"
  return 0
}

# 0 when tc's netem (added latency and loss) works on a veth; otherwise prints why.
netns_have_netem() {
  local probe="${NETNS_PREFIX}netem" err rc=0
  ip netns add "$probe" || return 1
  ip -n "$probe" link add veth0 type veth peer name veth1
  if ! err=$(ip netns exec "$probe" tc qdisc add dev veth0 root netem delay 1ms 2>&1); then
    echo "tc netem is not available in this kernel (sch_netem): ${err:-tc failed}"; rc=1
  fi
  ip netns del "$probe"
  return $rc
}

# Removes the namespaces of earlier test processes that no longer exist.
netns_sweep_stale() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $ns =~ ^whk([0-9]+)(sw|[a-z])$ ]] || continue
    pid=${BASH_REMATCH[1]}
    if [[ $pid != "$$" ]] && ! kill -0 "$pid" 2>/dev/null; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
      ip netns del "$ns" 2>/dev/null && echo "removed the namespace $ns left by an earlier test (pid $pid)"
    fi
  done
}

# netns_hosts_up N: N hosts (see the topology above), loopback up, reachable from each other.
netns_hosts_up() {
  local n=$1 i ns letters=abcdefghijklmnopqrstuvwxyz
  (( n >= 2 && n <= 26 )) || { echo "netns_hosts_up: 2 to 26 hosts" >&2; return 1; }
  [[ ${#NETNS_HOSTS[@]} -eq 0 ]] || netns_hosts_down
  for ((i = 0; i < n; ++i)); do
    ns="$NETNS_PREFIX${letters:i:1}"
    ip netns add "$ns" || return 1
    NETNS_HOSTS+=("$ns")
    ip -n "$ns" link set lo up || return 1
  done
  if (( n == 2 )); then
    ip -n "${NETNS_HOSTS[0]}" link add "$NETNS_IFNAME" type veth peer name "$NETNS_IFNAME" netns "${NETNS_HOSTS[1]}" || return 1
  else
    NETNS_SWITCH="${NETNS_PREFIX}sw"
    ip netns add "$NETNS_SWITCH" || return 1
    ip -n "$NETNS_SWITCH" link add br0 type bridge || return 1
    ip -n "$NETNS_SWITCH" link set br0 up || return 1
    for ((i = 0; i < n; ++i)); do
      ip -n "${NETNS_HOSTS[i]}" link add "$NETNS_IFNAME" type veth peer name "port$i" netns "$NETNS_SWITCH" || return 1
      ip -n "$NETNS_SWITCH" link set "port$i" master br0 || return 1
      ip -n "$NETNS_SWITCH" link set "port$i" up || return 1
    done
  fi
  for ((i = 0; i < n; ++i)); do
    ip -n "${NETNS_HOSTS[i]}" addr add "$(netns_host_addr "$i")/24" dev "$NETNS_IFNAME" || return 1
    ip -n "${NETNS_HOSTS[i]}" link set "$NETNS_IFNAME" up || return 1
  done
  # Every host reaches every other (a bridge port takes a moment to forward).
  local j ok
  for ((i = 0; i < n; ++i)); do
    for ((j = 0; j < n; ++j)); do
      (( i == j )) && continue
      ok=0
      for _ in $(seq 1 50); do
        if netns_reachable "$i" "$j"; then ok=1; break; fi
        sleep 0.1
      done
      (( ok )) || { echo "test host $i cannot reach host $j ($(netns_host_addr "$j"))" >&2; return 1; }
    done
  done
}

# netns_reachable I J: host I can reach host J (ARP answered: its neighbour entry is usable).
netns_reachable() {
  # No ping in a slim image: a TCP connect to a closed port is answered (refused) when J is up.
  local said
  said=$(ip netns exec "${NETNS_HOSTS[$1]}" timeout 1 bash -c "exec 3<>/dev/tcp/$(netns_host_addr "$2")/9" 2>&1)
  [[ $said == *refused* ]]
}

# netns_launch RANK OUT_PREFIX PROGRAM ARGS…: starts one rank in host RANK's namespace with the
# variables of an srun step (one task per node), MASTER_ADDR = host 0, GLOO_SOCKET_IFNAME = the
# veth; stdout/stderr to OUT_PREFIX.out/.err. NETNS_PORT (the rendezvous port) must be set.
netns_launch() {
  local rank=$1 out=$2
  shift 2
  local n=${#NETNS_HOSTS[@]}
  local nodes
  nodes=$(IFS=,; echo "${NETNS_HOSTS[*]}")
  # Emptied here, not by the background job's redirections (they run later): a caller that
  # waits for a line in OUT_PREFIX.out must never read an earlier run's.
  : >"$out.out"
  : >"$out.err"
  ip netns exec "${NETNS_HOSTS[rank]}" env -u RANK -u WORLD_SIZE -u LOCAL_RANK -u LOCAL_WORLD_SIZE \
    -u TORCHELASTIC_RUN_ID -u WHISKER_LAUNCHED -u WHISKER_PROJECT_LOCK_PARENT \
    SLURM_JOB_ID="$$" SLURM_STEP_ID=0 SLURM_PROCID="$rank" SLURM_LOCALID=0 SLURM_NODEID="$rank" \
    SLURM_NTASKS="$n" SLURM_STEP_NUM_TASKS="$n" SLURM_NNODES="$n" SLURM_STEP_NUM_NODES="$n" \
    SLURM_STEP_TASKS_PER_NODE="1(x$n)" SLURM_TASKS_PER_NODE="1(x$n)" SLURM_JOB_NODELIST="$nodes" SLURM_STEP_NODELIST="$nodes" \
    SLURMD_NODENAME="${NETNS_HOSTS[rank]}" MASTER_ADDR="$(netns_host_addr 0)" MASTER_PORT="$NETNS_PORT" \
    GLOO_SOCKET_IFNAME="$NETNS_IFNAME" OMP_NUM_THREADS="${NETNS_THREADS:-1}" \
    "$@" >"$out.out" 2>"$out.err" &
  NETNS_RANK_PIDS[rank]=$!
}

# netns_wait_ranks: waits for every launched rank; sets NETNS_RC[r] to each exit code.
netns_wait_ranks() {
  local r
  NETNS_RC=()
  for r in "${!NETNS_RANK_PIDS[@]}"; do
    if wait "${NETNS_RANK_PIDS[r]}"; then NETNS_RC[r]=0; else NETNS_RC[r]=$?; fi
  done
  NETNS_RANK_PIDS=()
}

netns_link_down() { ip -n "${NETNS_HOSTS[$1]}" link set "$NETNS_IFNAME" down; }
netns_link_up() { ip -n "${NETNS_HOSTS[$1]}" link set "$NETNS_IFNAME" up; }

# Kills every process in the namespaces, then deletes them (which deletes their veths).
netns_hosts_down() {
  local p ns
  for p in "${NETNS_RANK_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for ns in "${NETNS_HOSTS[@]}" $NETNS_SWITCH; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
  done
  for p in "${NETNS_RANK_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for ns in "${NETNS_HOSTS[@]}" $NETNS_SWITCH; do ip netns del "$ns" 2>/dev/null; done
  NETNS_HOSTS=() NETNS_SWITCH="" NETNS_RANK_PIDS=()
}

# What this test left: namespaces of its own, and processes whose command line holds its work
# folder (see netns_install_cleanup); empty when clean.
netns_leftovers() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NETNS_PREFIX" | sed 's/^/namespace /'
  local p
  for p in "${NETNS_RANK_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && echo "process $p"; done
  if [[ -n $NETNS_WORK_DIR ]]; then pgrep -a -f -- "$NETNS_WORK_DIR" | sed 's/^/process /'; fi
  return 0
}

# netns_install_cleanup [WORK_DIR]: on exit (EXIT trap; INT and TERM exit), every namespace of
# this test goes with what runs in it; with WORK_DIR, so do the processes whose command line
# holds it (e.g. a one-process run outside the namespaces) and the folder. A watcher in its own
# session does the same if this shell is killed outright (SIGKILL, as from ctest's timeout).
NETNS_WORK_DIR=""
netns_install_cleanup() {
  NETNS_WORK_DIR=${1:-}
  trap 'netns_on_exit' EXIT
  trap 'exit 130' INT TERM
  # The folder reaches the watcher through its environment, so that its own command line
  # does not match it.
  NETNS_OWNER=$$ NETNS_PREFIX=$NETNS_PREFIX NETNS_WORK_DIR=$NETNS_WORK_DIR setsid bash -c '
    while kill -0 "$NETNS_OWNER" 2>/dev/null; do sleep 1; done
    for ns in $(ip netns list 2>/dev/null | awk "{print \$1}" | grep "^$NETNS_PREFIX"); do
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
      ip netns del "$ns" 2>/dev/null
    done
    if [[ -n $NETNS_WORK_DIR ]]; then
      pgrep -f -- "$NETNS_WORK_DIR" | xargs -r kill -9
      sleep 0.5
      rm -rf "$NETNS_WORK_DIR"
    fi' </dev/null >/dev/null 2>&1 &
  NETNS_WATCHER=$!
}

netns_on_exit() {
  local rc=$?
  netns_hosts_down
  if [[ -n $NETNS_WORK_DIR ]]; then
    local own
    own=$(pgrep -f -- "$NETNS_WORK_DIR" | grep -vx "$$")
    [[ -z $own ]] || { kill -9 $own 2>/dev/null; sleep 0.5; }
    rm -rf "$NETNS_WORK_DIR"
  fi
  [[ -n $NETNS_WATCHER ]] && kill "$NETNS_WATCHER" 2>/dev/null
  exit $rc
}
