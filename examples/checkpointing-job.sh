#!/bin/sh
# A job that checkpoints and resumes: it counts to $STEPS (default 600), one step per 0.1 s,
# saving its step to ./progress every 5 steps and on SIGTERM, and touching
# $SUANWANG_CHECKPOINT_FILE on each save so the control plane knows when it last saved.
# Each attempt starts from ./progress (the job's directory is shared by its attempts) and
# prints where it resumed, so a preemption or a reallocation move loses at most 5 steps.
step=$(cat progress 2>/dev/null || echo 0)
echo "attempt ${SUANWANG_ATTEMPT:-1} resumed at step $step"
save() { echo "$step" > progress; touch "${SUANWANG_CHECKPOINT_FILE:-checkpoint}"; }
trap 'save; echo "attempt ${SUANWANG_ATTEMPT:-1} stopped at step $step"; exit 143' TERM
while [ "$step" -lt "${STEPS:-600}" ]; do
    step=$((step + 1))
    [ $((step % 5)) -eq 0 ] && save
    sleep 0.1
done
save
echo "done at step $step"
