"""The paint-by-label demo served on 127.0.0.1 and driven in headless Chromium (selenium).

Needs Debian's chromium and chromium-driver (.ci/run installs them); skipped with a message when
they are missing. ECGAN_WRITE_SCREENSHOT=1 also writes the screenshot to docs/demo_screenshot.png.
"""
import base64
import io
import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM, CHROMEDRIVER = shutil.which('chromium'), shutil.which('chromedriver')
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason='browser test needs chromium + chromedriver (apt-get install chromium chromium-driver)')


@pytest.fixture(scope='module')
def server(tiny_checkpoint):
  """The demo app on 127.0.0.1 (a free port) in a background thread; yields its URL."""
  from werkzeug.serving import make_server  # pylint: disable=import-outside-toplevel

  import ecgan_jax  # pylint: disable=import-outside-toplevel
  from ecgan_jax.cli import demo  # pylint: disable=import-outside-toplevel
  app = demo.create_app(ecgan_jax.load(tiny_checkpoint[0]))
  srv = make_server('127.0.0.1', 0, app, threaded=True)
  thread = threading.Thread(target=srv.serve_forever, daemon=True)
  thread.start()
  yield f'http://127.0.0.1:{srv.server_port}/'
  srv.shutdown()
  thread.join(10)


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
  opts = webdriver.ChromeOptions()
  opts.binary_location = CHROMIUM
  for flag in ('--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync',
               '--disable-dev-shm-usage', '--window-size=1100,600',
               f'--user-data-dir={tmp_path_factory.mktemp("chromium_profile")}'):
    opts.add_argument(flag)
  driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
  driver.set_page_load_timeout(60)
  yield driver
  driver.quit()


def data_url_image(url: str) -> np.ndarray:
  assert url.startswith('data:image/png;base64,'), url[:40]
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(',', 1)[1]))))


def upload(browser, wait, path):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  browser.execute_script("document.getElementById('error').textContent = '';")
  field = browser.find_element(By.ID, 'upload')
  browser.execute_script("arguments[0].value = '';", field)
  field.send_keys(str(path))
  wait.until(lambda d: d.find_element(By.ID, 'error').text or
             d.find_element(By.ID, 'status').text.startswith('done'))
  return browser.find_element(By.ID, 'error').text


def test_paint_submit_and_bad_uploads_in_a_real_browser(server, browser, tmp_path):
  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import WebDriverWait
  wait = WebDriverWait(browser, 60)
  browser.get(server)
  wait.until(lambda d: d.find_element(By.ID, 'status').text.startswith('ready'))
  names = [b.text for b in browser.find_elements(By.CSS_SELECTOR, '.cls')]
  assert names == ['0 sky', '1 grass', '2 road', '3 building', '4 water', '5 tree']

  # Paint: grass over the lower half (brush strokes), a building block; then generate.
  canvas = browser.find_element(By.ID, 'canvas')
  w, h = canvas.size['width'], canvas.size['height']
  browser.find_element(By.ID, 'class-1').click()
  for y in range(h // 2 + 10, h // 2 + 190, 40):
    ActionChains(browser).move_to_element_with_offset(canvas, -w // 2 + 5, y - h // 2) \
        .click_and_hold().move_by_offset(w - 10, 0).release().perform()
  browser.find_element(By.ID, 'class-3').click()
  ActionChains(browser).move_to_element_with_offset(canvas, -60, -20).click_and_hold() \
      .move_by_offset(40, 0).move_by_offset(0, -60).release().perform()
  browser.find_element(By.ID, 'seed').clear()
  browser.find_element(By.ID, 'seed').send_keys('3')
  browser.find_element(By.ID, 'generate').click()
  wait.until(lambda d: d.find_element(By.ID, 'status').text.startswith('done'))
  assert browser.find_element(By.ID, 'error').text == ''
  image = data_url_image(browser.find_element(By.ID, 'result-image').get_attribute('src'))
  edge = data_url_image(browser.find_element(By.ID, 'result-edge').get_attribute('src'))
  assert image.shape == (32, 32, 3) and edge.shape[:2] == (32, 32)
  assert image.std() > 2 and len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # not blank
  painted = np.frombuffer(base64.b64decode(browser.execute_script('return b64FromBytes(ids);')),
                          np.uint8)
  assert set(np.unique(painted)) == {0, 1, 3}  # the strokes reached the label map that was sent
  shot = tmp_path / 'demo.png'
  browser.save_screenshot(str(shot))
  if os.environ.get('ECGAN_WRITE_SCREENSHOT'):
    shutil.copy(shot, os.path.join(REPO, 'docs', 'demo_screenshot.png'))

  # A good upload replaces the canvas; bad ones get a message on the page.
  good = np.zeros((32, 32), np.uint8)
  good[16:] = 2
  Image.fromarray(good).save(tmp_path / 'good.png')
  assert upload(browser, wait, tmp_path / 'good.png') == ''
  rgb = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
  Image.fromarray(rgb).save(tmp_path / 'colour.png')
  assert 'colour.png: uploaded label map is an RGB colour image' in upload(
      browser, wait, tmp_path / 'colour.png')
  Image.fromarray(np.zeros((20, 32), np.uint8)).save(tmp_path / 'small.png')
  assert 'size 20x32 (HxW) does not match the model (32x32)' in upload(
      browser, wait, tmp_path / 'small.png')
  Image.fromarray(np.full((32, 32), 77, np.uint8)).save(tmp_path / 'ids.png')
  assert 'ids [77] are outside the label space 0..5' in upload(browser, wait, tmp_path / 'ids.png')
  (tmp_path / 'broken.png').write_bytes(b'not a png')
  assert 'broken.png: corrupt or truncated' in upload(browser, wait, tmp_path / 'broken.png')
  # The server survived all of it.
  browser.find_element(By.ID, 'generate').click()
  wait.until(lambda d: d.find_element(By.ID, 'status').text.startswith('done'))
  assert browser.find_element(By.ID, 'error').text == ''
