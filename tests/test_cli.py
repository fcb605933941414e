"Command-line behaviour of the installed `cm-*` commands: output formats, error paths, exit codes."
import json, shutil, subprocess, sys, time
import pytest

def run(*args, timeout=120):
    "Run a console command of the package; fall back to `python -c` if it is not on PATH."
    exe = shutil.which(args[0])
    cmd = [exe, *args[1:]] if exe else [sys.executable, '-c', f'from consistency_models.cli import main_{args[0][3:]} as m; m()', *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

def test_theory_json_structure_and_bands():
    r = run('cm-theory', '--json', '--check')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    t1 = res['theorem1']
    assert set(t1) == {'gaussian', 'mixture'} and set(t1['gaussian']) == {'euler', 'heun'}
    for data in t1.values():
        assert 0.95 <= data['euler']['slope'] <= 1.05
        assert 1.93 <= data['heun']['slope'] <= 2.10
        assert data['heun']['N'] == [40, 80, 160, 320, 640] and len(data['heun']['error']) == 5
    d = res['theorem2']['offset']['D']
    assert res['theorem2']['offset']['N'] == [80, 160, 320, 640, 1280]
    assert all(3.8 <= a / b <= 4.2 for a, b in zip(d[1:], d[2:]))
    p = res['prop1']['karras']
    assert p['N'] == [10, 100, 1000, 10000, 100000] and set(p['loss']) == {'-5', '1', '10'}

def test_theory_table_is_readable():
    r = run('cm-theory')
    assert r.returncode == 0, r.stderr
    for word in ('Theorem 1', 'Theorem 2', 'Proposition 1', 'Bands'):
        assert word in r.stdout
    assert 'FAIL' not in r.stdout

@pytest.mark.parametrize('args', [['--bogus'], ['--json', 'extra'], ['--check=maybe']])
def test_theory_bad_options_one_line_exit_2(args):
    r = run('cm-theory', *args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith('cm-theory: error:')
    assert 'Traceback' not in r.stderr

# ------------------------------------------------------------------ cm-train and cm-sample
import numpy as np

TINY = ['run.total_nimg=2560', 'run.progress=false', 'run.log_nimg=512', 'run.sample_nimg=2560']

@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    "A finished tiny toy2d run, made through the command line."
    run_dir = tmp_path_factory.mktemp('cli') / 'toy'
    r = run('cm-train', '--preset', 'toy2d', '--out', str(run_dir), *TINY)
    assert r.returncode == 0, r.stderr
    return run_dir

def test_train_writes_the_run_folder(toy_run):
    for f in ('config.json', 'log.jsonl', 'loss.png', 'checkpoints/last.safetensors'):
        assert (toy_run / f).is_file(), f
    assert list(toy_run.glob('samples_*.png'))
    recs = [json.loads(l) for l in (toy_run / 'log.jsonl').read_text().splitlines()]
    assert recs[-1]['nimg'] == 2560 and all(np.isfinite(r['loss']) for r in recs)

def test_sample_png_and_npz(toy_run, tmp_path):
    r = run('cm-sample', '--ckpt', str(toy_run), '--steps', '2', '--n', '10', '--out', str(tmp_path / 's.npz'))
    assert r.returncode == 0, r.stderr
    a = np.load(tmp_path / 's.npz')['samples']
    assert a.shape == (10, 2) and np.isfinite(a).all()
    r = run('cm-sample', '--ckpt', str(toy_run / 'checkpoints'), '--out', str(tmp_path / 's.png'))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 's.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no temporary files left

def test_existing_run_is_never_overwritten(toy_run):
    before = {p: p.stat().st_mtime_ns for p in toy_run.rglob('*') if p.is_file()}
    r = run('cm-train', '--preset', 'toy2d', '--out', str(toy_run), *TINY)
    assert r.returncode == 2 and 'already holds a run' in r.stderr
    assert {p: p.stat().st_mtime_ns for p in toy_run.rglob('*') if p.is_file()} == before

# Bad options, values and files of every command: tests/test_errors.py.

def test_train_under_torchrun_two_cpu_processes(tmp_path):
    exe = shutil.which('cm-train')
    if exe is None: pytest.skip('cm-train is not installed')
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', exe,
                        '--preset', 'toy2d', '--out', str(tmp_path / 'ddp'), *TINY],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / 'ddp' / 'checkpoints' / 'last.safetensors').is_file()
