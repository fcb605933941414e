"""`cm-edit` through the installed command: every task on the kept digits models, and every bad input or option.

The models are the ones the editing chapter uses (`nbs/models/`: iCT on 8×8 digits and on tinted RGB digits).
Each failing case checks the exit code, a single line naming the problem, and that no file was written or changed.
"""
import numpy as np, pytest
from pathlib import Path
from PIL import Image
from test_errors import command, run, expect, TINY

MODELS = Path(__file__).resolve().parent.parent / 'nbs' / 'models'
DIGITS, RGB = MODELS / 'digits_long', MODELS / 'digits_rgb'

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A folder with 6 digits samples (.npz), a 4×4 version, a grey PNG, and a few broken files."
    d = tmp_path_factory.mktemp('edit')
    r = run(command('cm-sample') + ['--ckpt', str(DIGITS), '--n', '6', '--out', 'digits.npz'], cwd=d)
    assert r.returncode == 0, r.stderr
    x = np.load(d / 'digits.npz')['samples']
    np.savez(d / 'small.npz', images=x.reshape(6, 1, 4, 2, 4, 2).mean((3, 5)))
    np.savez(d / 'odd.npz', images=x[:3])
    np.savez(d / 'rgb.npz', images=np.repeat(x, 3, axis=1))
    np.savez(d / 'two.npz', a=x, b=x)
    np.savez(d / 'flat.npz', images=np.zeros(5))
    np.savez(d / 'ints.npz', images=np.zeros((2, 1, 8, 8), dtype=np.int64))
    Image.fromarray(((x[0, 0] + 1) * 127.5).round().astype('uint8')).save(d / 'one.png')
    m = np.zeros((8, 8), dtype='uint8'); m[:, 4:] = 255
    Image.fromarray(m).save(d / 'mask.png'); Image.fromarray(m[:4, :4]).save(d / 'small_mask.png')
    (d / 'fake.png').write_text('not a picture'); (d / 'broken.npz').write_bytes(b'PK\x03\x04 truncated')
    return d

