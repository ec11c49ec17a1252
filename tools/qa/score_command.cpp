// deformer-qa score: scores an existing predictions file with the official SQuAD metric. All the logic
// is deformer::squad::evaluate_files, which the test suite covers; this file only maps flags onto it.

#include <iostream>
#include <memory>
#include <string>

#include "commands.h"
#include "deformer/squad.h"

namespace deformer::cli {
namespace {

struct ScoreArgs {
  std::string squad;
  std::string predictions;
  std::string na_prob;
  deformer::squad::EvaluationOptions options;
  std::string metric = "auto";
  bool json = false;
};

}  // namespace

void add_score_command(CLI::App& app) {
  auto args = std::make_shared<ScoreArgs>();
  CLI::App* cmd = app.add_subcommand(
      "score",
      "Score a predictions file (JSON object: question id -> answer text) against a SQuAD v1.1 or v2.0 "
      "file with the official metric: EM and F1, plus the HasAns/NoAns breakdown for v2.0 and, with "
      "--na-prob, the best no-answer threshold. A missing prediction scores 0; unknown ids are ignored.");
  cmd->add_option("--squad", args->squad, "SQuAD dataset, plain JSON (e.g. dev-v1.1.json)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--predictions", args->predictions, "predictions JSON: {\"question id\": \"answer\", ...}")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--na-prob", args->na_prob,
                  "v2.0 only: JSON {\"question id\": no-answer probability}; enables the threshold search")
      ->check(CLI::ExistingFile);
  cmd->add_option("--na-prob-thresh", args->options.na_prob_threshold,
                  "v2.0: treat a prediction as 'no answer' when its probability exceeds this")
      ->capture_default_str();
  cmd->add_option("--metric", args->metric, "which official script to follow: auto (from the file), v1.1 or v2.0")
      ->check(CLI::IsMember({"auto", "v1.1", "v2.0"}))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "print the official scripts' JSON instead of text");
  cmd->callback([args] {
    using deformer::squad::MetricVersion;
    args->options.metric = args->metric == "v1.1"   ? MetricVersion::v1_1
                           : args->metric == "v2.0" ? MetricVersion::v2_0
                                                    : MetricVersion::automatic;
    const auto result = deformer::squad::evaluate_files(args->squad, args->predictions, args->na_prob, args->options);
    if (args->json)
      std::cout << deformer::squad::to_json(result) << "\n";
    else
      std::cout << deformer::squad::to_text(result);
  });
}

}  // namespace deformer::cli
