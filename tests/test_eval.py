"""cm-eval end to end (a digits run and an EDM run), cm-sample with an EDM run and with a recorded 2-step level,
and cm-eval's one-line errors. The feature network is trained once into a temporary cache shared by the module."""
import json
from pathlib import Path
import pytest
from test_errors import command, run, expect

MODELS = Path(__file__).resolve().parent.parent / 'nbs' / 'models'  # kept class-conditional models (chapter 15)
TINY = ['run.total_nimg=512', 'run.progress=false', 'run.sample_nimg=0', 'data.batch_size=64']


@pytest.fixture(scope='module')
def place(tmp_path_factory):
    "A folder with a tiny run of the default (class-conditional iCT), a tiny unconditional EDM run, and the feature-network cache."
    d = tmp_path_factory.mktemp('eval')
    for name, extra in (('cm', []), ('edm', ['--preset', 'digits_edm'])):
        r = run([*command('cm-train'), '--out', str(d / name), *TINY, *extra], cwd=d)
        assert r.returncode == 0, r.stderr[-3000:]
    return d


def evaluate(place, *args):
    return run([*command('cm-eval'), '--cache', str(place / 'cache'), *args], cwd=place, timeout=900)


def test_cm_eval_digits(place):
    r = evaluate(place, '--ckpt', 'cm', '--n', '600', '--steps', '1,2')
    assert r.returncode == 0, r.stderr[-3000:]
    for row in ('held-out real (floor)', 'Gaussian fit (baseline)', '1-step', '2-step (σ_mid=0.821)', 'FD-digits', 'precision'):
        assert row in r.stdout, r.stdout
    res = json.loads((place / 'cm' / 'eval.json').read_text())
    assert res['floor_n'] == 300 and res['n'] == 600 and res['steps'] == [1, 2] and res['sampler'] == 'consistency'
    assert res['feature_net']['accuracy'] > 0.9 and res['feature_net']['key'].startswith('digits-1x8x8-')
    rows = res['rows']
    assert rows['1-step']['chunks'] == 2 and rows['held-out real (floor)']['n'] == 300
    assert 'accuracy' in rows['1-step'] and 'accuracy' not in rows['held-out real (floor)']  # the default is conditional
    # a 512-image model is far from real digits: above the floor on FD, below it on precision
    assert rows['1-step']['fd'] > 2 * rows['held-out real (floor)']['fd']
    assert rows['1-step']['precision'] < rows['held-out real (floor)']['precision']
    # the same settings give the same numbers (written elsewhere: eval.json is not replaced without --overwrite)
    r2 = evaluate(place, '--ckpt', 'cm', '--n', '600', '--out', 'again.json')
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert json.loads((place / 'again.json').read_text())['rows'] == rows


def test_cm_eval_edm_run_uses_heun(place):
    r = evaluate(place, '--ckpt', 'edm', '--n', '300', '--steps', '3')
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((place / 'edm' / 'eval.json').read_text())
    assert res['sampler'] == 'edm_heun' and list(res['rows'])[2] == 'EDM Heun, 3 NFE' and res['sigma_mid'] is None
    expect([*command('cm-eval'), '--ckpt', 'edm', '--steps', '2', '--out', 'x.json', '--cache', str(place / 'cache')],
           2, 'odd number', place, cwd=place)


def test_cm_sample_edm_run(place):
    r = run([*command('cm-sample'), '--ckpt', 'edm', '--n', '4', '--steps', '5', '--out', 'edm.npz'], cwd=place)
    assert r.returncode == 0 and 'EDM Heun, 5 evaluations' in r.stdout, r.stderr
    expect([*command('cm-sample'), '--ckpt', 'edm', '--steps', '4', '--out', 'edm4.npz'], 2, 'odd number', place, cwd=place)


