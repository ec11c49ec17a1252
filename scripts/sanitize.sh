#!/usr/bin/env bash
# The library and its C++ unit tests built with AddressSanitizer and UndefinedBehaviorSanitizer (gcc) in
# build-asan/, then run: the cache (with damaged files), SQuAD, layout, decoding, tokenizer, engine, reader and
# retrieval tests. The SentencePiece tests are left out: the SentencePiece bridge is loaded into a link-map namespace
# of its own (dlmopen, src/tokenizer/sentencepiece.cpp), which ASan's runtime cannot follow (it aborts at the load). .ci/run runs it after
# scripts/test.sh. Leak checking is off: LibTorch keeps allocations until exit. libhdf5 may ask malloc for sizes read
# from a damaged file; as in a normal build, malloc then returns null and HDF5 reports an error.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
install_dependencies
SAN_DIR=${SAN_DIR:-$ROOT/build-asan}
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S "$ROOT" -B "$SAN_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDEFORMER_BUILD_BENCHMARKS=OFF \
  -DDEFORMER_BUILD_TOOLS=ON "-DCMAKE_CXX_FLAGS=$flags" "-DCMAKE_EXE_LINKER_FLAGS=$flags" \
  "-DCMAKE_SHARED_LINKER_FLAGS=$flags" > /dev/null
tests=(cache_test cache_damage_test squad_test layout_test decode_test tokenizer_test engine_test reader_test retrieval_test)
cmake --build "$SAN_DIR" -j "$(nproc)" --target "${tests[@]}"
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:verify_asan_link_order=0 UBSAN_OPTIONS=print_stacktrace=1
for t in "${tests[@]}"; do
  echo "== $t (ASan + UBSan)"
  "$SAN_DIR/tests/$t" --gtest_brief=1 --gtest_filter='-SentencePiece*'
done
echo "sanitizers: clean"
