#include "answer_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "batched_questions.h"
#include "deformer/cache.h"
#include "options.h"

namespace deformer::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// A request refused before it reaches the reader: the HTTP status, and the message of its JSON error body.
struct RequestError : std::invalid_argument {
  int status;
  RequestError(int status, const std::string& message) : std::invalid_argument(message), status(status) {}
};

enum class Source { kContext, kDocuments, kRetrieval };

// One checked question, as the batcher runs it.
struct Ask {
  Source source = Source::kContext;
  std::string question;
  std::string context;
  std::vector<std::string> docs;  // kDocuments: the documents named; empty = every cached document
  int top_k = 1;
  int retrieve = 0;  // kRetrieval: documents retrieved
  // Questions of one batch share this.
  std::tuple<Source, int, int> batch_key() const { return {source, top_k, retrieve}; }
};

int integer_field(const json& j, const char* name, int low, int high, int fallback) {
  if (!j.contains(name)) return fallback;
  const auto& v = j[name];
  if (!v.is_number_integer()) throw RequestError(400, std::string("\"") + name + "\" must be an integer");
  const auto n = v.get<int64_t>();
  if (n < low || n > high)
    throw RequestError(400, std::string("\"") + name + "\" must be in " + std::to_string(low) + ".." + std::to_string(high) +
                                ", not " + std::to_string(n));
  return static_cast<int>(n);
}

Ask parse_ask(const json& j, const ServeOptions& options, int default_top_k, const cache::CacheReader* cache,
              const retrieval::TextIndex* index) {
  if (!j.is_object()) throw RequestError(400, "a request is a JSON object");
  for (const auto& item : j.items()) {
    const auto& key = item.key();
    if (key != "question" && key != "top_k" && key != "retrieve" && key != "docs" && key != "context")
      throw RequestError(400, "unknown field \"" + brief(key) + "\" (known: question, top_k, retrieve, docs, context)");
  }
  Ask ask;
  if (!j.contains("question") || !j["question"].is_string()) throw RequestError(400, "\"question\" must be a string");
  ask.question = j["question"].get<std::string>();
  if (ask.question.find_first_not_of(" \t\r\n") == std::string::npos) throw RequestError(400, "\"question\" is empty");
  ask.top_k = integer_field(j, "top_k", 1, options.max_top_k, default_top_k);
  if (j.contains("context")) {
    if (!j["context"].is_string()) throw RequestError(400, "\"context\" must be a string");
    if (j.contains("docs") || j.contains("retrieve"))
      throw RequestError(400, "\"context\" excludes \"docs\" and \"retrieve\" (those read the server's cache)");
    ask.context = j["context"].get<std::string>();
    return ask;
  }
  if (!cache) throw RequestError(400, "this server has no cache: give the document as \"context\"");
  if (j.contains("docs")) {
    const auto& docs = j["docs"];
    if (!docs.is_array() || docs.empty()) throw RequestError(400, "\"docs\" must be a non-empty array of document ids");
    if (j.contains("retrieve")) throw RequestError(400, "\"docs\" excludes \"retrieve\"");
    for (const auto& d : docs) {
      if (!d.is_string()) throw RequestError(400, "\"docs\" must hold strings");
      try {
        cache->find(d.get<std::string>());
      } catch (const std::invalid_argument& e) {
        throw RequestError(404, brief(e.what()));
      }
      ask.docs.push_back(d.get<std::string>());
    }
    ask.source = Source::kDocuments;
    return ask;
  }
  if (!index) {
    if (j.contains("retrieve")) throw RequestError(400, "\"retrieve\" needs the cache's retrieval index, which this server lacks");
    ask.source = Source::kDocuments;  // every cached document
    return ask;
  }
  ask.source = Source::kRetrieval;
  ask.retrieve = integer_field(j, "retrieve", 1, 1000, options.retrieval.documents);
  return ask;
}

