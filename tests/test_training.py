"Trainer fault tolerance and equivalences: exact resume, SIGKILL mid-run, corrupted checkpoints, torchrun/DDP, NaN guard."
import json, math, os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from consistency_models.config import Config, apply_overrides, get_config
from consistency_models.checkpoints import CheckpointError, NonFiniteError, load_model, read_log, save_checkpoint
from consistency_models.training import Trainer, step_indices, train

# A tiny run: 2-D moons, a small MLP with dropout (so dropout masks must be replayed exactly), ECT, 8 steps.
TINY = ['run.total_nimg=512', 'data.batch_size=64', 'run.log_nimg=64', 'run.ckpt_nimg=1G', 'run.sample_nimg=0',
        'run.progress=false', 'model.dropout=0.1', 'model.net_kwargs={"hidden": 64, "depth": 2}', 'objective.ect.stages=4']

def tiny(run_dir, *extra): return get_config('toy2d', [f'run.dir={run_dir}', *TINY, *extra])

def weights(tr): return {k: v.clone() for k, v in tr._weights().items()}

SCRIPT = "import sys; from consistency_models.config import get_config; from consistency_models.training import train; train(get_config(sys.argv[1], sys.argv[2:]))"

def _env(threads=1):
    return {**os.environ, 'OMP_NUM_THREADS': str(threads), 'PYTHONUNBUFFERED': '1'}

# ---------------------------------------------------------------- resume

def test_resume_is_bit_identical(tmp_path):
    "N steps in one go == N/2 steps, a stop, a new Trainer that resumes, N/2 more (CPU: torch.equal)."
    full = Trainer(tiny(tmp_path / 'full')).fit()
    half = Trainer(tiny(tmp_path / 'split')).fit(steps=4)
    assert half.step == 4 and (tmp_path / 'split/checkpoints/last.safetensors').is_file()
    resumed = Trainer(tiny(tmp_path / 'split', 'run.resume=true'))
    assert resumed.step == 4
    resumed.fit()
    assert resumed.step == full.step == 8
    wa, wb = weights(full), weights(resumed)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    sa, sb = full.opt.state_dict()['state'], resumed.opt.state_dict()['state']
    assert all(torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i])
    la, lb = read_log(tmp_path / 'full'), read_log(tmp_path / 'split')
    assert [r['step'] for r in lb] == list(range(1, 9))  # no duplicated log lines after resuming
    assert [r['loss'] for r in la] == [r['loss'] for r in lb]

def test_resume_with_accumulation_and_images(tmp_path):
    "The same on 8×8 digits with a small U-Net, gradient accumulation and ECT (all of a real run's paths)."
    cfg = lambda d, *more: get_config('digits', [*more, f'run.dir={d}', 'run.total_nimg=96', 'data.batch_size=16', 'data.accum=2',
                                          'run.log_nimg=16', 'run.sample_nimg=0', 'run.progress=false', 'model.dropout=0.2',
                                          'model.net_kwargs={"model_channels": 8, "channel_mult": (1,), "attn_resolutions": ()}'])
    full = Trainer(cfg(tmp_path / 'a')).fit()
    Trainer(cfg(tmp_path / 'b')).fit(steps=3)
    resumed = Trainer(cfg(tmp_path / 'b', 'run.resume=true')).fit()
    wa, wb = weights(full), weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

