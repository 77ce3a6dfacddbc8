#!/usr/bin/env bash
# The full test suite (the README's test command runs it after installing).
# In-process tests run as two pytest processes side by side, each in its usual order: the
# engines' integration tests (vLLM, torchtitan, torchft, Triton) and everything else with the
# SGLang tests (about as long as the two halves are then). Their logs print when both are done.
# Then the multi-process tests, on two pytest-xdist workers. tests/sglang_env runs inside
# SGLang's environment, started by tests/integrations/test_sglang.py, which must find it.
export NPUSIM_REQUIRE_SGLANG=1
set -uo pipefail
cd "$(dirname "$0")/.."
logs="$(mktemp -d)"
engines_but_sglang=()
for f in tests/integrations/test_*.py; do
    [ "$f" = tests/integrations/test_sglang.py ] || engines_but_sglang+=("--ignore=$f")
done
python -m pytest -q --durations=10 tests/integrations --ignore=tests/integrations/test_sglang.py \
    > "$logs/integrations.log" 2>&1 &
integrations=$!
python -m pytest -q --durations=10 tests --ignore=tests/distributed --ignore=tests/sglang_env \
    "${engines_but_sglang[@]}" > "$logs/rest.log" 2>&1 &
rest=$!
wait "$rest"; rest_status=$?
wait "$integrations"; integrations_status=$?
echo "=== in-process tests (all but tests/integrations, with SGLang's): exit $rest_status"; cat "$logs/rest.log"
echo "=== tests/integrations (less SGLang's): exit $integrations_status"; cat "$logs/integrations.log"
if [ "$rest_status" -ne 0 ] || [ "$integrations_status" -ne 0 ]; then
    exit 1
fi
python -m pytest -q -n 2 --durations=20 tests/distributed
