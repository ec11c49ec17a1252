#!/usr/bin/env bash
# expect.sh STATUS REGEX [STDIN_FILE|-] -- COMMAND...: runs COMMAND, passes when its exit status is STATUS
# ("nonzero" for any failure) and its combined output matches the extended REGEX.
status=$1 regex=$2 input=$3
shift 3
[ "$1" = "--" ] && shift
if [ "$input" = "-" ]; then output=$("$@" 2>&1 </dev/null); else output=$("$@" 2>&1 <"$input"); fi
rc=$?
echo "$output" | tail -20
echo "exit status $rc"
if [ "$status" = nonzero ]; then [ $rc -ne 0 ] || { echo "FAIL: expected a non-zero exit"; exit 1; }
else [ $rc -eq "$status" ] || { echo "FAIL: expected exit $status"; exit 1; }; fi
echo "$output" | grep -Eq -- "$regex" || { echo "FAIL: output does not match /$regex/"; exit 1; }
if echo "$output" | grep -Eq "Segmentation fault|terminate called|Aborted|core dumped"; then echo "FAIL: crashed"; exit 1; fi
exit 0
