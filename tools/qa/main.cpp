// deformer-qa: question answering over cached or raw documents, and its helpers (tokenize, score, info).
#include <CLI/CLI.hpp>

#include <exception>
#include <iostream>

#include "commands.h"
#include "deformer/version.h"

int main(int argc, char** argv) {
  CLI::App app{"deformer-qa: extractive question answering with decomposed transformers (libdeformer " +
               std::string(deformer::version()) + ")"};
  app.set_version_flag("--version", std::string(deformer::version()));
  app.require_subcommand(1);
  deformer::cli::add_ask_command(app);
  deformer::cli::add_eval_command(app);
  deformer::cli::add_info_command(app);
  deformer::cli::add_score_command(app);
  deformer::cli::add_tokenize_command(app);
  deformer::cli::add_serve_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "deformer-qa: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
