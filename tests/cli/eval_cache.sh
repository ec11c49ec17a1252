#!/usr/bin/env bash
# eval_cache.sh DEFORMER_QA DEFORMER_CACHE MODEL SQUAD WORKDIR: the whole dev set cached, then evaluated from the
# cache, from the cache held in memory and from raw text: the predictions must be identical (deformer mode with a
# cache equals raw text).
set -eu
qa=$1 cache=$2 model=$3 squad=$4 work=$5
mkdir -p "$work"
"$cache" build --model "$model" --input "$squad" --out "$work/dev.h5" --dtype fp32
"$cache" info "$work/dev.h5" --json | grep -q '"documents":2067' || { echo "FAIL: expected 2067 documents"; exit 1; }
"$qa" eval --model "$model" --squad "$squad" --cache "$work/dev.h5" --out "$work/cached.json"
"$qa" eval --model "$model" --squad "$squad" --out "$work/raw.json"
"$(dirname "$0")/same_json.sh" "$work/cached.json" "$work/raw.json"
# The cache held in memory (ResidentCache) answers as the file does.
"$qa" eval --model "$model" --squad "$squad" --cache "$work/dev.h5" --resident --out "$work/resident.json"
"$(dirname "$0")/same_json.sh" "$work/resident.json" "$work/raw.json"