def test_class_conditional_resume_and_shards(tmp_path):
    "Labels and their dropout: a conditional run resumes bit-identically, and micro-batches split the step's labels."
    cfg = lambda d, *more: get_config('digits', [*more, f'run.dir={d}', 'run.total_nimg=96', 'data.batch_size=16',
                                               'run.log_nimg=16', 'run.sample_nimg=0', 'run.progress=false', 'model.label_dropout=0.3',
                                               'model.net_kwargs={"model_channels": 8, "channel_mult": (1,), "attn_resolutions": ()}'])
    full = Trainer(cfg(tmp_path / 'a', 'data.accum=2')).fit()
    Trainer(cfg(tmp_path / 'b', 'data.accum=2')).fit(steps=3)
    resumed = Trainer(cfg(tmp_path / 'b', 'data.accum=2', 'run.resume=true')).fit()
    wa, wb = weights(full), weights(resumed)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    one = Trainer(cfg(tmp_path / 'c'))
    for step in (0, 5):
        whole = one.batch_kwargs(step, 0)['class_labels']
        assert torch.equal(torch.cat([full.batch_kwargs(step, s)['class_labels'] for s in (0, 1)]), whole)
    assert load_model(tmp_path / 'a').label_dim == 10
    ect = Trainer(cfg(tmp_path / 'e', 'objective.name=ect', 'data.accum=2')).fit()  # ECT cuts the labels to its rows with r > 0
    assert ect.step == 6 and all(torch.isfinite(v).all() for v in weights(ect).values())

MODELS = Path(__file__).resolve().parent.parent / 'nbs' / 'models'  # kept models: the conditional EDM teacher

def test_guided_distillation(tmp_path):
    "Guided CD: the student starts as its teacher (w input off); the step's weights w do not depend on accumulation; bad teachers refused."
    T = MODELS / 'digits_edm_cond'
    cfg = lambda d, *more: get_config('digits_gcd', [f'run.dir={d}', f'objective.cd.teacher={T}', f'model.init_from={T}', 'run.total_nimg=64',
                                              'data.batch_size=16', 'run.log_nimg=16', 'run.sample_nimg=0', 'run.progress=false', *more])
    two = Trainer(cfg(tmp_path / 'a', 'data.accum=2'))
    x, noise, y = torch.randn(6, 1, 8, 8), torch.linspace(-1, 1, 6), torch.arange(6)
    with torch.no_grad():
        assert torch.equal(two.model.backbone(x, noise, class_labels=y, guidance=torch.full((6,), 2.)), load_model(T).backbone(x, noise, class_labels=y))
    two.fit()
    one = Trainer(cfg(tmp_path / 'b')).fit()  # the same steps in one micro-batch
    wa, wb = weights(two), weights(one)
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)
    assert load_model(tmp_path / 'a').guidance and not load_model(T).guidance
    plain = tmp_path / 'plain_edm'  # an unconditional EDM teacher cannot be guided
    Trainer(get_config('digits_edm', [f'run.dir={plain}', 'run.total_nimg=16', 'data.batch_size=16', 'run.sample_nimg=0', 'run.progress=false'])).fit()
    with pytest.raises(ValueError, match='trained without labels'): Trainer(cfg(tmp_path / 'c', f'objective.cd.teacher={plain}'))

# ---------------------------------------------------------------- crash safety

def test_sigkill_leaves_a_loadable_checkpoint(tmp_path):
    "A training process killed with SIGKILL while it checkpoints every step leaves a checkpoint that loads and resumes."
    run = tmp_path / 'run'
    args = [f'run.dir={run}', *TINY, 'run.total_nimg=10M', 'run.ckpt_nimg=64', 'run.log_nimg=640']
    p = subprocess.Popen([sys.executable, '-c', SCRIPT, 'toy2d', *args], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ck, t0 = run / 'checkpoints' / 'last.safetensors', time.time()
        while not ck.exists():
            assert p.poll() is None, p.stdout.read().decode()
            assert time.time() - t0 < 120, 'no checkpoint after 120 s'
            time.sleep(0.05)
        time.sleep(1.5)  # let it write a few more checkpoints; the kill lands at an arbitrary point
        assert p.poll() is None
        p.send_signal(signal.SIGKILL); p.wait(30)
    finally:
        if p.poll() is None: p.kill(); p.wait()
    assert p.returncode == -signal.SIGKILL
    model = load_model(run)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values())
    tr = Trainer(get_config('toy2d', [*args, 'run.resume=true']))
    assert tr.step >= 1
    tr.fit(steps=2)  # and training goes on from there
    assert not list((run / 'checkpoints').glob('.*tmp*'))  # leftovers of the killed writer were removed

# ---------------------------------------------------------------- corrupted checkpoints

