"""The accuracy-and-speed table against k: dev F1 of the zero-shot, plain and KD + LRS runs, scored by the C++
reader's official metric (`deformer-qa score`), beside the speed-up that `deformer-bench --paired` measured.

  python3 -m train.k_table --squad dev-v1.1.json --bench bench.json --out k-table.tsv PREDICTIONS_DIR...

A PREDICTIONS_DIR holds run_gpu.sh's predictions (zero-shot-teacher-kK.json, plain-kK.json, kd-kK.json); where two
hold the same run, the later one wins. A run that is missing is written as "-".
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

ROWS = (("zero_shot_f1", "zero-shot-teacher-k%d"), ("plain_f1", "plain-k%d"), ("kd_lrs_f1", "kd-k%d"))


def score(scorer: str, squad: str, predictions: str) -> float:
    out = subprocess.run([scorer, "score", "--json", "--squad", squad, "--predictions", predictions],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["f1"]


def paired_speedups(bench_path: str) -> dict:
    with open(bench_path) as f:
        return {entry["k"]: entry["deformer_vs_full"] for entry in json.load(f)["paired"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", required=True, help="SQuAD v1.1 dev JSON")
    parser.add_argument("--bench", required=True, help="deformer-bench --paired --json report")
    parser.add_argument("--scorer", default="build/tools/deformer-qa")
    parser.add_argument("--note", action="append", default=[], help="a comment line for the table's header")
    parser.add_argument("--out", required=True)
    parser.add_argument("predictions", nargs="+", help="folders of run_gpu.sh predictions")
    args = parser.parse_args(argv)

    runs = {}
    for folder in args.predictions:
        if not os.path.isdir(folder):
            raise SystemExit("no predictions folder %s" % folder)
        for path in glob.glob(os.path.join(folder, "*.json")):
            if not path.endswith(".meta.json"):
                runs[os.path.basename(path)[:-len(".json")]] = path
    speedups = paired_speedups(args.bench)
    table_run = re.compile(r"^(zero-shot-teacher|plain|kd)-k(\d+)$")
    ks = sorted(set(speedups) | {int(m.group(2)) for m in map(table_run.match, runs) if m})
    with open(args.out + ".tmp", "w") as out:
        out.write("# k\t" + "\t".join(column for column, _ in ROWS) + "\tcpu_speedup\n")
        for line in args.note:
            out.write("# %s\n" % line)
        for k in ks:
            cells = [str(k)]
            for _, pattern in ROWS:
                path = runs.get(pattern % k)
                cells.append("%.2f" % score(args.scorer, args.squad, path) if path else "-")
            cells.append("%.3f" % speedups[k] if k in speedups else "-")
            out.write("\t".join(cells) + "\n")
    os.replace(args.out + ".tmp", args.out)
    print("wrote %s: k %s" % (args.out, " ".join(map(str, ks))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
