// deformer-cache: build, inspect and merge document caches (the offline half of DeFormer).
#include <CLI/CLI.hpp>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>

#include <nlohmann/json.hpp>

#include "deformer/cache.h"
#include "deformer/cache_builder.h"
#include "deformer/retrieval.h"
#include "deformer/squad.h"
#include "deformer/version.h"
#include "options.h"

namespace deformer::cli {
namespace {

namespace fs = std::filesystem;

volatile std::sig_atomic_t interrupted = 0;
extern "C" void on_signal(int) { interrupted = 1; }

using Interrupted = BuildInterrupted;

// The documents of an input: a SQuAD JSON file (one document per paragraph, titled by its article), a JSONL file
// of {"id", "text", "title"?}, a directory of .txt files (id = file name, title = its stem), or "-" for JSONL on
// stdin. `total` is -1 when unknown.
struct Input {
  int64_t total = -1;
  std::function<void(const std::function<void(Document&&)>&)> for_each;
};

void read_jsonl(std::istream& in, const std::string& name, const std::function<void(Document&&)>& emit) {
  for_each_json_line(in, name, [&](const nlohmann::json& j, const std::string& where) {
    if (!j.is_object() || !j.contains("id") || !j.contains("text") || !j["text"].is_string())
      throw std::invalid_argument(where + ": expected {\"id\": ..., \"text\": \"...\"}");
    if (j.contains("title") && !j["title"].is_string())
      throw std::invalid_argument(where + ": \"title\" must be a string");
    emit({j["id"].is_string() ? j["id"].get<std::string>() : j["id"].dump(), j["text"].get<std::string>(),
          j.value("title", std::string())});
  });
}

Input open_input(const std::string& path) {
  Input input;
  if (path == "-") {
    input.for_each = [](const auto& emit) { read_jsonl(std::cin, "stdin", emit); };
    return input;
  }
  if (!fs::exists(path)) throw std::runtime_error("input '" + path + "' does not exist");
  if (fs::is_directory(path)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(path))
      if (entry.is_regular_file() && entry.path().extension() == ".txt") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) throw std::runtime_error("input directory '" + path + "' has no .txt files");
    input.total = files.size();
    input.for_each = [files](const auto& emit) {
      for (const auto& f : files) emit({f.filename().string(), read_file(f.string()), f.stem().string()});
    };
    return input;
  }
  std::ifstream probe(path);
  char first = 0;
  probe >> first;
  if (first == '{' && path.size() > 5 && path.substr(path.size() - 5) == ".json") {
    auto dataset = std::make_shared<squad::Dataset>(squad::read_dataset(path));
    input.total = 0;
    for (const auto& a : dataset->articles) input.total += a.paragraphs.size();
    input.for_each = [dataset](const auto& emit) {
      for (size_t a = 0; a < dataset->articles.size(); ++a)
        for (size_t p = 0; p < dataset->articles[a].paragraphs.size(); ++p)
          emit({squad::paragraph_id(dataset->articles[a], a, p), dataset->articles[a].paragraphs[p].context,
                dataset->articles[a].title});
    };
    return input;
  }
  std::ifstream count(path);
  std::string line;
  input.total = 0;
  while (std::getline(count, line)) input.total += line.find_first_not_of(" \t\r") != std::string::npos;
  input.for_each = [path](const auto& emit) {
    std::ifstream in(path);
    read_jsonl(in, path, emit);
  };
  return input;
}

struct BuildArgs {
  ModelArgs model;
  int k = -1;
  std::string input;
  std::string out;
  int stride = 0;
  std::string dtype = "fp32";
  int batch_size = 32;
  int64_t max_document_tokens = 100000;
  int gzip = 0;
  int shard_index = -1;
  int num_shards = 0;
  bool text_index = true;
};

