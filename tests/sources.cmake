# Test executables, one line each.
deformer_add_test(engine_test engine_test.cpp)
deformer_add_test(layout_test layout_test.cpp)
deformer_add_test(cache_test cache_test.cpp LIBS HDF5::HDF5)
add_dependencies(engine_test fixtures)
add_dependencies(cache_test fixtures)
add_dependencies(layout_test fixtures)

if(DEFORMER_PYTHON)
  add_test(NAME python_exporter COMMAND ${DEFORMER_PYTHON} -m unittest discover -s ${CMAKE_CURRENT_SOURCE_DIR}/python -v)
  set_tests_properties(python_exporter PROPERTIES ENVIRONMENT "PYTHONPATH=${PROJECT_SOURCE_DIR}/tools")
endif()
