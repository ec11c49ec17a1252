#include <gtest/gtest.h>

#include "deformer/layout.h"

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

}  // namespace
}  // namespace deformer
