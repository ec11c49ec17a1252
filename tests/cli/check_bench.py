"""Runs deformer-bench on a small model for a few SQuAD questions and checks the report's fields and that
its values are sane (no timing thresholds). Usage: check_bench.py DEFORMER_BENCH MODEL SQUAD"""
import json
import subprocess
import sys

bench, model, squad = sys.argv[1:4]
limit = 3
cmd = [bench, "--model", model, "--squad", squad, "--limit", str(limit), "--batch", "2", "--repeats", "1",
       "--k", "2", "--reference", "eager,hf", "--modes", "full,deformer,resident", "--rounds", "2", "--paired", "--json"]
r = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout)
problems = []


def check(condition, what):
    if not condition:
        problems.append(what)


for key in ("device", "dtype", "threads", "batch", "model", "workload", "runs", "cache_build", "references", "ratios",
            "matmul_peak", "flop_model"):
    check(key in r, "missing " + key)
check(r["device"] == "cpu" and r["dtype"] == "fp32" and r["batch"] == 2 and r["threads"] >= 1, "settings recorded")
check(r["model"]["random_weights"] is True and r["model"]["layers"] >= 2, "model shape and random weights recorded")
check(r["workload"]["questions"] == limit, "questions")
check(r.get("rounds") == 2, "rounds recorded")
by_states = {x["states"]: x for x in r["runs"]}
check(set(by_states) == {"computed", "file", "resident"}, "full, deformer and resident ran")
modes = {"full": by_states.get("computed", {}), "deformer": by_states.get("file", {}), "resident": by_states.get("resident", {})}
for name, x in modes.items():
    check(len(x.get("questions_per_s_by_round", [])) == 2 and x["questions_per_s"] in x["questions_per_s_by_round"],
          name + ": the median of two rounds")
    phases = x.get("phases_ms_per_pass", {})
    expected = {"tokenize", "documents", "decode"} | ({"layers"} if name == "full" else {"lower_layers", "cache_read", "upper_layers"})
    check(set(phases) == expected and all(v >= 0 for v in phases.values()), name + " phases " + str(sorted(phases)))
check(modes["resident"].get("resident", {}).get("bytes", 0) > 0, "resident cache size")
for name, x in modes.items():
    check(x["questions"] == limit and x["windows"] >= limit, name + " counts")
    check(x["questions_per_s"] > 0 and 0 < x["latency_ms"]["p50"] <= x["latency_ms"]["p99"], name + " timing")
    check(x["achieved_tflop_s"] > 0 and x["model_gflop_per_question"] > 0, name + " FLOP model")
    check(0 < x["rss_after_load_bytes"] <= x["rss_peak_bytes"], name + " RSS")
    check(len(x["answers_sample"]) > 0 and all(isinstance(a, str) for a in x["answers_sample"]), name + " answers")
d = modes.get("deformer", {})
check(d.get("k") == 2, "k recorded")
# Deformer mode pays the question's lower layers once; its model FLOPs per question are below full mode's.
check(d.get("model_gflop_per_question", 1e9) < modes["full"]["model_gflop_per_question"], "deformer FLOPs below full")
check(d.get("cache_read", {}).get("us_per_window", 0) > 0, "cache read cost")
check(0 < d.get("cache_read", {}).get("fraction_of_question_time", 0) < 1, "cache read share")
check(d.get("upper_layers", {}).get("tflop_s", 0) > 0 and d["upper_layers"]["fraction_of_matmul_peak"] > 0, "upper layers")
check(r["cache_build"] and r["cache_build"][0]["windows_per_s"] > 0 and r["cache_build"][0]["k"] == 2, "cache build")
refs = {x["reference"]: x for x in r["references"]}
check(refs.get("eager", {}).get("available") is True and refs["eager"]["questions"] == limit, "eager reference")
check(refs.get("eager", {}).get("windows") == modes["full"]["windows"], "eager reference runs full mode's windows")
check(refs.get("hf", {}).get("available") is True or bool(refs.get("hf", {}).get("reason")), "hf reference or reason")
for key in ("deformer_k2_vs_full", "deformer_k2_vs_eager", "deformer_k2_question_memory_vs_full", "deformer_resident_k2_vs_full"):
    check(r["ratios"].get(key, 0) > 0, "ratio " + key)
# The paper's memory measure (bytes requested, summed): reported where the tools have tcmalloc's hook, and then
# lower in deformer mode, whose lower layers see only the question.
requested = [x.get("requested_bytes_per_question") for x in modes.values()]
check(all(b is None for b in requested) or all(b is not None and b > 0 for b in requested), "requested bytes in every mode")
if requested[0] is not None:
    check(modes["deformer"]["requested_bytes_per_question"] < modes["full"]["requested_bytes_per_question"],
          "deformer mode requests fewer bytes than full mode")
    check(0 < r["ratios"].get("deformer_k2_requested_bytes_vs_full", 0) < 1, "requested bytes ratio")
paired = r.get("paired", [])
check(len(paired) == 1 and paired[0].get("k") == 2 and len(paired[0].get("passes", [])) == 1, "one call-by-call run at k=2")
if paired:
    p = paired[0]["passes"][0]
    check(p["full_seconds"] > 0 and p["deformer_seconds"] > 0, "call-by-call times")
    check(abs(paired[0]["deformer_vs_full"] - p["full_seconds"] / p["deformer_seconds"]) < 1e-9
          and r["ratios"].get("deformer_k2_vs_full_call_by_call") == paired[0]["deformer_vs_full"], "call-by-call ratio")
by_round = r.get("ratios_by_round", {})
for key in ("deformer_k2_vs_full", "deformer_k2_vs_eager", "deformer_resident_k2_vs_full"):
    rounds = by_round.get(key, [])
    check(len(rounds) == 2 and all(x > 0 for x in rounds), "ratio by round " + key)
full_rounds = modes["full"].get("questions_per_s_by_round", [1, 1])
deformer_rounds = modes["deformer"].get("questions_per_s_by_round", [0, 0])
check(abs(by_round.get("deformer_k2_vs_full", [0])[0] - deformer_rounds[0] / full_rounds[0]) < 1e-9,
      "a round's ratio is that round's deformer rate over its full rate")
if problems:
    print("FAIL: " + "; ".join(problems))
    print(json.dumps(r, indent=1))
    sys.exit(1)
print("PASS: deformer-bench report has every field with sane values")
