"""Runs launch/train.py and sends itself a signal right after step KILL_STEP, once the checkpoint
of step WAIT_STEP is on disk (0: don't wait). Default SIGKILL: a preemption with no chance to save;
`--signal=TERM` as the first argument sends SIGTERM instead (the loop should save and exit).

  python tests/training/kill_after.py [--signal=TERM] KILL_STEP WAIT_STEP <launch/train.py flags>
"""
import os
import runpy
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from ecgan_jax.training import trainer  # noqa: E402

SIGNAL = signal.SIGKILL
if sys.argv[1].startswith('--signal='):
  SIGNAL = getattr(signal, 'SIG' + sys.argv.pop(1).split('=', 1)[1])
KILL_STEP, WAIT_STEP = int(sys.argv[1]), int(sys.argv[2])
sys.argv = [os.path.join(REPO, 'launch', 'train.py')] + sys.argv[3:]
_train = trainer.train


def _train_then_kill(config, workdir, **kwargs):
  def on_step(step):
    if step == KILL_STEP:
      final = os.path.join(workdir, 'checkpoints', str(WAIT_STEP))
      deadline = time.time() + 120
      while WAIT_STEP and not os.path.isdir(final) and time.time() < deadline:
        time.sleep(0.05)
      print(f'KILLING at step {step} with {signal.Signals(SIGNAL).name}', flush=True)
      os.kill(os.getpid(), SIGNAL)
  return _train(config, workdir, on_step=on_step, **kwargs)


trainer.train = _train_then_kill
runpy.run_path(sys.argv[0], run_name='__main__')
