// Scratch memory of the CPU kernels, kept from one call to the next on each calling thread.
//
// A buffer of a few megabytes freshly allocated on every call comes back from the C library as
// untouched pages whenever it was returned to the system in between (as it is after a large
// free), and the kernel's first pass over it then takes one page fault per 4 KiB. Here each
// thread keeps one buffer and grows it as needed; one larger than kKeptScratchBytes is released
// after its call, so a one-off large problem does not hold its memory.
#pragma once

#include "cpu/variant.h"

#include <cstddef>
#include <cstdlib>
#include <new>

namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT {

constexpr size_t kKeptScratchBytes = size_t{64} << 20;
constexpr size_t kScratchAlignment = 64;

// The calling thread's buffer for the lifetime of the lease (a private one if that buffer is
// already leased further up the same call), at least `bytes` long and 64-byte aligned.
class ScratchLease {
 public:
  explicit ScratchLease(size_t bytes) {
    const size_t size = (bytes + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;
    Kept& kept = kept_buffer();
    if (!kept.leased) {
      if (kept.capacity < size) {
        std::free(kept.data);
        kept.data = nullptr;
        kept.capacity = 0;
        kept.data = allocate(size);
        kept.capacity = size;
      }
      kept.leased = true;
      data_ = kept.data;
      owned_ = false;
    } else {
      data_ = allocate(size);
      owned_ = true;
    }
  }
  ~ScratchLease() {
    if (owned_) {
      std::free(data_);
      return;
    }
    Kept& kept = kept_buffer();
    kept.leased = false;
    if (kept.capacity > kKeptScratchBytes) {
      std::free(kept.data);
      kept.data = nullptr;
      kept.capacity = 0;
    }
  }
  ScratchLease(const ScratchLease&) = delete;
  ScratchLease& operator=(const ScratchLease&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }

 private:
  struct Kept {
    void* data = nullptr;
    size_t capacity = 0;
    bool leased = false;
    ~Kept() { std::free(data); }
  };
  static Kept& kept_buffer() {
    thread_local Kept kept;
    return kept;
  }
  static void* allocate(size_t size) {
    void* p = std::aligned_alloc(kScratchAlignment, size == 0 ? kScratchAlignment : size);
    if (p == nullptr) {
      throw std::bad_alloc();
    }
    return p;
  }
  void* data_ = nullptr;
  bool owned_ = false;
};

}  // namespace a2mamba::cpu::A2MAMBA_CPU_VARIANT
