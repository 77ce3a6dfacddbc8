#!/usr/bin/env bash
# Two simulated hosts on one Linux machine: network namespaces NAME-h0 and NAME-h1 joined
# by a veth pair (NAME0 in h0, NAME1 in h1), addresses SUBNET.1 (h0) and SUBNET.2 (h1).
# Each namespace has its own network (loopback included), so ranks in different ones
# reach each other only over the veth link, as ranks on two machines would over a network;
# npusim treats them as two hosts (TCP between them, shared memory within each).
# Needs root (ip netns). The addresses exist only inside the two namespaces.
#
#   scripts/netns_hosts.sh create NAME [SUBNET]   create both hosts (SUBNET default 10.231.0)
#   scripts/netns_hosts.sh exec NAME 0|1 CMD...   run CMD on host 0 or 1
#   scripts/netns_hosts.sh addr NAME 0|1 [SUBNET] print host 0's or 1's address
#   scripts/netns_hosts.sh link NAME down|up      cut or restore the link (both ends)
#   scripts/netns_hosts.sh destroy NAME           remove both hosts (and the link)
#
# Example: two nodes of two ranks each, the rendezvous served from host 0:
#   scripts/netns_hosts.sh create demo
#   for n in 0 1; do
#     scripts/netns_hosts.sh exec demo $n torchrun --nnodes 2 --nproc-per-node 2 --node-rank $n \
#       --rdzv-backend c10d --rdzv-endpoint 10.231.0.1:29400 --rdzv-id demo \
#       --rdzv-conf is_host=$([ $n = 0 ] && echo true || echo false) \
#       --local-addr "$(scripts/netns_hosts.sh addr demo $n)" train.py &
#   done; wait
#   scripts/netns_hosts.sh destroy demo
# (Both namespaces share the machine's host name, which names no address inside them:
# is_host says which node serves the rendezvous store, --local-addr what to advertise.)
set -euo pipefail

die() { echo "netns_hosts.sh: $*" >&2; exit 2; }
usage() { sed -n '2,14p' "$0" >&2; exit 2; }

[ $# -ge 2 ] || usage
cmd=$1 name=$2
# veth names are limited to 15 characters; namespace names to what `ip` accepts.
[[ $name =~ ^[a-z][a-z0-9]{0,11}$ ]] || die "NAME must be 1-12 lowercase letters or digits, starting with a letter: '$name'"

host_ns() {
  [[ $1 == 0 || $1 == 1 ]] || die "host must be 0 or 1, got '$1'"
  echo "$name-h$1"
}
check_subnet() {
  [[ $1 =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "SUBNET must be three octets like 10.231.0, got '$1'"
}

case $cmd in
  create)
    subnet=${3:-10.231.0}
    check_subnet "$subnet"
    [ "$(id -u)" = 0 ] || die "creating network namespaces needs root"
    ip netns add "$name-h0"
    # From here on, a failure removes whatever was created.
    trap 'ip netns del "$name-h0" 2>/dev/null || true; ip netns del "$name-h1" 2>/dev/null || true' ERR
    ip netns add "$name-h1"
    ip link add "${name}0" netns "$name-h0" type veth peer name "${name}1" netns "$name-h1"
    for h in 0 1; do
      ip -n "$name-h$h" link set lo up
      ip -n "$name-h$h" addr add "$subnet.$((h + 1))/24" dev "$name$h"
      ip -n "$name-h$h" link set "$name$h" up
    done
    trap - ERR
    ;;
  exec)
    [ $# -ge 4 ] || usage
    ns=$(host_ns "$3")
    shift 3
    exec ip netns exec "$ns" "$@"
    ;;
  addr)
    [ $# -ge 3 ] || usage
    host_ns "$3" >/dev/null
    subnet=${4:-10.231.0}
    check_subnet "$subnet"
    echo "$subnet.$(($3 + 1))"
    ;;
  link)
    [ $# -eq 3 ] && [[ $3 == up || $3 == down ]] || die "link takes 'up' or 'down'"
    for h in 0 1; do ip -n "$name-h$h" link set "$name$h" "$3"; done
    ;;
  destroy)
    # Deleting a namespace deletes the veth end inside it, and with it the pair.
    status=0
    for h in 0 1; do
      if ip netns list | grep -qw "$name-h$h"; then ip netns del "$name-h$h" || status=1; fi
    done
    exit $status
    ;;
  *) usage ;;
esac
