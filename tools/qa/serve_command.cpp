#include <csignal>

#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include "answer_server.h"
#include "commands.h"
#include "deformer/cache.h"
#include "options.h"

namespace deformer::cli {
namespace {

std::atomic<bool> stop_signalled{false};
extern "C" void on_stop_signal(int) { stop_signalled = true; }

struct ServeArgs {
  ModelArgs model;
  ReaderArgs reader;
  std::string cache;
  ServeOptions serve;
};

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "Serve questions over HTTP/1.1 JSON: POST /v1/answer, /v1/answer:batch; "
                                          "GET /healthz, /metrics. Requests arriving together share reader calls");
  add_model_options(cmd, args->model);
  add_reader_options(cmd, args->reader);
  auto& o = args->serve;
  cmd->add_option("--cache", args->cache, "a cache from deformer-cache build: requests without \"context\" are read "
                                          "over it (\"docs\", else the documents its retrieval index finds)");
  cmd->add_option("--host", o.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o.port, "port to listen on (0: a free one)")->capture_default_str();
  cmd->add_option("--http-threads", o.http_threads, "connections served at once")->capture_default_str();
  cmd->add_option("--max-batch", o.max_batch_questions, "questions answered by one reader call")->capture_default_str();
  cmd->add_option("--max-wait-ms", o.max_wait_ms, "longest a question waits for others to join its batch")
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", o.max_body_bytes, "larger request bodies are refused (413)")->capture_default_str();
  cmd->add_option("--read-timeout", o.read_timeout_s, "seconds a connection may stall while sending a request")
      ->capture_default_str();
  cmd->add_option("--max-top-k", o.max_top_k, "largest top_k a request may ask for")->capture_default_str();
  cmd->add_option("--retrieve", o.retrieval.documents, "documents retrieved per question when a request names none")
      ->capture_default_str();
  cmd->add_option("--reader-weight", o.retrieval.reader_weight, "weight of the reader's logits against BM25")
      ->capture_default_str();
  cmd->callback([args] {
    auto model = load_model(args->model);
    auto options = reader_options(args->reader);
    options.k = split_for_cache(options.k, args->cache);
    std::unique_ptr<cache::CacheReader> cache;
    std::unique_ptr<retrieval::TextIndex> index;
    if (!args->cache.empty()) {
      const Reader probe(model, options);
      cache = open_cache(args->cache, *model, probe);
      retrieval::validate(args->serve.retrieval);
      try {
        index = retrieval::TextIndex::open(retrieval::index_path(args->cache), *cache);
      } catch (const std::runtime_error& e) {
        std::cerr << "deformer-qa serve: " << e.what() << "; requests without \"docs\" read all "
                  << cache->num_documents() << " documents" << std::endl;
      }
    }
    AnswerServer server(model, options, cache.get(), index.get(), args->serve);
    // SIGTERM and SIGINT stop the listener; what was accepted is answered, then the command returns 0.
    std::signal(SIGTERM, on_stop_signal);
    std::signal(SIGINT, on_stop_signal);
    std::atomic<bool> served{false};
    std::thread watcher([&] {
      while (!served && !stop_signalled) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (stop_signalled) {
        std::cerr << "deformer-qa serve: stopping: answering what was accepted" << std::endl;
        server.request_stop();
      }
    });
    try {
      server.run([&](int port) {
        std::cout << "deformer-qa serve: listening on http://" << args->serve.host << ":" << port << std::endl;
      });
    } catch (...) {
      served = true;
      watcher.join();
      throw;
    }
    served = true;
    watcher.join();
    std::cerr << "deformer-qa serve: stopped" << std::endl;
  });
}

}  // namespace deformer::cli
