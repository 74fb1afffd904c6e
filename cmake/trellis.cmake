# Helpers shared by every component's CMakeLists.txt.

# trellis_add_test(NAME <name> SOURCES <src...> [LIBS <lib...>] [TIMEOUT <s>]
#                  [LABELS <label...>] [PLAIN])
# Builds bin/test_<name> and registers it with ctest. Criterion tests by
# default; PLAIN builds an executable with its own main() (used for TSan,
# which cannot run Criterion binaries). Every test has a timeout.
function(trellis_add_test)
  cmake_parse_arguments(T "PLAIN" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  set(exe test_${T_NAME})
  if(TRELLIS_SANITIZE AND NOT T_PLAIN)
    list(APPEND T_SOURCES ${PROJECT_SOURCE_DIR}/tests/lsan_options.c)
  endif()
  add_executable(${exe} ${T_SOURCES})
  target_include_directories(${exe} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${exe} PRIVATE ${T_LIBS} Threads::Threads)
  if(T_PLAIN)
    add_test(NAME ${T_NAME} COMMAND ${exe} ${T_ARGS})
  else()
    target_link_libraries(${exe} PRIVATE PkgConfig::CRITERION)
    # -j2: two cores here; Criterion runs each test in its own process.
    add_test(NAME ${T_NAME} COMMAND ${exe} --jobs=2 ${T_ARGS})
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
                       ENVIRONMENT "TRELLIS_BIN=${CMAKE_BINARY_DIR}/bin;TRELLIS_SRC=${PROJECT_SOURCE_DIR}")
endfunction()
