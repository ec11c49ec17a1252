// libFuzzer target: arbitrary bytes as a SQuAD dataset and as a predictions file (deformer/squad.h). Malformed input
// must be a std::invalid_argument or std::runtime_error naming the problem, never a crash, a hang or a leak; a
// dataset that parses is scored against predictions of its own answers (EM 100 where every question has one).
// Built with clang -fsanitize=fuzzer,address,undefined by tests/fuzz.cmake from src/squad.cpp alone.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string_view>

#include "deformer/squad.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  try {
    deformer::squad::parse_predictions(input, "fuzz");
  } catch (const std::invalid_argument&) {
  } catch (const std::runtime_error&) {
  }
  deformer::squad::Dataset dataset;
  try {
    dataset = deformer::squad::parse_dataset(input, "fuzz");
  } catch (const std::invalid_argument&) {
    return 0;
  } catch (const std::runtime_error&) {
    return 0;
  }
  deformer::squad::Predictions own;
  bool all_answered = true;  // and every id once: then each prediction is its question's first gold answer
  for (const auto& article : dataset.articles)
    for (const auto& paragraph : article.paragraphs)
      for (const auto& question : paragraph.questions) {
        if (question.answers.empty() || own.count(question.id)) all_answered = false;
        own[question.id] = question.answers.empty() ? "" : question.answers.front().text;
      }
  try {
    const auto result = deformer::squad::evaluate(dataset, own);
    if (all_answered && result.overall.total > 0 && result.overall.exact < 100.0 - 1e-9) std::abort();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
