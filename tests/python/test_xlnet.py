"""XLNet model definition and exporter: an independent re-statement of Hugging Face's XLNetModel computation
(time-major einsums, the reshape-based relative shift, the one-hot segment matrix, the non-target mask) checks
pydeformer.xlnet, then export, reload, refusals and the deformer-layout invariants in Python."""
import json
import os
import tempfile
import unittest

import torch

from pydeformer import export
from pydeformer.modelfile import ExportError, load_model_file
from pydeformer.xlnet import XLNetConfig, XLNetQA, hf_parameter_names, init_random

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("DEFORMER_DATA", os.path.join(ROOT, "..", "shared", "data"))

SHAPE = {"model_type": "xlnet", "architectures": ["XLNetForQuestionAnsweringSimple"], "vocab_size": 40,
         "d_model": 16, "n_layer": 3, "n_head": 2, "d_head": 8, "d_inner": 32, "ff_activation": "gelu",
         "layer_norm_eps": 1e-12, "pad_token_id": 5, "clamp_len": -1, "attn_type": "bi", "bi_data": False,
         "untie_r": True, "initializer_range": 0.3}


def reference_logits(state, c, input_ids, token_type_ids, attention_mask):
    """HF's algorithm, written in its own [T, B] layout from the published description (no shared code)."""
    ids = input_ids.t()
    T, B = ids.shape
    h = state["transformer.word_embedding.weight"][ids]
    pad = (1.0 - attention_mask.t().float())[None, :, :, None]            # [1, klen, B, 1]
    non_tgt = ((pad - torch.eye(T)[:, :, None, None]) > 0).float()       # [qlen, klen, B, 1]
    tt = token_type_ids.t()
    seg = torch.nn.functional.one_hot((tt[:, None] != tt[None, :]).long(), 2).float()  # [i, j, B, 2]
    freq = torch.arange(0, c.d_model, 2.0).float()
    inv = 1 / torch.pow(10000, freq / c.d_model)
    pos = torch.arange(T, -T, -1.0)
    ang = torch.einsum("i,d->id", pos, inv)
    r = torch.cat([ang.sin(), ang.cos()], -1)[:, None, :].expand(-1, B, -1)
    for i in range(c.n_layer):
        p = "transformer.layer.%d." % i
        w = lambda n: state[p + n]
        qh = torch.einsum("ibh,hnd->ibnd", h, w("rel_attn.q"))
        kh = torch.einsum("ibh,hnd->ibnd", h, w("rel_attn.k"))
        vh = torch.einsum("ibh,hnd->ibnd", h, w("rel_attn.v"))
        kr = torch.einsum("ibh,hnd->ibnd", r, w("rel_attn.r"))
        ac = torch.einsum("ibnd,jbnd->bnij", qh + w("rel_attn.r_w_bias"), kh)
        bd = torch.einsum("ibnd,jbnd->bnij", qh + w("rel_attn.r_r_bias"), kr)
        s = bd.shape
        bd = bd.reshape(s[0], s[1], s[3], s[2])[:, :, 1:, :].reshape(s[0], s[1], s[2], s[3] - 1)[:, :, :, :T]
        ef = torch.einsum("ibnd,snd->ibns", qh + w("rel_attn.r_s_bias"), w("rel_attn.seg_embed"))
        ef = torch.einsum("ijbs,ibns->bnij", seg, ef)
        score = (ac + bd + ef) / (c.d_head ** 0.5) - 1e30 * torch.einsum("ijbn->bnij", non_tgt)
        vec = torch.einsum("bnij,jbnd->ibnd", torch.softmax(score, 3), vh)
        out = torch.einsum("ibnd,hnd->ibh", vec, w("rel_attn.o")) + h
        h = torch.nn.functional.layer_norm(out, (c.d_model,), w("rel_attn.layer_norm.weight"), w("rel_attn.layer_norm.bias"), 1e-12)
        f = torch.nn.functional.gelu(h @ w("ff.layer_1.weight").t() + w("ff.layer_1.bias"))
        f = f @ w("ff.layer_2.weight").t() + w("ff.layer_2.bias")
        h = torch.nn.functional.layer_norm(f + h, (c.d_model,), w("ff.layer_norm.weight"), w("ff.layer_norm.bias"), 1e-12)
    return (h @ state["qa_outputs.weight"].t() + state["qa_outputs.bias"]).transpose(0, 1)


def seeded(seed=3):
    c = XLNetConfig(SHAPE)
    model = XLNetQA(c)
    init_random(model, c, seed)
    return c, model.eval()


def hf_state(c, model):
    ours = model.state_dict()
    return {theirs: ours[mine].clone() for mine, theirs in hf_parameter_names(c).items()}


