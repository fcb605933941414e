"""Every mistake a user can make, and every failure a machine can cause, through the installed commands.

Each case runs a real `cm-*` command in a fresh process and checks: the exit code (2 for the user's mistakes
and bad files, 1 for failures of the run itself), exactly one line on stderr that says what went wrong, no
traceback, and every file that existed before the command byte-identical afterwards (nothing overwritten or lost).
"""
import errno, hashlib, json, os, pickle, shutil, subprocess, sys, time
from pathlib import Path
import numpy as np, pytest, torch

TINY = ['run.total_nimg=1280', 'run.progress=false', 'run.log_nimg=640', 'run.sample_nimg=0', 'data.batch_size=128']

def command(name):
    "The installed console script, or the same entry point through `python -c` when it is not on PATH."
    exe = shutil.which(name)
    return [exe] if exe else [sys.executable, '-c', f'from consistency_models.cli import main_{name[3:]} as m; m()']

def run(args, cwd=None, env=None, timeout=300):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'XDG_CACHE_HOME': str(cwd or '/nonexistent'), **(env or {})}
    env.pop('CM_TRACEBACK', None)
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)

def snapshot(*roots):
    "{path: sha1} of every file under the roots."
    return {p: hashlib.sha1(p.read_bytes()).hexdigest() for r in roots if Path(r).exists()
            for p in ([Path(r)] if Path(r).is_file() else Path(r).rglob('*')) if p.is_file()}

def expect(args, code, says, *roots, cwd=None, env=None, new_files_ok=False):
    "Run a command that must fail with `code` and one line containing `says`, touching no file under `roots`."
    before = snapshot(*roots)
    r = run(args, cwd=cwd, env=env)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert says in lines[0], lines[0]
    after = snapshot(*roots)
    assert {p: h for p, h in after.items() if p in before} == before, 'a file that existed before was changed or removed'
    if not new_files_ok: assert set(after) == set(before), f'new files: {sorted(set(after) - set(before))}'
    return lines[0]

@pytest.fixture(scope='module')
def toy_run(tmp_path_factory):
    "A finished tiny toy2d run, made by cm-train."
    d = tmp_path_factory.mktemp('errors') / 'toy'
    r = run([*command('cm-train'), '--preset', 'toy2d', '--out', str(d), *TINY])
    assert r.returncode == 0, r.stderr
    return d

@pytest.fixture
def toy_copy(toy_run, tmp_path):
    "A private copy of the finished run, to damage."
    shutil.copytree(toy_run, tmp_path / 'run')
    return tmp_path / 'run'

# ------------------------------------------------------------------ cm-train: options and config values

@pytest.mark.parametrize('args, says', [
    (['--preset', 'nope'], 'unknown preset'),
    (['run.total_img=5'], 'unknown config key'),
    (['run.total_nimg=lots'], 'run.total_nimg'),
    (['nonsense'], 'key=value'),
    (['--bogus'], 'unrecognized arguments'),
    (['data.batch_size=0'], 'data.batch_size=0'),
    (['data.batch_size=-5'], 'data.batch_size=-5'),
    (['run.total_nimg=0'], 'at least one image'),
    (['data.size=-3'], 'data.size=-3'),
    (['run.device=tpu'], "unknown device 'tpu'"),
    (['model.net_kwargs.bogus=1'], "'bogus' is not an argument of network"),
    (['model.net_kwargs.img_resolution=3'], "'img_resolution' is set from the data"),
    (['model.network=resnet'], 'not a network preset'),
    (['objective.name=gan'], 'objective.name'),
    (['optimizer.name=sgd'], 'optimizer.name'),
    (['optimizer.lr=-1'], 'optimizer.lr'),
    (['run.precision=fp8'], 'run.precision'),
    (['data.name=imagenet'], "data.name='imagenet'"),
    (['model.dropout=1.5'], 'model.dropout'),
    (['schedule.ema_halflife_nimg=-5'], 'schedule.ema_halflife_nimg'),
    (['objective.ect.stage=4'], 'objective.ect.stages'),
    (['objective.name=cd'], 'objective.cd.teacher'),
    (['objective.metric=huber'], "objective.metric='huber' is not one of squared_l2, l1, pseudo_huber, lpips"),
    (['objective.name=ict', 'objective.weighting=edm'], "objective.weighting='edm' is not one of uniform, gap"),
    (['--preset', 'digits_ect', 'objective.metric=l1'], 'do not apply to ect'),
    (['--preset', 'digits_cd', 'objective.cd.teacher=no/such/run'], "objective.cd.teacher='no/such/run': no checkpoint"),
    (['--preset', 'digits_ect_tuned', 'model.init_from=no/such/run'], "model.init_from='no/such/run': no checkpoint"),
    (['run.log_nimg=-1'], 'run.log_nimg'),
    (['data.accum=0'], 'data.accum=0'),
    (['--preset', 'toy2d', 'data.batch_size=63', 'data.accum=2'], 'micro-batches'),
])
def test_train_bad_option_or_value(tmp_path, args, says):
    expect([*command('cm-train'), '--out', str(tmp_path / 'a'), *args], 2, says, tmp_path)
    assert not (tmp_path / 'a').exists()  # checked before anything is written

