#!/usr/bin/env bash
# step: the multi-node tests again, every zone's node on PostgreSQL (throwaway clusters, ftz-pgtest)
set -euo pipefail
FTZ_TEST_STORE=postgres cargo nextest run --locked -p ftz-tests \
    --test federation --test recognition --test audit --test backup --test outbox \
    --test policies --test registry --test reads
