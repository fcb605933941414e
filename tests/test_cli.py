"Command-line behaviour of the installed `cm-*` commands: output formats, error paths, exit codes."
import json, shutil, subprocess, sys, time
import pytest

def run(*args, timeout=120):
    "Run a console command of the package; fall back to `python -c` if it is not on PATH."
    exe = shutil.which(args[0])
    cmd = [exe, *args[1:]] if exe else [sys.executable, '-c', f'from consistency_models.cli import main_{args[0][3:]} as m; m()', *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

def test_theory_json_structure_and_bands():
    t0 = time.time()
    r = run('cm-theory', '--json', '--check')
    took = time.time() - t0
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
    assert took < 60, f'cm-theory took {took:.1f} s'

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
