"""Paint-by-label web demo (`ecgan-demo`, launch/demo.py): Flask serving one static page.

  python launch/demo.py --workdir=runs/synthetic [--host=127.0.0.1 --port=8080]

The page (demo.html next to this file) paints a label map with the dataset's palette (class names
and colours) or uploads one (a PNG of class ids), picks a seed or a style image, and shows I'' and
the generated edge map I'_e. The generator is compiled once at start; each request is one call.
Bad input (wrong size, a colour image instead of ids, ids out of range, a broken file) is answered
with HTTP 400 and a one-line message the page shows; the server keeps running.

API: GET /api/info -> {height, width, multimodal, outputs, classes: [{id, name, color}]};
POST /api/generate (multipart: label_ids = base64 of uint8 ids [H*W] row-major, or label_png =
file; seed; style = image file) -> {image, edge: PNG data URLs, label: base64 ids} | {error}.
"""
from __future__ import annotations

import base64
import io
import logging
import os
import sys
import time

import numpy as np
from absl import flags
from ml_collections import config_flags

log = logging.getLogger(__name__)
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'demo.html')

FLAGS = flags.FlagValues()
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Optional config file (default: the config saved in the checkpoint).',
    lock_config=True, flag_values=FLAGS)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Training run folder (with checkpoints/).',
                               flag_values=FLAGS)
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).', flag_values=FLAGS)
_HOST = flags.DEFINE_string('host', '127.0.0.1', 'Interface to serve on.', flag_values=FLAGS)
_PORT = flags.DEFINE_integer('port', 8080, 'Port.', flag_values=FLAGS)


class _Upload(io.BytesIO):
  """Uploaded bytes that print as their file name (error messages name the upload)."""

  def __init__(self, data: bytes, name: str):
    super().__init__(data)
    self.name = name

  def __str__(self) -> str:
    return self.name


def png_data_url(image: np.ndarray) -> str:
  """uint8 [H, W, 3] -> 'data:image/png;base64,...'."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format='PNG')
  return 'data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode('ascii')


def create_app(synth):
  """Flask app around a Synthesizer (compiled here, once, for one label map)."""
  import flask  # pylint: disable=import-outside-toplevel

  from ecgan_jax.cli import synthesize  # pylint: disable=import-outside-toplevel
  from ecgan_jax.data import sources  # pylint: disable=import-outside-toplevel
  from ecgan_jax.evaluation import samples  # pylint: disable=import-outside-toplevel
  h, w = synth.image_size
  if synth.num_classes > 256:
    raise ValueError(f'the demo paints uint8 ids; this model has {synth.num_classes} classes')
  t = time.time()
  synth(np.zeros((1, h, w), np.int32))  # compile now, not on the first request
  log.info('Generator compiled in %.1f s', time.time() - t)
  app = flask.Flask(__name__)
  app.config['MAX_CONTENT_LENGTH'] = 32 << 20

  @app.get('/')
  def page():
    return flask.send_file(PAGE, mimetype='text/html')

  @app.get('/api/info')
  def info():
    return flask.jsonify(
        height=h, width=w, multimodal=synth.multimodal, outputs=list(synth.outputs),
        step=synth.step, dataset=str(synth.config.dataset.name),
        classes=[{'id': i, 'name': n, 'color': '#%02x%02x%02x' % tuple(int(c) for c in col)}
                 for i, (n, col) in enumerate(zip(synth.class_names, synth.palette))])

  def read_label(form, files) -> np.ndarray:
    if 'label_png' in files and files['label_png'].filename:
      f = files['label_png']
      return sources.read_id_map(_Upload(f.read(), f.filename), 'uploaded label map')
    if 'label_ids' in form:
      raw = np.frombuffer(base64.b64decode(form['label_ids'], validate=True), np.uint8)
      if raw.size != h * w:
        raise ValueError(f'painted label map has {raw.size} pixels, expected {h}x{w}')
      return raw.reshape(h, w)
    raise ValueError('no label map: paint one or upload a PNG of class ids')

  @app.post('/api/generate')
  def generate():
    try:
      label = synth.check_labels(read_label(flask.request.form, flask.request.files),
                                 'label map')
      seed = int(flask.request.form.get('seed', 0) or 0)
      style = None
      f = flask.request.files.get('style')
      if f is not None and f.filename:
        style = synthesize.read_style(synth, _Upload(f.read(), f.filename))
      out = synth(label, seed=seed, style=style)
    except (ValueError, OSError) as e:  # BadExampleError is a ValueError
      return flask.jsonify(error=str(e)), 400
    result = {'image': png_data_url(samples.to_uint8(out['image'][0])),
              'label': base64.b64encode(label[0].astype(np.uint8).tobytes()).decode('ascii')}
    if 'edge' in out:
      result['edge'] = png_data_url(samples.to_uint8(out['edge'][0]))
    return flask.jsonify(result)

  @app.errorhandler(Exception)
  def internal(e):  # anything unexpected: a message on the page, the server keeps running
    import werkzeug  # pylint: disable=import-outside-toplevel
    if isinstance(e, werkzeug.exceptions.HTTPException):
      return flask.jsonify(error=f'{e.code} {e.name}: {e.description}'), e.code
    log.exception('request failed')
    return flask.jsonify(error=f'internal error: {type(e).__name__}: {e}'), 500

  return app


def main(argv: list[str] | None = None) -> None:
  """Console entry point: loads the checkpoint, compiles, serves until Ctrl-C."""
  FLAGS.unparse_flags()
  try:
    argv = FLAGS(list(sys.argv if argv is None else argv))
    if len(argv) > 1 or not _WORKDIR.value:
      raise flags.Error('usage: demo --workdir=RUN [--config=FILE --host=H --port=P]')
    import ecgan_jax  # pylint: disable=import-outside-toplevel
    from ecgan_jax import _runtime  # pylint: disable=import-outside-toplevel
    _runtime.use_default_xla_flags()  # before JAX creates its backend
    _runtime.enable_compilation_cache()  # a second start loads the compiled generator
    synth = ecgan_jax.load(_WORKDIR.value, _STEP.value, config=_CONFIG.value)
  except (flags.Error, FileNotFoundError, ValueError) as e:
    sys.exit(f'error: {e}')
  logging.basicConfig(level=logging.INFO)
  app = create_app(synth)
  print(f'ecgan-jax demo: http://{_HOST.value}:{_PORT.value}/ (step {synth.step}, '
        f'{synth.image_size[0]}x{synth.image_size[1]}); Ctrl-C stops it')
  app.run(host=_HOST.value, port=_PORT.value, threaded=True)


if __name__ == '__main__':
  main()
