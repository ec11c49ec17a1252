// WordPiece tokenizer: behaviour on a small inline vocabulary, and parity with Hugging Face goldens
// (tests/golden/, made by make_tokenizer_goldens.js / make_tokenizer_goldens_hf.py) on every SQuAD v1.1 dev
// context and question plus tests/golden/hard_strings.json.

#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "deformer/model.h"
#include "deformer/tokenizer.h"
#include "test_data.h"
#include "text/unicode.h"

namespace deformer {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string read_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error("cannot open " + path);
  std::string out;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, n);
  gzclose(f);
  if (n < 0) throw std::runtime_error("corrupt gzip " + path);
  return out;
}

// A toy vocabulary: ids are line numbers.
const char* const kToyVocab =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n,\nworld\n!\nun\n##aff\n##able\nnaive\ncafe\n##s\n北\n京\ni\n";

std::unique_ptr<Tokenizer> toy(bool lower = true) { return make_wordpiece(kToyVocab, lower); }

std::vector<std::pair<int64_t, int64_t>> spans(const Encoding& e) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (const auto& o : e.offsets) out.emplace_back(o.begin, o.end);
  return out;
}

using Spans = std::vector<std::pair<int64_t, int64_t>>;
using Ids = std::vector<int32_t>;

TEST(WordPiece, SplitsPunctuationAndSubwords) {
  auto t = toy();
  Encoding e = t->encode("Hello, unaffable world!");
  EXPECT_EQ(e.ids, (Ids{5, 6, 9, 10, 11, 7, 8}));
  EXPECT_EQ(spans(e), (Spans{{0, 5}, {5, 6}, {7, 9}, {9, 12}, {12, 16}, {17, 22}, {22, 23}}));
}

TEST(WordPiece, OffsetsAreCodePointsIntoTheOriginal) {
  auto t = toy();
  // "Naïve" has a precomposed ï; "cafe\u0301s" a combining accent that uncased normalization removes.
  Encoding e = t->encode("  Naïve\tcafe\xcc\x81s");
  EXPECT_EQ(e.ids, (Ids{12, 13, 14}));
  EXPECT_EQ(spans(e), (Spans{{2, 7}, {8, 12}, {13, 14}}));
}

TEST(WordPiece, CasedKeepsCaseAndAccents) {
  auto t = toy(false);
  Encoding e = t->encode("Hello hello");
  EXPECT_EQ(e.ids, (Ids{1, 5}));
}