// Cumulative buckets, Prometheus style.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double value) {
    std::lock_guard<std::mutex> lock(mutex_);
    counts_[std::upper_bound(bounds_.begin(), bounds_.end(), value - 1e-12) - bounds_.begin()]++;
    sum_ += value;
    ++count_;
  }
  void write(std::ostream& out, const std::string& name, const std::string& labels) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::string sep = labels.empty() ? "" : ",";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += counts_[i];
      out << name << "_bucket{" << labels << sep << "le=\"" << bounds_[i] << "\"} " << cumulative << "\n";
    }
    out << name << "_bucket{" << labels << sep << "le=\"+Inf\"} " << count_ << "\n";
    out << name << "_sum" << (labels.empty() ? "" : "{" + labels + "}") << " " << sum_ << "\n";
    out << name << "_count" << (labels.empty() ? "" : "{" + labels + "}") << " " << count_ << "\n";
  }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  double sum_ = 0;
  uint64_t count_ = 0;
  mutable std::mutex mutex_;
};

struct Metrics {
  std::mutex mutex;
  std::map<std::pair<std::string, int>, uint64_t> requests;  // (endpoint, status) -> count
  Histogram latency{{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};
  Histogram batch_questions{{1, 2, 4, 8, 16, 32, 64, 128, 256}};
  std::atomic<int64_t> queue_depth{0};

  void count(const std::string& endpoint, int status, double seconds) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ++requests[{endpoint, status}];
    }
    latency.observe(seconds);
  }
  std::string text() {
    std::ostringstream out;
    out << "# TYPE deformer_requests_total counter\n";
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (const auto& [key, n] : requests)
        out << "deformer_requests_total{endpoint=\"" << key.first << "\",code=\"" << key.second << "\"} " << n << "\n";
    }
    out << "# TYPE deformer_request_seconds histogram\n";
    latency.write(out, "deformer_request_seconds", "");
    out << "# TYPE deformer_batch_questions histogram\n";
    batch_questions.write(out, "deformer_batch_questions", "");
    out << "# TYPE deformer_queue_depth gauge\ndeformer_queue_depth " << queue_depth.load() << "\n";
    return out.str();
  }
};

}  // namespace

struct AnswerServer::State {
  std::shared_ptr<const Model> model;
  ReaderOptions reader_options;
  const cache::CacheReader* cache;
  const retrieval::TextIndex* index;
  ServeOptions options;
  std::map<int, std::unique_ptr<Reader>> readers;  // by top_k; touched by the batcher thread only
  Metrics metrics;
  httplib::Server http;

  struct Pending {
    Ask ask;
    Clock::time_point queued;
    std::promise<std::vector<Answer>> done;
  };
  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::shared_ptr<Pending>> queue;
  bool stopping = false;
  std::atomic<bool> finished{false};  // run() has returned or thrown

  const Reader& reader(int top_k) {
    auto& r = readers[top_k];
    if (!r) {
      auto o = reader_options;
      o.decode.top_k = top_k;
      r = std::make_unique<Reader>(model, o);
    }
    return *r;
  }

