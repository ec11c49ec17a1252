# Test executables, one line each.
deformer_add_test(engine_test engine_test.cpp)
deformer_add_test(layout_test layout_test.cpp)
deformer_add_test(squad_test squad_test.cpp)
add_dependencies(engine_test fixtures)
add_dependencies(layout_test fixtures)

if(DEFORMER_PYTHON)
  add_test(NAME python_exporter COMMAND ${DEFORMER_PYTHON} -m unittest discover -s ${CMAKE_CURRENT_SOURCE_DIR}/python -v)
  set_tests_properties(python_exporter PROPERTIES ENVIRONMENT "PYTHONPATH=${PROJECT_SOURCE_DIR}/tools")
endif()
deformer_add_test(tokenizer_test tokenizer_test.cpp LIBS nlohmann_json::nlohmann_json ZLIB::ZLIB)

# Parity with the eager PyTorch reference on real SQuAD dev pairs: the reference script runs first (fixture).
deformer_add_test(parity_test parity_test.cpp LIBS nlohmann_json::nlohmann_json)
add_dependencies(parity_test fixtures)
deformer_add_test(decode_test decode_test.cpp)
deformer_add_test(reader_test reader_test.cpp)
add_dependencies(reader_test fixtures)

# The score command end to end on a real leaderboard file (EXPECTED_SCORES.md).
if(TARGET deformer-qa AND EXISTS ${DEFORMER_UNPACKED_DATA}/dev-v1.1.json)
  add_test(NAME cli_score_bert_ensemble COMMAND deformer-qa score --squad ${DEFORMER_UNPACKED_DATA}/dev-v1.1.json
           --predictions ${DEFORMER_DEFAULT_DATA}/squad/predictions-v1.1/bert-ensemble.json)
  set_tests_properties(cli_score_bert_ensemble PROPERTIES PASS_REGULAR_EXPRESSION "EM 86\\.206  F1 92\\.196")
endif()
