#pragma once
// Where tests find real data and fixture models. Data from ../shared/data is read in place (DEFORMER_DATA
// overrides). On a user's machine a missing data directory skips the test with the reason; under CI=true
// it fails, because CI always has the data.

#include <gtest/gtest.h>

#include <ftw.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace deformer::testing {

inline std::string data_dir() {
  const char* env = std::getenv("DEFORMER_DATA");
  return env && *env ? env : DEFORMER_DEFAULT_DATA;
}

// dev-v1.1.json, unpacked from the shared zip at configure time.
inline std::string squad_dev_v11() { return std::string(DEFORMER_UNPACKED_DATA) + "/dev-v1.1.json"; }

inline bool running_in_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

inline std::string fixture(const std::string& name) { return std::string(DEFORMER_FIXTURES) + "/" + name; }

// Removes a directory tree. Not std::filesystem::remove_all: PyTorch's pip LibTorch exports its own copy of
// that symbol, which crashed (null call) when it won the symbol lookup in test programs on the GPU machine.
inline void remove_tree(const std::string& path) {
  ::nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
}

}  // namespace deformer::testing

// Skips (or, under CI=true, fails) the current test when `path` does not exist.
#define DEFORMER_REQUIRE_FILE(path)                                                                      \
  do {                                                                                                   \
    if (!std::filesystem::exists(path)) {                                                                \
      if (::deformer::testing::running_in_ci()) FAIL() << "required file missing under CI: " << (path); \
      GTEST_SKIP() << "skipped: " << (path) << " not found (set DEFORMER_DATA to the shared data directory)"; \
    }                                                                                                    \
  } while (0)
