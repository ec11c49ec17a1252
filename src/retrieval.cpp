#include "deformer/retrieval.h"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <unordered_map>

#include "deformer/cache.h"
#include "deformer/reader.h"
#include "temporary_file.h"

namespace deformer::retrieval {
namespace {

namespace fs = std::filesystem;

// Porter stemming over Unicode case folding, diacritics removed (Anserini, BERTserini's retriever, also stems).
constexpr const char* kSchema =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, title, text,"
    " tokenize = 'porter unicode61 remove_diacritics 2');"
    // bm25() with the id column weighted 0: the ranking the searches order by
    "INSERT INTO docs(docs, rank) VALUES('rank', 'bm25(0.0, 1.0, 1.0)');";

struct Database {
  sqlite3* db = nullptr;
  std::string path;

  Database(const std::string& file, int flags) : path(file) {
    if (sqlite3_open_v2(file.c_str(), &db, flags, nullptr) != SQLITE_OK) {
      const std::string why = db ? sqlite3_errmsg(db) : "out of memory";
      sqlite3_close(db);
      throw std::runtime_error("cannot open retrieval index '" + file + "': " + why);
    }
    sqlite3_extended_result_codes(db, 1);
  }
  ~Database() { sqlite3_close(db); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("retrieval index '" + path + "': " + what + ": " + sqlite3_errmsg(db));
  }
  void exec(const char* sql) const {
    char* error = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string why = error ? error : "unknown error";
      sqlite3_free(error);
      throw std::runtime_error("retrieval index '" + path + "': " + why);
    }
  }
};

// A prepared statement, finalised on scope exit.
struct Statement {
  const Database& database;
  sqlite3_stmt* statement = nullptr;

  Statement(const Database& d, const char* sql) : database(d) {
    if (sqlite3_prepare_v2(d.db, sql, -1, &statement, nullptr) != SQLITE_OK) d.fail("cannot prepare a query");
  }
  ~Statement() { sqlite3_finalize(statement); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  void bind(int column, const std::string& text) {
    sqlite3_bind_text(statement, column, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
  }
  void bind(int column, int64_t value) { sqlite3_bind_int64(statement, column, value); }
  // True while there is a row; throws on errors.
  bool step() {
    const int result = sqlite3_step(statement);
    if (result == SQLITE_ROW) return true;
    if (result != SQLITE_DONE) database.fail("query failed");
    return false;
  }
  void reset() {
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
  }
  std::string text(int column) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
    return p ? std::string(p, sqlite3_column_bytes(statement, column)) : std::string();
  }
  double real(int column) const { return sqlite3_column_double(statement, column); }
};

std::string hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

// An FTS5 query in which every word of the question is optional: each run of letters and digits (bytes above 0x7f
// count as letters, so that non-ASCII words stay whole) becomes a quoted string, which FTS5 tokenizes like the
// documents, and the strings are OR'ed. Quoting also keeps FTS5's operators (AND, NEAR, "*", ":") inert.
std::string or_query(const std::string& question) {
  std::string query, word;
  auto flush = [&] {
    if (word.empty()) return;
    if (!query.empty()) query += " OR ";
    query += "\"" + word + "\"";
    word.clear();
  };
  for (const char c : question) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x80 || std::isalnum(byte)) word += c;
    else flush();
  }
  flush();
  return query;
}

std::unordered_map<std::string, std::string> read_meta(const Database& database) {
  std::unordered_map<std::string, std::string> meta;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(database.db, "SELECT key, value FROM meta", -1, &statement, nullptr) != SQLITE_OK)
    throw std::runtime_error("'" + database.path + "' is not a libdeformer retrieval index (" +
                             sqlite3_errmsg(database.db) + ")");
  while (sqlite3_step(statement) == SQLITE_ROW)
    meta[reinterpret_cast<const char*>(sqlite3_column_text(statement, 0))] =
        reinterpret_cast<const char*>(sqlite3_column_text(statement, 1));
  sqlite3_finalize(statement);
  return meta;
}

}  // namespace

std::string index_path(const std::string& cache_path) { return cache_path + ".bm25"; }

uint64_t id_fingerprint(const std::vector<std::string>& ids) {
  uint64_t sum = 0;  // a sum of hashes: the same whatever order shards list their documents in
  for (const auto& id : ids) sum += cache::fnv1a64(id);
  return sum;
}

// -----------------------------------------------------------------------------------------------------------
// Writing

struct TextIndexWriter::Impl {
  std::string path;
  std::string temporary;
  std::unique_ptr<Database> database;
  std::unique_ptr<Statement> insert;
  int64_t documents = 0;
  uint64_t fingerprint = 0;
  bool committed = false;
};

