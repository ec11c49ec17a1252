# Finds a Python 3 interpreter that can import torch (the exporter and the reference scripts need it).
# Debian keeps torch in the system interpreter, which a pyenv or venv python3 on PATH may hide, so every
# candidate is probed rather than trusting the first python3 found.
set(DEFORMER_PYTHON "$ENV{DEFORMER_PYTHON}" CACHE FILEPATH "Python 3 interpreter that has torch")
if(NOT DEFORMER_PYTHON)
  find_program(_deformer_path_python python3)
  foreach(candidate ${_deformer_path_python} /usr/bin/python3)
    if(candidate AND EXISTS ${candidate})
      execute_process(COMMAND ${candidate} -c "import torch"
        RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
      if(_rc EQUAL 0)
        set(DEFORMER_PYTHON ${candidate} CACHE FILEPATH "Python 3 interpreter that has torch" FORCE)
        break()
      endif()
    endif()
  endforeach()
endif()
if(DEFORMER_PYTHON)
  message(STATUS "Python with torch: ${DEFORMER_PYTHON}")
else()
  message(WARNING "No Python 3 with torch found: fixtures and exporter tests are disabled")
endif()
