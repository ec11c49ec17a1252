#include <gtest/gtest.h>

#include "deformer/layout.h"

#include <algorithm>
#include <functional>
#include <set>

namespace deformer {
namespace {

SpecialTokens bert_special() {
  SpecialTokens s;
  s.pad = 0;
  s.cls = 101;
  s.sep = 102;
  return s;
}
const SpecialTokens kSpecial = bert_special();

TEST(Layout, QuestionBlockIsClsQuestionSepPadded) {
  auto b = question_block({7, 8, 9}, 8, kSpecial);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{101, 7, 8, 9, 102, 0, 0, 0}));
  EXPECT_EQ(b.token_type_ids, std::vector<int64_t>(8, 0));
  EXPECT_EQ(b.position_ids, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{1, 1, 1, 1, 1, 0, 0, 0}));
  EXPECT_FALSE(b.truncated);
}

TEST(Layout, LongQuestionIsTruncatedTo25TokensAndFlagged) {
  std::vector<int64_t> q(40, 5);
  auto b = question_block(q, 27, kSpecial);
  EXPECT_TRUE(b.truncated);
  EXPECT_EQ(b.input_ids.size(), 27u);
  EXPECT_EQ(b.input_ids[26], 102);
  EXPECT_EQ(b.attention_mask[26], 1);
}

TEST(Layout, DocumentBlockHasNoClsAndTypeOne) {
  auto b = document_block({11, 12}, 5, kSpecial);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{11, 12, 102, 0, 0}));
  EXPECT_EQ(b.token_type_ids, std::vector<int64_t>(5, 1));
  EXPECT_EQ(b.position_ids, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{1, 1, 1, 0, 0}));
  EXPECT_THROW(document_block({1, 2, 3, 4, 5}, 5, kSpecial), std::invalid_argument);
  EXPECT_NO_THROW(document_block({1, 2, 3, 4}, 5, kSpecial));
}

TEST(Layout, FullBlockMatchesHuggingFaceLayout) {
  auto b = full_block({7, 8}, {20, 21, 22}, 10, 64, kSpecial);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{101, 7, 8, 102, 20, 21, 22, 102, 0, 0}));
  EXPECT_EQ(b.token_type_ids, (std::vector<int64_t>{0, 0, 0, 0, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_THROW(full_block({7, 8}, {20, 21, 22, 23, 24, 25}, 10, 64, kSpecial), std::invalid_argument);
  auto cut = full_block({1, 2, 3, 4}, {20}, 10, 2, kSpecial);
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.input_ids[3], 102);
}

// XLNet (HF XLNetTokenizer's conventions; xlnet-base-cased ids <cls> 3, <sep> 4, <pad> 5).
SpecialTokens xlnet_special() {
  SpecialTokens s;
  s.pad = 5;
  s.cls = 3;
  s.sep = 4;
  return s;
}

TEST(Layout, XLNetQuestionBlockEndsWithSepClsAndPadsWithPad) {
  auto b = question_block({7, 8, 9}, 8, xlnet_special(), Convention::kXLNet);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{7, 8, 9, 4, 3, 5, 5, 5}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{1, 1, 1, 1, 1, 0, 0, 0}));
  EXPECT_EQ(b.cls_position, 4);
  auto cut = question_block(std::vector<int64_t>(40, 9), 27, xlnet_special(), Convention::kXLNet);
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.input_ids[25], 4);
  EXPECT_EQ(cut.input_ids[26], 3);
}

TEST(Layout, XLNetDocumentBlockPadsWithPad) {
  auto b = document_block({11, 12}, 5, xlnet_special(), Convention::kXLNet);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{11, 12, 4, 5, 5}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{1, 1, 1, 0, 0}));
  EXPECT_EQ(b.context_begin, 0);
  EXPECT_THROW(document_block({1}, 5, SpecialTokens{}, Convention::kXLNet), std::invalid_argument);
}

TEST(Layout, XLNetFullBlockIsContextQuestionClsLeftPadded) {
  auto b = full_block({7, 8}, {20, 21, 22}, 10, 64, xlnet_special(), Convention::kXLNet);
  EXPECT_EQ(b.input_ids, (std::vector<int64_t>{5, 5, 20, 21, 22, 4, 7, 8, 4, 3}));
  EXPECT_EQ(b.token_type_ids, (std::vector<int64_t>{3, 3, 0, 0, 0, 0, 1, 1, 1, 2}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(b.context_begin, 2);
  EXPECT_EQ(b.cls_position, 9);
  auto cut = full_block({1, 2, 3, 4}, {20}, 10, 2, xlnet_special(), Convention::kXLNet);
  EXPECT_TRUE(cut.truncated);
  EXPECT_EQ(cut.input_ids, (std::vector<int64_t>{5, 5, 5, 5, 20, 4, 1, 2, 4, 3}));
}

TEST(Layout, WindowsCoverTheDocumentWithStride) {
  auto w = document_windows(700, 292, 128);
  ASSERT_EQ(w.size(), 5u);  // begins 0, 128, 256, 384, 512
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].end, 292);
  EXPECT_EQ(w[1].begin, 128);
  EXPECT_EQ(w[3].end, 384 + 292);
  EXPECT_EQ(w[4].begin, 512);
  EXPECT_EQ(w[4].end, 700);
  auto single = document_windows(100, 292, 128);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].end, 100);
  EXPECT_TRUE(document_windows(0, 292, 128).empty());
  auto exact = document_windows(292 + 128, 292, 128);
  EXPECT_EQ(exact.size(), 2u);
}