@pytest.fixture
def finished_run(tmp_path):
    run = tmp_path / 'run'
    Trainer(tiny(run)).fit(steps=2)
    return run

def test_truncated_weights_give_a_clear_error(finished_run):
    w = finished_run / 'checkpoints' / 'last.safetensors'
    w.write_bytes(w.read_bytes()[:w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(w)): load_model(finished_run)
    with pytest.raises(CheckpointError, match=str(w)): Trainer(tiny(finished_run, 'run.resume=true'))

def test_corrupted_weights_are_detected_on_resume(finished_run):
    "Same size, one flipped byte in the tensor data: the state file's CRC-32 catches it."
    w = finished_run / 'checkpoints' / 'last.safetensors'
    b = bytearray(w.read_bytes()); b[-10] ^= 0xFF; w.write_bytes(bytes(b))
    with pytest.raises(CheckpointError, match='CRC'): Trainer(tiny(finished_run, 'run.resume=true'))

def test_truncated_or_missing_state_gives_a_clear_error(finished_run):
    (s,) = (finished_run / 'checkpoints').glob('last-state-*.pt')
    s.write_bytes(s.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=str(s)): Trainer(tiny(finished_run, 'run.resume=true'))
    s.unlink()
    with pytest.raises(CheckpointError, match='missing'): Trainer(tiny(finished_run, 'run.resume=true'))

def test_missing_checkpoint_is_a_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match='no checkpoint'): load_model(tmp_path)

# ---------------------------------------------------------------- NaN guard

class PoisonedObjective:
    "Wraps an objective; at the given steps its loss becomes NaN (as if the forward pass had overflowed)."
    def __init__(self, objective, bad_steps): self.objective, self.bad_steps = objective, set(bad_steps)
    def __getattr__(self, name): return getattr(self.objective, name)
    def __call__(self, model, x0, step, **kw):
        loss, info = self.objective(model, x0, step, **kw)
        return (loss * float('nan') if step in self.bad_steps else loss), info

def test_nan_steps_are_skipped_and_counted(tmp_path):
    tr = Trainer(tiny(tmp_path))
    tr.objective = PoisonedObjective(tr.objective, {2, 3, 5})
    snapshots = {}
    orig = tr.train_step
    def step_and_record():
        before = weights(tr); orig(); snapshots[tr.step - 1] = before, weights(tr)
    tr.train_step = step_and_record
    tr.fit()
    assert tr.step == 8 and tr.bad_total == 3 and tr.bad_in_row == 0
    for k in (2, 3, 5):  # a skipped step changes nothing: weights, EMA
        b, a = snapshots[k]
        assert all(torch.equal(b[n], a[n]) for n in b)
    b, a = snapshots[4]
    assert not torch.equal(b['model.backbone.inp.weight'], a['model.backbone.inp.weight'])  # a good step does
    assert all(torch.isfinite(v).all() for v in weights(tr).values())
    log = read_log(tmp_path)
    assert log[-1]['bad_steps'] == 3  # one record per step: a skipped step's record has no loss, the others a finite one
    assert [r['step'] for r in log if r['loss'] is None] == [3, 4, 6] and all(r['skipped'] == 1 for r in log if r['loss'] is None)
    assert all(math.isfinite(r['loss']) for r in log if r['loss'] is not None)
    assert load_model(tmp_path) is not None

def test_too_many_bad_steps_in_a_row_stop_with_a_clear_message(tmp_path):
    tr = Trainer(tiny(tmp_path, 'run.max_bad_steps=3', 'run.ckpt_nimg=64'))
    tr.objective = PoisonedObjective(tr.objective, range(3, 100))
    with pytest.raises(NonFiniteError, match='3 non-finite steps in a row'): tr.fit()
    assert tr.bad_total == 3
    m = load_model(tmp_path)  # the last checkpoint (step 3) holds finite weights
    assert all(torch.isfinite(t).all() for t in m.state_dict().values())

