# Test models, made at build time by the project's own exporter (never committed, never copied from shared/).
#   tiny-own-vocab.pt   4 layers, hidden 64, vocabulary built from samples/documents by pydeformer.vocab
#   tiny-real-vocab.pt  the same shape with the real bert-base-uncased vocabulary read from the data directory
#   tiny-real-vocab-int8.pt  the same, stored as int8 matrices (per-row scales) with default_k 3
#   tiny-xlnet.pt       XLNet, 4 layers, d_model 64, with xlnet-base-cased's spiece.model from the data directory
# initializer_range 0.2 (not 0.02) so that attention is far from uniform and the tests have teeth.
set(FIXTURES ${CMAKE_CURRENT_BINARY_DIR}/fixtures)
file(MAKE_DIRECTORY ${FIXTURES})
set(EXPORT ${PROJECT_SOURCE_DIR}/tools/deformer-export)
file(GLOB SAMPLE_DOCUMENTS ${PROJECT_SOURCE_DIR}/samples/documents/*.txt)
file(GLOB PYDEFORMER_SOURCES ${PROJECT_SOURCE_DIR}/tools/pydeformer/*.py)
set(FIXTURE_CONFIG ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/tiny-bert.json)
set(FIXTURE_FILES)
if(DEFORMER_PYTHON)
  add_custom_command(OUTPUT ${FIXTURES}/own-vocab.txt
    COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${PROJECT_SOURCE_DIR}/tools
            ${DEFORMER_PYTHON} -m pydeformer.vocab --size 600 --out ${FIXTURES}/own-vocab.txt ${SAMPLE_DOCUMENTS}
    DEPENDS ${SAMPLE_DOCUMENTS} ${PYDEFORMER_SOURCES} COMMENT "Building the fixture vocabulary")
  add_custom_command(OUTPUT ${FIXTURES}/tiny-own-vocab.pt
    COMMAND ${CMAKE_COMMAND} -E env DEFORMER_PYTHON=${DEFORMER_PYTHON}
            ${EXPORT} --random-init --config ${FIXTURE_CONFIG} --vocab ${FIXTURES}/own-vocab.txt --seed 7
            --out ${FIXTURES}/tiny-own-vocab.pt
    DEPENDS ${FIXTURES}/own-vocab.txt ${FIXTURE_CONFIG} ${PYDEFORMER_SOURCES} COMMENT "Exporting tiny-own-vocab.pt")
  list(APPEND FIXTURE_FILES ${FIXTURES}/tiny-own-vocab.pt)
  set(REAL_VOCAB ${DEFORMER_DEFAULT_DATA}/tokenizers/bert-base-uncased-vocab.txt)
  if(DEFINED ENV{DEFORMER_DATA})
    set(REAL_VOCAB $ENV{DEFORMER_DATA}/tokenizers/bert-base-uncased-vocab.txt)
  endif()
  if(EXISTS ${REAL_VOCAB})
    add_custom_command(OUTPUT ${FIXTURES}/tiny-real-vocab.pt
      COMMAND ${CMAKE_COMMAND} -E env DEFORMER_PYTHON=${DEFORMER_PYTHON}
              ${EXPORT} --random-init --config ${FIXTURE_CONFIG} --vocab ${REAL_VOCAB} --seed 11
              --out ${FIXTURES}/tiny-real-vocab.pt
      DEPENDS ${FIXTURE_CONFIG} ${PYDEFORMER_SOURCES} COMMENT "Exporting tiny-real-vocab.pt")
    list(APPEND FIXTURE_FILES ${FIXTURES}/tiny-real-vocab.pt)
    # The same shape stored as int8 matrices with per-row scales, recording a trained split of 3.
    add_custom_command(OUTPUT ${FIXTURES}/tiny-real-vocab-int8.pt
      COMMAND ${CMAKE_COMMAND} -E env DEFORMER_PYTHON=${DEFORMER_PYTHON}
              ${EXPORT} --random-init --config ${FIXTURE_CONFIG} --vocab ${REAL_VOCAB} --seed 11
              --storage-dtype int8 --default-k 3 --out ${FIXTURES}/tiny-real-vocab-int8.pt
      DEPENDS ${FIXTURE_CONFIG} ${PYDEFORMER_SOURCES} COMMENT "Exporting tiny-real-vocab-int8.pt")
    list(APPEND FIXTURE_FILES ${FIXTURES}/tiny-real-vocab-int8.pt)
  endif()
  string(REPLACE bert-base-uncased-vocab.txt xlnet-base-cased-spiece.model XLNET_SPIECE ${REAL_VOCAB})
  if(EXISTS ${XLNET_SPIECE})
    set(XLNET_FIXTURE_CONFIG ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/tiny-xlnet.json)
    add_custom_command(OUTPUT ${FIXTURES}/tiny-xlnet.pt
      COMMAND ${CMAKE_COMMAND} -E env DEFORMER_PYTHON=${DEFORMER_PYTHON}
              ${EXPORT} --random-init --config ${XLNET_FIXTURE_CONFIG} --spiece ${XLNET_SPIECE} --seed 13
              --out ${FIXTURES}/tiny-xlnet.pt
      DEPENDS ${XLNET_FIXTURE_CONFIG} ${PYDEFORMER_SOURCES} COMMENT "Exporting tiny-xlnet.pt")
    list(APPEND FIXTURE_FILES ${FIXTURES}/tiny-xlnet.pt)
  endif()
endif()
add_custom_target(fixtures ALL DEPENDS ${FIXTURE_FILES})
