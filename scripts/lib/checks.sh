# shellcheck shell=bash
#
# The check tally shared by scripts/validate-deploy.sh and scripts/check-mosquitto-config.sh:
# one "ok" or "FAIL" line per check and a closing count, so CI logs read the same. Source it;
# it defines functions and the counters only.

passed=0
failed=0

pass() {
  echo "ok   - $*"
  passed=$((passed + 1))
}

fail() {
  echo "FAIL - $*"
  failed=$((failed + 1))
}

# Prints "N passed, N failed"; its status is the script's verdict.
summary() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}
