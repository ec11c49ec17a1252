#include "temporary_file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace deformer::detail {

namespace fs = std::filesystem;

std::string temporary_name(const std::string& path) {
  std::random_device device;
  std::ostringstream name;
  name << path << ".tmp-" << ::getpid() << "-" << std::hex << device();
  return name.str();
}

namespace {
// Gone, or a zombie: killed with SIGKILL and not yet reaped, it will never write again (a run started right after
// the kill saw such a writer as alive and kept its temporary, which then outlived the finished file).
bool writer_is_gone(long pid) {
  if (pid <= 0) return true;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const size_t end_of_name = line.rfind(')');  // "pid (name) state ...": the name may hold spaces and parentheses
  return end_of_name != std::string::npos && end_of_name + 2 < line.size() && line[end_of_name + 2] == 'Z';
}
}  // namespace

void remove_stale_temporaries(const std::string& path) {
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp-";
  std::error_code error;
  for (fs::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    const size_t dash = rest.find('-');
    if (dash == 0 || dash == std::string::npos || rest.find_first_not_of("0123456789") != dash) continue;
    const long pid = std::stol(rest.substr(0, dash));
    if (writer_is_gone(pid)) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}

void sync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void publish(const std::string& temporary, const std::string& path) {
  sync_path(temporary);
  std::error_code error;
  fs::rename(temporary, path, error);
  if (error) throw std::runtime_error("cannot rename '" + temporary + "' to '" + path + "': " + error.message());
  sync_path(fs::absolute(path).parent_path().string());
}

}  // namespace deformer::detail