class XLNetDefinition(unittest.TestCase):
    def test_equals_hf_algorithm_with_left_padding_and_three_segments(self):
        c, model = seeded()
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(6, 40, (3, 11), generator=g)
        mask = torch.ones(3, 11, dtype=torch.long)
        mask[1, :4] = 0  # HF pads on the left
        ids[1, :4] = 5
        types = torch.tensor([[0] * 6 + [1] * 4 + [2]] * 3)
        types[1, :4] = 3
        with torch.no_grad():
            ours = model(ids, types, mask)
            theirs = reference_logits(hf_state(c, model), c, ids, types, mask)
        real = mask.bool()
        self.assertLess((ours - theirs)[real].abs().max().item(), 1e-5)
        # The scripted module (what the model file holds) computes the same.
        self.assertLess((torch.jit.script(model)(ids, types, mask) - ours).abs().max().item(), 1e-6)

    def test_positions_close_a_padding_gap(self):
        """Relative attention sees only position differences: a block padded in the middle with positions that
        skip the padding equals the unpadded sequence."""
        c, model = seeded(5)
        g = torch.Generator().manual_seed(1)
        a, b = torch.randint(6, 40, (1, 5), generator=g), torch.randint(6, 40, (1, 4), generator=g)
        joint = torch.cat([a, b], 1)
        types = torch.tensor([[0] * 5 + [1] * 4])
        with torch.no_grad():
            want = model(joint, types, torch.ones_like(joint))
            gapped = torch.cat([a, torch.full((1, 3), 5), b], 1)
            mask = torch.tensor([[1] * 5 + [0] * 3 + [1] * 4])
            positions = torch.tensor([[0, 1, 2, 3, 4, 9, 10, 11, 5, 6, 7, 8]])
            seg = torch.tensor([[0] * 8 + [1] * 4])
            got = model.qa_logits(model.encode(model.embed(gapped), mask, seg, positions, 0, c.n_layer))
        self.assertLess((got[0, mask[0].bool()] - want[0]).abs().max().item(), 1e-5)

    def test_parameter_count_equals_hf(self):
        c, model = seeded()
        # XLNetForQuestionAnsweringSimple: embedding, mask_emb, per layer 5 projections + 3 biases + seg_embed +
        # 2 LayerNorms + 2 Linears, and the head.
        d, n, dh, f = c.d_model, c.n_head, c.d_head, c.d_inner
        per_layer = 5 * d * n * dh + 3 * n * dh + 2 * n * dh + 4 * d + (d * f + f) + (f * d + d)
        expected = c.vocab_size * d + d + c.n_layer * per_layer + 2 * d + 2
        self.assertEqual(sum(p.numel() for p in model.parameters()), expected)


class XLNetExport(unittest.TestCase):
    def checkpoint(self, root, state, architecture="XLNetForQuestionAnsweringSimple"):
        from pydeformer.modelfile import write_safetensors
        os.makedirs(root, exist_ok=True)
        config = dict(SHAPE, architectures=[architecture])
        with open(os.path.join(root, "config.json"), "w") as f:
            json.dump(config, f)
        write_safetensors(state, os.path.join(root, "model.safetensors"))
        spiece = os.path.join(DATA, "tokenizers", "xlnet-base-cased-spiece.model")
        if not os.path.isfile(spiece):
            if os.environ.get("CI") == "true":
                self.fail("data directory missing under CI: " + spiece)
            self.skipTest("no data directory at " + spiece)
        with open(spiece, "rb") as src, open(os.path.join(root, "spiece.model"), "wb") as dst:
            dst.write(src.read())
        return root

    def test_export_round_trip_records_type_and_tokenizer(self):
        c, model = seeded()
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = self.checkpoint(os.path.join(tmp, "ckpt"), hf_state(c, model))
            out = os.path.join(tmp, "x.pt")
            self.assertEqual(export.main([ckpt, "--out", out]), 0)
            loaded, config, _ = load_model_file(out)
            self.assertEqual(config["model_type"], "xlnet")
            self.assertEqual(config["architecture"], "XLNetForQuestionAnsweringSimple")
            self.assertEqual(config["tokenizer"]["type"], "sentencepiece")
            ids = torch.randint(6, 40, (2, 9))
            types = torch.zeros(2, 9, dtype=torch.long)
            mask = torch.ones(2, 9, dtype=torch.long)
            with torch.no_grad():
                self.assertEqual((loaded(ids, types, mask) - model(ids, types, mask)).abs().max().item(), 0.0)

    def test_beam_head_checkpoint_is_refused(self):
        c, model = seeded()
        state = hf_state(c, model)
        del state["qa_outputs.weight"], state["qa_outputs.bias"]
        state["start_logits.dense.weight"] = torch.zeros(1, c.d_model)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = self.checkpoint(os.path.join(tmp, "ckpt"), state, "XLNetForQuestionAnswering")
            with self.assertRaisesRegex(ExportError, "XLNetForQuestionAnsweringSimple"):
                export.export_checkpoint(export.parse_args([ckpt, "--out", os.path.join(tmp, "x.pt")]))


if __name__ == "__main__":
    unittest.main()