def test_nonfinite_weights_are_never_saved(tmp_path):
    with pytest.raises(NonFiniteError, match='non-finite'):
        save_checkpoint(tmp_path, {'w': torch.tensor([1., float('inf')])}, {'step': 1})
    assert not list(tmp_path.glob('*.safetensors'))

def test_nan_batch_is_skipped_and_counted(tmp_path):
    "A batch with NaN in it (a corrupt record) is refused by the objective; the trainer skips that step and goes on."
    tr = Trainer(tiny(tmp_path))
    orig = tr.get_batch
    def get_batch(step, shard):
        x = orig(step, shard)
        if step in (1, 4): x = x.clone(); x[0, 0] = float('nan')
        return x
    tr.get_batch = get_batch
    tr.fit()
    assert tr.step == 8 and tr.bad_total == 2 and tr.bad_in_row == 0
    assert all(torch.isfinite(v).all() for v in weights(tr).values())
    assert read_log(tmp_path)[-1]['bad_steps'] == 2

def test_all_nan_data_stops_with_a_clear_message(tmp_path):
    tr = Trainer(tiny(tmp_path, 'run.max_bad_steps=3'))
    tr.x[:] = float('nan')
    with pytest.raises(NonFiniteError, match='3 non-finite steps in a row'): tr.fit()

# ---------------------------------------------------------------- sharding and torchrun

def test_shards_of_a_step_partition_its_batch():
    idx = step_indices(5, 100, 32, seed=1)
    assert len(idx) == 32 and len(set(idx.tolist())) == 32  # within an epoch's permutation: no repeats

def test_torchrun_two_processes_match_one_process(tmp_path):
    """Two CPU processes (gloo) with global batch 64 follow the trajectory of one process with the same global batch
    split into 2 accumulation steps: same samples, noise and dropout per micro-batch; only the order of the float sums
    differs (all-reduce average vs accumulation), so losses agree to 1e-5 relative and weights to 1e-5."""
    common = [*TINY, 'data.accum=1']
    script = tmp_path / 'train.py'; script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(script), 'toy2d', f'run.dir={tmp_path/"ddp"}', *common],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    single = Trainer(tiny(tmp_path / 'one', 'data.accum=2')).fit()
    ld, ls = read_log(tmp_path / 'ddp'), read_log(tmp_path / 'one')
    assert [x['step'] for x in ld] == [x['step'] for x in ls] == list(range(1, 9))
    for a, b in zip(ld, ls): assert a['loss'] == pytest.approx(b['loss'], rel=1e-5)
    ddp = load_model(tmp_path / 'ddp', which='model').state_dict()
    one = single.model.state_dict()
    for k in one: torch.testing.assert_close(ddp[k], one[k], rtol=1e-5, atol=1e-5)

