# test/tap.sh: sourced by the shell test suites (test/*/*.sh) to print TAP.
#   ok STATUS DESCRIPTION   one test: STATUS 0 passes
#   wait_for SECONDS CMD... poll (every 0.1 s) until CMD succeeds, bounded
#   tap_done                exit status: 0 when every test passed
tap_n=0
tap_failed=0
ok() {
    tap_n=$((tap_n + 1))
    if [[ $1 == 0 ]]; then
        echo "ok $tap_n - $2"
    else
        echo "not ok $tap_n - $2"
        tap_failed=$((tap_failed + 1))
    fi
}
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}
tap_done() { ((tap_failed == 0)); }
