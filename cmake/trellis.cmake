# Helpers shared by every component's CMakeLists.txt.

# trellis_expose(<target> PUBLIC|PRIVATE [FROM <dir>] <path>...)
# Makes headers visible under their path-qualified names ("base/log.h",
# "trellis/trellis.h"): each <path> (a file or a folder, relative to FROM,
# by default the source root) is linked into an include directory of the
# target's own, build/include/<target>[-private]/<path>. PUBLIC headers are
# seen by the target and by every target that links it, PRIVATE ones by the
# target alone. So a target sees only the headers of what it links, and an
# include that crosses a layer the wrong way fails to compile.
function(trellis_expose target scope)
  cmake_parse_arguments(E "" "FROM" "" ${ARGN})
  if(NOT E_FROM)
    set(E_FROM ${PROJECT_SOURCE_DIR})
  endif()
  set(dir ${CMAKE_BINARY_DIR}/include/${target})
  if(scope STREQUAL "PRIVATE")
    set(dir ${dir}-private)
  endif()
  foreach(path ${E_UNPARSED_ARGUMENTS})
    get_filename_component(parent ${dir}/${path} DIRECTORY)
    file(MAKE_DIRECTORY ${parent})
    file(CREATE_LINK ${E_FROM}/${path} ${dir}/${path} SYMBOLIC)
  endforeach()
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    set(scope INTERFACE)
  endif()
  target_include_directories(${target} ${scope} ${dir})
endfunction()

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
