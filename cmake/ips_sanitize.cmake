# AddressSanitizer + UndefinedBehaviorSanitizer on every target this project defines (-DIPS_SANITIZE=ON,
# or -DIPS_FUZZ=ON, which adds libFuzzer's coverage on top). Included after every folder is added.
# libtorch, libvips, HDF5, yaml-cpp and zlib stay as Debian built them: not instrumented, but their
# heap is ASan's (malloc is intercepted), so our overruns into their buffers are caught.
#
# UB is an error, not a line on stderr that a test or libFuzzer would not count.
set(IPS_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
set(IPS_SANITIZE_COMPILE ${IPS_SANITIZE_FLAGS})
if(IPS_FUZZ)
  list(APPEND IPS_SANITIZE_COMPILE -fsanitize=fuzzer-no-link)
endif()

# Every target of ours, wherever it was added (the precompiled-header targets too: a compiler refuses
# a PCH built with other sanitizer settings). Executables and shared libraries link the runtimes.
set(ips_sanitize_dirs ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/src/engine ${PROJECT_SOURCE_DIR}/src/interop
    ${PROJECT_SOURCE_DIR}/cli)
if(NOT IPS_ENGINE_ONLY)
  list(APPEND ips_sanitize_dirs ${PROJECT_SOURCE_DIR}/src/io ${PROJECT_SOURCE_DIR}/src/data ${PROJECT_SOURCE_DIR}/src/run)
endif()
if(IPS_BUILD_TESTS)
  list(APPEND ips_sanitize_dirs ${PROJECT_SOURCE_DIR}/tests)
endif()
if(IPS_FUZZ)
  list(APPEND ips_sanitize_dirs ${PROJECT_SOURCE_DIR}/fuzz)
endif()
foreach(dir IN LISTS ips_sanitize_dirs)
  get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(t IN LISTS targets)
    get_target_property(type ${t} TYPE)
    if(type MATCHES "^(STATIC_LIBRARY|OBJECT_LIBRARY|SHARED_LIBRARY|EXECUTABLE)$")
      target_compile_options(${t} PRIVATE ${IPS_SANITIZE_COMPILE})
    endif()
    if(type MATCHES "^(SHARED_LIBRARY|EXECUTABLE)$")
      target_link_options(${t} PRIVATE ${IPS_SANITIZE_FLAGS})
    endif()
  endforeach()
endforeach()
