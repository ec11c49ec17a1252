#pragma once
// Temporary files that become a final file by rename: the cache writer and the retrieval index writer both write
// `<path>.tmp-<pid>-<hex>` and rename it over `path` once complete, so a reader never sees a half-written file.

#include <string>

namespace deformer::detail {

// A fresh temporary name next to `path`, carrying this process's id.
std::string temporary_name(const std::string& path);

// Removes the temporaries of `path` whose writer process is gone (killed with SIGKILL, or the machine stopped):
// nothing else will finish or remove them. Temporaries of live writers stay.
void remove_stale_temporaries(const std::string& path);

// Makes a complete temporary file the file at `path`: its data reaches the disk before its name does (so a crash
// never leaves a complete-looking partial file), then the rename, then the directory entry.
// std::runtime_error when the rename fails.
void publish(const std::string& temporary, const std::string& path);

// Flushes a file (before it is renamed into place) or a directory (after a rename in it) to disk, as far as the
// file system allows: best effort, since some refuse fsync on directories.
void sync_path(const std::string& path);

}  // namespace deformer::detail