TextIndexWriter::TextIndexWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<TextIndexWriter> TextIndexWriter::create(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  detail::remove_stale_temporaries(path);
  impl->temporary = detail::temporary_name(path);
  impl->database = std::make_unique<Database>(impl->temporary, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  // The file is renamed into place only once complete, so no journal is needed for it to survive a crash.
  impl->database->exec("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN;");
  impl->database->exec(kSchema);
  impl->insert = std::make_unique<Statement>(*impl->database, "INSERT INTO docs(id, title, text) VALUES(?1, ?2, ?3)");
  return std::unique_ptr<TextIndexWriter>(new TextIndexWriter(std::move(impl)));
}

TextIndexWriter::~TextIndexWriter() {
  if (impl_->committed) return;
  impl_->insert.reset();
  impl_->database.reset();
  std::error_code ignored;
  fs::remove(impl_->temporary, ignored);
}

void TextIndexWriter::add(const std::string& id, const std::string& title, const std::string& text) {
  if (id.empty()) throw std::invalid_argument("a retrieval index document needs an id");
  if (impl_->committed) throw std::logic_error("TextIndexWriter::add after commit");
  auto& insert = *impl_->insert;
  insert.bind(1, id);
  insert.bind(2, title);
  insert.bind(3, text);
  insert.step();
  insert.reset();
  ++impl_->documents;
  impl_->fingerprint += cache::fnv1a64(id);
}

void TextIndexWriter::add_all(const std::string& path) {
  auto source = TextIndex::open(path);  // checks that it is a complete index
  Database database(path, SQLITE_OPEN_READONLY);
  Statement rows(database, "SELECT id, title, text FROM docs ORDER BY rowid");
  while (rows.step()) add(rows.text(0), rows.text(1), rows.text(2));
}

void TextIndexWriter::commit() {
  if (impl_->committed) return;
  auto& database = *impl_->database;
  Statement meta(database, "INSERT INTO meta(key, value) VALUES(?1, ?2)");
  for (const auto& [key, value] : std::vector<std::pair<std::string, std::string>>{
           {"format", kIndexFormatName},
           {"format_version", std::to_string(kIndexFormatVersion)},
           {"documents", std::to_string(impl_->documents)},
           {"fingerprint", hex(impl_->fingerprint)},
           {"complete", "1"}}) {
    meta.bind(1, key);
    meta.bind(2, value);
    meta.step();
    meta.reset();
  }
  database.exec("INSERT INTO docs(docs) VALUES('optimize'); COMMIT;");
  impl_->insert.reset();
  impl_->database.reset();
  detail::publish(impl_->temporary, impl_->path);
  impl_->committed = true;
}

int64_t TextIndexWriter::documents() const { return impl_->documents; }

// -----------------------------------------------------------------------------------------------------------
// Reading

struct TextIndex::Impl {
  std::unique_ptr<Database> database;
  int64_t documents = 0;
  uint64_t fingerprint = 0;
};

TextIndex::TextIndex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TextIndex::~TextIndex() = default;

std::unique_ptr<TextIndex> TextIndex::open(const std::string& path) {
  if (!fs::exists(path)) throw std::runtime_error("retrieval index '" + path + "' does not exist");
  if (!fs::is_regular_file(path)) throw std::runtime_error("retrieval index '" + path + "' is not a regular file");
  auto impl = std::make_unique<Impl>();
  // Serialised: searches from several threads share the connection.
  impl->database = std::make_unique<Database>(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX);
  const auto meta = read_meta(*impl->database);
  auto field = [&](const char* key) {
    const auto it = meta.find(key);
    if (it == meta.end()) throw std::runtime_error("retrieval index '" + path + "' is incomplete (no " + key + ")");
    return it->second;
  };
  if (field("format") != kIndexFormatName)
    throw std::runtime_error("'" + path + "' is not a libdeformer retrieval index (format '" + field("format") + "')");
  if (field("format_version") != std::to_string(kIndexFormatVersion))
    throw std::runtime_error("retrieval index '" + path + "' has format version " + field("format_version") +
                             "; this library reads version " + std::to_string(kIndexFormatVersion));
  if (field("complete") != "1") throw std::runtime_error("retrieval index '" + path + "' is incomplete");
  try {
    impl->documents = std::stoll(field("documents"));
    impl->fingerprint = std::stoull(field("fingerprint"), nullptr, 16);
  } catch (const std::logic_error&) {
    throw std::runtime_error("retrieval index '" + path + "' has a damaged document count or fingerprint");
  }
  return std::unique_ptr<TextIndex>(new TextIndex(std::move(impl)));
}

std::unique_ptr<TextIndex> TextIndex::open(const std::string& path, const cache::CacheReader& cache) {
  auto index = open(path);
  const auto ids = cache.document_ids();
  const uint64_t expected = id_fingerprint(ids);
  if (index->num_documents() != static_cast<int64_t>(ids.size()) || index->fingerprint() != expected)
    throw std::runtime_error("retrieval index '" + path + "' does not index the cache's documents: it holds " +
                             std::to_string(index->num_documents()) + " documents (ids " + hex(index->fingerprint()) +
                             "), the cache " + std::to_string(ids.size()) + " (ids " + hex(expected) +
                             "); build the cache again to write both");
  return index;
}

std::vector<Hit> TextIndex::search(const std::string& query, int limit) const {
  if (limit < 1) throw std::invalid_argument("search limit must be at least 1, got " + std::to_string(limit));
  const std::string match = or_query(query);
  std::vector<Hit> hits;
  if (match.empty()) return hits;
  Statement search(*impl_->database, "SELECT id, rank FROM docs WHERE docs MATCH ?1 ORDER BY rank LIMIT ?2");
  search.bind(1, match);
  search.bind(2, static_cast<int64_t>(limit));
  while (search.step()) hits.push_back({search.text(0), -search.real(1)});
  return hits;
}

std::vector<DocumentTitle> TextIndex::documents() const {
  Statement rows(*impl_->database, "SELECT id, title FROM docs ORDER BY rowid");
  std::vector<DocumentTitle> titles;
  while (rows.step()) titles.push_back({rows.text(0), rows.text(1)});
  return titles;
}

int64_t TextIndex::num_documents() const { return impl_->documents; }
uint64_t TextIndex::fingerprint() const { return impl_->fingerprint; }

// -----------------------------------------------------------------------------------------------------------
// Retrieve, then read

void validate(const RetrievalOptions& options) {
  if (options.documents < 1)
    throw std::invalid_argument("retrieve at least 1 document, got " + std::to_string(options.documents));
  if (!(options.reader_weight >= 0 && options.reader_weight <= 1))
    throw std::invalid_argument("the reader weight must lie in [0, 1], got " + std::to_string(options.reader_weight));
}

std::vector<std::vector<Hit>> retrieve(const TextIndex& index, const std::vector<std::string>& questions,
                                       int documents) {
  validate(RetrievalOptions{documents, 0.5});
  std::vector<std::vector<Hit>> hits;
  hits.reserve(questions.size());
  for (const auto& question : questions) hits.push_back(index.search(question, documents));
  return hits;
}

std::vector<std::vector<Answer>> read_retrieved(const Reader& reader, const cache::CacheReader& cache,
                                                const std::vector<std::string>& questions,
                                                const std::vector<std::vector<Hit>>& hits) {
  if (hits.size() != questions.size())
    throw std::invalid_argument("read_retrieved: " + std::to_string(hits.size()) + " hit lists for " +
                                std::to_string(questions.size()) + " questions");
  // One query per (question, document): the reader's answers then come per document, with their logits, and one
  // batched call reads every pair.
  std::vector<Query> queries;
  std::vector<std::pair<size_t, double>> owner;  // question and BM25 score of each query
  for (size_t q = 0; q < questions.size(); ++q)
    for (const auto& hit : hits[q]) {
      queries.push_back({questions[q], {hit.id}});
      owner.emplace_back(q, hit.score);
    }
  std::vector<std::vector<Answer>> answers(questions.size());
  if (queries.empty()) return answers;
  auto read = reader.ask(queries, cache);
  for (size_t i = 0; i < queries.size(); ++i)
    for (auto& answer : read[i]) {
      answer.retrieval_score = owner[i].second;
      answers[owner[i].first].push_back(std::move(answer));
    }
  return answers;
}

std::vector<Answer> rank_answers(std::vector<Answer> answers, double reader_weight, int top_k) {
  validate(RetrievalOptions{1, reader_weight});
  answers.erase(std::remove_if(answers.begin(), answers.end(), [](const Answer& a) { return a.doc.empty(); }),
                answers.end());
  for (auto& a : answers) a.score = (1 - reader_weight) * a.retrieval_score.value_or(0) + reader_weight * a.logits;
  std::stable_sort(answers.begin(), answers.end(), [](const Answer& a, const Answer& b) { return a.score > b.score; });
  if (answers.size() > static_cast<size_t>(std::max(top_k, 0))) answers.resize(std::max(top_k, 0));
  return answers;
}

std::vector<std::vector<Answer>> retrieve_and_read(const Reader& reader, const TextIndex& index,
                                                   const cache::CacheReader& cache,
                                                   const std::vector<std::string>& questions,
                                                   const RetrievalOptions& options) {
  validate(options);
  auto answers = read_retrieved(reader, cache, questions, retrieve(index, questions, options.documents));
  for (auto& a : answers) a = rank_answers(std::move(a), options.reader_weight, reader.options().decode.top_k);
  return answers;
}

}  // namespace deformer::retrieval
