#!/usr/bin/env node
// HF Rust tokenizer (npm @anush008/tokenizers = tokenizers 0.22) over every SQuAD v1.1 dev context, one
// thread, same construction as tests/golden/make_tokenizer_goldens.js. Reports MB/s of UTF-8 input, like
// tokenizer_bench. encode() is async (runs on libuv's pool), so its per-call overhead is measured too;
// encodeBatch (one call, rayon limited to one thread) is the fairer number for the Rust code itself.
//
// Usage: RAYON_NUM_THREADS=1 UV_THREADPOOL_SIZE=1 NODE_PATH=.npm-ref/node_modules \
//        node benchmarks/tokenizer_bench_hf.js DEV_JSON VOCAB_TXT [uncased|cased]
'use strict';
const fs = require('fs');
const tk = require('@anush008/tokenizers');

async function main() {
  const [devPath, vocabPath, mode = 'uncased'] = process.argv.slice(2);
  const lowercase = mode === 'uncased';
  const model = await tk.WordPiece.fromFile(vocabPath, { unkToken: '[UNK]', continuingSubwordPrefix: '##', maxInputCharsPerWord: 100 });
  const tok = new tk.Tokenizer(model);
  tok.setNormalizer(tk.bertNormalizer({ cleanText: true, handleChineseChars: true, stripAccents: lowercase, lowercase }));
  tok.setPreTokenizer(tk.bertPreTokenizer());
  tok.addSpecialTokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
  const contexts = [];
  for (const a of JSON.parse(fs.readFileSync(devPath, 'utf8')).data) for (const p of a.paragraphs) contexts.push(p.context);
  const bytes = contexts.reduce((n, s) => n + Buffer.byteLength(s, 'utf8'), 0);
  const opts = { addSpecialTokens: false };
  const report = (name, times) => {
    times.sort((x, y) => x - y);
    const med = times[Math.floor(times.length / 2)];
    console.log(`${name} ${mode}: median ${(med * 1e3).toFixed(1)} ms per pass over ${contexts.length} contexts ` +
                `(${(bytes / 1e6).toFixed(2)} MB): ${(bytes / med / 1e6).toFixed(2)} MB/s (${times.length} passes)`);
  };
  for (const [name, pass] of [
    ['encodeBatch', async () => { await tok.encodeBatch(contexts, opts); }],
    ['encode (sequential awaits)', async () => { for (const c of contexts) await tok.encode(c, null, opts); }],
  ]) {
    await pass();  // warm-up
    const times = [];
    const until = Date.now() + 5000;
    while (times.length < 5 || Date.now() < until) {
      const t0 = process.hrtime.bigint();
      await pass();
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    report(name, times);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
