# nng, built from Debian's own source package with the project's patches.
#
# Debian 12 ships nng 1.5.2, whose TCP, TLS and IPC transports can leave a
# closing pipe's receive unfinished for good, so that nng_close never returns
# (deploy/nng/, docs/operations.md "Where nng comes from"). No fixed nng is
# packaged for Debian 12, and nothing is downloaded from outside Debian's
# archive, so the build compiles Debian's source with the project's patches:
#
#   1. deploy/install-deps.sh fetches the source with `apt-get source nng`
#      into TRELLIS_NNG_SOURCE (default /usr/local/src/trellis/nng).
#   2. At configure time that tree is copied into the build directory and
#      every deploy/nng/*.patch is applied to the copy, in name order, with no
#      fuzz. A missing source or a patch that does not apply stops the
#      configuration with an error.
#   3. At build time the copy is built as nng's own CMake project
#      (ExternalProject: its flags and options stay its own, so the
#      sanitizers and warnings of this project do not reach it): a static,
#      position-independent libnng.a with TLS through Debian's mbedTLS,
#      configured as Debian configures its package, without nng's tests and
#      tools.
#
# Another build directory of the same tree can lend its nng instead:
# -DTRELLIS_NNG_FROM=<that build directory> (tests/run.sh gives its
# sanitizer and fuzzing builds build/'s). nng is built with its own flags in
# every build, so the archive would be the same; the lender builds it (or
# finds it up to date) when this build needs it. A lender configured from
# another nng source or other patches is not used.
#
# The result is the imported target nng::nng, as find_package(nng) gave
# before; it links mbedTLS (shared) and the threads library.
# TRELLIS_NNG_LIBRARY is the path of the archive (libtrellis.a takes the
# objects it needs from it) and nng_build the target that makes it.

include(ExternalProject)

if(DEFINED ENV{TRELLIS_DEPS_SRC})
  set(_nng_default_source $ENV{TRELLIS_DEPS_SRC}/nng)
else()
  set(_nng_default_source /usr/local/src/trellis/nng)
endif()
set(TRELLIS_NNG_SOURCE ${_nng_default_source}
    CACHE PATH "Debian's nng source tree (deploy/install-deps.sh fetches it)")

set(_nng_patch_dir ${PROJECT_SOURCE_DIR}/deploy/nng)
set(_nng_root ${CMAKE_BINARY_DIR}/_deps)
set(_nng_src ${_nng_root}/nng-src)
set(_nng_bin ${_nng_root}/nng-build)
set(_nng_stamp_dir ${_nng_root}/nng-stamp)
set(TRELLIS_NNG_LIBRARY ${_nng_bin}/libnng.a)

if(NOT EXISTS ${TRELLIS_NNG_SOURCE}/CMakeLists.txt
   OR NOT EXISTS ${TRELLIS_NNG_SOURCE}/include/nng/nng.h
   OR NOT EXISTS ${TRELLIS_NNG_SOURCE}/debian/changelog)
  message(FATAL_ERROR
    "nng: Debian's nng source is not in ${TRELLIS_NNG_SOURCE}. "
    "Run deploy/install-deps.sh, which fetches it with `apt-get source nng`, "
    "or point -DTRELLIS_NNG_SOURCE= at an unpacked source package.")
endif()

# The package version, from the first line of debian/changelog:
# "nng (1.5.2-2) unstable; urgency=medium".
file(STRINGS ${TRELLIS_NNG_SOURCE}/debian/changelog _nng_changelog LIMIT_COUNT 1)
string(REGEX MATCH "\\(([^)]+)\\)" _ "${_nng_changelog}")
set(_nng_debian_version "${CMAKE_MATCH_1}")
file(STRINGS ${TRELLIS_NNG_SOURCE}/include/nng/nng.h _nng_version_lines
     REGEX "^#define NNG_(MAJOR|MINOR|PATCH)_VERSION ")
string(REGEX REPLACE ".*MAJOR_VERSION ([0-9]+).*MINOR_VERSION ([0-9]+).*PATCH_VERSION ([0-9]+).*"
       "\\1.\\2.\\3" _nng_version "${_nng_version_lines}")
if(NOT _nng_version MATCHES "^1\\.5\\.")
  message(FATAL_ERROR "nng: ${TRELLIS_NNG_SOURCE} holds nng ${_nng_version}; the patches in "
                      "deploy/nng/ are for 1.5.x (Debian 12's nng)")
endif()

