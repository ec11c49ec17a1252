#pragma once
// The subcommands of deformer-qa: each tools/qa/<name>_command.cpp adds one to the app.

#include <CLI/CLI.hpp>

void add_score_command(CLI::App& app);