TEST(Layout, StrideMustBeSmallerThanTheWindow) {
  EXPECT_THROW(document_windows(10, 292, 292), std::invalid_argument);
  EXPECT_THROW(document_windows(10, 292, 0), std::invalid_argument);
  try {
    document_windows(10, 292, 300);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("smaller than the window of 292"), std::string::npos);
  }
}

// The cost plan_batches minimises: each batch pads its rows to its longest in each part, plus call_cost.
int64_t plan_cost(const std::vector<std::array<int64_t, 2>>& lengths, const std::vector<std::vector<size_t>>& batches,
                  int64_t call_cost) {
  int64_t cost = 0;
  for (const auto& b : batches) {
    int64_t a = 0, c = 0;
    for (size_t i : b) {
      a = std::max(a, lengths[i][0]);
      c = std::max(c, lengths[i][1]);
    }
    cost += call_cost + static_cast<int64_t>(b.size()) * (a + c);
  }
  return cost;
}

// The least cost over every partition of the rows into batches of at most max_rows (exhaustive, for few rows).
int64_t brute_force_cost(const std::vector<std::array<int64_t, 2>>& lengths, int64_t max_rows, int64_t call_cost) {
  int64_t best = -1;
  std::vector<std::vector<size_t>> batches;
  std::function<void(size_t)> place = [&](size_t i) {
    if (i == lengths.size()) {
      const int64_t c = plan_cost(lengths, batches, call_cost);
      if (best < 0 || c < best) best = c;
      return;
    }
    for (size_t b = 0; b < batches.size(); ++b)  // by index: deeper calls grow `batches`
      if (static_cast<int64_t>(batches[b].size()) < max_rows) {
        batches[b].push_back(i);
        place(i + 1);
        batches[b].pop_back();
      }
    batches.push_back({i});
    place(i + 1);
    batches.pop_back();
  };
  place(0);
  return best;
}

TEST(Layout, PlanBatchesCoversEveryRowOnceWithinMaxRows) {
  std::vector<std::array<int64_t, 2>> lengths;
  for (int i = 0; i < 200; ++i) lengths.push_back({10 + (i * 7) % 23, 40 + (i * 37) % 250});
  for (int64_t max_rows : {1, 16, 64, 256})
    for (int64_t call_cost : {0, 64, 4096}) {
      const auto batches = plan_batches(lengths, max_rows, call_cost);
      std::vector<int> seen(lengths.size(), 0);
      for (const auto& b : batches) {
        EXPECT_FALSE(b.empty());
        EXPECT_LE(static_cast<int64_t>(b.size()), max_rows);
        for (size_t i : b) ++seen[i];
      }
      EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), static_cast<long>(lengths.size())) << max_rows << " " << call_cost;
    }
  EXPECT_TRUE(plan_batches({}, 8, 0).empty());
}

TEST(Layout, PlanBatchesIsOptimalForOnePart) {
  // With one part, some best partition is contiguous in length order, so the exhaustive search checks the cuts.
  const std::vector<std::vector<int64_t>> cases = {{5, 90, 91, 7, 300, 88, 6}, {100, 100, 100, 100, 1, 2, 3},
                                                   {320, 12, 160, 161, 40, 41, 42}};
  for (const auto& c : cases) {
    std::vector<std::array<int64_t, 2>> lengths;
    for (int64_t l : c) lengths.push_back({l, 0});
    for (int64_t max_rows : {2, 3, 7})
      for (int64_t call_cost : {0, 30, 200, 5000}) {
        const auto batches = plan_batches(lengths, max_rows, call_cost);
        EXPECT_EQ(plan_cost(lengths, batches, call_cost), brute_force_cost(lengths, max_rows, call_cost))
            << "max_rows " << max_rows << " call_cost " << call_cost;
      }
  }
}

TEST(Layout, PlanBatchesTradesPaddingAgainstCalls) {
  const std::vector<std::array<int64_t, 2>> lengths = {{20, 300}, {20, 60}, {20, 300}, {20, 60}};
  // Free calls: no padding at all, so the two lengths go apart.
  auto apart = plan_batches(lengths, 4, 0);
  ASSERT_EQ(apart.size(), 2u);
  EXPECT_EQ(std::set<size_t>(apart[0].begin(), apart[0].end()), (std::set<size_t>{1, 3}));
  // A call dearer than the padding (2 x 240 tokens): one batch.
  EXPECT_EQ(plan_batches(lengths, 4, 1000).size(), 1u);
  // max_rows still bounds the batch.
  EXPECT_EQ(plan_batches(lengths, 2, 1000).size(), 2u);
  EXPECT_THROW(plan_batches(lengths, 0, 0), std::invalid_argument);
  EXPECT_THROW(plan_batches(lengths, 4, -1), std::invalid_argument);
  EXPECT_THROW(plan_batches({{-1, 0}}, 4, 0), std::invalid_argument);
}

}  // namespace
}  // namespace deformer
