// libFuzzer target: arbitrary bytes as a cache file (deformer/cache.h), seeded with real caches, so that the
// mutations are damaged caches. Opening and reading everything must succeed or throw std::runtime_error (or
// std::invalid_argument, std::out_of_range), never crash, hang, leak or read out of bounds: the direct reader walks
// HDF5's chunk B-tree itself and reads rows at addresses from the file. Built with clang
// -fsanitize=fuzzer,address,undefined by tests/fuzz.cmake from the cache sources and libhdf5.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "deformer/cache.h"

namespace {

std::string scratch_path() {
  static const std::string path = "/tmp/deformer-cache-fuzz-" + std::to_string(::getpid()) + ".h5";
  return path;
}

void read_everything(const deformer::cache::CacheReader& reader) {
  std::vector<float> states(reader.window_floats());
  for (int64_t d = 0; d < reader.num_documents(); ++d) {
    reader.document_text(d);
    reader.token_offsets(d);
    reader.token_words(d);
    const auto& info = reader.document(d);
    for (int64_t w = info.first_window; w < info.first_window + info.num_windows; ++w) reader.read_windows({w}, states.data());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FILE* f = std::fopen(scratch_path().c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  for (bool direct : {true, false}) {
    deformer::cache::ReadOptions options;
    options.direct_reads = direct;
    options.read_threads = 1;
    try {
      read_everything(*deformer::cache::CacheReader::open(scratch_path(), options));
    } catch (const std::runtime_error&) {
    } catch (const std::invalid_argument&) {
    } catch (const std::out_of_range&) {
    }
  }
  return 0;
}
