# What every target of ours shares: warnings (zero is the rule) and a precompiled libtorch header.
# libtorch's headers dominate compile time. The header is compiled once per set of compile
# flags: libvips adds -D_REENTRANT, which GCC refuses to mix with a header compiled without it,
# so targets that see libvips reuse a second one. Both stay PRIVATE: consumers are not forced to
# include torch/torch.h.
set(IPS_WARNINGS -Wall -Wextra)

add_library(ips_pch OBJECT ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
target_link_libraries(ips_pch PRIVATE ${TORCH_LIBRARIES} yaml-cpp nlohmann_json::nlohmann_json)
target_precompile_headers(ips_pch PRIVATE <torch/torch.h> <string> <vector> <memory>)
target_compile_options(ips_pch PRIVATE ${IPS_WARNINGS})

if(NOT IPS_ENGINE_ONLY)
  add_library(ips_pch_vips OBJECT ${PROJECT_SOURCE_DIR}/cmake/pch.cpp)
  target_link_libraries(ips_pch_vips PRIVATE ${TORCH_LIBRARIES} yaml-cpp nlohmann_json::nlohmann_json PkgConfig::VIPS)
  target_precompile_headers(ips_pch_vips PRIVATE <torch/torch.h> <string> <vector> <memory>)
  target_compile_options(ips_pch_vips PRIVATE ${IPS_WARNINGS})
endif()

# ips_target(NAME) applies the shared settings to a target we define.
function(ips_target name)
  target_compile_options(${name} PRIVATE ${IPS_WARNINGS})
  get_target_property(type ${name} TYPE)
  if(type STREQUAL "STATIC_LIBRARY")
    target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include)
  endif()
  # A target sees libvips' flags when anything it links (directly or not) brings libvips.
  set(uses_vips FALSE)
  if(NOT IPS_ENGINE_ONLY)
    get_target_property(libs ${name} LINK_LIBRARIES)
    foreach(lib IN LISTS libs)
      if(lib MATCHES "^(ips_io|ips_data|ips_run|PkgConfig::VIPS)$")
        set(uses_vips TRUE)
      endif()
    endforeach()
  endif()
  if(uses_vips)
    target_precompile_headers(${name} REUSE_FROM ips_pch_vips)
  else()
    target_precompile_headers(${name} REUSE_FROM ips_pch)
  endif()
endfunction()