  std::future<std::vector<Answer>> submit(Ask ask) {
    auto p = std::make_shared<Pending>();
    p->ask = std::move(ask);
    p->queued = Clock::now();
    auto future = p->done.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (stopping) throw RequestError(503, "the server is stopping");
      queue.push_back(std::move(p));
      metrics.queue_depth = static_cast<int64_t>(queue.size());
    }
    wake.notify_all();
    return future;
  }

  // Answers `batch` in one reader call; on failure, each question alone, so that the error is its own.
  std::vector<std::vector<Answer>> answer(const std::vector<std::shared_ptr<Pending>>& batch) {
    const Ask& first = batch.front()->ask;
    CorpusSource corpus{cache, index, options.retrieval};
    corpus.retrieval.documents = first.retrieve;
    std::vector<BatchedQuestion> questions;
    for (const auto& p : batch) {
      BatchedQuestion q;
      q.question = p->ask.question;
      q.cached = p->ask.source != Source::kContext;
      q.context = p->ask.context;
      q.docs = p->ask.docs;
      questions.push_back(std::move(q));
    }
    return answer_together(reader(first.top_k), &corpus, questions);
  }

  void run_batches() {
    for (;;) {
      std::vector<std::shared_ptr<Pending>> batch;
      {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, [&] { return stopping || !queue.empty(); });
        if (queue.empty()) return;  // stopping, and nothing left to answer
        const auto key = queue.front()->ask.batch_key();
        const auto same = [&] {
          return std::count_if(queue.begin(), queue.end(), [&](const auto& p) { return p->ask.batch_key() == key; });
        };
        wake.wait_until(lock, queue.front()->queued + std::chrono::milliseconds(options.max_wait_ms),
                        [&] { return stopping || same() >= options.max_batch_questions; });
        for (auto it = queue.begin(); it != queue.end() && static_cast<int>(batch.size()) < options.max_batch_questions;) {
          if ((*it)->ask.batch_key() == key) {
            batch.push_back(*it);
            it = queue.erase(it);
          } else {
            ++it;
          }
        }
        metrics.queue_depth = static_cast<int64_t>(queue.size());
      }
      metrics.batch_questions.observe(static_cast<double>(batch.size()));
      try {
        auto results = answer(batch);
        for (size_t i = 0; i < batch.size(); ++i) batch[i]->done.set_value(std::move(results[i]));
      } catch (const std::exception&) {
        for (const auto& p : batch) {
          try {
            p->done.set_value(answer({p}).front());
          } catch (...) {
            p->done.set_exception(std::current_exception());
          }
        }
      }
    }
  }
};

namespace {

// httplib's own status texts are not in its public header.
std::string status_text(int status) {
  switch (status) {
    case 400: return "bad request";
    case 404: return "no such endpoint";
    case 405: return "method not allowed";
    case 408: return "request timed out";
    case 413: return "request body too large";
    case 414: return "request line too long";
    default: return "HTTP error " + std::to_string(status);
  }
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  // An error may quote the request's bytes, which need not be UTF-8 (json's parse errors do): replaced, not thrown.
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

json answers_json(const std::vector<Answer>& answers) {
  json out = json::array();
  for (const auto& a : answers) out.push_back(to_json(a));
  return out;
}

// The status and JSON error of whatever a request's handling threw.
std::pair<int, json> error_of(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const RequestError& e) {
    return {e.status, {{"error", e.what()}}};
  } catch (const json::exception& e) {
    return {400, {{"error", "malformed JSON: " + brief(e.what())}}};
  } catch (const std::invalid_argument& e) {
    return {400, {{"error", brief(e.what())}}};
  } catch (const std::exception& e) {
    return {500, {{"error", brief(e.what())}}};
  }
}

}  // namespace

AnswerServer::AnswerServer(std::shared_ptr<const Model> model, ReaderOptions reader_options,
                           const cache::CacheReader* cache, const retrieval::TextIndex* index, ServeOptions options)
    : state_(std::make_unique<State>()) {
  if (options.max_batch_questions < 1 || options.max_wait_ms < 0 || options.http_threads < 1 || options.max_top_k < 1 ||
      options.read_timeout_s < 1 || options.max_batch_requests < 1)
    throw std::invalid_argument("serve: batch size, top_k limit, threads and timeouts must be positive");
  if (index && !cache) throw std::invalid_argument("serve: a retrieval index needs its cache");
  auto& s = *state_;
  s.model = std::move(model);
  s.reader_options = std::move(reader_options);
  s.cache = cache;
  s.index = index;
  s.options = std::move(options);
  s.reader(s.reader_options.decode.top_k);  // refuses bad reader options before the server listens
}

AnswerServer::~AnswerServer() = default;

