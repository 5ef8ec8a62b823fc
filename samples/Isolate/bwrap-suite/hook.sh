# shellcheck shell=bash
# Sourced by the copy of bubblewrap's tests/test-run.sh that ./run makes, right after the suite defines ok().
# It runs case BWS_TARGET alone: the cases before it run with the reference bwrap (BWS_REFERENCE) and without
# errexit, only to leave the state case BWS_TARGET expects (files, directories); at case BWS_TARGET the bwrap
# under test ($BWRAP as given) and the suite's own `set -e` take over, and the run ends at that case's `ok`.
# BWS_TARGET=0 lists the cases instead (every case with the reference bwrap, nothing fatal).

__bws_subject=$BWRAP
__bws_live=0

__bws_enter () {
    BWRAP=$__bws_subject
    RUN="${BWRAP} --bind / / --tmpfs /tmp"
    # A case's command lines made from $BWRAP before the switch (the nested-sandbox cases' BWRAP_RECURSE).
    if [ -n "${BWRAP_RECURSE:-}" ]; then
        BWRAP_RECURSE="${BWRAP}${BWRAP_RECURSE#"$BWS_REFERENCE"}"
    fi
    __bws_live=1
    set -e
}

ok () {
    test_count=$((test_count + 1))
    echo "ok $test_count $*"
    if [ "$BWS_TARGET" = 0 ]; then
        return 0
    fi
    if [ "$test_count" -eq "$BWS_TARGET" ]; then
        case "$*" in
            "# SKIP"*) echo "BWS-RESULT skip" ;;
            *) echo "BWS-RESULT pass" ;;
        esac
        exit 0
    fi
    if [ "$test_count" -eq $((BWS_TARGET - 1)) ]; then
        __bws_enter
    fi
}

# The suite's assertions end the script; before the case under test they only say what failed.
fatal () {
    echo "$@" 1>&2
    if [ "$__bws_live" = 1 ]; then
        exit 1
    fi
}

if [ "$BWS_TARGET" = 1 ]; then
    __bws_enter
else
    BWRAP=$BWS_REFERENCE
    RUN="${BWRAP} --bind / / --tmpfs /tmp"
    set +e
fi