TEST(WordPiece, CjkCharactersAreWords) {
  auto t = toy();
  Encoding e = t->encode("i北京i");
  EXPECT_EQ(e.ids, (Ids{17, 15, 16, 17}));
  EXPECT_EQ(spans(e), (Spans{{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
}

TEST(WordPiece, UnknownAndOverlongWordsAreOneUnk) {
  auto t = toy();
  EXPECT_EQ(t->encode("hellox").ids, (Ids{1}));
  EXPECT_EQ(spans(t->encode("hellox")), (Spans{{0, 6}}));
  std::string long_word(101, 'i');
  EXPECT_EQ(t->encode(long_word + " i").ids, (Ids{1, 17}));
  EXPECT_EQ(spans(t->encode(long_word)), (Spans{{0, 101}}));
}

TEST(WordPiece, ControlCharactersAreDroppedAndOffsetsSkipThem) {
  auto t = toy();
  Encoding e = t->encode(std::string("hel\x00lo\x01 \xe2\x80\x8b" "world", 16));
  EXPECT_EQ(e.ids, (Ids{5, 7}));
  EXPECT_EQ(spans(e), (Spans{{0, 6}, {9, 14}}));
}

TEST(WordPiece, LiteralSpecialTokensAsInHuggingFace) {
  auto t = toy();
  Encoding e = t->encode("hello[SEP]world [cls]");
  EXPECT_EQ(e.ids, (Ids{5, 3, 7, 1, 1, 1}));
  EXPECT_EQ(spans(e)[1], (std::pair<int64_t, int64_t>{5, 10}));
}

TEST(WordPiece, EmptyAndWhitespaceOnly) {
  auto t = toy();
  EXPECT_TRUE(t->encode("").ids.empty());
  EXPECT_TRUE(t->encode(" \t\r\n\xe3\x80\x80").ids.empty());
}

TEST(WordPiece, InvalidUtf8NamesTheByteOffset) {
  auto t = toy();
  const std::pair<std::string, std::string> cases[] = {
      {"hello \xff", "byte offset 6"},          // byte never valid
      {"ab\x80", "byte offset 2"},              // stray continuation
      {"abc\xc3", "byte offset 3"},             // truncated
      {"\xc0\xaf", "byte offset 0"},            // overlong '/'
      {"x\xe0\x80\xaf", "byte offset 1"},       // overlong 3-byte
      {"\xed\xa0\x80", "byte offset 0"},        // surrogate
      {"\xf4\x90\x80\x80", "byte offset 0"},    // above U+10FFFF
      {"\xe4\xb8x", "byte offset 2"},           // bad continuation
  };
  for (const auto& [text, where] : cases) {
    try {
      t->encode(text);
      ADD_FAILURE() << "no error for invalid UTF-8, expected " << where;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(where), std::string::npos) << e.what();
    }
  }
}

TEST(WordPiece, VocabularyAccessAndErrors) {
  auto t = toy();
  EXPECT_EQ(t->vocab_size(), 18u);
  EXPECT_EQ(t->id_to_token(10), "##aff");
  EXPECT_EQ(t->token_to_id("world"), 7);
  EXPECT_EQ(t->token_to_id("nope"), -1);
  EXPECT_THROW(t->id_to_token(18), std::out_of_range);
  EXPECT_THROW(t->id_to_token(-1), std::out_of_range);
  const SpecialTokens& s = t->special_tokens();
  EXPECT_EQ(s.pad, 0);
  EXPECT_EQ(s.unk, 1);
  EXPECT_EQ(s.cls, 2);
  EXPECT_EQ(s.sep, 3);
  EXPECT_EQ(s.mask, 4);
  EXPECT_STREQ(t->type(), "wordpiece");
  EXPECT_THROW(make_wordpiece("", true), std::invalid_argument);
  EXPECT_THROW(make_wordpiece("[CLS]\n[SEP]\n[PAD]\nhello\n", true), std::invalid_argument);
}

TEST(WordPiece, ConcurrentEncodeGivesTheSameResult) {
  std::shared_ptr<const Tokenizer> t = toy();
  const std::string text = "Hello, unaffable world! Naïve cafés 北京";
  const Encoding want = t->encode(text);
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (int r = 0; r < 500; ++r) {
        Encoding e = t->encode(text);
        if (e.ids != want.ids || !(e.offsets == want.offsets)) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(WordPiece, HelloWorldWithTheRealUncasedVocab) {
  const std::string vocab = testing::data_dir() + "/tokenizers/bert-base-uncased-vocab.txt";
  DEFORMER_REQUIRE_FILE(vocab);
  auto t = make_wordpiece(read_file(vocab), true);
  EXPECT_EQ(t->encode("Hello, world!").ids, (Ids{7592, 1010, 2088, 999}));
  EXPECT_EQ(t->special_tokens().cls, 101);
  EXPECT_EQ(t->special_tokens().sep, 102);
  EXPECT_EQ(t->special_tokens().pad, 0);
  EXPECT_EQ(t->special_tokens().unk, 100);
}

TEST(MakeTokenizer, UsesTheVocabularyAndCaseOfTheModelFile) {
  const std::string path = testing::fixture("tiny-real-vocab.pt");
  DEFORMER_REQUIRE_FILE(path);
  auto model = Model::load(path);
  auto from_model = make_tokenizer(*model);
  auto direct = make_wordpiece(model->vocabulary(), model->config().do_lower_case);
  EXPECT_STREQ(from_model->type(), "wordpiece");
  EXPECT_EQ(from_model->vocab_size(), 30522u);
  const std::string text = "Hello, World! Crème brûlée [SEP] 北京";
  EXPECT_EQ(from_model->encode(text).ids, direct->encode(text).ids);
  EXPECT_EQ(from_model->encode("Hello, world!").ids, (Ids{7592, 1010, 2088, 999}));
}

// SentencePiece runs in this process although it links LibTorch (through libdeformer): the bridge is
// loaded into a link-map namespace of its own, so its protobuf-lite stays apart (plain SentencePiece, no HF
// preprocessing).
TEST(SentencePiece, XlnetModelLoadsNextToLibTorchAndMapsOffsets) {
  const std::string path = testing::data_dir() + "/tokenizers/xlnet-base-cased-spiece.model";
  DEFORMER_REQUIRE_FILE(path);
  auto t = make_sentencepiece(read_file(path));
  EXPECT_STREQ(t->type(), "sentencepiece");
  EXPECT_EQ(t->vocab_size(), 32000u);
  const SpecialTokens& s = t->special_tokens();
  EXPECT_EQ(s.unk, 0);
  EXPECT_EQ(s.cls, 3);
  EXPECT_EQ(s.sep, 4);
  EXPECT_EQ(s.pad, 5);
  EXPECT_EQ(s.mask, 6);
  EXPECT_EQ(t->token_to_id("no-such-piece"), -1);
  const std::string text = "Héllo, wörld! 北京";  // 16 code points
  Encoding e = t->encode(text);
  ASSERT_EQ(e.ids.size(), e.offsets.size());
  ASSERT_FALSE(e.ids.empty());
  EXPECT_EQ(t->id_to_token(e.ids[0]).rfind("\xe2\x96\x81", 0), 0u) << t->id_to_token(e.ids[0]);  // starts with U+2581
  EXPECT_EQ(e.offsets.front().begin, 0);
  EXPECT_EQ(e.offsets.back().end, 16);
  for (size_t i = 1; i < e.offsets.size(); ++i) EXPECT_LE(e.offsets[i - 1].end, e.offsets[i].begin + 1);
  EXPECT_THROW(t->encode("bad \xff"), std::invalid_argument);
  EXPECT_THROW(make_sentencepiece("not a model"), std::invalid_argument);
}

// HF XLNetTokenizer's preprocessing on cases worked out with Hugging Face's `tokenizers` (the goldens below check
// exact parity on SQuAD): the user-defined pieces (" ( - ...) are cut out of the raw text first, so the word after
// one starts with its own "\u2581"; `` and '' become '"' inside a word, aligned with their second character; accents,
// every kind of mark and compatibility forms normalize away while offsets keep pointing at the original characters;
// <mask> takes the space before it; special tokens written in the text are those tokens.
TEST(SentencePiece, XlnetPreprocessingMatchesHuggingFaceConventions) {
  const std::string path = testing::data_dir() + "/tokenizers/xlnet-base-cased-spiece.model";
  DEFORMER_REQUIRE_FILE(path);
  auto t = make_xlnet_tokenizer(read_file(path));
  auto e = t->encode("Hello world");
  ASSERT_FALSE(e.ids.empty());
  EXPECT_EQ(e.offsets.front().begin, 0);
  EXPECT_EQ(e.offsets.back(), (TokenOffset{6, 11}));
  for (const auto& o : e.offsets) EXPECT_TRUE(o.end <= 5 || o.begin >= 6) << "no token covers the space";

  const auto check = [&](const std::string& text, const Ids& ids, const Spans& want) {
    const Encoding got = t->encode(text);
    EXPECT_EQ(got.ids, ids) << text;
    EXPECT_EQ(spans(got), want) << text;
  };
  // ▁x ( ▁1990 ) ▁ y: the word after each user-defined piece gets its own ▁
  check("x(1990)y", {3512, 10, 1722, 11, 17, 117}, {{0, 1}, {1, 2}, {2, 6}, {6, 7}, {7, 8}, {7, 8}});
  check("say \"hi\" now", {248, 12, 17, 2582, 12, 145}, {{0, 3}, {4, 5}, {5, 6}, {5, 7}, {7, 8}, {9, 12}});
  check("say ``hi'' now", {248, 17, 12, 2582, 12, 145}, {{0, 3}, {5, 6}, {5, 6}, {6, 8}, {9, 10}, {11, 14}});
  check("a <mask> b", {24, 6, 17, 508}, {{0, 1}, {1, 8}, {9, 10}, {9, 10}});
  check("\u0915\u093f\u0915", {17, 0}, {{0, 1}, {0, 3}});  // the vowel sign (Mc) is stripped too; <unk>
  // A character the charsmap deletes at the start of a stretch shifts HF's alignment of the rest by one.
  check("\x01" "ab cd", {17, 2460, 2349, 66}, {{0, 1}, {0, 2}, {3, 4}, {4, 5}});

  auto accented = t->encode("Beyonc\xc3\xa9 caf\xc3\xa9"), bare = t->encode("Beyonce cafe");
  EXPECT_EQ(accented.ids, bare.ids);
  EXPECT_EQ(spans(accented), spans(bare)) << "one code point for one: offsets unchanged";
  EXPECT_EQ(t->encode("Beyonce\xcc\x81").ids, t->encode("Beyonce").ids);  // e + U+0301: the mark is dropped
  EXPECT_EQ(t->encode("\xef\xac\x81ne").ids, t->encode("fine").ids);  // U+FB01 ligature: NFKD "fi"

  auto special = t->encode("a<sep>b <cls>");
  std::vector<int32_t> ids(special.ids.begin(), special.ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 4), ids.end());
  EXPECT_EQ(special.ids.back(), 3);
  EXPECT_EQ(special.offsets.back(), (TokenOffset{8, 13}));
  EXPECT_TRUE(t->encode(" \t\n ").ids.empty());
  EXPECT_THROW(t->encode("bad \xff"), std::invalid_argument);

  // Concurrent encodes through the bridge (its own libc and libstdc++) give the single-threaded result.
  std::string text;
  for (int i = 0; i < 40; ++i) text += "The keeper, Marta Ilves, lit the lamp ``every'' evening in 1990, caf\xc3\xa9. ";
  const auto want = t->encode(text).ids;
  std::atomic<int> differing{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k)
    threads.emplace_back([&] {
      for (int r = 0; r < 10; ++r) differing += t->encode(text).ids != want;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(differing.load(), 0);
}

TEST(SentencePiece, XlnetRejectsWhatIsNotAModel) {
  EXPECT_THROW(make_xlnet_tokenizer("not a model"), std::invalid_argument);
  EXPECT_THROW(make_xlnet_tokenizer(""), std::invalid_argument);
  EXPECT_THROW(make_xlnet_tokenizer(std::string("\x0a\x05\x0a\x01", 4)), std::invalid_argument);  // truncated piece
}

// Extended grapheme clusters (the unit of HF's Precompiled normalizer) and the marks StripAccents drops.
TEST(Unicode, GraphemeClustersAndMarks) {
  const auto end = [](std::u32string_view text) { return unicode::grapheme_cluster_end(text, 0); };
  EXPECT_EQ(end(U"\r\n"), 2u);                          // GB3
  EXPECT_EQ(end(U"\x01\u0301"), 1u);                     // GB4: nothing extends a control
  EXPECT_EQ(end(U"a\u0301\u200db"), 3u);                 // GB9: marks and ZWJ extend, b starts anew
  EXPECT_EQ(end(U"\u1100\u1161\u11a8x"), 3u);            // GB6, GB7: L V T
  EXPECT_EQ(end(U"\uac00\u11a8\u11a8"), 3u);             // GB7, GB8: LV T T
  EXPECT_EQ(end(U"\u0600a"), 2u);                        // GB9b: prepend
  EXPECT_EQ(end(U"\U0001F468\u200d\U0001F469"), 3u);     // GB11: emoji ZWJ sequence
  EXPECT_EQ(end(U"\U0001F1EB\U0001F1F7\U0001F1E9"), 2u); // GB12: flags pair up
  EXPECT_EQ(end(U"ab"), 1u);
  EXPECT_TRUE(unicode::is_mark(0x0301));   // Mn
  EXPECT_TRUE(unicode::is_mark(0x093F));   // Mc
  EXPECT_TRUE(unicode::is_mark(0x20DD));   // Me
  EXPECT_FALSE(unicode::is_mark(U'a'));
}

// Texts by golden key: c/A/P (context), q/A/P/Q (question), h/I (hard string).
std::map<std::string, std::string> golden_texts() {
  std::map<std::string, std::string> texts;
  auto dev = nlohmann::json::parse(read_file(testing::squad_dev_v11()));
  const auto& data = dev.at("data");
  for (size_t a = 0; a < data.size(); ++a) {
    const auto& paragraphs = data[a].at("paragraphs");
    for (size_t p = 0; p < paragraphs.size(); ++p) {
      const std::string cp = std::to_string(a) + "/" + std::to_string(p);
      texts["c/" + cp] = paragraphs[p].at("context").get<std::string>();
      const auto& qas = paragraphs[p].at("qas");
      for (size_t q = 0; q < qas.size(); ++q) texts["q/" + cp + "/" + std::to_string(q)] = qas[q].at("question");
    }
  }
  auto hard = nlohmann::json::parse(read_file(std::string(DEFORMER_SOURCE_DIR) + "/tests/golden/hard_strings.json"));
  for (size_t i = 0; i < hard.size(); ++i) texts["h/" + std::to_string(i)] = hard[i].get<std::string>();
  return texts;
}

void check_golden(const Tokenizer& tokenizer_ref, const std::string& golden_name) {
  const Tokenizer* tokenizer = &tokenizer_ref;
  const std::string golden = std::string(DEFORMER_SOURCE_DIR) + "/tests/golden/" + golden_name;
  DEFORMER_REQUIRE_FILE(testing::squad_dev_v11());
  ASSERT_TRUE(std::filesystem::exists(golden)) << golden;  // committed: never skipped
  const auto texts = golden_texts();
  std::istringstream lines(read_gzip(golden));
  std::string line;
  size_t total = 0, matched = 0, contexts = 0, questions = 0, hard = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    const std::string key = j.at("key");
    auto it = texts.find(key);
    ASSERT_NE(it, texts.end()) << "golden key " << key << " not in the dev set or hard strings";
    ++total;
    contexts += key[0] == 'c';
    questions += key[0] == 'q';
    hard += key[0] == 'h';
    const Ids want_ids = j.at("ids").get<Ids>();
    const std::vector<int64_t> flat = j.at("offsets").get<std::vector<int64_t>>();
    Spans want_spans;
    for (size_t k = 0; k + 1 < flat.size(); k += 2) want_spans.emplace_back(flat[k], flat[k + 1]);
    Encoding got = tokenizer->encode(it->second);
    if (got.ids == want_ids && spans(got) == want_spans) {
      ++matched;
      continue;
    }
    // Report the first differing token of the first few mismatches.
    if (total - matched <= 10) {
      size_t k = 0;
      auto got_spans = spans(got);
      while (k < got.ids.size() && k < want_ids.size() && got.ids[k] == want_ids[k] && got_spans[k] == want_spans[k]) ++k;
      std::ostringstream msg;
      msg << key << ": " << got.ids.size() << " tokens, HF " << want_ids.size() << "; first difference at token " << k;
      if (k < got.ids.size())
        msg << " ours " << got.ids[k] << " '" << tokenizer->id_to_token(got.ids[k]) << "' [" << got_spans[k].first << ","
            << got_spans[k].second << ")";
      if (k < want_ids.size())
        msg << " HF " << want_ids[k] << " '" << tokenizer->id_to_token(want_ids[k]) << "' [" << want_spans[k].first
            << "," << want_spans[k].second << ")";
      ADD_FAILURE() << msg.str();
    }
  }
  std::cout << golden_name << ": " << matched << "/" << total << " texts match (" << contexts << " contexts, "
            << questions << " questions, " << hard << " hard strings)\n";
  EXPECT_EQ(matched, total);
  // The dev set has 2067 contexts and 10570 questions; a truncated golden must not pass.
  EXPECT_EQ(contexts, 2067u);
  EXPECT_EQ(questions, 10570u);
  EXPECT_EQ(texts.size(), total);
}

void check_wordpiece_golden(const std::string& vocab_name, bool lower, const std::string& golden_name) {
  const std::string vocab = testing::data_dir() + "/tokenizers/" + vocab_name;
  DEFORMER_REQUIRE_FILE(vocab);
  check_golden(*make_wordpiece(read_file(vocab), lower), golden_name);
}

TEST(WordPieceGolden, BertBaseUncasedMatchesHuggingFace) {
  check_wordpiece_golden("bert-base-uncased-vocab.txt", true, "wordpiece-bert-base-uncased.jsonl.gz");
}

TEST(WordPieceGolden, BertBaseCasedMatchesHuggingFace) {
  check_wordpiece_golden("bert-base-cased-vocab.txt", false, "wordpiece-bert-base-cased.jsonl.gz");
}

// HF XLNetTokenizer (transformers 5.17, the fast one) goldens, made on the GPU machine by
// tests/golden/make_xlnet_tokenizer_goldens.py (tests/hf/xlnet_on_gpu.sh runs it).
TEST(SentencePieceGolden, XlnetBaseCasedMatchesHuggingFace) {
  const std::string spiece = testing::data_dir() + "/tokenizers/xlnet-base-cased-spiece.model";
  DEFORMER_REQUIRE_FILE(spiece);
  check_golden(*make_xlnet_tokenizer(read_file(spiece)), "sentencepiece-xlnet-base-cased.jsonl.gz");
}

}  // namespace
}  // namespace deformer
