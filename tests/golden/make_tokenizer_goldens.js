#!/usr/bin/env node
// Writes WordPiece goldens with the Hugging Face Rust tokenizer (npm @anush008/tokenizers, which bundles
// `tokenizers` 0.22 for Node on x64). Output format (shared byte-for-byte, before gzip, with
// make_tokenizer_goldens_hf.py): one JSON line per text,
//   {"key":"c/A/P","ids":[...],"offsets":[b0,e0,b1,e1,...]}
// keys: c/A/P = context of article A paragraph P, q/A/P/Q = its question Q, h/I = hard_strings.json[I].
// Offsets are [begin, end) in Unicode code points (Python string indices). No texts are stored.
//
// Usage: NODE_PATH=/path/to/node_modules node make_tokenizer_goldens.js DEV_JSON VOCAB_TXT uncased|cased OUT.jsonl.gz
//   npm install @anush008/tokenizers   (in an ignored directory, e.g. .npm-ref/)
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const tk = require('@anush008/tokenizers');

// Same construction as tokenizers' BertWordPieceTokenizer and transformers' BertTokenizer -> fast conversion.
async function makeBert(vocabPath, lowercase) {
  const model = await tk.WordPiece.fromFile(vocabPath, { unkToken: '[UNK]', continuingSubwordPrefix: '##', maxInputCharsPerWord: 100 });
  const tok = new tk.Tokenizer(model);
  tok.setNormalizer(tk.bertNormalizer({ cleanText: true, handleChineseChars: true, stripAccents: lowercase, lowercase }));
  tok.setPreTokenizer(tk.bertPreTokenizer());
  const vocab = tok.getVocab(false);
  const specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].filter((t) => t in vocab);
  tok.addSpecialTokens(specials);
  return tok;
}

function texts(devPath, hardPath) {
  const out = [];
  const dev = JSON.parse(fs.readFileSync(devPath, 'utf8'));
  dev.data.forEach((article, a) => {
    article.paragraphs.forEach((para, p) => {
      out.push([`c/${a}/${p}`, para.context]);
      para.qas.forEach((qa, q) => out.push([`q/${a}/${p}/${q}`, qa.question]));
    });
  });
  JSON.parse(fs.readFileSync(hardPath, 'utf8')).forEach((s, i) => out.push([`h/${i}`, s]));
  return out;
}

function line(key, enc) {
  const flat = [];
  for (const [b, e] of enc.getOffsets()) flat.push(b, e);
  return `{"key":${JSON.stringify(key)},"ids":[${enc.getIds().join(',')}],"offsets":[${flat.join(',')}]}\n`;
}

async function sanity(tok, lowercase) {
  const ids = (await tok.encode('Hello, world!', null, { addSpecialTokens: false })).getIds();
  const want = lowercase ? [7592, 1010, 2088, 999] : null;
  if (want && ids.join(',') !== want.join(',')) throw new Error(`reference sanity check failed: ${ids}`);
  const vocab = tok.getVocab(false);
  const distinct = new Set(Object.values(vocab)).size;
  if (distinct !== Object.keys(vocab).length) throw new Error('vocabulary ids are not distinct');
  return distinct;
}

async function main() {
  const [devPath, vocabPath, mode, outPath] = process.argv.slice(2);
  if (!outPath || !['uncased', 'cased'].includes(mode)) {
    console.error('usage: make_tokenizer_goldens.js DEV_JSON VOCAB_TXT uncased|cased OUT.jsonl.gz');
    process.exit(2);
  }
  const lowercase = mode === 'uncased';
  const tok = await makeBert(vocabPath, lowercase);
  const vocabSize = await sanity(tok, lowercase);
  const all = texts(devPath, path.join(__dirname, 'hard_strings.json'));
  const parts = [];
  let tokens = 0;
  for (const [key, text] of all) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    tokens += enc.getIds().length;
    parts.push(line(key, enc));
  }
  const body = Buffer.from(parts.join(''), 'utf8');
  fs.writeFileSync(outPath, zlib.gzipSync(body, { level: 9 }));
  const sha = require('crypto').createHash('sha256').update(body).digest('hex');
  console.log(`${mode}: vocab ${vocabSize} ids, ${all.length} texts, ${tokens} tokens, ` +
              `uncompressed sha256 ${sha}, ${outPath}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