def edit(work, *opts):
    "Run cm-edit on the digits model; it must succeed."
    r = run(command('cm-edit') + ['--ckpt', str(DIGITS), *opts], cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout

@pytest.mark.parametrize('opts, shape', [
    (['--task', 'inpaint', '--mask', 'strokes'], (6, 1, 8, 8)),
    (['--task', 'inpaint', '--mask', 'mask.png', '--levels', '80,1.5,1'], (6, 1, 8, 8)),
    (['--task', 'stroke', '--sigma', '1.5'], (6, 1, 8, 8)),
    (['--task', 'denoise', '--sigma', '0.4', '--levels', '0.2'], (6, 1, 8, 8)),
    (['--task', 'interpolate', '--frames', '5'], (15, 1, 8, 8)),     # 3 pairs, 5 images each
])
def test_tasks_write_npz(work, opts, shape):
    out = f"out_{opts[1]}_{len(opts)}.npz"
    edit(work, '--input', 'digits.npz', *opts, '--out', out)
    a = np.load(work / out)
    assert a['edited'].shape == shape and np.isfinite(a['edited']).all()
    if opts[1] == 'inpaint' and 'mask.png' in opts:   # the mask file: white (right half) is filled, the left half kept
        np.testing.assert_array_equal(a['edited'][..., :4], np.load(work / 'digits.npz')['samples'][..., :4])

def test_superres_png_and_interpolate_without_input(work):
    assert 'superres' in edit(work, '--task', 'superres', '--input', 'small.npz', '--steps', '2', '--out', 'sr.png')
    assert Image.open(work / 'sr.png').size[0] >= 256
    edit(work, '--task', 'interpolate', '--n', '2', '--frames', '4', '--out', 'noise.npz')
    assert np.load(work / 'noise.npz')['edited'].shape == (8, 1, 8, 8)
    assert 'input' not in np.load(work / 'noise.npz').files

def test_colorize_keeps_luminance(work):
    r = run(command('cm-edit') + ['--ckpt', str(RGB), '--task', 'colorize', '--input', 'rgb.npz', '--steps', '2', '--out', 'col.npz'], cwd=work)
    assert r.returncode == 0, r.stderr
    a = np.load(work / 'col.npz')
    lum = (a['edited'] * np.array([0.299, 0.587, 0.114])[:, None, None]).sum(1)
    np.testing.assert_allclose(lum, np.load(work / 'digits.npz')['samples'][:, 0], atol=1e-5)

BAD = [  # options (after --ckpt DIGITS), the words the one line must contain
    (['--input', 'digits.npz'], '--task must be one of'),
    (['--task', 'blur', '--input', 'digits.npz'], '--task must be one of'),
    (['--task', 'inpaint'], '--input is required for inpaint'),
    (['--task', 'inpaint', '--input', 'missing.npz'], "'missing.npz' does not exist"),
    (['--task', 'inpaint', '--input', 'broken.npz'], 'cannot read broken.npz as .npz'),
    (['--task', 'inpaint', '--input', 'fake.png'], 'cannot read fake.png as an image'),
    (['--task', 'inpaint', '--input', 'two.npz'], "holds arrays ['a', 'b']; name one 'images'"),
    (['--task', 'inpaint', '--input', 'flat.npz'], 'an array of shape (5,)'),
    (['--task', 'inpaint', '--input', 'ints.npz'], 'holds torch.int64 values'),
    (['--task', 'inpaint', '--input', 'small.npz'], 'images of shape (1, 4, 4), but the model makes (1, 8, 8)'),
    (['--task', 'denoise', '--sigma', '1', '--input', 'rgb.npz'], 'images of shape (3, 8, 8), but the model makes (1, 8, 8)'),
    (['--task', 'superres', '--input', 'digits.npz'], "are not the model's (1, 8, 8) shrunk by a whole factor"),
    (['--task', 'colorize', '--input', 'digits.npz'], 'colorize needs a model of RGB images'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--mask', 'circle'], '--mask must be box, left, right, top, bottom, strokes'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--mask', 'small_mask.png'], 'a mask of shape (1, 1, 4, 4) does not fit 6 images'),
    (['--task', 'interpolate', '--input', 'odd.npz'], 'needs pairs of images (an even number), got 3'),
    (['--task', 'denoise', '--input', 'digits.npz'], '--sigma is required for denoise'),
    (['--task', 'denoise', '--input', 'digits.npz', '--sigma', '-1'], '--sigma must be > 0'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--levels', '80,x'], '--levels: expected numbers'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--levels', '1,80'], 'sigmas must decrease'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--steps', '0'], 'need --steps >= 1'),
    (['--task', 'interpolate', '--frames', '1'], '--frames >= 2'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--out', 'e.jpg'], '--out must end in .png or .npz'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--out', 'digits.npz'], 'exists; pass --overwrite'),
    (['--task', 'inpaint', '--input', 'digits.npz', '--device', 'tpu'], 'device'),
]

@pytest.mark.parametrize('opts, says', BAD, ids=[' '.join(o) for o, _ in BAD])
def test_bad_inputs_and_options(work, opts, says):
    expect(command('cm-edit') + ['--ckpt', str(DIGITS), *opts], 2, says, work, cwd=work)

def test_missing_checkpoint_and_models_that_cannot_edit(work, tmp_path):
    expect(command('cm-edit') + ['--ckpt', 'nowhere', '--task', 'inpaint', '--input', 'digits.npz'], 2, "'nowhere' does not exist", work, cwd=work)
    for preset, says in (('toy2d', 'cm-edit edits images'), ('digits_edm', 'is an EDM denoiser')):
        r = run(command('cm-train') + ['--preset', preset, '--out', str(tmp_path / preset), *TINY], cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        expect(command('cm-edit') + ['--ckpt', str(tmp_path / preset), '--task', 'denoise', '--sigma', '1', '--input', 'digits.npz'],
               2, says, work, cwd=work)
