# F1 and speed-up against k for the bundled small BERT: gnuplot tools/train/results/plot.gnuplot
# (run from the repository root; reads k-table.tsv, writes k-plot.png)
set terminal pngcairo size 900,540 font ",11"
set output "tools/train/results/k-plot.png"
set title "Small BERT (6 layers, hidden 256) on SQuAD v1.1 dev: accuracy and speed against k"
set xlabel "k (lower layers run separately)"
set ylabel "dev F1"
set y2label "deformer speed-up over full mode (CPU, deformer-bench)"
set ytics nomirror
set y2tics
set xrange [2.5:5.5]
set xtics 3,1,5
set yrange [0:70]
set key bottom left
set grid ytics
full = 61.4
plot full title "full model (teacher) F1" with lines dt 2 lc rgb "black", \
     "tools/train/results/k-table.tsv" using 1:2 title "zero-shot" with linespoints pt 7, \
     "" using 1:3 title "plain fine-tuning" with linespoints pt 5, \
     "" using 1:4 title "KD + LRS" with linespoints pt 9, \
     "" using 1:5 axes x1y2 title "speed-up (right axis)" with linespoints pt 13 lc rgb "red"
