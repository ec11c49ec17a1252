#pragma once
// Subcommands of deformer-qa, one add_* function each; main.cpp registers them on its CLI::App.

namespace CLI {
class App;
}

// deformer-qa tokenize --model FILE: JSONL {"text": ...} on stdin -> {"ids": [...], "offsets": [[b, e], ...]}.
void add_tokenize_command(CLI::App& app);
