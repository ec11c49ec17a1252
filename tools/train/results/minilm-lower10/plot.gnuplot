# F1 and speed-up against k for all-MiniLM-L6-v2 grown to 10 layers from below, fine-tuned on SQuAD:
# gnuplot tools/train/results/minilm-lower10/plot.gnuplot (from the repository root; reads k-table.tsv, writes
# k-plot.png; the table comes from python3 -m train.k_table, as README.md says)
set terminal pngcairo size 1000,640 font ",11"
set output "tools/train/results/minilm-lower10/k-plot.png"
set title "all-MiniLM-L6-v2 grown to 10 layers, SQuAD v1.1 dev: accuracy and CPU speed-up against k"
set xlabel "k (lower layers run separately; 10 - k joint layers)"
set ylabel "dev F1"
set y2label "deformer speed-up over full mode (2 CPU threads, batch 8)"
set ytics nomirror
set y2tics
set xrange [3.5:9.5]
set xtics 4,1,9
set yrange [0:90]
set y2range [0:6]
set key below maxrows 3
set grid ytics
set datafile missing "-"
teacher = 81.98
$bundled << EOD
7 80.65
EOD
plot teacher title "k=0 teacher F1 (82.0)" with lines dt 2 lc rgb "black", \
     2.5 axes x1y2 title "2.5x speed-up (right axis)" with lines dt 3 lc rgb "red", \
     "tools/train/results/minilm-lower10/k-table.tsv" using 1:2 title "teacher split, zero-shot" with linespoints pt 7 lc rgb "#1f77b4", \
     "" using 1:3 title "plain fine-tuning from the base" with linespoints pt 5 lc rgb "#ff7f0e", \
     "" using 1:4 title "KD + LRS from the teacher" with linespoints pt 9 lc rgb "#2ca02c", \
     "" using 1:5 axes x1y2 title "speed-up, call by call (right axis)" with linespoints pt 13 lc rgb "red", \
     $bundled using 1:2 title "the bundled student (KD + LRS, 2.9 epochs; C++ reader)" with points pt 15 ps 1.6 lc rgb "#9467bd"
