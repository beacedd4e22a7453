"""Ranked proposals for your expensive run, from the results of your cheap runs.

  python launch/recommend.py --csv=runs.csv --params=lr:log,bs:log --fidelities=N,D \
      --metric=smooth_loss:min --target=N=1.07e9,D=2e10 [--grid=grid.csv] --state=s.json
  python launch/recommend.py ...same flags... --state=s.json --tell=lr=0.00138,bs=256=2.231
  python launch/recommend.py ...same flags... --checkpoint=/tmp/mtrl/rl/checkpoints

Every cheap run at a fidelity no larger than the target on every scale axis is used. The
candidates are --grid (a CSV with one column per parameter), else every combination of the
values you ran. With --state, results told with --tell are kept and the next proposals take
them into account. The proposals come from the teacher agent, with its reasoning; with
--checkpoint, the next run comes from a trained policy instead (launch/train.py's
<workdir>/<stage>/checkpoints): it reads the prompt of the protocol and the told results, and
writes one turn, whose action is matched to the nearest grid configuration not told yet.
"""

import sys

from absl import app
from absl import flags
import numpy as np

from autollm_jax import checkpoint as checkpoint_lib
from autollm_jax.agents import policy
from autollm_jax.agents import session
from autollm_jax.agents import teacher as teacher_lib
from autollm_jax.gym import data
from autollm_jax.gym import flags as gym_flags

TARGET = flags.DEFINE_string("target", None, "The expensive run's fidelity scale, e.g. "
                             "N=1.07e9,D=2e10.", required=True)
GRID = flags.DEFINE_string("grid", None, "CSV of the candidate configurations at the target.")
STATE = flags.DEFINE_string("state", None, "JSON file that keeps the told results.")
TELL = flags.DEFINE_multi_string("tell", [], "An expensive result, CONFIG=OUTCOME, e.g. "
                                 "lr=0.00138,bs=256=2.231 (needs --state).")
TOP = flags.DEFINE_integer("top", 5, "How many ranked proposals to print.")
CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A trained policy's checkpoint directory: "
                                 "it proposes the next run (default: the teacher ranks).")
SEED = flags.DEFINE_integer("seed", 0, "Seeds the policy's sampling (with --checkpoint).")
METRIC_NAME = flags.DEFINE_string("target_metric", None, "The metric to optimize (default: "
                                  "the task's first).")


def main(argv):
  del argv
  try:
    tables = gym_flags.tables()
    if len(tables) != 1:
      raise session.SessionError("give one task: --csv=... (or --spec=...), or one --tasks")
    table = tables[0]
    grid = (session.read_grid(GRID.value, table) if GRID.value
            else session.default_grid(table))
    obs = session.target_observation(table, session.parse_target(TARGET.value, table), grid,
                                     METRIC_NAME.value)
    if TELL.value and not STATE.value:
      raise session.SessionError("--tell needs --state=FILE to keep the results")
    state = session.load_state(STATE.value, obs) if STATE.value else session.new_state(obs)
    state = session.tell(state, obs, TELL.value)
    trials = session.history(state, obs)
  except (session.SessionError, data.GymDataError, KeyError) as e:
    sys.exit(f"error: {e}")
  if STATE.value:  # the tells are kept even if the proposal below fails
    session.save_state(STATE.value, state)
  print(f"task {obs.task}, target {obs.target_name}, metric {obs.metric.name} "
        f"({obs.metric.direction}), {obs.num_candidates} candidates, "
        f"{sum(len(c.y) for c in obs.context)} cheap runs at {len(obs.context)} fidelities")
  for t in trials:
    print(f"told: {session.config_text(obs, t.config)} -> {t.outcome:.6g}")
  if CHECKPOINT.value:
    try:
      agent = policy.PolicyAgent.from_checkpoint(CHECKPOINT.value)
      proposal = agent.propose(obs, trials, np.random.default_rng(SEED.value),
                               session.told_turns(state))
    except (checkpoint_lib.CheckpointError, ValueError) as e:
      sys.exit(f"error: {e}")
    best = obs.match(proposal.config, exclude=[t.candidate for t in trials])
    if STATE.value:
      session.save_state(STATE.value, session.with_proposal(state, obs, best,
                                                            proposal.reasoning))
    print(f"\npolicy ({CHECKPOINT.value}) wrote: {proposal.reasoning}\n")
    print(f"next run: {session.config_text(obs, obs.candidates[best])}")
  else:
    order, predicted, reasoning = teacher_lib.Teacher().rank(obs, trials)
    print(f"\nreasoning: {reasoning}\n")
    print(f"{'rank':>4}  {'predicted':>10}  configuration")
    for r, (i, p) in enumerate(zip(order[:TOP.value], predicted[:TOP.value])):
      print(f"{r + 1:>4}  {p:>10.4g}  {session.config_text(obs, obs.candidates[i])}")
    best = order[0]
  if STATE.value:
    print(f"\nafter running it: --state={STATE.value} "
          f"--tell={session.config_text(obs, obs.candidates[best])}=OUTCOME")


if __name__ == "__main__":
  app.run(main)
