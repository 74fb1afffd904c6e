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

# The environment of every test: where the binaries and the sources are,
# and LeakSanitizer's suppressions (tests/lsan.supp) for the test and every
# process it starts.
set(TRELLIS_TEST_ENV
    "TRELLIS_BIN=${CMAKE_BINARY_DIR}/bin"
    "TRELLIS_SRC=${PROJECT_SOURCE_DIR}"
    "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0")

# Tests that a Criterion binary runs at once. ctest runs TRELLIS_JOBS
# binaries at once (tests/run.sh), so that ctest's jobs times these stay
# within the machine's cores: 1, and ctest -j<cores>.
set(TRELLIS_CRITERION_JOBS 1 CACHE STRING "tests a Criterion binary runs in parallel")

# The properties every test gets: its timeout, labels, exit status 77 for
# a skip, the environment above, and its COST when TRELLIS_TEST_COSTS
# (tests/CMakeLists.txt: name, seconds, ...) lists it.
function(trellis_test_properties name timeout labels)
  set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} LABELS "${labels}"
                       SKIP_RETURN_CODE 77 ENVIRONMENT "${TRELLIS_TEST_ENV}")
  list(FIND TRELLIS_TEST_COSTS ${name} i)
  if(i GREATER -1)
    math(EXPR i "${i} + 1")
    list(GET TRELLIS_TEST_COSTS ${i} cost)
    set_tests_properties(${name} PROPERTIES COST ${cost})
  endif()
endfunction()

# trellis_add_test(NAME <name> SOURCES <src...> [LIBS <lib...>] [TIMEOUT <s>]
#                  [LABELS <label...>] [ARGS <arg...>] [PLAIN])
# Builds bin/test_<name> and registers it with ctest. Criterion tests by
# default: they link the test-support layer (tests/support/tsupport.h) and
# tcriterion.c, which runs its checks when each test body returns (the
# test's processes stopped cleanly and their logs scanned, LeakSanitizer).
# PLAIN builds an executable with its own main() (used for ThreadSanitizer,
# which cannot run Criterion binaries, and for programs that must set up
# the process before any thread starts). Every test has a timeout (default
# 60 s) and a label (default unit).
function(trellis_add_test)
  cmake_parse_arguments(T "PLAIN" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  set(exe test_${T_NAME})
  if(NOT T_PLAIN)
    list(APPEND T_SOURCES ${PROJECT_SOURCE_DIR}/tests/support/tcriterion.c)
  endif()
  add_executable(${exe} ${T_SOURCES})
  target_include_directories(${exe} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_link_libraries(${exe} PRIVATE ${T_LIBS} Threads::Threads)
  if(T_PLAIN)
    add_test(NAME ${T_NAME} COMMAND ${exe} ${T_ARGS})
  else()
    target_link_libraries(${exe} PRIVATE trellis_testsupport PkgConfig::CRITERION)
    target_link_options(${exe} PRIVATE -Wl,--wrap=criterion_internal_test_main)
    add_test(NAME ${T_NAME} COMMAND ${exe} --jobs=${TRELLIS_CRITERION_JOBS} ${T_ARGS})
  endif()
  trellis_test_properties(${T_NAME} ${T_TIMEOUT} "${T_LABELS}")
endfunction()

# trellis_add_script_test(NAME <name> COMMAND <cmd...> [TIMEOUT <s>]
#                         [LABELS <label...>])
# Registers a test that a program other than a test binary runs (a shell
# script sourcing tests/support/lib.sh, a Python script), with the same
# environment, a timeout (default 60 s), a label (default integration) and
# exit status 77 meaning skipped.
function(trellis_add_script_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS integration)
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  trellis_test_properties(${T_NAME} ${T_TIMEOUT} "${T_LABELS}")
endfunction()