void AnswerServer::request_stop() {
  // httplib's stop() does nothing before listen has started: a stop asked for during start-up waits for it.
  while (!state_->finished && !state_->http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (!state_->finished) state_->http.stop();
}

void AnswerServer::run(const std::function<void(int port)>& on_listening) {
  auto& s = *state_;
  auto& http = s.http;
  const int default_top_k = s.reader_options.decode.top_k;
  http.new_task_queue = [&s] { return new httplib::ThreadPool(static_cast<size_t>(s.options.http_threads)); };
  http.set_payload_max_length(s.options.max_body_bytes);
  http.set_read_timeout(s.options.read_timeout_s, 0);
  http.set_write_timeout(s.options.read_timeout_s, 0);
  // Statuses that httplib sets itself (404, 413, 400 for a request it cannot parse) get a JSON body as well.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty())
      send_json(res, res.status, {{"error", status_text(res.status)}});
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
    const auto [status, body] = error_of(e);
    send_json(res, status, body);
  });
  const auto timed = [&s](const std::string& endpoint, auto&& handle) {
    return [&s, endpoint, handle](const httplib::Request& req, httplib::Response& res) {
      const auto begin = Clock::now();
      try {
        handle(req, res);
      } catch (...) {
        const auto [status, body] = error_of(std::current_exception());
        send_json(res, status, body);
      }
      s.metrics.count(endpoint, res.status, std::chrono::duration<double>(Clock::now() - begin).count());
    };
  };
  http.Post("/v1/answer", timed("answer", [&s, default_top_k](const httplib::Request& req, httplib::Response& res) {
    auto future = s.submit(parse_ask(json::parse(req.body), s.options, default_top_k, s.cache, s.index));
    send_json(res, 200, {{"answers", answers_json(future.get())}});
  }));
  http.Post("/v1/answer:batch", timed("answer_batch", [&s, default_top_k](const httplib::Request& req, httplib::Response& res) {
    const auto body = json::parse(req.body);
    if (!body.is_object() || !body.contains("requests") || !body["requests"].is_array())
      throw RequestError(400, "expected {\"requests\": [...]}");
    const auto& requests = body["requests"];
    if (requests.size() > static_cast<size_t>(s.options.max_batch_requests))
      throw RequestError(413, "at most " + std::to_string(s.options.max_batch_requests) + " requests per batch");
    // Each request is checked and answered on its own: one bad request is an error in its place of the results.
    std::vector<std::future<std::vector<Answer>>> futures(requests.size());
    std::vector<std::exception_ptr> errors(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      try {
        futures[i] = s.submit(parse_ask(requests[i], s.options, default_top_k, s.cache, s.index));
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
    json results = json::array();
    for (size_t i = 0; i < requests.size(); ++i) {
      if (!errors[i]) {
        try {
          results.push_back({{"answers", answers_json(futures[i].get())}});
          continue;
        } catch (...) {
          errors[i] = std::current_exception();
        }
      }
      auto [status, error] = error_of(errors[i]);
      error["status"] = status;
      results.push_back(error);
    }
    send_json(res, 200, {{"results", results}});
  }));
  http.Get("/healthz", [&s](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"},
                         {"mode", to_string(s.reader_options.mode)},
                         {"documents", s.cache ? s.cache->num_documents() : 0},
                         {"retrieval", s.index != nullptr}});
  });
  http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.metrics.text(), "text/plain; version=0.0.4");
  });

  std::thread batcher([&s] { s.run_batches(); });
  const auto stop_batcher = [&] {
    s.finished = true;
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      s.stopping = true;
    }
    s.wake.notify_all();
    batcher.join();
  };
  const int port = s.options.port == 0 ? http.bind_to_any_port(s.options.host)
                                       : (http.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1);
  if (port < 0) {
    stop_batcher();
    throw std::runtime_error("serve: cannot listen on " + s.options.host + ":" + std::to_string(s.options.port));
  }
  on_listening(port);
  // listen_after_bind returns once stop() closed the listener and its threads answered what they had accepted;
  // the batcher then answers what is left in its queue.
  http.listen_after_bind();
  stop_batcher();
}

}  // namespace deformer::cli