void build(const BuildArgs& args) {
  const cache::ShardSpec shard = cache::shard_of_job(args.shard_index, args.num_shards);
  const std::string out = shard.count > 1 ? cache::shard_path(args.out, shard) : args.out;
  CacheBuildOptions options;
  options.k = args.k;
  options.window_stride = args.stride;
  options.dtype = cache::parse_state_dtype(args.dtype);
  options.batch_size = args.batch_size;
  options.max_document_tokens = args.max_document_tokens;
  options.writer.gzip_level = args.gzip;
  options.text_index = args.text_index;
  options.stop_requested = [] { return interrupted != 0; };
  refuse_output_over_inputs("--out", out, {args.input, args.model.model});
  if (args.text_index) refuse_output_over_inputs("--out", retrieval::index_path(out), {args.input, args.model.model});
  auto input = open_input(args.input);  // before the model: input errors come first and fast
  auto model = load_model(args.model);
  if (shard.count > 1 && cache::is_complete(out)) {
    // Standard input can be read only once, so it cannot be compared first and then built from.
    const std::string why = args.input == "-" ? "the input is standard input, which cannot be compared with it"
                                              : built_otherwise(out, *model, options, input.for_each, shard);
    if (why.empty()) {
      cache::remove_stale_temporaries(out);
      cache::remove_stale_temporaries(retrieval::index_path(out));
      std::cout << "shard " << shard.index << " of " << shard.count << ": " << out << " is complete, skipped" << std::endl;
      return;
    }
    std::cout << "shard " << shard.index << " of " << shard.count << ": " << out << " was built otherwise (" << why
              << "): rebuilding" << std::endl;
  }
  CacheBuilder builder(model, out, options);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const bool progress = isatty(fileno(stderr));
  const auto begin = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count(); };
  int64_t seen = 0, last_shown = -1;
  input.for_each([&](Document&& doc) {
    if (interrupted) throw Interrupted();
    ++seen;
    if (shard.count > 1 && cache::shard_of(doc.id, shard.count) != shard.index) return;
    builder.add(doc);
    if (progress && builder.documents() != last_shown) {
      last_shown = builder.documents();
      const double s = seconds(), rate = builder.windows() / std::max(s, 1e-9);
      std::fprintf(stderr, "\r%lld%s documents, %lld windows, %.1f windows/s", (long long)seen,
                   input.total > 0 ? ("/" + std::to_string(input.total)).c_str() : "", (long long)builder.windows(), rate);
      if (input.total > 0 && seen > 0) std::fprintf(stderr, ", ETA %.0f s", s / seen * (input.total - seen));
      std::fprintf(stderr, "   ");
    }
  });
  if (interrupted) throw Interrupted();
  builder.flush();  // the last batch: a signal during it must still stop the cache from appearing
  if (interrupted) throw Interrupted();
  builder.commit();
  if (progress) std::fputc('\n', stderr);
  const double s = seconds();
  std::cout << "wrote " << out << ": " << builder.documents() << " documents, " << builder.windows() << " windows, "
            << fs::file_size(out) << " bytes, k=" << builder.split_layer() << ", " << args.dtype << ", " << s << " s ("
            << builder.windows() / std::max(s, 1e-9) << " windows/s)" << std::endl;
  if (args.text_index) std::cout << "wrote " << retrieval::index_path(out) << ": its BM25 retrieval index" << std::endl;
}

// The retrieval index beside a cache, opened against it; null (with the reason in `why`) when there is none or it
// does not index the cache's documents.
std::unique_ptr<retrieval::TextIndex> open_text_index(const std::string& path, const cache::CacheReader& cache,
                                                      std::string& why) {
  try {
    return retrieval::TextIndex::open(retrieval::index_path(path), cache);
  } catch (const std::runtime_error& e) {
    why = e.what();
    return nullptr;
  }
}

// Merges the shards' retrieval indexes into one beside the merged cache index, so that BM25's statistics are the
// whole corpus's; "" when written, else why not (a shard without an index leaves the merged cache without one).
std::string merge_text_indexes(const std::string& out, const std::vector<std::string>& shards) {
  for (const auto& shard : shards)
    if (!fs::exists(retrieval::index_path(shard))) return "shard " + shard + " has no retrieval index";
  auto writer = retrieval::TextIndexWriter::create(retrieval::index_path(out));
  for (const auto& shard : shards) writer->add_all(retrieval::index_path(shard));
  writer->commit();
  return "";
}

