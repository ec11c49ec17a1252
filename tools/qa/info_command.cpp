#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "options.h"
#include "deformer/model.h"

namespace deformer::cli {

void add_info_command(CLI::App& app) {
  struct Options {
    std::string model;
    bool json = false;
  };
  auto options = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("info", "Print a model file's architecture, shape, layout and content hash");
  options->model = bundled_model_path();
  cmd->add_option("--model", options->model,
                  "model file written by deformer-export (default: $DEFORMER_MODEL, else the bundled model)");
  cmd->add_flag("--json", options->json, "machine-readable output");
  cmd->callback([options] {
    auto model = Model::load(options->model);
    const auto& c = model->config();
    nlohmann::json j = {{"model", model->path()},
                        {"model_type", c.model_type},
                        {"architecture", c.architecture},
                        {"layers", c.num_layers},
                        {"hidden_size", c.hidden_size},
                        {"heads", c.num_heads},
                        {"intermediate_size", c.intermediate_size},
                        {"vocab_size", c.vocab_size},
                        {"parameters", model->parameter_count()},
                        {"do_lower_case", c.do_lower_case},
                        {"question_block", c.question_block},
                        {"document_block", c.document_block},
                        {"window_stride", c.window_stride},
                        {"default_k", resolve_split(c, -1)},
                        {"default_k_recorded", c.default_k >= 0},
                        {"storage_dtype", c.storage_dtype},
                        {"content_hash", model->content_hash()}};
    print_facts(j, options->json);
  });
}

}  // namespace deformer::cli
