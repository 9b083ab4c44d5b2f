#!/usr/bin/env bash
# step: the multi-node tests again, every zone's node on PostgreSQL (throwaway clusters, ftz-pgtest), with the crash harness and the replica tests
set -euo pipefail
# crash: 600 transfers, 3 SIGKILLs, about 30 s on 2 cores. replicas: shanghai as 3 replicas behind
# a balancer, replicas SIGKILLed, the database restarted; about 20 s each, run side by side.
FTZ_TEST_STORE=postgres cargo nextest run --locked -p ftz-tests \
    --test federation --test recognition --test audit --test backup --test outbox \
    --test policies --test registry --test reads --test crash --test replicas
