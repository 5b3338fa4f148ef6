// Compiles the precompiled header once (cmake/ips_target.cmake); holds no code.
