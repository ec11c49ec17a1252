#pragma once
// The subcommands of deformer-qa; each registers itself on the app and runs from its callback.
#include <CLI/CLI.hpp>

namespace deformer::cli {
void add_info_command(CLI::App& app);
void add_ask_command(CLI::App& app);
}  // namespace deformer::cli