def test_cd_teacher_must_be_a_denoiser(toy_run, tmp_path):
    "A consistency model is not a teacher: CD's step needs a denoiser D(x, σ) (an EDM run)."
    expect([*command('cm-train'), '--preset', 'toy_cd', '--out', str(tmp_path / 'a'), f'objective.cd.teacher={toy_run}', *TINY],
           2, 'not an EDM denoiser', tmp_path, toy_run)

def test_train_cuda_without_a_gpu(tmp_path):
    if torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    expect([*command('cm-train'), '--out', str(tmp_path / 'a'), 'run.device=cuda'], 2, 'no usable CUDA GPU', tmp_path)

# ------------------------------------------------------------------ cm-train: run folders

def test_out_names_a_file(tmp_path):
    f = tmp_path / 'notes.txt'; f.write_text('mine')
    expect([*command('cm-train'), '--out', str(f), *TINY], 2, 'is a file', tmp_path)

def test_out_is_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / 'mine').mkdir(); (tmp_path / 'mine' / 'config.yaml').write_text('precious')
    expect([*command('cm-train'), '--out', str(tmp_path / 'mine'), *TINY], 2, 'not empty', tmp_path)

def test_out_already_holds_a_run(toy_copy):
    expect([*command('cm-train'), '--preset', 'toy2d', '--out', str(toy_copy), *TINY], 2, 'already holds a run', toy_copy)

def test_resume_without_a_run(tmp_path):
    expect([*command('cm-train'), '--out', str(tmp_path / 'none'), '--resume'], 2, 'nothing to resume', tmp_path)

def test_resume_with_a_preset(toy_copy):
    expect([*command('cm-train'), '--preset', 'toy2d', '--out', str(toy_copy), '--resume'], 2, 'drop --preset', toy_copy)

def test_resume_refuses_changes_of_meaning(toy_copy):
    line = expect([*command('cm-train'), '--out', str(toy_copy), '--resume', 'run.seed=1', 'data.batch_size=64',
                   'objective.name=ict'], 2, 'run.seed stored 0, requested 1', toy_copy)
    assert 'data.batch_size stored 128, requested 64' in line and "objective.name stored 'ect', requested 'ict'" in line

def test_read_only_place(tmp_path):
    if os.geteuid() == 0: target = Path('/sys/cm-test-run')  # root may write anywhere else
    else: (tmp_path / 'ro').mkdir(mode=0o500); target = tmp_path / 'ro' / 'run'
    expect([*command('cm-train'), '--out', str(target), *TINY], 2, 'not permitted' if os.geteuid() == 0 else 'denied', tmp_path)

