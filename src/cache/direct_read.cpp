#include "cache/direct_read.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace deformer {
namespace cache {
namespace detail {

FileDescriptor duplicate_descriptor(hid_t file) {
  Hid fapl(H5Fget_access_plist(file), H5Pclose);
  void* handle = nullptr;
  if (!fapl.valid() || H5Pget_driver(fapl.get()) != H5FD_SEC2 || H5Fget_vfd_handle(file, fapl.get(), &handle) < 0 ||
      !handle) {
    H5Eclear2(H5E_DEFAULT);
    return {};
  }
  return FileDescriptor(::fcntl(*static_cast<int*>(handle), F_DUPFD_CLOEXEC, 0));
}

bool plain_addresses(hid_t file) {
  Hid fcpl(H5Fget_create_plist(file), H5Pclose);
  size_t address = 0, length = 0;
  hsize_t user_block = 1;
  const bool plain = fcpl.valid() && H5Pget_sizes(fcpl.get(), &address, &length) >= 0 && address == 8 &&
                     length == 8 && H5Pget_userblock(fcpl.get(), &user_block) >= 0 && user_block == 0;
  H5Eclear2(H5E_DEFAULT);
  return plain;
}

namespace {

// pread() of exactly `bytes`, across short reads and signals; false at the end of the file or on an error
// (errno then says which).
bool pread_all(int fd, void* out, size_t bytes, uint64_t offset) {
  auto* p = static_cast<uint8_t*>(out);
  while (bytes > 0) {
    const ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = 0;
      return false;
    }
    p += n;
    bytes -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return true;
}

// The same for rows: a file that ends early was truncated after its chunk addresses were checked at open.
void read_fully(int fd, void* out, size_t bytes, uint64_t offset, const std::string& what) {
  if (pread_all(fd, out, bytes, offset)) return;
  const int error = errno;
  if (error) throw std::runtime_error(what + ": read failed: " + std::system_category().message(error));
  throw std::runtime_error(what + " ends early: the file was truncated after it was opened");
}

// ---------------------------------------------------------------------------------------------------------
// Chunk addresses. HDF5 1.10 has no call that lists them: H5Dget_chunk_info and H5Dget_chunk_info_by_coord
// each iterate over the chunk index from its start (an open of 240,000 chunks had not finished after 8 minutes;
// a million-window cache would take hours), and H5Dchunk_iter arrived in 1.14. So the index is read here, where
// it has the layout this library's writer produces (libver bounds earliest..v18): a version-1 object header
// whose version-3 data layout message names a version-1 B-tree (HDF5 File Format Specification: "Version 1
// B-trees", "Version 1 Data Object Header Prefix", "Data Layout Message", "Object Header Continuation
// Message"). Anything else is "not found", and reads go through H5Dread.

uint64_t little_endian(const uint8_t* p, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

// Bytes [offset, offset + bytes) of a file of `file_size` bytes; false past its end.
bool read_at(int fd, int64_t file_size, uint64_t offset, uint64_t bytes, std::vector<uint8_t>& out) {
  const auto size = static_cast<uint64_t>(file_size);
  if (offset > size || bytes > size - offset) return false;
  out.resize(bytes);
  return pread_all(fd, out.data(), bytes, offset);
}

// The B-tree root and dimensionality (rank + 1) of the chunked dataset whose object header is at `header`.
bool find_chunk_btree(int fd, int64_t file_size, uint64_t header, uint64_t& root, int& dimensionality) {
  std::vector<uint8_t> block;
  // Prefix: version 1, reserved, message count (2), reference count (4), size of the first block (4), padding to 16.
  if (!read_at(fd, file_size, header, 16, block) || block[0] != 1) return false;
  const uint64_t messages = little_endian(&block[2], 2);
  std::vector<std::pair<uint64_t, uint64_t>> blocks{{header + 16, little_endian(&block[8], 4)}};
  uint64_t seen = 0;
  // A handful of continuation blocks at most in a real header; the bound also ends a cycle of them.
  for (size_t b = 0; b < blocks.size() && b < 64; ++b) {
    if (blocks[b].second > (1u << 20) || !read_at(fd, file_size, blocks[b].first, blocks[b].second, block))
      return false;
    // Messages: type (2), data size (2), flags (1), reserved (3), data.
    for (size_t p = 0; p + 8 <= block.size() && seen < messages; ++seen) {
      const uint64_t type = little_endian(&block[p], 2), size = little_endian(&block[p + 2], 2);
      if (size > block.size() - p - 8) return false;
      const uint8_t* data = &block[p + 8];
      if (type == 0x10 && size >= 16) blocks.emplace_back(little_endian(data, 8), little_endian(data + 8, 8));
      if (type == 0x08) {  // layout: version, class (2: chunked), dimensionality, B-tree address, chunk sizes
        const bool shared = block[p + 4] & 0x02;  // then the data is a reference to the message, not the message
        if (shared || size < 11 || data[0] != 3 || data[1] != 2) return false;
        dimensionality = data[2];
        root = little_endian(data + 3, 8);
        return true;
      }
      p += 8 + size;
    }
  }
  return false;
}

// Fills address[c] for every chunk c of `chunk_rows` rows and `chunk_bytes` bytes from the leaves of the B-tree:
// false unless every chunk is there exactly once, unfiltered and of its full size, and the tree is well formed.
bool walk_chunk_btree(int fd, int64_t file_size, uint64_t root, int dimensionality, uint64_t chunk_rows,
                      uint64_t chunk_bytes, std::vector<uint64_t>& address) {
  constexpr uint64_t kMissing = ~uint64_t(0);
  std::fill(address.begin(), address.end(), kMissing);
  // Key: chunk bytes (4), filter mask (4), offset of the chunk in each dimension (8 each, the last always 0).
  const uint64_t key = 8 + 8 * static_cast<uint64_t>(dimensionality);
  std::vector<std::pair<uint64_t, int>> pending{{root, -1}};  // node, its level (-1: the root's, unknown)
  std::vector<uint8_t> node;
  size_t found = 0, visited = 0;
  while (!pending.empty()) {
    const auto [at, expected_level] = pending.back();
    pending.pop_back();
    if (++visited > 2 * address.size() + 64) return false;  // more nodes than chunks: not a tree
    // Node: "TREE", type (1: raw data chunks), level, entries (2), left and right siblings, then keys and children.
    if (!read_at(fd, file_size, at, 24, node) || std::memcmp(node.data(), "TREE", 4) != 0 || node[4] != 1) return false;
    const int level = node[5];
    const uint64_t entries = little_endian(&node[6], 2);
    if ((expected_level >= 0 && level != expected_level) || entries == 0) return false;
    if (!read_at(fd, file_size, at + 24, entries * (key + 8) + key, node)) return false;
    for (uint64_t e = 0; e < entries; ++e) {
      const uint8_t* entry = &node[e * (key + 8)];
      const uint64_t child = little_endian(entry + key, 8);
      if (level > 0) {
        pending.emplace_back(child, level - 1);
        continue;
      }
      const uint64_t first_row = little_endian(entry + 8, 8);
      for (int d = 1; d < dimensionality; ++d)
        if (little_endian(entry + 8 + 8 * d, 8) != 0) return false;  // rows are whole within chunks
      const uint64_t c = first_row / chunk_rows;
      if (little_endian(entry, 4) != chunk_bytes || little_endian(entry + 4, 4) != 0 || first_row % chunk_rows ||
          c >= address.size() || address[c] != kMissing)
        return false;
      address[c] = child;
      ++found;
    }
  }
  return found == address.size();
}

}  // namespace

RowReader::RowReader(Hid dataset, Hid memory_type, hid_t stored_type, int fd, int64_t file_size, std::string what)
    : dataset_(std::move(dataset)), memory_type_(std::move(memory_type)), fd_(fd), what_(std::move(what)) {
  Hid space(check_id(H5Dget_space(dataset_.get()), what_), H5Sclose);
  rank_ = H5Sget_simple_extent_ndims(space.get());
  if (rank_ != 1 && rank_ != 2)
    throw std::runtime_error(what_ + " has rank " + std::to_string(rank_) + ", not 1 or 2");
  hsize_t dims[2] = {0, 1};
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  rows_ = static_cast<int64_t>(dims[0]);
  cols_ = dims[1];
  row_bytes_ = H5Tget_size(memory_type_.get()) * cols_;
  Hid file_type(check_id(H5Dget_type(dataset_.get()), what_), H5Tclose);
  direct_ = fd_ >= 0 && H5Tequal(file_type.get(), stored_type) > 0 &&
            H5Tequal(memory_type_.get(), stored_type) > 0 && locate_chunks(file_size);
}

void RowReader::read(int64_t first, int64_t count, void* out) const {
  if (count <= 0) return;
  if (first < 0 || count > rows_ - first)  // the tables were checked at open: a bug, not a bad file
    throw std::logic_error(what_ + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                           ") are outside its " + std::to_string(rows_) + " rows");
  if (direct_) {
    // A range straddling chunks is one pread per chunk; chunks of one dataset need not be adjacent in the file.
    auto* p = static_cast<uint8_t*>(out);
    while (count > 0) {
      const int64_t chunk = first / chunk_rows_, row = first % chunk_rows_;
      const int64_t n = std::min(count, chunk_rows_ - row);
      read_fully(fd_, p, n * row_bytes_, chunk_address_[chunk] + row * row_bytes_, what_);
      p += n * row_bytes_;
      first += n;
      count -= n;
    }
    return;
  }
  Lock lock(h5_mutex());
  Hid space(check_id(H5Dget_space(dataset_.get()), what_), H5Sclose);
  hsize_t start[2] = {static_cast<hsize_t>(first), 0}, size[2] = {static_cast<hsize_t>(count), cols_};
  check(H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, size, nullptr), "select");
  Hid memory(check_id(H5Screate_simple(rank_, size, nullptr), "H5Screate_simple"), H5Sclose);
  check(H5Dread(dataset_.get(), memory_type_.get(), memory.get(), space.get(), H5P_DEFAULT, out),
        what_ + ": cannot read rows [" + std::to_string(first) + ", " + std::to_string(first + count) + ")");
}

// The file address of every chunk, or false where a chunk is not a plain copy of its rows or the chunk index is
// not one read above. A chunk past the end of the file is refused: the file was cut short. Under the lock.
bool RowReader::locate_chunks(int64_t file_size) {
  Hid dcpl(check_id(H5Dget_create_plist(dataset_.get()), what_), H5Pclose);
  hsize_t chunk[2] = {0, 0};
  if (H5Pget_layout(dcpl.get()) != H5D_CHUNKED || H5Pget_nfilters(dcpl.get()) != 0 ||
      H5Pget_chunk(dcpl.get(), 2, chunk) != rank_ || chunk[0] == 0 || (rank_ == 2 && chunk[1] != cols_))
    return false;
  const uint64_t chunk_bytes = chunk[0] * row_bytes_;
  std::vector<uint64_t> address((rows_ + chunk[0] - 1) / chunk[0]);
  if (!address.empty()) {
#if H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10  // from 1.12 on, objects have tokens, not addresses
    H5O_info_t info{};
    uint64_t root = 0;
    int dimensionality = 0;
    if (H5Oget_info2(dataset_.get(), &info, H5O_INFO_BASIC) < 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (!find_chunk_btree(fd_, file_size, info.addr, root, dimensionality) || dimensionality != rank_ + 1 ||
        !walk_chunk_btree(fd_, file_size, root, dimensionality, chunk[0], chunk_bytes, address))
      return false;
#else
    return false;
#endif
    // HDF5's own answer for the first, middle and last chunk: a tree misread here shows as a mismatch.
    for (size_t c : {size_t(0), address.size() / 2, address.size() - 1}) {
      const hsize_t offset[2] = {c * chunk[0], 0};
      unsigned filter_mask = 0;
      haddr_t where = HADDR_UNDEF;
      hsize_t bytes = 0;
      if (H5Dget_chunk_info_by_coord(dataset_.get(), offset, &filter_mask, &where, &bytes) < 0) {
        H5Eclear2(H5E_DEFAULT);
        return false;
      }
      if (where != address[c] || bytes != chunk_bytes || filter_mask != 0) return false;
    }
  }
  const auto size = static_cast<uint64_t>(file_size);
  for (size_t c = 0; c < address.size(); ++c)
    if (address[c] > size || chunk_bytes > size - address[c])
      throw std::runtime_error(what_ + ": chunk " + std::to_string(c) + " lies at bytes [" +
                               std::to_string(address[c]) + ", " + std::to_string(address[c] + chunk_bytes) +
                               "), past the end of the file (" + std::to_string(file_size) +
                               " bytes): the file is truncated or damaged");
  chunk_rows_ = static_cast<int64_t>(chunk[0]);
  chunk_address_ = std::move(address);
  return true;
}

}  // namespace detail
}  // namespace cache
}  // namespace deformer
