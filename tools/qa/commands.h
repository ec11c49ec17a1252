#pragma once
// The subcommands of deformer-qa; each tools/qa/<name>_command.cpp registers one on the app.
#include <CLI/CLI.hpp>

namespace deformer::cli {
void add_info_command(CLI::App& app);
void add_ask_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_score_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_serve_command(CLI::App& app);
}  // namespace deformer::cli