def test_parent_is_a_file(tmp_path):
    (tmp_path / 'f').write_text('x')
    expect([*command('cm-train'), '--out', str(tmp_path / 'f' / 'run'), *TINY], 2, str(tmp_path / 'f'), tmp_path)

def test_folder_in_use_by_another_process(tmp_path):
    "A second trainer on a folder that a live process has locked stops with one line naming that process."
    run_dir = tmp_path / 'run'
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; from consistency_models.checkpoints import RunLock; '
                               'RunLock(sys.argv[1]).acquire(); print("locked", flush=True); time.sleep(120)', str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        line = expect([*command('cm-train'), '--preset', 'toy2d', '--out', str(run_dir), *TINY], 2, 'in use by another training process', tmp_path)
        assert f'PID {holder.pid}' in line
    finally: holder.kill(); holder.wait()

def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    run_dir = tmp_path / 'run'; run_dir.mkdir(); (run_dir / '.lock').write_text('999999\n')
    r = run([*command('cm-train'), '--preset', 'toy2d', '--out', str(run_dir), *TINY])
    assert r.returncode == 0, r.stderr
    assert (run_dir / 'checkpoints' / 'last.safetensors').is_file()

# ------------------------------------------------------------------ cm-train: data

def test_data_set_not_found_offline(tmp_path):
    expect([*command('cm-train'), '--out', str(tmp_path / 'a'), 'data.name=mnist', f'data.root={tmp_path}', *TINY],
           2, 'mnist (train)', tmp_path, cwd=tmp_path)

def test_corrupt_idx_file(tmp_path):
    (tmp_path / 'train-images-idx3-ubyte').write_bytes(b'\x00\x00\x08\x01' + bytes(20))  # a labels magic number
    (tmp_path / 'train-labels-idx1-ubyte').write_bytes(b'\x00\x00\x08\x01\x00\x00\x00\x01\x03')
    expect([*command('cm-train'), '--out', str(tmp_path / 'a'), 'data.name=mnist', f'data.root={tmp_path}', *TINY],
           2, 'magic number', tmp_path, cwd=tmp_path)

def fake_cifar(folder, first_batch:bytes):
    folder.mkdir(parents=True)
    good = pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'labels': [0, 1]}, protocol=2)
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        (folder / name).write_bytes(first_batch if name == 'data_batch_1' else good)

class Evil:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))

