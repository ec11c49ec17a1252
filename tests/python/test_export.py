"""Exporter tests: checkpoint reading (safetensors without the package, .bin), name mapping, refusals."""
import json
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import torch

from pydeformer.bert import BertConfig, BertQA, hf_parameter_names, init_random
from pydeformer.modelfile import ExportError, load_model_file, map_hf_state, read_safetensors
from pydeformer import export

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("DEFORMER_DATA", os.path.join(ROOT, "..", "shared", "data"))

SHAPE = {"model_type": "bert", "architectures": ["BertForQuestionAnswering"], "vocab_size": 12,
         "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
         "max_position_embeddings": 32, "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
VOCAB = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\n##a\n##b\n##c\nabc\n"


def write_safetensors(path, tensors):
    """An independent writer of the format (the test must not use the reader's own code to make inputs)."""
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}[t.dtype],
                        "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def hf_state(seed=3):
    """A Hugging Face-named state dict made from a seeded BertQA."""
    config = BertConfig(SHAPE)
    model = BertQA(config)
    init_random(model, config, seed)
    ours = model.state_dict()
    return {theirs: ours[mine].clone() for mine, theirs in hf_parameter_names(config).items()}


def checkpoint_dir(root, state, fmt="safetensors", config=None):
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(config or SHAPE, f)
    with open(os.path.join(root, "vocab.txt"), "w") as f:
        f.write(VOCAB)
    if fmt == "safetensors":
        write_safetensors(os.path.join(root, "model.safetensors"), state)
    else:
        torch.save(state, os.path.join(root, "pytorch_model.bin"))
    return root


class ExporterTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def export(self, src, out_name="m.pt"):
        out = os.path.join(self.dir, out_name)
        rc = export.main([src, "--out", out])
        return rc, out

    def test_safetensors_and_bin_give_the_same_weights(self):
        state = hf_state()
        state["bert.embeddings.position_ids"] = torch.arange(32).unsqueeze(0)  # a buffer old checkpoints carry
        rc1, m1 = self.export(checkpoint_dir(os.path.join(self.dir, "st"), state), "st.pt")
        rc2, m2 = self.export(checkpoint_dir(os.path.join(self.dir, "bin"), state, "bin"), "bin.pt")
        self.assertEqual((rc1, rc2), (0, 0))
        a, config_a, vocab = load_model_file(m1)
        b, config_b, _ = load_model_file(m2)
        self.assertEqual(vocab, VOCAB)
        self.assertEqual(config_a["content_hash"], config_b["content_hash"])
        names = hf_parameter_names(BertConfig(SHAPE))
        for mine, t in a.state_dict().items():
            self.assertTrue(torch.equal(t, state[names[mine]]), mine)
            self.assertTrue(torch.equal(t, b.state_dict()[mine]), mine)

    def test_scripted_forward_equals_eager(self):
        _, out = self.export(checkpoint_dir(os.path.join(self.dir, "ck"), hf_state()))
        eager, _, _ = load_model_file(out)
        scripted = torch.jit.load(out)
        ids = torch.tensor([[2, 5, 6, 3, 7, 11, 3, 0]])
        types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0]])
        pos = torch.arange(8).unsqueeze(0)
        mask = (ids != 0).long()
        with torch.no_grad():
            self.assertTrue(torch.allclose(eager(ids, types, pos, mask), scripted(ids, types, pos, mask), atol=1e-6))

    def test_missing_tensor_is_named(self):
        state = hf_state()
        del state["bert.encoder.layer.1.attention.self.key.weight"]
        with self.assertRaises(ExportError) as e:
            map_hf_state(BertConfig(SHAPE), state)
        self.assertIn("bert.encoder.layer.1.attention.self.key.weight", str(e.exception))

    def test_missing_head_says_so(self):
        state = hf_state()
        del state["qa_outputs.weight"], state["qa_outputs.bias"]
        with self.assertRaises(ExportError) as e:
            map_hf_state(BertConfig(SHAPE), state)
        self.assertIn("no QA head", str(e.exception))

    def test_unmapped_tensor_is_named(self):
        state = hf_state()
        state["bert.encoder.layer.0.extra.weight"] = torch.zeros(2)
        with self.assertRaises(ExportError) as e:
            map_hf_state(BertConfig(SHAPE), state)
        self.assertIn("bert.encoder.layer.0.extra.weight", str(e.exception))

    def test_legacy_gamma_beta_names_are_accepted(self):
        state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                 for k, v in hf_state().items()}
        mapped = map_hf_state(BertConfig(SHAPE), state)
        self.assertIn("embeddings.norm.weight", mapped)

    def test_fp16_checkpoint_is_widened(self):
        state = {k: v.half() for k, v in hf_state().items()}
        path = os.path.join(self.dir, "half.safetensors")
        write_safetensors(path, state)
        read = read_safetensors(path)
        self.assertEqual(read["qa_outputs.weight"].dtype, torch.float16)
        mapped = map_hf_state(BertConfig(SHAPE), read)
        self.assertEqual(mapped["qa_outputs.weight"].dtype, torch.float32)

    def test_truncated_safetensors_is_refused(self):
        path = os.path.join(self.dir, "cut.safetensors")
        write_safetensors(path, hf_state())
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        with self.assertRaises(ExportError) as e:
            read_safetensors(path)
        self.assertIn("truncated", str(e.exception))

    def test_other_architectures_are_refused(self):
        config = dict(SHAPE, architectures=["BertModel"])
        rc, out = self.export(checkpoint_dir(os.path.join(self.dir, "bm"), hf_state(), config=config))
        self.assertEqual(rc, 1)
        self.assertFalse(os.path.exists(out))

    def test_real_tiny_distilbert_is_refused_clearly(self):
        src = os.path.join(DATA, "hf-tiny-distilbert")
        if not os.path.isdir(src):
            if os.environ.get("CI") == "true":
                self.fail("data directory missing under CI: " + src)
            self.skipTest("no data directory at " + src)
        proc = subprocess.run([os.path.join(ROOT, "tools", "deformer-export"), src, "--out",
                               os.path.join(self.dir, "d.pt")], capture_output=True, text=True)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("unsupported architecture: DistilBertModel", proc.stderr)

    def test_random_init_is_seeded(self):
        cfg = os.path.join(self.dir, "shape.json")
        vocab = os.path.join(self.dir, "vocab.txt")
        with open(cfg, "w") as f:
            json.dump(SHAPE, f)
        with open(vocab, "w") as f:
            f.write(VOCAB)
        outs = []
        for name, seed in (("a", 1), ("b", 1), ("c", 2)):
            out = os.path.join(self.dir, name + ".pt")
            self.assertEqual(export.main(["--random-init", "--config", cfg, "--vocab", vocab, "--seed", str(seed),
                                          "--out", out]), 0)
            outs.append(load_model_file(out)[1]["content_hash"])
        self.assertEqual(outs[0], outs[1])
        self.assertNotEqual(outs[0], outs[2])


    def test_int8_quantization_is_close_to_fp32_and_marked(self):
        src = checkpoint_dir(os.path.join(self.dir, "ck"), hf_state())
        fp32 = os.path.join(self.dir, "fp32.pt")
        int8 = os.path.join(self.dir, "int8.pt")
        self.assertEqual(export.main([src, "--out", fp32]), 0)
        self.assertEqual(export.main([src, "--out", int8, "--quantize", "int8"]), 0)
        extra = {"deformer/config.json": ""}
        quantized = torch.jit.load(int8, _extra_files=extra)
        config = json.loads(extra["deformer/config.json"])
        self.assertEqual(config["quantization"], "int8-dynamic")
        self.assertNotEqual(config["content_hash"], load_model_file(fp32)[1]["content_hash"])
        with self.assertRaises(ExportError):  # no fp32 weights for the eager reference
            load_model_file(int8)
        reference = torch.jit.load(fp32)
        ids = torch.tensor([[2, 5, 6, 3, 7, 11, 3, 0]])
        types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0]])
        pos = torch.arange(8).unsqueeze(0)
        mask = (ids != 0).long()
        with torch.no_grad():
            hidden = reference.embed(ids, types, pos)
            a = reference.encode(hidden, mask, 0, 2)
            b = quantized.encode(hidden, mask, 0, 2)
        # int8 weights and activations: close to fp32 but not equal (the layers really are quantized).
        relative = ((a - b).norm() / a.norm()).item()
        self.assertGreater(relative, 0.0)
        self.assertLess(relative, 0.1)
        rc = export.main([src, "--out", os.path.join(self.dir, "x.pt"), "--quantize", "int8", "--storage-dtype", "fp16"])
        self.assertEqual(rc, 1)

if __name__ == "__main__":
    unittest.main()