file(GLOB _nng_patches ${_nng_patch_dir}/*.patch)
list(SORT _nng_patches)
if(NOT _nng_patches)
  message(FATAL_ERROR "nng: no patches in ${_nng_patch_dir}")
endif()
find_program(TRELLIS_PATCH patch REQUIRED)

# The copy is made again, and nng rebuilt, when the source package or a
# patch changes; otherwise configuring again touches nothing.
set(_nng_key "${TRELLIS_NNG_SOURCE}|${_nng_debian_version}")
foreach(p IN LISTS _nng_patches)
  file(SHA256 ${p} _sum)
  string(APPEND _nng_key "|${p}:${_sum}")
endforeach()
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${_nng_patches} ${TRELLIS_NNG_SOURCE}/debian/changelog)
set(_nng_key_file ${_nng_root}/nng-src.key)
set(_nng_old_key "")
if(EXISTS ${_nng_key_file})
  file(READ ${_nng_key_file} _nng_old_key)
endif()
set(TRELLIS_NNG_FROM "" CACHE PATH "a build directory of this tree whose nng to use")
set(_nng_lender_key "")
if(TRELLIS_NNG_FROM AND EXISTS ${TRELLIS_NNG_FROM}/_deps/nng-src.key)
  file(READ ${TRELLIS_NNG_FROM}/_deps/nng-src.key _nng_lender_key)
endif()
if(TRELLIS_NNG_FROM AND NOT _nng_lender_key STREQUAL _nng_key)
  message(WARNING "nng: ${TRELLIS_NNG_FROM} was not configured with this nng source and these "
                  "patches; building nng here")
endif()
set(_nng_lent OFF)
if(TRELLIS_NNG_FROM AND _nng_lender_key STREQUAL _nng_key)
  set(_nng_lent ON)
  message(STATUS "nng: the one of ${TRELLIS_NNG_FROM}")
  set(_nng_src ${TRELLIS_NNG_FROM}/_deps/nng-src)
  set(TRELLIS_NNG_LIBRARY ${TRELLIS_NNG_FROM}/_deps/nng-build/libnng.a)
elseif(NOT _nng_old_key STREQUAL _nng_key OR NOT EXISTS ${_nng_src}/CMakeLists.txt)
  message(STATUS "nng: Debian's ${_nng_debian_version} from ${TRELLIS_NNG_SOURCE} with the "
                 "patches of deploy/nng/")
  file(REMOVE_RECURSE ${_nng_src} ${_nng_bin} ${_nng_stamp_dir} ${_nng_key_file})
  file(COPY ${TRELLIS_NNG_SOURCE}/ DESTINATION ${_nng_src})
  foreach(p IN LISTS _nng_patches)
    execute_process(COMMAND ${TRELLIS_PATCH} -p1 --forward --batch --fuzz=0 --no-backup-if-mismatch
                            -i ${p}
                    WORKING_DIRECTORY ${_nng_src}
                    RESULT_VARIABLE _rv OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
    if(NOT _rv EQUAL 0)
      file(REMOVE_RECURSE ${_nng_src})
      message(FATAL_ERROR "nng: ${p} does not apply to ${TRELLIS_NNG_SOURCE} "
                          "(${_nng_debian_version}):\n${_out}")
    endif()
  endforeach()
  file(WRITE ${_nng_key_file} "${_nng_key}")
endif()

find_library(TRELLIS_MBEDTLS_LIB mbedtls REQUIRED)
find_library(TRELLIS_MBEDX509_LIB mbedx509 REQUIRED)
find_library(TRELLIS_MBEDCRYPTO_LIB mbedcrypto REQUIRED)

if(_nng_lent)
  add_custom_target(nng_build
    COMMAND ${CMAKE_COMMAND} --build ${TRELLIS_NNG_FROM} --target nng_build
    BYPRODUCTS ${TRELLIS_NNG_LIBRARY}
    COMMENT "nng: building or checking ${TRELLIS_NNG_LIBRARY}")
else()
  ExternalProject_Add(nng_build
    SOURCE_DIR ${_nng_src}
    BINARY_DIR ${_nng_bin}
    STAMP_DIR ${_nng_stamp_dir}
    TMP_DIR ${_nng_root}/nng-tmp
    DOWNLOAD_COMMAND ""
    UPDATE_COMMAND ""
    INSTALL_COMMAND ""
    CMAKE_ARGS -DCMAKE_C_COMPILER=${CMAKE_C_COMPILER}
               -DCMAKE_BUILD_TYPE=RelWithDebInfo
               -DBUILD_SHARED_LIBS=OFF
               -DCMAKE_POSITION_INDEPENDENT_CODE=ON
               -DNNG_ENABLE_TLS=ON
               -DNNG_TLS_ENGINE=mbed
               -DNNG_TESTS=OFF
               -DNNG_TOOLS=OFF
               -DNNG_ENABLE_NNGCAT=OFF
               -Wno-dev
    BUILD_BYPRODUCTS ${TRELLIS_NNG_LIBRARY}
    LOG_CONFIGURE ON
    LOG_BUILD ON
    LOG_OUTPUT_ON_FAILURE ON)
endif()

add_library(nng::nng STATIC IMPORTED GLOBAL)
set_target_properties(nng::nng PROPERTIES
  IMPORTED_LOCATION ${TRELLIS_NNG_LIBRARY}
  INTERFACE_INCLUDE_DIRECTORIES ${_nng_src}/include
  INTERFACE_LINK_LIBRARIES
    "${TRELLIS_MBEDTLS_LIB};${TRELLIS_MBEDX509_LIB};${TRELLIS_MBEDCRYPTO_LIB};Threads::Threads")
add_dependencies(nng::nng nng_build)
