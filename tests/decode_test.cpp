// Answer decoding on hand-made logits whose expected answers and scores are worked out by hand.
#include <gtest/gtest.h>

#include <cmath>

#include "deformer/decode.h"

namespace deformer {
namespace {

// Document "The big lighthouse shines" tokenized as the(0-3) big(4-7) light(8-13) ##house(13-18) shines(19-25).
TokenizedDocument lighthouse() {
  TokenizedDocument d;
  d.offsets = {{0, 3}, {4, 7}, {8, 13}, {13, 18}, {19, 25}};
  d.word_of_token = {0, 1, 2, 2, 3};
  return d;
}

// A window laid out as [CLS] q q [SEP] t0 t1 t2 t3 t4 [SEP]: context tokens at positions 4..8.
struct Window {
  std::vector<float> start, end;
  WindowScores scores() const {
    WindowScores w;
    w.start_logits = start.data();
    w.end_logits = end.data();
    w.context_token = {-1, -1, -1, -1, 0, 1, 2, 3, 4, -1};
    w.null_position = 0;
    return w;
  }
};

Window flat() { return {std::vector<float>(10, 0.f), std::vector<float>(10, 0.f)}; }

TEST(Decode, PipelineScoreIsTheProductOfSoftmaxesOverNullAndContext) {
  auto w = flat();
  w.start[5] = 2.f;  // "big"
  w.end[6] = 3.f;    // "light"
  w.start[1] = 50.f;  // a question token: must carry no probability
  auto spans = decode_document({w.scores()}, lighthouse(), {});
  ASSERT_EQ(spans.size(), 1u);
  // Softmax over 6 positions (null + 5 context tokens).
  const double ps = std::exp(2.0) / (std::exp(2.0) + 5), pe = std::exp(3.0) / (std::exp(3.0) + 5);
  EXPECT_NEAR(spans[0].score, ps * pe, 1e-9);
  EXPECT_EQ(spans[0].start, 4);   // "big"
  EXPECT_EQ(spans[0].end, 18);    // "light" aligned to the whole word "lighthouse"
}

TEST(Decode, SpansAreAlignedToWholeWords) {
  auto w = flat();
  w.start[7] = 5.f;  // "##house"
  w.end[7] = 5.f;
  auto spans = decode_document({w.scores()}, lighthouse(), {});
  ASSERT_FALSE(spans.empty());
  EXPECT_EQ(spans[0].start, 8);
  EXPECT_EQ(spans[0].end, 18);
}

TEST(Decode, MaxAnswerLenLimitsTheSpan) {
  auto w = flat();
  w.start[4] = 5.f;
  w.end[8] = 5.f;
  DecodeOptions o;
  o.max_answer_len = 4;  // tokens 0..4 would be 5 tokens
  auto spans = decode_document({w.scores()}, lighthouse(), o);
  ASSERT_FALSE(spans.empty());
  EXPECT_FALSE(spans[0].start == 0 && spans[0].end == 25);
  o.max_answer_len = 5;
  spans = decode_document({w.scores()}, lighthouse(), o);
  EXPECT_EQ(spans[0].start, 0);
  EXPECT_EQ(spans[0].end, 25);
}

TEST(Decode, NullAnswerScoresTheMinimumOverWindows) {
  auto a = flat(), b = flat();
  a.start[0] = a.end[0] = 4.f;  // window a strongly prefers null
  b.start[0] = b.end[0] = 1.f;
  b.start[4] = b.end[4] = 1.f;
  DecodeOptions o;
  o.handle_impossible_answer = true;
  o.top_k = 10;
  auto spans = decode_document({a.scores(), b.scores()}, lighthouse(), o);
  const double null_b = (std::exp(1.0) / (2 * std::exp(1.0) + 4)) * (std::exp(1.0) / (2 * std::exp(1.0) + 4));
  bool found = false;
  for (const auto& s : spans)
    if (s.null) {
      found = true;
      EXPECT_NEAR(s.score, null_b, 1e-12);
    }
  EXPECT_TRUE(found);
  o.handle_impossible_answer = false;
  for (const auto& s : decode_document({a.scores(), b.scores()}, lighthouse(), o)) EXPECT_FALSE(s.null);
}

TEST(Decode, DuplicatesFromOverlappingWindowsAreMerged) {
  auto a = flat(), b = flat();
  a.start[6] = a.end[6] = 3.f;
  b.start[6] = b.end[6] = 4.f;  // the same token span seen by a second window, with a better score
  DecodeOptions o;
  o.top_k = 3;
  auto spans = decode_document({a.scores(), b.scores()}, lighthouse(), o);
  ASSERT_EQ(spans.size(), 3u);
  EXPECT_EQ(spans[0].start, 8);
  EXPECT_EQ(spans[0].end, 18);
  const double p = std::exp(4.0) / (std::exp(4.0) + 5);
  EXPECT_NEAR(spans[0].score, p * p, 1e-9);
  for (size_t i = 1; i < spans.size(); ++i) EXPECT_FALSE(spans[i].start == 8 && spans[i].end == 18);
  // "light" and "##house" both align to "lighthouse": one answer, not two.
  auto c = flat();
  c.start[6] = c.end[7] = 5.f;
  c.start[7] = c.end[6] = 4.f;
  o.top_k = 5;
  int lighthouse_answers = 0;
  for (const auto& s : decode_document({c.scores()}, lighthouse(), o)) lighthouse_answers += s.start == 8 && s.end == 18;
  EXPECT_EQ(lighthouse_answers, 1);
}

TEST(Decode, FewerCandidatesThanTopK) {
  TokenizedDocument one;
  one.offsets = {{0, 2}};
  one.word_of_token = {0};
  std::vector<float> s{0, 0, 0}, e{0, 0, 0};
  WindowScores w;
  w.start_logits = s.data();
  w.end_logits = e.data();
  w.context_token = {-1, 0, -1};
  DecodeOptions o;
  o.top_k = 5;
  auto spans = decode_document({w}, one, o);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].end, 2);
}

