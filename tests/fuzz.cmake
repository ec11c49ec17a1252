# libFuzzer target for the tokenizers (WordPiece, and XLNet's when its model is in the data), registered as a bounded CTest run. Only with a clang whose fuzzer
# runtime is installed (Debian: clang-14 + libclang-rt-14-dev); otherwise skipped with a message.
find_program(DEFORMER_CLANGXX NAMES clang++-14 clang++)
set(DEFORMER_FUZZ_FLAGS -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined)
if(DEFORMER_CLANGXX AND NOT DEFINED DEFORMER_HAVE_LIBFUZZER)
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe.cpp
    "#include <cstdint>\n#include <cstddef>\nextern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(COMMAND ${DEFORMER_CLANGXX} ${DEFORMER_FUZZ_FLAGS} ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe.cpp
                          -o ${CMAKE_CURRENT_BINARY_DIR}/fuzz_probe
                  RESULT_VARIABLE probe_result OUTPUT_QUIET ERROR_QUIET)
  if(probe_result EQUAL 0)
    set(DEFORMER_HAVE_LIBFUZZER ON CACHE INTERNAL "clang links -fsanitize=fuzzer")
  else()
    set(DEFORMER_HAVE_LIBFUZZER OFF CACHE INTERNAL "clang links -fsanitize=fuzzer")
  endif()
endif()
if(DEFORMER_HAVE_LIBFUZZER)
  set(FUZZ_SOURCES
    ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/tokenizer_fuzz.cpp
    ${PROJECT_SOURCE_DIR}/src/tokenizer/wordpiece.cpp
    ${PROJECT_SOURCE_DIR}/src/tokenizer/xlnet.cpp
    ${PROJECT_SOURCE_DIR}/src/tokenizer/sentencepiece.cpp
    ${PROJECT_SOURCE_DIR}/src/text/unicode.cpp)
  set(FUZZ_BIN ${CMAKE_CURRENT_BINARY_DIR}/fuzz/tokenizer_fuzz)
  file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz)
  add_custom_command(OUTPUT ${FUZZ_BIN}
    COMMAND ${DEFORMER_CLANGXX} ${DEFORMER_FUZZ_FLAGS} -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_SOURCE_DIR}/src
            ${FUZZ_SOURCES} -ldl -o ${FUZZ_BIN}
    DEPENDS ${FUZZ_SOURCES} ${PROJECT_SOURCE_DIR}/src/text/unicode_tables.inc
            ${PROJECT_SOURCE_DIR}/src/text/nfkd_table.inc ${PROJECT_SOURCE_DIR}/src/text/grapheme_table.inc
            ${PROJECT_SOURCE_DIR}/src/text/utf8.h ${PROJECT_SOURCE_DIR}/src/text/unicode.h
            ${PROJECT_SOURCE_DIR}/src/tokenizer/piece_vocabulary.h
            ${PROJECT_SOURCE_DIR}/include/deformer/tokenizer.h
    COMMENT "Building tokenizer_fuzz (clang, libFuzzer + ASan + UBSan)" VERBATIM)
  add_custom_target(tokenizer_fuzz ALL DEPENDS ${FUZZ_BIN})
  # Bounded: 30 s. New inputs go to the first corpus directory, in the build tree, so runs never write into
  # the committed seeds.
  file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus)
  # The XLNet tokenizer is fuzzed too when xlnet-base-cased's SentencePiece model is in the data.
  set(FUZZ_SPIECE "")
  if(DEFINED XLNET_SPIECE AND EXISTS "${XLNET_SPIECE}")
    set(FUZZ_SPIECE "${XLNET_SPIECE}")
  endif()
  add_test(NAME tokenizer_fuzz
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1 DEFORMER_FUZZ_SPIECE=${FUZZ_SPIECE}
            ${FUZZ_BIN} -max_total_time=30 -seed=1 -max_len=4096 -timeout=10 -rss_limit_mb=2048
            -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/fuzz-crash-
            ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/seeds)

  # deformer_add_fuzzer(NAME SEEDS DIR SOURCES ... [FLAGS ...] [LIBS ...] [FIXTURE F]): another target built the same
  # way, with a bounded 30 s run from its seeds (FIXTURE: a test that makes them).
  function(deformer_add_fuzzer name)
    cmake_parse_arguments(ARG "" "SEEDS;FIXTURE;LSAN_SUPPRESSIONS" "SOURCES;FLAGS;LIBS" ${ARGN})
    set(bin ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${name})
    add_custom_command(OUTPUT ${bin}
      COMMAND ${DEFORMER_CLANGXX} ${DEFORMER_FUZZ_FLAGS} -I${PROJECT_SOURCE_DIR}/include -I${PROJECT_BINARY_DIR}/include
              -I${PROJECT_SOURCE_DIR}/src ${ARG_FLAGS} ${ARG_SOURCES} ${ARG_LIBS} -o ${bin}
      DEPENDS ${ARG_SOURCES} COMMENT "Building ${name} (clang, libFuzzer + ASan + UBSan)" VERBATIM)
    add_custom_target(${name} ALL DEPENDS ${bin})
    file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus-${name})
    add_test(NAME ${name}
      # allocator_may_return_null: libhdf5 asks malloc for sizes read from a damaged file (exabytes); as in a normal
      # build, malloc then returns null and HDF5 reports an error, where ASan would stop by default.
      COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
              LSAN_OPTIONS=suppressions=${ARG_LSAN_SUPPRESSIONS}
              ${bin} -max_total_time=30 -seed=1 -timeout=10 -rss_limit_mb=2048 -max_len=1048576
              -artifact_prefix=${CMAKE_CURRENT_BINARY_DIR}/fuzz-crash-${name}-
              ${CMAKE_CURRENT_BINARY_DIR}/fuzz-corpus-${name} ${ARG_SEEDS})
    if(ARG_FIXTURE)
      set_tests_properties(${name} PROPERTIES FIXTURES_REQUIRED ${ARG_FIXTURE})
    endif()
  endfunction()

  # The SQuAD and predictions readers, seeded with small files of both kinds.
  deformer_add_fuzzer(squad_fuzz SEEDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/squad-seeds
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/squad_fuzz.cpp ${PROJECT_SOURCE_DIR}/src/squad.cpp)
  # The cache reader over damaged caches: seeded with caches that a fixture test writes (fp32 and int8, with the
  # tiny model), since a committed HDF5 file would be a binary made by the code under test.
  set(CACHE_FUZZ_SEEDS ${CMAKE_CURRENT_BINARY_DIR}/fuzz-seeds-cache)
  file(MAKE_DIRECTORY ${CACHE_FUZZ_SEEDS})
  set(hdf5_includes "")
  foreach(dir ${HDF5_INCLUDE_DIRS} ${HDF5_C_INCLUDE_DIRS} ${XXHASH_INCLUDE_DIR})
    list(APPEND hdf5_includes -I${dir})
  endforeach()
  list(TRANSFORM DEFORMER_CACHE_SOURCES PREPEND ${PROJECT_SOURCE_DIR}/ OUTPUT_VARIABLE cache_sources)
  deformer_add_fuzzer(cache_fuzz SEEDS ${CACHE_FUZZ_SEEDS} FIXTURE cache_fuzz_seeds
    LSAN_SUPPRESSIONS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/hdf5-leaks.supp
    SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/cache_fuzz.cpp ${cache_sources}
    FLAGS ${hdf5_includes} LIBS ${HDF5_C_LIBRARIES})
else()
  message(STATUS "tokenizer_fuzz: no clang with libFuzzer (install clang-14 libclang-rt-14-dev); fuzz test not registered")
endif()
