# A/B of the subnormal flush: "old" = commit e161763 checked out at /tmp/wt_old
# (git worktree add /tmp/wt_old e161763), "new" = this checkout. Run from inside the repository; 2 rounds, interleaved.
NEW=${NEW:-$(git rev-parse --show-toplevel)}
OUTDIR=${OUTDIR:-/tmp}
for rep in 1 2; do
for v in old new; do
  if [ $v = old ]; then cd /tmp/wt_old; export PYTHONPATH=/tmp/wt_old/src; else cd "$NEW"; unset PYTHONPATH; fi
  python experiments/benchmark_losses.py --quick --rows scrapl_483 scrapl_315 --json $OUTDIR/ab_${v}_q$rep.json 2>&1 | grep -E "mean .*ms" | sed "s/^/$v q$rep /"
  python experiments/benchmark_losses.py --rows jtfs_483 --repeats 1 --json $OUTDIR/ab_${v}_f$rep.json 2>&1 | grep -E "mean .*ms" | sed "s/^/$v f$rep /"
done
done
