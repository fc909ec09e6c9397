"""The executable-cache key of a run (setup.Setup.cache_key): the config without the fields only the
host reads. Guards that those fields really never reach the traced init or step."""
import jax

from ecgan_jax.training import parallel, setup
from ecgan_jax.training import state as state_lib
from ecgan_jax.training.options import StepOptions
from tests.training import helpers


def _changed(value):
  """Another value of the same type."""
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value + 1
  if isinstance(value, float):
    return value * 2 + 1
  if isinstance(value, str):
    return value + '_other'
  if isinstance(value, tuple):
    return value + value[:1] if value else ('other',)
  return value


def _host_fields_changed(config):
  config = config.copy_and_resolve_references()
  for section, names in setup.HOST_ONLY_FIELDS.items():
    for name in names if names is not None else list(config[section].keys()):
      config[section][name] = _changed(config[section][name])
  return config


def _unvalidated_setup(config) -> setup.Setup:
  """setup.build without the validation (a changed choice field may not be a valid choice)."""
  return setup.Setup(config=config, options=StepOptions.from_config(config),
                     init_models=setup.build_models(config),
                     models=setup.build_models(config, parallel.AXIS),
                     optimizers=state_lib.make_optimizers(config))


def _programs(run: setup.Setup) -> tuple[str, str]:
  """The jaxprs of the init and the one-device step (traced only)."""
  init = jax.make_jaxpr(run._create)(jax.random.PRNGKey(0))  # pylint: disable=protected-access
  step = jax.make_jaxpr(run.step_body(axis_name=None))(*helpers.abstract_step_args(run))
  return str(init), str(step)


def test_host_only_config_fields_change_neither_the_init_nor_the_step_program():
  config = helpers.micro_config()
  changed = _host_fields_changed(config)
  assert changed.train.log_every != config.train.log_every  # the helper did change them
  assert changed.eval.batch_size != config.eval.batch_size
  base, other = setup.build(config), _unvalidated_setup(changed)
  assert base.cache_key() == other.cache_key()
  assert _programs(base) == _programs(other)


def test_cache_key_changes_with_fields_the_step_reads():
  base = setup.build(helpers.micro_config()).cache_key()
  for section, name, value in [('model', 'ngf', 4), ('loss', 'lambda_vgg', 0.5),
                               ('train', 'num_steps', 9), ('optim', 'lr_g', 1e-3)]:
    config = helpers.micro_config()
    config[section][name] = value
    assert setup.build(config).cache_key() != base, (section, name)
