"bench/gpu_check.py, the one-command GPU check, in its CPU quick mode: it must run end to end and pass on a CPU too."
import json, math, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ['environment', 'gpu_paths', 'digits_training', 'train_step', 'sampler_speed']


def test_gpu_check_cpu_quick(tmp_path):
    out = tmp_path / 'gpu_out'
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'MPLBACKEND': 'Agg'}
    p = subprocess.run([sys.executable, str(ROOT / 'bench' / 'gpu_check.py'), '--device', 'cpu', '--quick', '--out', str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    tail = (p.stdout + p.stderr)[-4000:]
    assert p.returncode == 0, tail

    report = json.loads((out / 'gpu_check.json').read_text())
    assert report['status'] == 'ok', tail
    assert report['meta']['dev_modules_imported'] == []  # the GPU machine has no nbdev and no pytest
    assert [s['id'] for s in report['sections']] == SECTIONS
    for s in report['sections']:
        assert s['status'] in ('ok', 'skipped'), (s['id'], s['status'], s['checks'])
        assert s['checks'], f"section {s['id']} ran no check"
        for c in s['checks']:
            assert c['status'] in ('ok', 'skipped'), (s['id'], c)
            if c['status'] == 'skipped': assert c.get('reason'), (s['id'], c)  # a skip always says why
    sec = {s['id']: s for s in report['sections']}
    assert sec['environment']['data']['library_version'] and sec['environment']['data']['fastcore']
    # the CUDA-only check is recorded as skipped with a reason, not silently dropped
    assert any(c['status'] == 'skipped' and 'CUDA' in c['reason'] for c in sec['gpu_paths']['checks'])
    runs = sec['digits_training']['data']['runs']
    assert set(runs) == {'fp32/off', 'bf16/off'}
    for r in runs.values():
        assert r['resumed_at'] == r['checkpoint_step'] == r['steps'] and all(math.isfinite(l) for l in r['losses'])
    assert 'bf16/off vs fp32/off' in sec['digits_training']['data']['comparisons']
    rows = sec['train_step']['data']['rows']
    assert len(rows) == 1 and rows[0]['status'] == 'ok' and rows[0]['result']['img_per_s'] > 0
    samplers = sec['sampler_speed']['data']['samplers']
    assert {k: v['nfe'] for k, v in samplers.items()} == {'consistency 1-step': 1, 'consistency 2-step': 2, 'EDM Heun 35-NFE': 35}

    text = (out / 'gpu_check.txt').read_text()
    assert 'result: OK' in text and 'EDM Heun 35-NFE' in text and 'GFLOP/img' in text
    for title in ('1. Environment', '2. GPU-specific checks', '3. Short training runs', '4. Training-step throughput', '5. Sampler speed'):
        assert title in text



def test_gpu_check_only_and_rows(tmp_path):
    "`--only` runs the named sections and reports the others as not run; bad --only/--rows values are one-line errors."
    gc = [sys.executable, str(ROOT / 'bench' / 'gpu_check.py'), '--device', 'cpu', '--quick']
    p = subprocess.run(gc + ['--out', str(tmp_path / 'o'), '--only', 'environment,gpu_paths'], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    report = json.loads((tmp_path / 'o' / 'gpu_check.json').read_text())
    status = {s['id']: s['status'] for s in report['sections']}
    assert status == dict(environment='ok', gpu_paths='ok', digits_training='not run', train_step='not run', sampler_speed='not run')
    names = [c['name'] for s in report['sections'] for c in s['checks']]
    assert any(n.startswith('every objective on the device') for n in names)
    assert '[not run: left out by --only]' in (tmp_path / 'o' / 'gpu_check.txt').read_text()
    for bad, word in ((['--only', 'digits'], 'unknown section'), (['--rows', 'ict:fp32:off'], 'expected objective'),
                      (['--rows', 'ict:fp8:off:4'], 'is not')):
        p = subprocess.run(gc + ['--out', str(tmp_path / 'bad')] + bad, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and word in p.stderr.strip().splitlines()[-1], (bad, p.stderr)