def test_batch_split_does_not_change_the_run(tmp_path):
    """Without dropout, each sample's noise is a function of (seed, step, sample index): 2 gloo processes, 1 process and
    1 process with 2 accumulation steps train the same weights up to the order of float sums."""
    common = [*TINY, 'model.dropout=0']
    script = tmp_path / 'train.py'; script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        str(script), 'toy2d', f'run.dir={tmp_path/"ddp"}', *common], env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = {'ddp': load_model(tmp_path / 'ddp', which='model').state_dict()}
    for name, accum in (('one', 1), ('accum2', 2)):
        runs[name] = Trainer(get_config('toy2d', [f'run.dir={tmp_path / name}', *common, f'data.accum={accum}'])).fit().model.state_dict()
    for k in runs['one']:
        torch.testing.assert_close(runs['ddp'][k], runs['one'][k], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(runs['accum2'][k], runs['one'][k], rtol=1e-5, atol=1e-5)
    losses = {n: [r['loss'] for r in read_log(tmp_path / n)] for n in runs}
    assert losses['ddp'] == pytest.approx(losses['one'], rel=1e-5) and losses['accum2'] == pytest.approx(losses['one'], rel=1e-5)

def test_batch_must_split_into_micro_batches(tmp_path):
    with pytest.raises(ValueError, match='micro-batches'): Trainer(tiny(tmp_path, 'data.batch_size=63', 'data.accum=2'))

# ---------------------------------------------------------------- overrides (what the CLI relies on)

def test_overrides_types_and_errors():
    c = apply_overrides(Config(), ['run.total_nimg=200M', 'optimizer.lr=2e-4', 'run.compile=true', 'data.size=none',
                                   'objective.ect.q=256', 'model.net_kwargs={"model_channels": 64}'])
    assert (c.run.total_nimg, c.optimizer.lr, c.run.compile, c.data.size) == (200_000_000, 2e-4, True, None)
    assert c.objective.ect.q == 256 and c.model.net_kwargs == {'model_channels': 64}
    with pytest.raises(KeyError, match='did you mean run.total_nimg'): apply_overrides(Config(), ['run.total_img=5'])
    with pytest.raises(ValueError, match='optimizer.lr'): apply_overrides(Config(), ['optimizer.lr=fast'])
    with pytest.raises(KeyError, match='not a dict'): apply_overrides(Config(), ['run.seed.x=1'])

# ---------------------------------------------------------------- the digits preset (slow)

@pytest.mark.slow
def test_digits_preset_makes_recognisable_digits(tmp_path):
    """The default preset end to end (minutes). Samples must lie near real digits: mean distance to the nearest of the
    scikit-learn's 1797 digits (64 pixels in [0, 1]) below 2.0, where a held-out real digit gives 1.03 and a digit with
    shuffled pixels 3.5; and a classifier trained on real digits must find every class among them, mostly the class
    asked for (the default is class-conditional; the classes are asked for in turn)."""
    pytest.importorskip('sklearn')
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import NearestNeighbors
    from consistency_models.sampling import sample, label_kwargs
    tr = train(get_config('digits', [f'run.dir={tmp_path}', 'run.progress=false']))
    X, y = load_digits(return_X_y=True)
    nn, clf = NearestNeighbors(n_neighbors=1).fit(X / 16), LogisticRegression(max_iter=2000).fit(X / 16, y)
    for steps in (1, 2):
        asked = torch.arange(500) % 10
        x = sample(tr.ema, (500, 1, 8, 8), steps=steps, generator=torch.Generator().manual_seed(0),
                   sigmas=None if steps == 1 else [80., 0.821], **label_kwargs(tr.ema, 500, asked))
        z = ((x.clamp(-1, 1) + 1) / 2).reshape(500, 64).numpy()
        d = nn.kneighbors(z)[0].mean()
        assert d < 2.0, f'{steps}-step samples: mean nearest-digit distance {d:.2f}'
        counts = torch.bincount(torch.from_numpy(clf.predict(z)), minlength=10)
        assert (counts >= 10).all(), f'{steps}-step samples: classes {counts.tolist()}'
        read = (torch.from_numpy(clf.predict(z)) == asked).double().mean().item()
        assert read > 0.8, f'{steps}-step samples: the class asked for is read in {read:.2f} of them'
    assert (tmp_path / 'loss.png').is_file() and len(list(tmp_path.glob('samples_*.png'))) == 4

# ---------------------------------------------------------------- compiled student and target

def test_compiled_student_and_target_share_dropout(tmp_path):
    "run.compile=true with an EMA target (CT): the target is compiled like the student, so both passes draw one mask."
    from consistency_models.losses import student_and_target
    from consistency_models.training import ema_update
    tr = Trainer(tiny(tmp_path / 'ct', 'objective.name=ct', 'model.dropout=0.5', 'run.compile=true', 'run.device=cpu'))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in tr.model.parameters(): p.add_(0.1 * torch.randn_like(p))  # zero-initialised output layers hide dropout
    ema_update(tr.target, tr.model, 0.)                                     # target = student, so only masks can differ
    x, t = torch.randn(32, 2), torch.full((32,), 1.5)
    a, b = student_and_target(tr.net, x, t, x, t, tr.target_net)
    assert (a.detach() - b).abs().max() < 1e-4
    a, b = student_and_target(tr.net, x, t, x, t, tr.target)                # the eager target draws other masks
    assert (a.detach() - b).abs().max() > 1e-2