TEST(Decode, SquadModeUsesLogitSumsAndTheNullThreshold) {
  auto w = flat();
  w.start[5] = 2.f;
  w.end[6] = 3.f;
  w.start[0] = 1.f;
  w.end[0] = 1.f;
  DecodeOptions o;
  o.decoding = Decoding::kSquad;
  auto spans = decode_document({w.scores()}, lighthouse(), o);
  ASSERT_FALSE(spans.empty());
  EXPECT_DOUBLE_EQ(spans[0].score, 5.0);
  EXPECT_EQ(spans[0].start, 4);
  EXPECT_EQ(spans[0].end, 13);  // token offsets, no word alignment in this mode
  o.version_2_with_negative = true;
  EXPECT_FALSE(decode_document({w.scores()}, lighthouse(), o)[0].null);  // null 2 < best 5
  w.start[0] = w.end[0] = 4.f;                                            // null 8 > best 5
  EXPECT_TRUE(decode_document({w.scores()}, lighthouse(), o)[0].null);
  o.null_threshold = 3.5;                                                 // 8 - 5 = 3 < 3.5
  EXPECT_FALSE(decode_document({w.scores()}, lighthouse(), o)[0].null);
}

TEST(Decode, InvalidOptions) {
  DecodeOptions o;
  o.top_k = 0;
  EXPECT_THROW(decode_document({}, lighthouse(), o), std::invalid_argument);
  o.top_k = 1;
  o.max_answer_len = 0;
  EXPECT_THROW(validate(o), std::invalid_argument);
}

TEST(Decode, SubstringCountsCodePoints) {
  const std::string s = "caf\xC3\xA9 na\xC3\xAFve \xF0\x9F\x98\x80!";  // "café naïve 😀!"
  EXPECT_EQ(substring_by_code_points(s, 0, 4), "caf\xC3\xA9");
  EXPECT_EQ(substring_by_code_points(s, 5, 10), "na\xC3\xAFve");
  EXPECT_EQ(substring_by_code_points(s, 11, 13), "\xF0\x9F\x98\x80!");
  EXPECT_EQ(substring_by_code_points(s, 3, 3), "");
}

}  // namespace
}  // namespace deformer