@pytest.mark.parametrize('kind, says', [('truncated', 'truncated or corrupt'), ('evil', 'refused as unsafe')])
def test_bad_cifar_pickle(tmp_path, kind, says):
    marker = tmp_path / 'pwned'
    good = pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'labels': [0, 1]}, protocol=2)
    fake_cifar(tmp_path / 'cifar-10-batches-py', good[:len(good) // 2] if kind == 'truncated' else pickle.dumps(Evil(marker)))
    expect([*command('cm-train'), '--out', str(tmp_path / 'a'), 'data.name=cifar10', f'data.root={tmp_path}',
            'model.network=unet_tiny', *TINY], 2, says, tmp_path, cwd=tmp_path)
    assert not marker.exists()

def test_init_from_a_missing_run(tmp_path):
    expect([*command('cm-train'), '--preset', 'toy2d', '--out', str(tmp_path / 'a'), f'model.init_from={tmp_path / "none"}', *TINY],
           2, 'no checkpoint', tmp_path)

# ------------------------------------------------------------------ cm-train: damaged checkpoints on resume

def test_resume_with_a_malicious_state_file(toy_copy, tmp_path):
    marker = tmp_path / 'pwned'
    (state,) = (toy_copy / 'checkpoints').glob('last-state-*.pt')
    torch.save({'optimizer': Evil(marker)}, state)
    line = expect([*command('cm-train'), '--out', str(toy_copy), '--resume'], 2, 'refused as unsafe', toy_copy)
    assert not marker.exists() and 'weights_only' not in line

def test_resume_with_a_truncated_state_file(toy_copy):
    (state,) = (toy_copy / 'checkpoints').glob('last-state-*.pt')
    state.write_bytes(state.read_bytes()[:100])
    expect([*command('cm-train'), '--out', str(toy_copy), '--resume'], 2, 'truncated or corrupted', toy_copy)

def test_resume_with_truncated_weights(toy_copy):
    w = toy_copy / 'checkpoints' / 'last.safetensors'
    w.write_bytes(w.read_bytes()[:w.stat().st_size // 2])
    expect([*command('cm-train'), '--out', str(toy_copy), '--resume'], 2, 'cannot read checkpoint', toy_copy)

DISK_FULL = """
import errno, sys
import consistency_models.checkpoints as t
real, calls, limit = t._write_tmp, [], int(sys.argv[1])
def full(path, data):
    calls.append(path)
    if len(calls) > limit: raise OSError(errno.ENOSPC, 'No space left on device', str(path))
    return real(path, data)
t._write_tmp = full
from consistency_models.cli import main_train
sys.argv = ['cm-train', *sys.argv[2:]]
main_train()
"""

def test_disk_full_while_checkpointing(tmp_path):
    "The disk fills up at the second checkpoint: exit 1, one line that says so and names the intact checkpoint."
    run_dir = tmp_path / 'run'
    r = run([sys.executable, '-c', DISK_FULL, '2', '--preset', 'toy2d', '--out', str(run_dir), *TINY, 'run.ckpt_nimg=128'])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr
    assert 'no space left on device' in lines[0] and 'last.safetensors (step 1) is intact' in lines[0], lines[0]
    assert not [p for p in (run_dir / 'checkpoints').iterdir() if p.name.startswith('.')]  # no temporary file left
    r = run([*command('cm-train'), '--out', str(run_dir), '--resume'])  # and the run goes on from the intact checkpoint
    assert r.returncode == 0, r.stderr

# ------------------------------------------------------------------ cm-sample

COND = Path(__file__).resolve().parent.parent / 'nbs' / 'models' / 'digits'  # the kept default model (class-conditional, seed 0)

def test_sample_classes(tmp_path):
    "--class: every sample of the class asked for, a list taken in turn, or a row per class."
    for spec, n, kept in (('3', 6, 6), ('1,4', 6, 6), ('all', 25, 20)):   # 'all': 25 // 10 = 2 of each class
        r = run([*command('cm-sample'), '--ckpt', str(COND), '--n', str(n), '--class', spec, '--out', str(tmp_path / f'{spec}.npz')])
        assert r.returncode == 0, r.stderr[-2000:]
        assert np.load(tmp_path / f'{spec}.npz')['samples'].shape == (kept, 1, 8, 8)
    r = run([*command('cm-sample'), '--ckpt', str(COND), '--class', 'all', '--out', str(tmp_path / 'all.png')])
    assert r.returncode == 0 and (tmp_path / 'all.png').stat().st_size > 0, r.stderr[-2000:]
    r = run([*command('cm-sample'), '--ckpt', str(COND.parent / 'digits_edm_cond'), '--class', '3', '--guidance', '2', '--steps', '9',
             '--n', '4', '--out', str(tmp_path / 'guided.npz')])
    assert r.returncode == 0 and 'guidance w = 2.0' in r.stdout, r.stderr[-2000:]
    assert 'guidance needs fine ODE steps; at 9 Heun evaluations' in r.stderr, r.stderr  # 9 steps: a note, not a refusal
    assert np.load(tmp_path / 'guided.npz')['samples'].shape == (4, 1, 8, 8)
    for w in ('0', '4'):  # a guided-distillation student takes w as an input: one evaluation, different samples
        r = run([*command('cm-sample'), '--ckpt', str(COND.parent / 'digits_gcd'), '--class', '3', '--guidance', w, '--n', '4',
                 '--out', str(tmp_path / f'student{w}.npz')])
        assert r.returncode == 0 and f'1 step, guidance w = {w}.0' in r.stdout, r.stderr[-2000:]
    assert not np.array_equal(*(np.load(tmp_path / f'student{w}.npz')['samples'] for w in ('0', '4')))

@pytest.mark.parametrize('args, says', [
    ([], '--ckpt is required'),
    (['--ckpt', '{tmp}/missing'], 'does not exist'),
    (['--ckpt', '{run}', '--out', '{tmp}/x.jpg'], '.png or .npz'),
    (['--ckpt', '{run}', '--out', '{tmp}/no/such/dir/x.png'], 'does not exist'),
    (['--ckpt', '{run}', '--steps', '0'], '>= 1'),
    (['--ckpt', '{run}', '--n', '0'], '>= 1'),
    (['--ckpt', '{run}', '--steps', 'two'], 'invalid int value'),
    (['--ckpt', '{run}', '--sigma-mid', '-1'], '> 0'),
    (['--ckpt', '{run}', '--device', 'tpu'], "unknown device 'tpu'"),
    (['--ckpt', '{tmp}/junk.safetensors'], 'cannot read checkpoint'),
    (['--ckpt', '{tmp}/plain.safetensors'], 'not a consistency_models checkpoint'),
    (['--ckpt', '{tmp}/other.safetensors'], 'in the file but'),
    (['--ckpt', '{run}', '--out', '{tmp}/exists.png'], '--overwrite'),
    (['--ckpt', '{run}', '--class', '3'], 'this model is unconditional'),
    (['--ckpt', '{cond}', '--class', '10'], "10 is not a class of this model (0..9)"),
    (['--ckpt', '{cond}', '--class', 'three'], "expected a class, a list like 1,4,7, or 'all'"),
    (['--ckpt', '{cond}', '--class', ','], "',' is not a class of this model"),
    (['--ckpt', '{run}', '--guidance', '1'], 'needs a class-conditional run'),
    (['--ckpt', '{cond}', '--guidance', '1'], 'needs an EDM run or a guided-distillation student'),
    (['--ckpt', '{cond}', '--guidance', '-1'], '--guidance must be a finite number >= 0'),
])
def test_sample_bad_options_and_files(toy_run, tmp_path, args, says):
    from safetensors.torch import save_file, load_file
    from safetensors import safe_open
    (tmp_path / 'junk.safetensors').write_bytes(b'not a checkpoint at all')
    save_file({'w': torch.zeros(3)}, str(tmp_path / 'plain.safetensors'))
    w = toy_run / 'checkpoints' / 'last.safetensors'
    with safe_open(str(w), framework='pt') as f: meta = f.metadata()
    cfg = json.loads(meta['config']); cfg['model']['net_kwargs'] = {'hidden': 32}  # another network than the tensors'
    save_file(load_file(str(w)), str(tmp_path / 'other.safetensors'), metadata={**meta, 'config': json.dumps(cfg)})
    (tmp_path / 'exists.png').write_bytes(b'precious')
    expect([*command('cm-sample'), '--out', str(tmp_path / 'out.png'), *[a.format(tmp=tmp_path, run=toy_run, cond=COND) for a in args]],
           2, says, tmp_path, toy_run)

def test_sample_cuda_without_a_gpu(toy_run, tmp_path):
    if torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    expect([*command('cm-sample'), '--ckpt', str(toy_run), '--out', str(tmp_path / 'x.png'), '--device', 'cuda'], 2, 'no usable CUDA', tmp_path)

def test_sample_overwrite_replaces_on_request(toy_run, tmp_path):
    (tmp_path / 'x.png').write_bytes(b'old')
    r = run([*command('cm-sample'), '--ckpt', str(toy_run), '--n', '4', '--out', str(tmp_path / 'x.png'), '--overwrite'])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'x.png').read_bytes()[:4] == b'\x89PNG'

# ------------------------------------------------------------------ cm-theory

@pytest.mark.parametrize('args, says', [(['--bogus'], 'unrecognized arguments'), (['--json', 'extra'], 'unrecognized arguments')])
def test_theory_bad_options(tmp_path, args, says):
    expect([*command('cm-theory'), *args], 2, says, tmp_path)
