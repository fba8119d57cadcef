# CUDA kernels: compiled when A2MAMBA_CUDA is AUTO and both nvcc and a CUDA
# build of torch are present, or always when it is ON (failing loudly otherwise).
set(A2MAMBA_WITH_CUDA OFF)
if(NOT A2MAMBA_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  set(_why "")
  if(NOT CMAKE_CUDA_COMPILER)
    set(_why "no nvcc found (set CUDACXX or put nvcc on PATH)")
  elseif(TORCH_CUDA_VERSION STREQUAL "none")
    set(_why "torch ${TORCH_VERSION} is a CPU-only build")
  endif()
  if(_why STREQUAL "")
    set(A2MAMBA_WITH_CUDA ON)
  elseif(A2MAMBA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "a2mamba-ops: A2MAMBA_CUDA=ON but ${_why}.")
  else()
    message(STATUS "a2mamba-ops: building without CUDA kernels: ${_why}.")
  endif()
endif()

if(A2MAMBA_WITH_CUDA)
  # torch's own CMake ignores CMAKE_CUDA_ARCHITECTURES; we honour the variable
  # users of torch extensions already know, TORCH_CUDA_ARCH_LIST.
  if(DEFINED ENV{TORCH_CUDA_ARCH_LIST} AND NOT "$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
    set(_arch_list "$ENV{TORCH_CUDA_ARCH_LIST}")
  else()
    set(_arch_list "8.0;9.0")
  endif()
  string(REPLACE " " ";" _arch_list "${_arch_list}")
  set(_archs "")
  set(_newest "")
  foreach(_a IN LISTS _arch_list)
    string(REPLACE "+PTX" "" _a_clean "${_a}")
    string(REPLACE "." "" _a_num "${_a_clean}")
    if(NOT _a_num STREQUAL "")
      list(APPEND _archs "${_a_num}-real")
      set(_newest "${_a_num}")
    endif()
  endforeach()
  # PTX of the newest architecture so that newer cards can JIT it.
  list(APPEND _archs "${_newest}-virtual")
  set(CMAKE_CUDA_ARCHITECTURES "${_archs}")
  enable_language(CUDA)
  # CUDA code follows C++20 like the rest. CMake releases older than the nvcc in use
  # (Debian's 3.25 with nvcc 13) know no flag for it and refuse to generate, so
  # teach them the one nvcc has understood since CUDA 12.
  if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  find_package(CUDAToolkit REQUIRED)
  message(STATUS "a2mamba-ops: CUDA kernels ON for ${CMAKE_CUDA_ARCHITECTURES}")

  file(GLOB A2MAMBA_CUDA_SOURCES CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/csrc/cuda/*.cu")
  target_sources(_C PRIVATE ${A2MAMBA_CUDA_SOURCES})
  # _C exists before CUDA is enabled, so it did not pick up CMAKE_CUDA_ARCHITECTURES.
  set_target_properties(_C PROPERTIES CUDA_ARCHITECTURES "${_archs}" CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  # A CMake list would split the definition at its semicolons: report the archs space-separated.
  string(REPLACE ";" " " _arch_text "${_arch_list}")
  target_compile_definitions(_C PRIVATE A2MAMBA_WITH_CUDA "A2MAMBA_CUDA_ARCHS=\"${_arch_text}\"")
  target_link_libraries(_C PRIVATE torch_cuda c10_cuda CUDA::cudart)
  # The CUDA headers that ATen/cuda pulls in (cuBLAS, cuSPARSE, ...) are not in a
  # minimal toolkit; pip's nvidia-* wheels beside torch carry them.
  file(GLOB _nvidia_includes "${TORCH_ROOT}/../nvidia/*/include" "${TORCH_ROOT}/../nvidia/cu*/include")
  target_include_directories(_C SYSTEM PRIVATE ${_nvidia_includes})
  target_compile_options(_C PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-O3 --expt-relaxed-constexpr -Xcompiler=-Wall>)
  if(A2MAMBA_WERROR)
    target_compile_options(_C PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Werror>)
  endif()
endif()
