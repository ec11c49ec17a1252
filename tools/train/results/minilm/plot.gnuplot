# F1 and speed-up against k for all-MiniLM-L6-v2 fine-tuned on SQuAD: gnuplot tools/train/results/minilm/plot.gnuplot
# (run from the repository root; reads k-table.tsv, writes k-plot.png)
set terminal pngcairo size 900,540 font ",11"
set output "tools/train/results/minilm/k-plot.png"
set title "all-MiniLM-L6-v2 on SQuAD v1.1 dev: accuracy and speed against k"
set xlabel "k (lower layers run separately)"
set ylabel "dev F1"
set y2label "deformer speed-up over full mode (CPU, deformer-bench)"
set ytics nomirror
set y2tics
set xrange [0.5:5.5]
set xtics 1,1,5
set yrange [0:85]
set y2range [0:4]
set key bottom left
set grid ytics
set datafile missing "-"
full = 77.18
plot full title "full-layout baseline F1 (77.2)" with lines dt 2 lc rgb "black", \
     "tools/train/results/minilm/k-table.tsv" using 1:2 title "zero-shot" with linespoints pt 7, \
     "" using 1:3 title "plain fine-tuning" with linespoints pt 5, \
     "" using 1:4 title "KD + LRS, first run" with linespoints pt 9, \
     "" using 1:5 title "KD + LRS, three runs (bundled at k=4)" with linespoints pt 11, \
     "" using 1:6 axes x1y2 title "speed-up (right axis)" with linespoints pt 13 lc rgb "red"
