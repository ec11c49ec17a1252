// The parent's processes: the children it measures in (this program again) and the Python references.
#include <ftw.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "bench.h"
#include "deformer/tokenizer.h"

extern char** environ;

namespace deformer::bench {

void remove_tree(const std::string& path) {
  ::nftw(path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
         FTW_DEPTH | FTW_PHYS);
}

namespace {

std::string self_executable() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot find this program's path (/proc/self/exe)");
  return std::string(buf, n);
}

// Runs argv, returns its stdout; std::runtime_error naming the program when it fails.
std::string run_capture(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env = {}) {
  int pipe_fd[2];
  if (::pipe(pipe_fd) != 0) throw std::runtime_error("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fd[1], 1);
  posix_spawn_file_actions_addclose(&actions, pipe_fd[0]);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e; ++e) env_storage.push_back(*e);
  for (const auto& e : extra_env) env_storage.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fd[1]);
  if (rc != 0) {
    ::close(pipe_fd[0]);
    throw std::runtime_error("cannot start '" + argv[0] + "': " + std::strerror(rc));
  }
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(pipe_fd[0], buf, sizeof buf)) > 0) out.append(buf, n);
  ::close(pipe_fd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("'" + argv[0] + (argv.size() > 1 ? " " + argv[1] : std::string()) + "' failed (" +
                             (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "signal " + std::to_string(WTERMSIG(status))) + ")");
  return out;
}

std::vector<std::string> child_argv(const BenchArgs& args, const std::string& task, int k) {
  std::vector<std::string> a{self_executable(), "--model", args.model.model, "--device", args.model.device, "--dtype",
                             args.model.dtype, "--threads", std::to_string(args.model.threads), "--squad", args.squad,
                             "--limit", std::to_string(args.limit), "--batch", std::to_string(args.batch),
                             "--pass-cost", std::to_string(args.pass_cost), "--repeats",
                             std::to_string(args.repeats), "--cache-dtype", args.cache_dtype, "--work", args.work,
                             "--child", task, "--child-k", std::to_string(k)};
  return a;
}

// The reference script and the pydeformer package: installed next to this program, else in the source tree.
std::pair<std::string, std::string> reference_paths() {
  const std::string exe = self_executable();
  const std::string bin = exe.substr(0, exe.rfind('/'));
  const std::string installed = bin + "/../share/libdeformer/reference_bench.py";
  if (std::ifstream(installed).good() && std::ifstream(bin + "/pydeformer/bert.py").good()) return {installed, bin};
  return {DEFORMER_REFERENCE_SCRIPT, DEFORMER_TOOLS_DIR};
}

}  // namespace

json run_child(const BenchArgs& args, const std::string& task, int k) {
  const std::string out = run_capture(child_argv(args, task, k));
  try {
    return json::parse(out);
  } catch (const json::exception& e) {
    throw std::runtime_error("child '" + task + "' printed no JSON: " + out.substr(0, 200));
  }
}

std::string write_reference_input(const BenchArgs& args, const Workload& w, const Model& model) {
  ReaderOptions o;
  o.mode = Mode::kFull;
  Reader probe(std::shared_ptr<const Model>(&model, [](const Model*) {}), o);
  const auto shapes = shapes_of(w, model, probe.tokenizer());
  const auto groups = group_questions(shapes, args.batch);
  json j = {{"sep", probe.tokenizer().special_tokens().sep}, {"groups", json::array()}};
  for (const auto& g : groups) {
    json rows = json::array();
    for (size_t q : g)
      for (const auto& row : shapes[q].full_rows) rows.push_back(row);
    j["groups"].push_back({{"questions", g.size()}, {"rows", rows}});
  }
  const std::string path = args.work + "/reference-input.json";
  std::ofstream(path) << j.dump();
  return path;
}

json run_reference(const BenchArgs& args, const std::string& kind, const std::string& input) {
  std::string python = args.python;
  if (python.empty()) {
    const char* env = std::getenv("DEFORMER_PYTHON");
    python = env && *env ? env : "/usr/bin/python3";
  }
  const auto [script, python_path] = reference_paths();
  const std::vector<std::string> argv{python, script, "--kind", kind, "--model", args.model.model,
                                      "--input", input, "--device", args.model.device, "--dtype", args.model.dtype,
                                      "--threads", std::to_string(args.model.threads), "--repeats",
                                      std::to_string(args.repeats)};
  try {
    return json::parse(run_capture(argv, {"PYTHONPATH=" + python_path}));
  } catch (const std::exception& e) {
    return {{"reference", kind}, {"available", false}, {"reason", e.what()}};
  }
}

}  // namespace deformer::bench
