#!/usr/bin/env bash
# Makes what deploy/compose.yaml mounts: keys for the coordinator, three workers (two of
# coop-a, one of coop-b) and two members (ana, ben), a genesis naming them, and the
# coordinator's config. Keys stay in the state folder (deploy/compose/state, or $ICN_STATE),
# readable only by the user the containers run as (nobody, 65534). Run once, as root
# (to give the keys to that user), before `docker-compose -f deploy/compose.yaml up`.
# Usage: deploy/compose/init.sh [PATH-TO-ICN]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
icn=${1:-$(command -v icn || echo "$top/target/release/icn")}
state=${ICN_STATE:-$here/state}
# Everything is checked before anything is written: a failed check leaves no half-made folder.
if [ ! -x "$icn" ] || ! "$icn" --version >/dev/null 2>&1; then
    echo "init.sh: no icn binary at $icn: build it (cargo build --release --bin icn) or give its path: deploy/compose/init.sh PATH-TO-ICN" >&2
    exit 1
fi
if [ -e "$state/coordinator/genesis.toml" ]; then
    echo "$state already holds a commons; remove it (and the compose volumes: docker-compose -f deploy/compose.yaml down -v) to start over" >&2
    exit 1
fi
if [ -e "$state" ] && [ -n "$(ls -A "$state")" ]; then
    echo "init.sh: $state is not empty but holds no commons (an earlier run stopped half-way?); remove it, or set ICN_STATE to an empty or new folder" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "init.sh: run it as root (sudo deploy/compose/init.sh): the key files go to the containers' user, nobody (65534)" >&2
    exit 1
fi
mkdir -p "$state/coordinator" "$state/members"
for worker in worker-a1 worker-a2 worker-b1; do mkdir -p "$state/$worker"; done
key() { "$icn" keygen --out "$1"; }
coordinator=$(key "$state/coordinator/coordinator.key")
a1=$(key "$state/worker-a1/worker.key")
a2=$(key "$state/worker-a2/worker.key")
b1=$(key "$state/worker-b1/worker.key")
ana=$(key "$state/members/ana.key")
ben=$(key "$state/members/ben.key")

cat >"$state/coordinator/genesis.toml" <<TOML
# The commons deploy/compose.yaml runs: one federation, two cooperatives, three workers.
[[scopes]]
id = "commons"
kind = "commons"
rule = { quorum = "1/2", approval = "1/2", voting_window_ms = 60000 }
prices = { credits_per_mega_fuel = 1 }

[[scopes]]
id = "fed-north"
kind = "federation"
parent = "commons"
rule = { quorum = "1/2", approval = "1/2", voting_window_ms = 60000 }
credit_limit = 100000

[[scopes]]
id = "coop-a"
kind = "cooperative"
parent = "fed-north"
rule = { quorum = "1/2", approval = "1/2", voting_window_ms = 60000 }

[[scopes]]
id = "coop-b"
kind = "cooperative"
parent = "fed-north"
rule = { quorum = "1/2", approval = "1/2", voting_window_ms = 60000 }

[[members]]
name = "ana"
key = "$ana"
standing = { commons = ["vote"], fed-north = ["vote", "submit"], coop-a = ["vote", "donate"] }

[[members]]
name = "ben"
key = "$ben"
standing = { commons = ["vote"], fed-north = ["vote", "submit"], coop-b = ["vote", "donate"] }

[[workers]]
key = "$a1"
owner = "coop-a"

[[workers]]
key = "$a2"
owner = "coop-a"

[[workers]]
key = "$b1"
owner = "coop-b"

[[mandates]]
scope = "fed-north"
budget = 100000
period_ms = 2592000000
executors = ["wasm"]
limits = { fuel = 1000000000, memory_bytes = 67108864, timeout_ms = 10000, output_bytes = 65536 }
TOML

cat >"$state/coordinator/coordinator.toml" <<TOML
# The coordinator of deploy/compose.yaml; paths are inside its container.
listen = "0.0.0.0:7600"
key = "coordinator.key"
journal = "/data/journal.db"
genesis = "genesis.toml"
metrics_listen = "0.0.0.0:9600"
heartbeat_interval_ms = 500
worker_timeout_ms = 5000
TOML

echo "ICN_COORDINATOR_KEY=$coordinator" >"$state/compose.env"
# The containers run as nobody; key files must be readable by their owner alone.
chown -R 65534:65534 "$state/coordinator" "$state/worker-a1" "$state/worker-a2" "$state/worker-b1"
cat <<TEXT
Made a commons in $state. Next:
  docker-compose --env-file $state/compose.env -f deploy/compose.yaml up -d
Then, from this machine (the coordinator's QUIC port is published on 127.0.0.1):
  export ICN_COORDINATOR=127.0.0.1:\${ICN_QUIC_PORT:-7600} ICN_COORDINATOR_KEY=$coordinator
  export ICN_KEY=$state/members/ana.key ICN_SCOPE=fed-north
  icn submit examples/wat/hello.wat --wait
TEXT
