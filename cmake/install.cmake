# `cmake --install BUILD --prefix P`: the programs, libflock (shared and
# static), the public headers, flock.pc and the CMake package (find_package(flock)).
# Both description files are relocatable: they find the prefix from where
# they lie, so --prefix at install time may differ from CMAKE_INSTALL_PREFIX.

set(FLOCK_PUBLIC_HEADERS
  ${PROJECT_SOURCE_DIR}/runtime/include/flock/flock.h
  ${PROJECT_SOURCE_DIR}/formats/include/flock/status.h
  ${PROJECT_BINARY_DIR}/include/flock/version.h)
set(FLOCK_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
# What a static program links beside libflock.a (the runtime's own dependencies).
set(FLOCK_PC_REQUIRES_PRIVATE "libzstd json-c libpcre2-8 libxxhash")
if(CMAKE_DL_LIBS)
  set(FLOCK_PC_LIBS_PRIVATE "-pthread -lm -l${CMAKE_DL_LIBS}")
else()
  set(FLOCK_PC_LIBS_PRIVATE "-pthread -lm")
endif()

# prefix relative to lib/pkgconfig and to lib/cmake/flock
file(RELATIVE_PATH FLOCK_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
file(RELATIVE_PATH FLOCK_CMAKE_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/cmake/flock" "/p")
string(REGEX REPLACE "/$" "" FLOCK_PC_TO_PREFIX "${FLOCK_PC_TO_PREFIX}")
string(REGEX REPLACE "/$" "" FLOCK_CMAKE_TO_PREFIX "${FLOCK_CMAKE_TO_PREFIX}")

configure_file(${PROJECT_SOURCE_DIR}/cmake/flock.pc.in ${PROJECT_BINARY_DIR}/flock.pc @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/cmake/flockConfig.cmake.in ${PROJECT_BINARY_DIR}/flockConfig.cmake @ONLY)
include(CMakePackageConfigHelpers)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/flockConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)

install(TARGETS flock RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
if(TARGET flockc)
  install(TARGETS flockc RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
install(TARGETS flock_shared LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_BINARY_DIR}/libflock.a DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${FLOCK_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/flock)
install(FILES ${PROJECT_BINARY_DIR}/flock.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES ${PROJECT_BINARY_DIR}/flockConfig.cmake ${PROJECT_BINARY_DIR}/flockConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/flock)
