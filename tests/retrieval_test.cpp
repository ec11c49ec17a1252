// The retrieval index (deformer/retrieval.h): BM25 search over SQLite FTS5, atomic writes, merging, refusals, and
// the ranking of answers across documents.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "deformer/retrieval.h"

namespace deformer::retrieval {
namespace {

namespace fs = std::filesystem;

class RetrievalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("deformer-retrieval-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Three short documents about different things.
  std::string write_three(const std::string& name) {
    auto writer = TextIndexWriter::create(path(name));
    writer->add("lighthouse", "The Lighthouse", "The keeper lit the lamps at dusk and climbed the tower stairs.");
    writer->add("bread", "Baking", "Bread needs flour, water, salt and time; the dough rises overnight.");
    writer->add("chess", "Games", "Chess is played on a board of sixty-four squares by two players.");
    writer->commit();
    return path(name);
  }

  fs::path dir_;
};

TEST_F(RetrievalTest, FindsTheDocumentThatSharesTheQuestionsRareWords) {
  const auto index = TextIndex::open(write_three("three.bm25"));
  EXPECT_EQ(index->num_documents(), 3);
  const auto hits = index->search("Who lit the lamp?", 3);  // "lamp" matches "lamps": Porter stemming
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].id, "lighthouse");
  EXPECT_GT(hits[0].score, 0.0);  // BM25, higher is better
  for (size_t i = 1; i < hits.size(); ++i) EXPECT_LE(hits[i].score, hits[i - 1].score);
  EXPECT_EQ(index->search("how many squares does a board have", 1).at(0).id, "chess");
  EXPECT_EQ(index->search("BAKING", 1).at(0).id, "bread");  // titles are searched, case folded
  EXPECT_EQ(index->search("What does dough need?", 10).size(), 1u);  // documents without a query word are not hits
}

TEST_F(RetrievalTest, QuestionsNeverBreakTheQuerySyntax) {
  const auto index = TextIndex::open(write_three("three.bm25"));
  for (const std::string q : {"", "?!", "\"", "NEAR(lamp flour)", "lamp AND OR NOT", "title:chess", "lamp*", "(((",
                              "caf\xc3\xa9 na\xc3\xafve"})
    EXPECT_NO_THROW(index->search(q, 5)) << q;
  EXPECT_TRUE(index->search("?!", 5).empty());
  EXPECT_EQ(index->search("NEAR(lamp", 5).at(0).id, "lighthouse");
  EXPECT_THROW(index->search("lamp", 0), std::invalid_argument);
}

TEST_F(RetrievalTest, DiacriticsAndCaseFold) {
  auto writer = TextIndexWriter::create(path("cafe.bm25"));
  writer->add("cafe", "", "The Caf\xc3\xa9 on the corner opens at seven.");
  writer->add("other", "", "Nothing about coffee here.");
  writer->commit();
  EXPECT_EQ(TextIndex::open(path("cafe.bm25"))->search("cafe", 1).at(0).id, "cafe");
}

TEST_F(RetrievalTest, AppearsOnlyWhenCommitted) {
  const std::string target = write_three("kept.bm25");
  {
    auto writer = TextIndexWriter::create(target);
    writer->add("only", "", "A different single document.");
    // destroyed without commit: as if the build was interrupted
  }
  const auto index = TextIndex::open(target);  // the previous index is untouched
  EXPECT_EQ(index->num_documents(), 3);
  for (const auto& entry : fs::directory_iterator(dir_))
    EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << entry.path();
}

TEST_F(RetrievalTest, MergesIndexesIntoOne) {
  const std::string a = write_three("a.bm25");
  auto second = TextIndexWriter::create(path("b.bm25"));
  second->add("river", "Rivers", "The Vell rises in the hills and flows to the sea.");
  second->commit();
  auto merged = TextIndexWriter::create(path("merged.bm25"));
  merged->add_all(a);
  merged->add_all(path("b.bm25"));
  merged->commit();
  const auto index = TextIndex::open(path("merged.bm25"));
  EXPECT_EQ(index->num_documents(), 4);
  EXPECT_EQ(index->fingerprint(), id_fingerprint({"river", "chess", "bread", "lighthouse"}));  // order-free
  EXPECT_EQ(index->search("where does the Vell rise", 1).at(0).id, "river");
  const auto listed = index->documents();
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0].id, "lighthouse");
  EXPECT_EQ(listed[0].title, "The Lighthouse");
  EXPECT_EQ(listed[3].id, "river");
}

TEST_F(RetrievalTest, RefusesWhatIsNotAnIndex) {
  EXPECT_THROW(TextIndex::open(path("missing.bm25")), std::runtime_error);
  std::ofstream(path("text.bm25")) << "not a database at all, just some text\n";
  try {
    TextIndex::open(path("text.bm25"));
    FAIL() << "a text file was opened as an index";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a libdeformer retrieval index"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TextIndex::open(dir_.string()), std::runtime_error);  // a directory
  EXPECT_THROW(TextIndexWriter::create(path("no/such/dir/x.bm25")), std::runtime_error);
  auto writer = TextIndexWriter::create(path("x.bm25"));
  EXPECT_THROW(writer->add("", "", "text"), std::invalid_argument);
}

TEST_F(RetrievalTest, ConcurrentSearchesAgree) {
  const auto index = TextIndex::open(write_three("three.bm25"));
  const auto expected = index->search("lamp flour board", 3);
  std::vector<std::thread> threads;
  std::vector<int> agreed(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        const auto hits = index->search("lamp flour board", 3);
        agreed[t] += hits.size() == expected.size() && hits[0].id == expected[0].id && hits[0].score == expected[0].score;
      }
    });
  for (auto& t : threads) t.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(agreed[t], 50);
}

TEST(RankAnswers, CombinesRetrieverAndReaderAndDropsNullAnswers) {
  Answer strong_doc_weak_span{"a", 0.9, 0, 1, "d1", 2.0, 10.0};
  Answer weak_doc_strong_span{"b", 0.5, 0, 1, "d2", 12.0, 4.0};
  Answer null_answer{"", 0.99, 0, 0, "", 20.0, 30.0};
  // mu = 0.5: (10 + 2) / 2 = 6 against (4 + 12) / 2 = 8
  auto ranked = rank_answers({strong_doc_weak_span, weak_doc_strong_span, null_answer}, 0.5, 5);
  ASSERT_EQ(ranked.size(), 2u);
  EXPECT_EQ(ranked[0].answer, "b");
  EXPECT_DOUBLE_EQ(ranked[0].score, 8.0);
  // mu = 0: the retriever alone; mu = 1: the reader alone
  EXPECT_EQ(rank_answers({strong_doc_weak_span, weak_doc_strong_span}, 0.0, 1).at(0).answer, "a");
  EXPECT_EQ(rank_answers({strong_doc_weak_span, weak_doc_strong_span}, 1.0, 1).at(0).answer, "b");
  EXPECT_THROW(rank_answers({}, 1.5, 1), std::invalid_argument);
  EXPECT_THROW(validate(RetrievalOptions{0, 0.5}), std::invalid_argument);
}

}  // namespace
}  // namespace deformer::retrieval