def test_recorded_level_and_a_broken_record(place, tmp_path):
    import shutil
    rd = tmp_path / 'cm'; shutil.copytree(place / 'cm', rd)
    (rd / 'sampling.json').write_text(json.dumps(dict(sigma_mid=2.5)))
    r = run([*command('cm-sample'), '--ckpt', str(rd), '--steps', '2', '--n', '4', '--out', str(tmp_path / 'a.npz')])
    assert r.returncode == 0, r.stderr
    (rd / 'sampling.json').write_text('{"level": 1}')
    expect([*command('cm-sample'), '--ckpt', str(rd), '--steps', '2', '--out', str(tmp_path / 'b.npz')], 2,
           'not a sampling settings file', tmp_path)


@pytest.mark.parametrize('args, says', [
    ([], '--ckpt is required'),
    (['--ckpt', 'missing'], "'missing' does not exist"),
    (['--ckpt', 'cm', '--steps', '1,two'], 'whole numbers'),
    (['--ckpt', 'cm', '--steps', '0'], '>= 1'),
    (['--ckpt', 'cm', '--sigma-mid', 'low'], "a number or 'auto'"),
    (['--ckpt', 'cm', '--sigma-mid', '0'], 'must be > 0'),
    (['--ckpt', 'cm', '--n', '3', '--out', 'n.json'], '--n must be >= 10'),
    (['--ckpt', 'cm', '--out', 'table.txt'], 'must end in .json'),
    (['--ckpt', 'cm', '--out', 'nowhere/e.json'], 'does not exist'),
    (['--ckpt', 'cm', '--device', 'tpu', '--out', 'd.json'], "unknown device 'tpu'"),
    (['--ckpt', 'edm', '--guidance', '1', '--out', 'g.json'], 'needs a class-conditional run'),
    (['--ckpt', 'cm', '--guidance', '1', '--out', 'g.json'], 'needs an EDM run or a guided-distillation student'),
])
def test_cm_eval_bad_options(place, args, says):
    expect([*command('cm-eval'), '--cache', str(place / 'cache'), *args], 2, says, place, cwd=place)


def test_cm_eval_refuses_to_replace_results(place):
    (place / 'cm' / 'eval.json').exists() or (place / 'cm' / 'eval.json').write_text('{}')
    expect([*command('cm-eval'), '--ckpt', 'cm', '--cache', str(place / 'cache')], 2, '--overwrite', place, cwd=place)


def test_cm_eval_loose_checkpoint_needs_out(place, tmp_path):
    import shutil
    f = tmp_path / 'weights.safetensors'; shutil.copy(place / 'cm' / 'checkpoints' / 'last.safetensors', f)
    expect([*command('cm-eval'), '--ckpt', str(f)], 2, '--out is required', tmp_path)


def test_cm_eval_class_conditional_and_guided(place):
    "A conditional run is asked for every class in turn and scored on them; --guidance measures the guided sampler."
    rows = {}
    for name, w, steps in (('digits_gcd', '0', '1'), ('digits_gcd', '4', '1'), ('digits_edm_cond', '2', '35')):
        out = place / f'{name}_{w}.json'
        r = evaluate(place, '--ckpt', str(MODELS / name), '--n', '300', '--steps', steps, '--guidance', w, '--out', str(out))
        assert r.returncode == 0, r.stderr[-3000:]
        assert 'accuracy' in r.stdout and f'at guidance w = {w},' in r.stdout, r.stdout
        res = json.loads(out.read_text())
        assert res['guidance'] == float(w) and 'accuracy' not in res['rows']['held-out real (floor)']
        rows[name, w] = list(res['rows'].values())[2]
    assert rows['digits_gcd', '4']['accuracy'] > 0.97                                               # chapter 15: 1.000
    assert rows['digits_gcd', '4']['recall'] < rows['digits_gcd', '0']['recall'] - 0.2              # guidance trades diversity away
    assert rows['digits_edm_cond', '2']['accuracy'] > 0.97                                          # 35 evaluations: 1.000 (9 break guidance)