nlohmann::json describe(const cache::CacheReader& r, const std::string& path) {
  const auto& m = r.metadata();
  return {{"path", path},
          {"format", m.format_name},
          {"format_version", m.format_version},
          {"model_hash", m.model_hash},
          {"model_type", m.model_type},
          {"joint_order", m.joint_order},
          {"k", m.k},
          {"hidden_size", m.hidden_size},
          {"question_block", m.question_block},
          {"document_block", m.document_block},
          {"window_stride", m.window_stride},
          {"state_dtype", cache::to_string(m.state_dtype)},
          {"tokenizer_hash", m.tokenizer_hash},
          {"library_version", m.library_version},
          {"documents", r.num_documents()},
          {"windows", r.num_windows()},
          {"shards", r.num_shards()},
          {"direct_reads", r.direct_reads()},
          {"checksums", r.checksums()},
          {"bytes", fs::file_size(path)}};
}

void print_info(const std::string& path, bool json, bool list) {
  auto reader = cache::CacheReader::open(path);
  auto facts = describe(*reader, path);
  std::string why;
  const auto index = open_text_index(path, *reader, why);
  facts["retrieval_index"] = index ? nlohmann::json(retrieval::index_path(path)) : nlohmann::json(nullptr);
  if (!index) facts["retrieval_index_missing"] = why;
  if (!list) return print_facts(facts, json);
  // --list: every document id with its title (from the index; the cache itself stores no titles)
  std::vector<retrieval::DocumentTitle> documents;
  if (index) documents = index->documents();
  else
    for (const auto& id : reader->document_ids()) documents.push_back({id, ""});
  if (json) {
    auto list_json = nlohmann::json::array();
    for (const auto& d : documents) list_json.push_back({{"id", d.id}, {"title", d.title}});
    std::cout << nlohmann::json{{"documents", list_json}}.dump() << "\n";
    return;
  }
  for (const auto& d : documents) std::cout << d.id << "\t" << d.title << "\n";
}

// Reads every part of a cache, checksums verified, and reports each damaged one (the tables were verified at open,
// which throws for damage there). Returns the exit status: 1 when anything is damaged.
int verify(const std::string& path, bool json) {
  const auto reader = cache::CacheReader::open(path);
  std::vector<std::string> damaged;
  auto check = [&](const std::function<void()>& read) {
    try {
      read();
    } catch (const std::runtime_error& e) {
      damaged.push_back(brief(e.what()));
    }
  };
  const bool progress = isatty(fileno(stderr));
  std::vector<float> states(reader->window_floats());
  for (int64_t d = 0; d < reader->num_documents(); ++d) {
    check([&] { reader->document_text(d); });
    check([&] { reader->token_offsets(d); });
    check([&] { reader->token_words(d); });
    const auto& info = reader->document(d);
    for (int64_t w = info.first_window; w < info.first_window + info.num_windows; ++w)
      check([&] { reader->read_windows({w}, states.data()); });
    if (progress && (d % 256 == 0 || d + 1 == reader->num_documents()))
      std::fprintf(stderr, "\r%lld/%lld documents verified", (long long)d + 1, (long long)reader->num_documents());
  }
  if (progress) std::fputc('\n', stderr);
  const nlohmann::json facts = {{"path", path},
                                {"checksums", reader->checksums()},
                                {"documents", reader->num_documents()},
                                {"windows", reader->num_windows()},
                                {"damaged", damaged}};
  if (json) {
    std::cout << facts.dump() << std::endl;
  } else {
    for (const auto& what : damaged) std::cout << what << "\n";
    std::cout << path << ": " << reader->num_documents() << " documents, " << reader->num_windows() << " windows, "
              << (damaged.empty() ? "no damage found" : std::to_string(damaged.size()) + " damaged parts")
              << (reader->checksums() ? "" : " (written without checksums: only ranges and finite states were checked)")
              << std::endl;
  }
  return damaged.empty() ? 0 : 1;
}

}  // namespace
}  // namespace deformer::cli

