// WordPiece throughput over every SQuAD v1.1 dev context, one thread (bytes/s = UTF-8 input bytes).
// Compare with the HF Rust tokenizer: benchmarks/tokenizer_bench_hf.js on the same texts.
//
// Data: DEFORMER_SQUAD_DEV (dev-v1.1.json, default: the copy the test configure step unpacks into the
// build tree) and DEFORMER_DATA (default ../shared/data) for tokenizers/bert-base-uncased-vocab.txt.

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "deformer/tokenizer.h"

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::cerr << "tokenizer_bench: cannot read " << path << "\n";
    std::exit(2);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Corpus {
  std::vector<std::string> contexts;
  size_t bytes = 0;
  std::unique_ptr<deformer::Tokenizer> uncased, cased;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus c;
    const auto dev = nlohmann::json::parse(read_file(env_or("DEFORMER_SQUAD_DEV", DEFORMER_SQUAD_DEV)));
    for (const auto& article : dev.at("data"))
      for (const auto& p : article.at("paragraphs")) {
        c.contexts.push_back(p.at("context").get<std::string>());
        c.bytes += c.contexts.back().size();
      }
    const std::string data = env_or("DEFORMER_DATA", DEFORMER_DEFAULT_DATA);
    c.uncased = deformer::make_wordpiece(read_file(data + "/tokenizers/bert-base-uncased-vocab.txt"), true);
    c.cased = deformer::make_wordpiece(read_file(data + "/tokenizers/bert-base-cased-vocab.txt"), false);
    return c;
  }();
  return c;
}

void run(benchmark::State& state, const deformer::Tokenizer& tokenizer) {
  const Corpus& c = corpus();
  size_t tokens = 0;
  for (auto _ : state) {
    for (const auto& text : c.contexts) {
      deformer::Encoding e = tokenizer.encode(text);
      tokens += e.ids.size();
      benchmark::DoNotOptimize(e.ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * c.bytes));
  state.counters["texts"] = static_cast<double>(c.contexts.size());
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

void BM_WordPieceUncasedDevContexts(benchmark::State& state) { run(state, *corpus().uncased); }
void BM_WordPieceCasedDevContexts(benchmark::State& state) { run(state, *corpus().cased); }

BENCHMARK(BM_WordPieceUncasedDevContexts)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_WordPieceCasedDevContexts)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace

BENCHMARK_MAIN();
