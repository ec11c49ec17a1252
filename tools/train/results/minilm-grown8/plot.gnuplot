# F1 and speed-up against k for all-MiniLM-L6-v2 grown to 8 layers: gnuplot tools/train/results/minilm-grown8/plot.gnuplot
# (run from the repository root; reads k-table.tsv, writes k-plot.png)
set terminal pngcairo size 900,540 font ",11"
set output "tools/train/results/minilm-grown8/k-plot.png"
set title "all-MiniLM-L6-v2 grown to 8 layers, SQuAD v1.1 dev: accuracy and speed against k"
set xlabel "k (lower layers run separately)"
set ylabel "dev F1"
set y2label "deformer speed-up over full mode (CPU, deformer-bench)"
set ytics nomirror
set y2tics
set xrange [3.5:6.5]
set xtics 4,1,6
set yrange [0:90]
set y2range [0:4]
set key bottom left
set grid ytics
set datafile missing "-"
plot 81.83 title "k=0 teacher F1 (81.8)" with lines dt 2 lc rgb "black", \
     78.91 title "bundled student in full mode (78.9)" with lines dt 3 lc rgb "gray40", \
     "tools/train/results/minilm-grown8/k-table.tsv" using 1:2 title "zero-shot (teacher split)" with linespoints pt 7, \
     "" using 1:3 title "plain fine-tuning" with linespoints pt 5, \
     "" using 1:4 title "KD + LRS (bundled at k=4)" with linespoints pt 9, \
     "" using 1:5 axes x1y2 title "speed-up (right axis)" with linespoints pt 13 lc rgb "red"
