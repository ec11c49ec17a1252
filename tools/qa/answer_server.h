#pragma once
// deformer-qa serve: an HTTP/1.1 JSON server over one Reader and an optional cache (with its retrieval index).
//
//   POST /v1/answer        {"question", "top_k"?, "retrieve"?, "docs"?, "context"?} -> {"answers": [...]}
//   POST /v1/answer:batch  {"requests": [ ...as above... ]}                       -> {"results": [...]}
//   GET  /healthz          {"status": "ok", ...}
//   GET  /metrics          Prometheus text: requests, latency and batch-size histograms, queue depth
//
// Requests that arrive together are answered by one Reader::ask call (or one retrieve_and_read call): a batcher
// thread takes the queued questions that share a kind (context, named documents, retrieval) and top_k, up to
// max_batch_questions, waiting at most max_wait_ms after the first one for others to join it. A request is
// checked before it is queued, so that one bad request never fails the others of its batch.
//
// Thread safety: run() blocks on the calling thread; request_stop() may be called from any thread (and a SIGTERM
// handler's watcher): the listener closes, requests already accepted are answered, then run() returns.
#include <cstddef>
#include <memory>
#include <string>

#include "deformer/reader.h"
#include "deformer/retrieval.h"

namespace deformer {
namespace cache {
class CacheReader;
}

namespace cli {

struct ServeOptions {
  std::string host = "127.0.0.1";         // address to listen on
  int port = 8080;                        // port to listen on; 0: a free one (printed on start)
  int http_threads = 32;                  // connections served at once
  int max_batch_questions = 32;           // questions answered by one reader call
  int max_wait_ms = 5;                    // longest a queued question waits for others to join its batch
  size_t max_body_bytes = 1 << 20;        // larger request bodies get 413
  int read_timeout_s = 5;                 // a connection idle this long while a request is read is closed
  int max_top_k = 20;                     // largest top_k a request may ask for
  int max_batch_requests = 256;           // largest "requests" array of /v1/answer:batch
  retrieval::RetrievalOptions retrieval;  // defaults for requests over the cache without "docs"
};

class AnswerServer {
 public:
  // `cache` (and `index`, which needs it) may be null: requests must then carry a "context".
  AnswerServer(std::shared_ptr<const Model> model, ReaderOptions reader_options, const cache::CacheReader* cache,
               const retrieval::TextIndex* index, ServeOptions options);
  ~AnswerServer();
  AnswerServer(const AnswerServer&) = delete;
  AnswerServer& operator=(const AnswerServer&) = delete;

  // Binds, calls `on_listening` with the port, serves until request_stop(). Throws std::runtime_error when the
  // address cannot be bound.
  void run(const std::function<void(int port)>& on_listening);
  void request_stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace cli
}  // namespace deformer
