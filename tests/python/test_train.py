"""CPU smoke tests of every training stage (tools/train): a few steps on a tiny model, and the loss goes down.

The data go through the real pipeline: the project's C++ tokenizer (`deformer-qa tokenize`, path in
$DEFORMER_QA) over the sample documents and a hand-written SQuAD file about them."""
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import torch

from pydeformer import modelfile
from pydeformer import vocab as vocab_builder
from pydeformer.modelfile import read_safetensors, write_safetensors
from train import base_model, baseline, checkpoint, compare_predictions, data, finetune, pretrain, transport
from train.squad_features import Squad

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCUMENTS = os.path.join(ROOT, "samples", "documents")
DEFORMER_QA = os.environ.get("DEFORMER_QA", os.path.join(ROOT, "build", "tools", "deformer-qa"))
TINY = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64,
        "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "initializer_range": 0.02}


@unittest.skipUnless(os.access(DEFORMER_QA, os.X_OK), "deformer-qa is not built at %s" % DEFORMER_QA)
class TrainingStages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="deformer-train-test-")
        texts = {name: open(os.path.join(DOCUMENTS, name), encoding="utf-8").read() for name in os.listdir(DOCUMENTS)}
        cls.vocab = os.path.join(cls.work, "vocab.txt")
        with open(cls.vocab, "w", encoding="utf-8") as f:
            f.write("".join(p + "\n" for p in vocab_builder.build(texts.values(), 400)))
        cls.config = os.path.join(cls.work, "tiny.json")
        with open(cls.config, "w") as f:
            json.dump(TINY, f)
        # every question's answer: a word span taken from its document, so answer_start is real
        paragraphs = []
        for i, name in enumerate(sorted(texts)):
            context = texts[name].strip()
            words = list(re.finditer(r"[A-Za-z]+", context))
            qas = []
            for j in range(4):
                w = words[(7 * j + 3) % len(words)]
                qas.append({"id": "q%d-%d" % (i, j), "question": "What comes after %s?" % words[(7 * j + 2) % len(words)].group(),
                            "answers": [{"text": w.group(), "answer_start": w.start()}]})
            paragraphs.append({"title": name, "paragraphs": [{"context": context, "qas": qas}]})
        cls.squad_json = os.path.join(cls.work, "squad.json")
        with open(cls.squad_json, "w", encoding="utf-8") as f:
            json.dump({"version": "1.1", "data": paragraphs}, f)
        cls.squad = os.path.join(cls.work, "squad.pt.xz")
        data.main(["squad", cls.squad_json, "--vocab", cls.vocab, "--out", cls.squad, "--deformer-qa", DEFORMER_QA])
        cls.corpus = os.path.join(cls.work, "corpus.pt.xz")
        data.main(["corpus"] + [os.path.join(DOCUMENTS, n) for n in sorted(texts)] +
                  ["--vocab", cls.vocab, "--out", cls.corpus, "--deformer-qa", DEFORMER_QA])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_answers_map_to_their_tokens(self):
        tensors = data.load_compressed(self.squad)
        vocab = open(self.vocab, encoding="utf-8").read().splitlines()
        s = Squad(tensors, {t: vocab.index(t) for t in ("[PAD]", "[CLS]", "[SEP]")})
        squad = json.load(open(self.squad_json, encoding="utf-8"))
        contexts = [p["context"] for a in squad["data"] for p in a["paragraphs"]]
        answers = [qa["answers"][0]["text"] for a in squad["data"] for p in a["paragraphs"] for qa in p["qas"]]
        for q, (first, last) in enumerate(s.answers):
            offsets = s.offsets[s.question_context[q]]
            text = contexts[s.question_context[q]][offsets[first][0]:offsets[last][1]]
            self.assertEqual(text, answers[q])
            rows = s.deformer_rows([q], with_teacher=True)
            start, end = rows.labels[0].tolist()
            self.assertEqual(rows.input_ids[0, start:end + 1].tolist(), s.contexts[s.question_context[q]][first:last + 1])
            # the teacher's full-layout row holds the same token at every mapped position
            real = rows.attention_mask[0].bool()
            mapped = rows.teacher_rows["input_ids"][0][rows.teacher_rows["map"][0]]
            self.assertTrue(torch.equal(mapped[real], rows.input_ids[0][real]))

    def _pretrain(self, steps):
        work, out = os.path.join(self.work, "pretrain"), os.path.join(self.work, "mlm")
        pretrain.main(["--corpus", self.corpus, "--vocab", self.vocab, "--config", self.config, "--out", out,
                       "--work", work, "--batch-size", "16", "--seq-len", "32", "--lr", "5e-3", "--warmup", "5",
                       "--log-every", "5", "--dropout", "0", "--device", "cpu", "--steps", str(steps)])
        with open(os.path.join(work, "pretrain.log"), encoding="utf-8") as f:
            return f.read(), out

    def test_pretraining_lowers_the_masked_lm_loss_and_resumes(self):
        log, out = self._pretrain(80)
        seen = [float(x) for x in re.findall(r"step \d+/\d+ loss ([0-9.]+)", log)]
        self.assertGreater(seen[0], math.log(400) - 1.0)  # starts near chance over the vocabulary
        self.assertLess(sum(seen[-3:]) / 3, seen[0] - 0.5)
        log, out = self._pretrain(80)  # the saved state is at the end: resumes, nothing left to do
        self.assertIn("resumed at step 80 of 80", log)
        model, config, head = checkpoint.load(out)
        self.assertEqual(config.num_hidden_layers, 3)
        self.assertEqual(set(head), set(checkpoint.HEAD_NAMES))

    def _finetune(self, name, extra):
        mlm = os.path.join(self.work, "mlm")
        if not os.path.isdir(mlm):
            self._pretrain(80)
        out = os.path.join(self.work, name)
        predictions = out + ".json"
        finetune.main(["--init", extra.pop("init", mlm), "--train", self.squad, "--dev", self.squad,
                       "--dev-json", self.squad_json, "--epochs", "25", "--batch-size", "8", "--lr", "2e-3",
                       "--dropout", "0", "--device", "cpu", "--out", out, "--predictions", predictions]
                      + [x for k, v in extra.items() for x in (k, v)])
        with open(predictions + ".meta.json") as f:
            return json.load(f), out

    def test_fine_tuning_full_then_deformer_with_distillation(self):
        meta, teacher = self._finetune("teacher", {"--layout": "full"})
        self.assertLess(meta["last_loss"], meta["first_loss"] * 0.7)
        meta, _ = self._finetune("plain", {"init": teacher, "--layout": "deformer", "--k": "2"})
        self.assertLess(meta["last_loss"], meta["first_loss"] * 0.7)
        self.assertEqual((meta["alpha"], meta["beta"]), (0.0, 0.0))
        # a full-layout teacher sees the same pairs re-laid in its own layout (the map of the rows above)
        meta, student = self._finetune("kd", {"init": teacher, "--teacher": teacher, "--teacher-layout": "full",
                                              "--layout": "deformer", "--k": "2"})
        self.assertLess(meta["last_loss"], meta["first_loss"] * 0.7)
        self.assertEqual((meta["alpha"], meta["beta"], meta["temperature"]), (1.0, 1.0, 2.0))
        self.assertEqual(meta["teacher_layout"], "full")
        # a trained checkpoint goes through the exporter like a user's model
        out = os.path.join(self.work, "kd.pt")
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools"))
        subprocess.run([sys.executable, "-m", "pydeformer.export", student, "--out", out, "--storage-dtype", "fp16"],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        info = subprocess.run([DEFORMER_QA, "info", "--model", out], check=True, capture_output=True, text=True)
        self.assertIn("layers", info.stdout)

    def _encoder_only(self):
        """The masked-LM checkpoint re-saved as a bare BertModel (a sentence-transformers folder's layout: no
        "bert." prefix, no heads), like the base model of the bundled one."""
        mlm, encoder = os.path.join(self.work, "mlm"), os.path.join(self.work, "encoder")
        if not os.path.isdir(mlm):
            self._pretrain(80)
        os.makedirs(encoder, exist_ok=True)
        state = read_safetensors(os.path.join(mlm, "model.safetensors"))
        write_safetensors({k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")},
                          os.path.join(encoder, "model.safetensors"))
        config = json.load(open(os.path.join(mlm, "config.json")))
        config["architectures"] = ["BertModel"]
        with open(os.path.join(encoder, "config.json"), "w") as f:
            json.dump(config, f)
        shutil.copy(self.vocab, os.path.join(encoder, "vocab.txt"))
        return encoder

    def test_paper_recipe_from_an_encoder_only_checkpoint(self):
        encoder = self._encoder_only()
        model, _, _ = checkpoint.load(encoder)  # the span head is new; the encoder is the checkpoint's
        mlm_model, _, _ = checkpoint.load(os.path.join(self.work, "mlm"))
        self.assertTrue(torch.equal(model.layers[0].query.weight, mlm_model.layers[0].query.weight))
        # the paper's teacher: the decomposed layout at k=0, fine-tuned from the pretrained weights
        meta, teacher = self._finetune("k0", {"init": encoder, "--layout": "deformer", "--k": "0"})
        self.assertLess(meta["last_loss"], meta["first_loss"] * 0.7)
        # its student: upper layers from the teacher, lower from the pretrained model, KD + LRS on the student's
        # own rows, and the same pairs in the full layout as a second loss
        meta, student = self._finetune("kd-paper", {"init": teacher, "--teacher": teacher, "--lower-from": encoder,
                                                     "--layout": "deformer", "--k": "2", "--also-full": "0.5"})
        self.assertLess(meta["last_loss"], meta["first_loss"] * 0.7)
        self.assertEqual((meta["teacher_layout"], meta["lower_from"], meta["also_full"]), ("deformer", encoder, 0.5))
        # the model file records the split it was trained for, and int8 storage keeps the logits close
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tools"))
        files = {}
        for dtype in ("fp32", "int8"):
            files[dtype] = os.path.join(self.work, "kd-paper-%s.pt" % dtype)
            subprocess.run([sys.executable, "-m", "pydeformer.export", student, "--out", files[dtype],
                            "--storage-dtype", dtype], check=True, env=env, stdout=subprocess.DEVNULL)
        info = json.loads(subprocess.run([DEFORMER_QA, "info", "--model", files["int8"], "--json"], check=True,
                                         capture_output=True, text=True).stdout)
        self.assertEqual((info["default_k"], info["default_k_recorded"], info["storage_dtype"]), (2, True, "int8"))
        self.assertLess(os.path.getsize(files["int8"]), os.path.getsize(files["fp32"]) * 0.45)
        ids = torch.tensor([[2, 5, 9, 3, 11, 17, 3]])
        logits = {}
        for dtype, path in files.items():
            m, _, _ = modelfile.load_model_file(path)
            logits[dtype] = m(ids, torch.zeros_like(ids), torch.arange(7)[None], torch.ones_like(ids))
        scale = logits["fp32"].abs().max().item()
        self.assertLess((logits["int8"] - logits["fp32"]).abs().max().item(), 0.05 * scale)
        self.assertGreater((logits["int8"] - logits["fp32"]).abs().max().item(), 0.0)  # it did quantize

    def test_growing_stacks_copies_of_the_top_layers(self):
        grown = os.path.join(self.work, "grown")
        shutil.copytree(self._encoder_only(), grown)
        base_model.grow(grown, 5)  # 3 layers -> 5: layers 1 and 2 again, on top
        model, c, _ = checkpoint.load(grown)
        original, _, _ = checkpoint.load(self._encoder_only())
        self.assertEqual((c.num_hidden_layers, len(model.layers)), (5, 5))
        for new, old in ((0, 0), (1, 1), (2, 2), (3, 1), (4, 2)):
            for ours, theirs in zip(model.layers[new].parameters(), original.layers[old].parameters()):
                self.assertTrue(torch.equal(ours, theirs))
        with self.assertRaises(SystemExit):
            base_model.grow(grown, 11)  # more than twice the layers

    def test_growing_lower_repeats_each_low_layer_after_itself(self):
        grown = os.path.join(self.work, "grown-lower")
        shutil.copytree(self._encoder_only(), grown)
        base_model.grow(grown, 5, "lower")  # 3 layers -> 5: 1 1 2 2 3
        model, c, _ = checkpoint.load(grown)
        original, _, _ = checkpoint.load(self._encoder_only())
        self.assertEqual((c.num_hidden_layers, len(model.layers)), (5, 5))
        for new, old in enumerate((0, 0, 1, 1, 2)):
            for ours, theirs in zip(model.layers[new].parameters(), original.layers[old].parameters()):
                self.assertTrue(torch.equal(ours, theirs))
        self.assertEqual(base_model.layer_order(6, 10, "lower"), [0, 0, 1, 1, 2, 2, 3, 3, 4, 5])

    def test_transport_packing_keeps_the_weights_within_int8_rounding(self):
        packed = os.path.join(self.work, "packed")
        shutil.copytree(self._encoder_only(), packed)
        weights = os.path.join(packed, "model.safetensors")
        original, size = read_safetensors(weights), os.path.getsize(weights)
        transport.pack(packed)
        self.assertLess(os.path.getsize(os.path.join(packed, "model.int8.safetensors")), 0.5 * size)
        transport.unpack(packed)
        restored = read_safetensors(weights)
        self.assertEqual(sorted(restored), sorted(original))
        for name, t in original.items():
            error = (restored[name].float() - t.float()).abs().max().item()
            self.assertLessEqual(error, t.float().abs().max().item() / 127 * 0.51 + 1e-3 * (t.dim() < 2), name)

    def test_time_budget_shortens_the_schedule(self):
        log = lambda message: None
        self.assertEqual(finetune.fit_to_budget(1000, 100, 10.0, 1000.0, log), 1000)  # fits: unchanged
        self.assertEqual(finetune.fit_to_budget(1000, 100, 10.0, 60.0, log), 100 + 200)  # 20 s left at 10 steps/s

    def test_baseline_picks_the_sentence_sharing_most_words(self):
        context = "The river is wide. Bread needs flour and water. Chess has sixty-four squares."
        self.assertEqual(baseline.best_sentence(context, "What does bread need?"), "Bread needs flour and water.")


class ComparePredictions(unittest.TestCase):
    def test_windows_differ_only_past_one_window(self):
        # 384 - 10 - 3 = 371 document tokens fit one window whatever the stride; one more needs a second window,
        # which starts 128 tokens in for the training code and 371 - 128 = 243 in for the C++ reader.
        self.assertFalse(compare_predictions.full_windows_differ(10, 371))
        self.assertTrue(compare_predictions.full_windows_differ(10, 372))
        # questions past 64 tokens are cut, as both readers cut them
        self.assertEqual(compare_predictions.full_windows_differ(200, 317), compare_predictions.full_windows_differ(64, 317))

    def test_counts_and_splits_disagreements(self):
        a, b = {"q1": "x", "q2": "y", "q3": "z"}, {"q1": "x", "q2": "w", "q3": "v"}
        result = compare_predictions.compare(a, b, {"q1": False, "q2": True, "q3": False})
        self.assertEqual((result["agree"], result["differ"], result["differ_where_windows_differ"]), (1, 2, 1))
        self.assertEqual(result["differ_with_the_same_windows"], ["q3"])
        with self.assertRaises(ValueError):
            compare_predictions.compare(a, {"q1": "x"})


if __name__ == "__main__":
    unittest.main()
