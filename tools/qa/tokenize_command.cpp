// deformer-qa tokenize: the model's tokenizer over JSONL, for debugging and for parity checks against other
// tokenizers. One output line per input line, in order, so outputs can be pasted next to inputs; an input
// line that cannot be tokenized stops the run with its line number (a silently skipped line would shift
// every later result).

#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "options.h"
#include "deformer/model.h"
#include "deformer/tokenizer.h"

namespace deformer::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  bool tokens = false;
};

void write_line(std::ostream& out, const deformer::Encoding& e, const deformer::Tokenizer& tokenizer, bool tokens) {
  out << "{\"ids\":[";
  for (size_t i = 0; i < e.ids.size(); ++i) out << (i ? "," : "") << e.ids[i];
  out << "],\"offsets\":[";
  for (size_t i = 0; i < e.offsets.size(); ++i)
    out << (i ? ",[" : "[") << e.offsets[i].begin << "," << e.offsets[i].end << "]";
  out << "]";
  if (tokens) {
    nlohmann::json names = nlohmann::json::array();
    for (int32_t id : e.ids) names.push_back(tokenizer.id_to_token(id));
    out << ",\"tokens\":" << names.dump();
  }
  out << "}\n";
}

void run_tokenize(const TokenizeOptions& options) {
  std::shared_ptr<const deformer::Model> model;
  try {
    model = deformer::Model::load(options.model);
  } catch (const std::exception& e) {
    std::cerr << "deformer-qa tokenize: " << e.what() << "\n";
    throw CLI::RuntimeError(1);
  }
  const std::unique_ptr<deformer::Tokenizer> tokenizer = deformer::make_tokenizer(*model);
  std::ios::sync_with_stdio(false);
  std::string line;
  size_t number = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    if (line.empty()) continue;  // a trailing blank line from an editor or `echo` is not an input
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      const auto text = j.is_object() ? j.find("text") : j.end();
      if (!j.is_object() || text == j.end() || !text->is_string())
        throw std::invalid_argument("expected an object with a string \"text\"");
      write_line(std::cout, tokenizer->encode(text->get_ref<const std::string&>()), *tokenizer, options.tokens);
    } catch (const std::exception& e) {
      std::cout.flush();
      std::cerr << "deformer-qa tokenize: stdin line " << number << ": " << brief(e.what()) << "\n";
      throw CLI::RuntimeError(1);
    }
  }
  std::cout.flush();
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Tokenize JSONL lines {\"text\": ...} from stdin with the model's tokenizer; writes one line "
      "{\"ids\": [...], \"offsets\": [[begin, end], ...]} per input line (offsets in code points)");
  cmd->add_option("--model", options->model, "libdeformer model file (tools/deformer-export)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_flag("--tokens", options->tokens, "also write the token strings");
  cmd->callback([options] { run_tokenize(*options); });
}

}  // namespace deformer::cli