int main(int argc, char** argv) {
  using namespace deformer::cli;
  CLI::App app{"deformer-cache: build, inspect and merge libdeformer document caches (libdeformer " +
               std::string(deformer::version()) + ")"};
  app.set_version_flag("--version", std::string(deformer::version()));
  app.require_subcommand(1);

  BuildArgs build_args;
  auto* b = app.add_subcommand("build", "Run the lower k layers over documents and store their layer-k states in HDF5 "
                                        "(written to a temporary file, renamed when complete)");
  add_model_options(b, build_args.model, "--compute-dtype");
  b->add_option("--k", build_args.k, "split layer (-1: the model's trained split, else 3/4 of the layers)")->capture_default_str();
  b->add_option("--input", build_args.input,
                "SQuAD .json (one document per paragraph, id '<title>#<n>'), JSONL of {\"id\",\"text\"}, a directory "
                "of .txt files (id = file name), or - for JSONL on stdin")->required();
  b->add_option("--out", build_args.out, "cache file to write")->required();
  b->add_option("--stride", build_args.stride, "tokens between window starts (0: the model's, 128)")->capture_default_str();
  b->add_option("--dtype", build_args.dtype, "state storage: fp32, fp16, bf16 or int8")->capture_default_str();
  b->add_option("--batch-size", build_args.batch_size, "windows per forward pass")->capture_default_str();
  b->add_option("--max-document-tokens", build_args.max_document_tokens,
                "refuse longer documents (their windows' states are held at once; 0: no limit)")->capture_default_str();
  b->add_option("--gzip", build_args.gzip, "gzip level 0-9 (0: raw; compression rarely pays for states)")->capture_default_str();
  b->add_option("--shard-index", build_args.shard_index, "this job's shard (default: SLURM_ARRAY_TASK_ID)");
  b->add_option("--num-shards", build_args.num_shards, "number of shards (default: SLURM_ARRAY_TASK_COUNT, else 1)");
  b->add_flag("!--no-text-index", build_args.text_index,
              "do not write the BM25 retrieval index <out>.bm25 (questions must then name their documents)");
  b->callback([&] { build(build_args); });

  std::string info_path;
  bool info_json = false, info_list = false;
  auto* i = app.add_subcommand("info", "Print a cache's metadata, counts and size, or list its documents");
  i->add_option("cache", info_path, "cache file or merged index")->required();
  i->add_flag("--json", info_json, "machine-readable output");
  i->add_flag("--list", info_list, "list the document ids (what `deformer-qa ask --doc` takes) with their titles");
  i->callback([&] { print_info(info_path, info_json, info_list); });

  std::string verify_path;
  bool verify_json = false;
  int status = 0;
  auto* v = app.add_subcommand("verify", "Read every document and window of a cache against its checksums and list "
                                         "what is damaged (exit 1 when anything is)");
  v->add_option("cache", verify_path, "cache file or merged index")->required();
  v->add_flag("--json", verify_json, "machine-readable output");
  v->callback([&] { status = verify(verify_path, verify_json); });

  std::string merge_out;
  std::vector<std::string> merge_inputs;
  auto* m = app.add_subcommand("merge", "Write an index over shard caches; readers then see one cache");
  m->add_option("--out", merge_out, "index file to write (JSON)")->required();
  m->add_option("shards", merge_inputs, "shard cache files")->required();
  m->callback([&] {
    refuse_output_over_inputs("--out", merge_out, merge_inputs);
    std::vector<std::string> inputs_and_indexes = merge_inputs;
    for (const auto& shard : merge_inputs) inputs_and_indexes.push_back(deformer::retrieval::index_path(shard));
    refuse_output_over_inputs("--out", deformer::retrieval::index_path(merge_out), inputs_and_indexes);
    deformer::cache::merge_shards(merge_out, merge_inputs);
    std::cout << "wrote " << merge_out << " over " << merge_inputs.size() << " shards" << std::endl;
    const std::string why = merge_text_indexes(merge_out, merge_inputs);
    if (why.empty()) std::cout << "wrote " << deformer::retrieval::index_path(merge_out) << ": their BM25 retrieval index" << std::endl;
    else std::cerr << "deformer-cache: no retrieval index written: " << why << std::endl;
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const Interrupted& e) {
    std::cerr << "\ndeformer-cache: " << e.what() << std::endl;
    return 130;
  } catch (const std::exception& e) {
    std::cerr << "deformer-cache: error: " << e.what() << std::endl;
    return 1;
  }
  return status;
}
