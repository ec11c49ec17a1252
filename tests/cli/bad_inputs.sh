#!/usr/bin/env bash
# bad_inputs.sh CASE QA MODEL WORK: bad inputs of issue 24 that need more than one command; prints "clean: ..."
# when the tool answered with a clear message (never a backtrace), and anything else when it did not.
set -u
case_name=$1 QA=$2 MODEL=$3 WORK=$4
mkdir -p "$WORK"
case "$case_name" in
cpu-fp16)
  # A LibTorch without CPU half-precision kernels (Debian's 1.13) refuses fp16 on the CPU by name; one with them answers.
  out=$("$QA" ask --model "$MODEL" --dtype fp16 --question "Who won?" --context "Marta won." 2>&1)
  rc=$?
  case $out in *"frame #"*|*"Exception raised from"*) echo "backtrace: $out"; exit 1 ;; esac
  if [ $rc -eq 0 ] || [[ $out == *"not supported on the CPU"* ]]; then echo "clean: $out"; else echo "unclear: $out"; fi ;;
long-json-line)
  # A malformed 5,000-byte line: the error names the line and quotes at most 200 bytes of it.
  printf '{"question": "%05000d' 0 > "$WORK/long-bad.jsonl"
  out=$("$QA" ask --model "$MODEL" --questions "$WORK/long-bad.jsonl" 2>&1)
  if [ ${#out} -lt 400 ] && [[ $out == *"long-bad.jsonl:1: not valid JSON"* ]]; then echo "clean: $out"
  else echo "long or unclear (${#out} bytes): ${out:0:300}"; fi ;;
*) echo "unknown case $case_name" >&2; exit 2 ;;
esac
