# Cross-compiling nanorag for 64-bit Arm Linux (Jetson Orin: Cortex-A78AE)
# with Debian's cross toolchain (gcc-aarch64-linux-gnu) and arm64 multiarch
# libraries (dpkg --add-architecture arm64; apt-get install
# libjansson-dev:arm64 libutf8proc-dev:arm64).
#
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DNR_CUDA=OFF
#
# The binaries run on an x86 host under qemu-user: CMAKE_CROSSCOMPILING_EMULATOR
# makes `ctest` do that by itself (scripts/test_aarch64.sh runs the kernel
# tests this way).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Debian multiarch: arm64 libraries live in /usr/lib/aarch64-linux-gnu and
# the cross toolchain's own sysroot in /usr/aarch64-linux-gnu; headers are
# shared in /usr/include. Search both for libraries and headers, never for
# programs (those must run on the build host).
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config must only see the arm64 .pc files (and arch-independent ones).
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "")

# The guest's loader comes from the cross sysroot (-L); libc must come from
# the same glibc build. Without LD_LIBRARY_PATH the loader finds the arm64
# multiarch libc6 in /lib/aarch64-linux-gnu first, a different Debian
# revision, and pthread_create hangs. Other libraries (jansson, utf8proc)
# still come from the multiarch dirs.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu -E
    LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
