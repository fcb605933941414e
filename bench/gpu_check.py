#!/usr/bin/env python
"""One command that checks the library's GPU paths: environment, the notebooks' `#| gpu` checks, a short
digits training run in fp32/bf16/fp16 with and without torch.compile (checkpoint, resume, sampling), the
CIFAR-10 DDPM++ training-step throughput (through bench/train_step.py), and the sampler speed.

    python bench/gpu_check.py --out DIR [--device auto|cuda|cpu] [--quick] [--budget S] [--keep]

Writes DIR/gpu_check.json (every number) and DIR/gpu_check.txt (a readable report) and exits non-zero if
any check failed. Every check runs in its own try/except: a failure is recorded with a one-line reason and
the rest still run. It imports the library's runtime dependencies and the standard library only (no nbdev,
no pytest), so it runs where those are installed (see bench/README.md, "GPU check").
"""
import argparse, contextlib, datetime, gc, importlib.metadata, importlib.util, json, math, os, platform, shutil
import statistics, subprocess, sys, tempfile, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))  # check this checkout, not an installed copy

import torch

LOSS_RTOL = 0.05  # tolerance on the relative difference of the mean logged loss of two digits runs (why: bench/README.md)
SECTIONS = [('environment', '1. Environment'),
            ('gpu_paths', "2. GPU-specific checks (the notebooks' `#| gpu` cells, as plain Python)"),
            ('digits_training', '3. Short training runs on digits (fit, checkpoint, resume, sample)'),
            ('train_step', '4. Training-step throughput, CIFAR-10 DDPM++ on synthetic data (bench/train_step.py)'),
            ('sampler_speed', "5. Sampler speed: consistency sampling against EDM's 35-evaluation Heun sampler")]


# ------------------------------------------------------------------------------------------ bookkeeping
class Skip(Exception):
    "Raised by a check that does not apply here (the reason is recorded)."


def one_line(e:BaseException, n:int=240) -> str:
    "'Type: first line of the message' (and the line of this script or the library that raised it)."
    msg = (str(e).strip().splitlines() or [''])[0]
    tb = [f for f in traceback.extract_tb(e.__traceback__) if 'consistency_models' in f.filename or f.filename == __file__]
    where = f' [{Path(tb[-1].filename).name}:{tb[-1].lineno}]' if tb else ''
    return (f'{type(e).__name__}: {msg}' if msg else type(e).__name__)[:n] + where


class Section:
    "One section of the report: its checks (each ok, failed or skipped, with a detail or a reason) and its numbers."
    def __init__(self, sid:str, title:str):
        self.id, self.title, self.checks, self.data, self.notes = sid, title, [], {}, []
        self.status, self.wall_s = 'not run', None

    def check(self, name:str, fn, *args, **kwargs):
        "Run fn(*args, **kwargs) in its own try/except; its return value is the detail. Returns the value (None on failure)."
        t = time.perf_counter()
        try:
            detail = fn(*args, **kwargs)
            rec = dict(name=name, status='ok', detail=detail if isinstance(detail, str) else '')
        except Skip as e: detail, rec = None, dict(name=name, status='skipped', reason=str(e))
        except Exception as e: detail, rec = None, dict(name=name, status='failed', reason=one_line(e))
        rec['wall_s'] = round(time.perf_counter() - t, 3)
        self.checks.append(rec)
        print(f"  [{rec['status']:>7}] {name}: {rec.get('detail') or rec.get('reason') or ''}", flush=True)
        return detail

    def skip(self, name:str, reason:str):
        self.checks.append(dict(name=name, status='skipped', reason=reason, wall_s=0.))
        print(f"  [skipped] {name}: {reason}", flush=True)

    def finish(self):
        st = [c['status'] for c in self.checks]
        self.status = 'failed' if 'failed' in st or not st else ('skipped' if all(s == 'skipped' for s in st) else 'ok')

    def to_dict(self):
        return dict(id=self.id, title=self.title, status=self.status, wall_s=self.wall_s, checks=self.checks,
                    data=self.data, notes=self.notes)


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def dev_rng_state(dev):
    "The state of the global generator that dropout on `dev` draws from."
    return torch.get_rng_state() if dev.type == 'cpu' else getattr(torch, dev.type).get_rng_state(dev)


def free_memory(dev):
    gc.collect()
    if dev.type == 'cuda': torch.cuda.empty_cache()


@torch.no_grad()
def randomize_zero_init(model:torch.nn.Module, seed:int=0, std:float=0.02):
    """Give random values to the parameters the networks initialise to zero (output layers of the blocks and of the UNet),
    so that a freshly built network's output depends on all of it (and on its dropout masks)."""
    g = torch.Generator().manual_seed(seed)
    for q in model.parameters():
        if not q.any(): q.copy_(torch.randn(q.shape, generator=g) * std)
    return model


def pkg_version(name:str):
    try: return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError: return None


def requirements() -> list:
    "The runtime requirements named in settings.ini (names only)."
    import configparser, re
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(ROOT / 'settings.ini')
    req = cp.get('DEFAULT', 'requirements', fallback='torch fastcore numpy scipy matplotlib scikit-learn pillow safetensors tqdm')
    return [re.split(r'[<>=!~ ;\[]', r, maxsplit=1)[0] for r in req.split()]


IMPORT_NAME = {'scikit-learn': 'sklearn', 'pillow': 'PIL'}
NEEDED_HERE = {'torch', 'fastcore', 'numpy', 'scipy', 'scikit-learn', 'safetensors'}  # this script's paths import these


def chi2_pvalue(obs, expected, min_expected:float=5.):
    "Chi-square goodness-of-fit p-value; bins expecting fewer than `min_expected` counts are pooled into one."
    import numpy as np
    from scipy.stats import chisquare
    obs, expected = np.asarray(obs, float), np.asarray(expected, float)
    big = expected >= min_expected
    o, e = list(obs[big]), list(expected[big])
    if (~big).any(): o.append(obs[~big].sum()); e.append(expected[~big].sum())
    o, e = np.array(o), np.array(e)
    return float(chisquare(o, e * o.sum() / e.sum()).pvalue)


# ------------------------------------------------------------------------------------------ plan
def make_plan(cuda:bool, quick:bool) -> dict:
    "What each section runs on this device and mode, and what it leaves out (with the reason)."
    skipped = []
    if cuda and not quick:
        digits = dict(precisions=['fp32', 'bf16', 'fp16'], compiles=['off', 'on'], batch=64, nimg=12_800, resume_nimg=15_360, log_nimg=640)
        rows = [(o, p, c, b) for b in (128, 512) for c in ('off', 'on') for p in ('fp32', 'bf16') for o in ('ect', 'ict')]
        # run order: the configurations that matter most first, so that a time budget drops the least useful ones
        first = [('ect', 'bf16', 'off', 128), ('ect', 'bf16', 'on', 128), ('ect', 'fp32', 'off', 128), ('ict', 'bf16', 'off', 128),
                 ('ict', 'fp32', 'off', 128), ('ect', 'bf16', 'off', 512), ('ict', 'bf16', 'off', 512), ('ect', 'fp32', 'off', 512),
                 ('ict', 'fp32', 'off', 512), ('ect', 'bf16', 'on', 512), ('ict', 'bf16', 'on', 128), ('ect', 'fp32', 'on', 128)]
        order = first + [r for r in rows if r not in first]
        step = dict(rows=order, warmup=3, steps=10, n_images=50_000, timeout_off=240, timeout_on=480)
        sampler = dict(network='cifar10_ddpmpp', shape=(3, 32, 32), batch=128, repeats=5)
    else:
        if quick:
            digits = dict(precisions=['fp32', 'bf16'] if not cuda else ['fp32', 'bf16', 'fp16'], compiles=['off'],
                          batch=16 if not cuda else 64, nimg=128 if not cuda else 3_200,
                          resume_nimg=160 if not cuda else 3_840, log_nimg=32 if not cuda else 320)
        else:  # full mode on a CPU: every precision, no compile
            digits = dict(precisions=['fp32', 'bf16', 'fp16'], compiles=['off'], batch=32, nimg=640, resume_nimg=768, log_nimg=64)
        if not cuda:
            skipped.append('digits: run.compile=true (compiling on a few CPU cores takes minutes; the CUDA run covers it)')
            if quick: skipped.append('digits: fp16 (CPU --quick: fp32 and bf16 only)')
        if cuda:
            skipped.append('digits: run.compile=true (--quick)')
            rows = [('ect', 'bf16', 'off', 128)]
            step = dict(rows=rows, warmup=2, steps=5, n_images=50_000, timeout_off=240, timeout_on=480)
        elif quick:
            rows = [('ict', 'fp32', 'off', 2)]
            step = dict(rows=rows, warmup=1, steps=1, n_images=64, timeout_off=600, timeout_on=900)
        else:
            rows = [('ect', 'fp32', 'off', 4), ('ict', 'fp32', 'off', 4)]
            step = dict(rows=rows, warmup=1, steps=2, n_images=256, timeout_off=900, timeout_on=900)
        skipped.append(f"train_step: only {', '.join('/'.join(map(str, r)) for r in rows)} "
                       f"({'--quick' if quick else 'CPU'}: the full matrix is ECT and iCT x fp32(TF32), bf16 x compile off, on x batch 128, 512"
                       + (', on a GPU' if not cuda else '') + ')')
        if not cuda:
            skipped.append('train_step: bf16 rows (CPUs without native bf16 take minutes per step of the 56M UNet) and compile=on')
        sampler = dict(network='digits', shape=None, batch=16 if not cuda else 256, repeats=3 if not cuda else 5)
        skipped.append('sampler: the digits network instead of the CIFAR-10 DDPM++ network'
                       + (' (--quick)' if quick else ' (CPU)'))
    return dict(digits=digits, train_step=step, sampler=sampler, skipped=skipped)


# ------------------------------------------------------------------------------------------ 1. environment
def section_environment(sec:Section, ctx):
    d, dev = sec.data, ctx.dev
    d.update(python=platform.python_version(), python_executable=sys.executable, platform=platform.platform(),
             cpu_count=os.cpu_count(), torch=torch.__version__, torch_threads=torch.get_num_threads(),
             cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
             cuda_available=torch.cuda.is_available(), device=str(dev), quick=ctx.quick)

    def library():
        import consistency_models
        d['library_version'], d['library_file'] = consistency_models.__version__, consistency_models.__file__
        if not Path(consistency_models.__file__).resolve().is_relative_to(ROOT):
            raise AssertionError(f'consistency_models imported from {consistency_models.__file__}, not from this checkout {ROOT}')
        return f'consistency_models {consistency_models.__version__} from {Path(consistency_models.__file__).parent}'
    sec.check('library imports from this checkout', library)

    def fastcore_version():
        import fastcore
        d['fastcore'], d['fastcore_file'] = fastcore.__version__, fastcore.__file__
        return f'fastcore {fastcore.__version__} from {Path(fastcore.__file__).parent.parent}'
    sec.check('fastcore', fastcore_version)

    def deps():
        versions, missing, warn = {}, [], []
        for name in requirements():
            mod = IMPORT_NAME.get(name, name)
            try:
                m = importlib.import_module(mod)
                versions[name] = getattr(m, '__version__', None) or pkg_version(name)
            except ImportError as e:
                versions[name] = None
                (missing if name in NEEDED_HERE else warn).append(f'{name} ({type(e).__name__})')
        d['requirements'], d['triton'] = versions, pkg_version('triton')
        if warn:
            sec.notes.append('not installed (declared in settings.ini, not used by these checks): ' + ', '.join(warn))
        if missing: raise AssertionError('cannot import ' + ', '.join(missing))
        return ' '.join(f'{k} {v}' for k, v in versions.items() if v) + (f" (triton {d['triton']})" if d['triton'] else '')
    sec.check('runtime requirements import', deps)

    def device():
        if dev.type == 'cuda':
            if not torch.cuda.is_available(): raise AssertionError(f'--device {ctx.args.device}: torch {torch.__version__} sees no CUDA GPU')
            p = torch.cuda.get_device_properties(dev)
            free, total = torch.cuda.mem_get_info(dev)
            d.update(gpu_name=p.name, gpu_capability=f'{p.major}.{p.minor}', gpu_memory_gib=round(p.total_memory / 2**30, 1),
                     gpu_free_gib=round(free / 2**30, 1), gpu_sms=p.multi_processor_count, gpu_count=torch.cuda.device_count())
            try:
                out = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'], capture_output=True,
                                     text=True, timeout=20)
                d['driver'] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
            except (OSError, subprocess.SubprocessError): d['driver'] = None
        else: d['cpu_name'] = ctx.ts.cpu_name()
        a = torch.randn(256, 256, device=dev, generator=torch.Generator(dev).manual_seed(0))
        err = ((a @ a).cpu().double() - a.cpu().double() @ a.cpu().double()).abs().max().item()
        if not err < 1.:  # TF32 or not, a 256x256 product agrees with float64 to far better than 1
            raise AssertionError(f'a 256x256 matmul on {dev} differs from the CPU by {err}')
        return (f"{d['gpu_name']} (sm {d['gpu_capability']}, {d['gpu_memory_gib']} GiB, {d['gpu_sms']} SMs, driver {d.get('driver')}), "
                f"CUDA {torch.version.cuda}, cuDNN {d['cudnn']}" if dev.type == 'cuda' else f"{d['cpu_name']}, {os.cpu_count()} CPUs")
    sec.check(f'device {dev} works', device)


# ------------------------------------------------------------------------------------------ 2. GPU paths
class DropNet(torch.nn.Module):
    "A small backbone with heavy dropout (06_losses.ipynb's test network)."
    def __init__(self, d=4, p=0.5):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(d + 1, 64), torch.nn.SiLU(), torch.nn.Dropout(p), torch.nn.Linear(64, d))
    def forward(self, x, noise): return self.net(torch.cat([x, noise[:, None].to(x.dtype)], 1))


def section_gpu_paths(sec:Section, ctx):
    from consistency_models.pf_ode import randn, BatchSlice, karras_sigmas
    from consistency_models.curricula import (sample_uniform_index, sample_lognormal_index, sample_lognormal_sigma,
                                              sample_ect_t_r, ect_r_from_t, ict_index_probs)
    from consistency_models.losses import student_and_target
    from consistency_models.parameterization import ConsistencyModel
    from consistency_models.networks import build_network
    from consistency_models.sampling import sample
    import numpy as np
    from scipy.stats import norm
    dev, cuda = ctx.dev, ctx.dev.type == 'cuda'
    cpu_gen = lambda s: torch.Generator().manual_seed(s)
    dev_gen = lambda s: torch.Generator(device=dev).manual_seed(s)

    def randn_cpu_generator():
        for seed in (0, 7, 123):
            a, b = randn((64, 3, 8, 8), cpu_gen(seed), device=dev), randn((64, 3, 8, 8), cpu_gen(seed))
            assert a.device.type == dev.type, f'randn(..., device={dev}) returned a tensor on {a.device}'
            assert torch.equal(a.cpu(), b), f'seed {seed}: the draw moved to {dev} differs from the CPU draw'
        return f'randn with a CPU generator and device={dev}: the CPU draws, bit for bit (3 seeds)'
    sec.check('pf_ode.randn: CPU generator, result on the device = the CPU noise', randn_cpu_generator)

    def randn_device_generator():
        a = randn((100_000,), dev_gen(7))
        assert a.device.type == dev.type, f'a {dev.type} generator drew on {a.device}'
        assert torch.equal(a, randn((100_000,), dev_gen(7))), 'the same seed gave different draws'
        m, s = a.mean().item(), a.std().item()
        assert abs(m) < 0.02 and abs(s - 1) < 0.02, f'mean {m:.4f}, std {s:.4f} of 100k standard normals'
        whole = randn((12, 5), dev_gen(3))
        parts = torch.cat([randn((4, 5), BatchSlice(dev_gen(3), s, 12)) for s in (0, 4, 8)])
        assert torch.equal(whole, parts), 'BatchSlice micro-batches do not reassemble the whole-batch draw'
        same_as_cpu = torch.equal(a.cpu(), randn((100_000,), cpu_gen(7)))
        sec.data['device_generator_equals_cpu_generator'] = same_as_cpu
        return (f'drawn on {a.device}, reproducible, mean {m:+.4f} std {s:.4f}, BatchSlice rows = whole batch'
                + ('' if not cuda else f"; a CUDA generator's numbers {'equal' if same_as_cpu else 'differ from'} the CPU generator's for the same seed (different algorithms: expected)"))
    sec.check('pf_ode.randn: a device generator draws on the device', randn_device_generator)

    def curricula_samplers():  # 05_curricula.ipynb's `#| gpu` cell, on `dev`
        i_dev = sample_uniform_index(41, 8, cpu_gen(7), device=dev)
        assert i_dev.device.type == dev.type and torch.equal(i_dev.cpu(), sample_uniform_index(41, 8, cpu_gen(7))), 'sample_uniform_index'
        gc_ = dev_gen(7)
        il = sample_lognormal_index(karras_sigmas(41), 1000, gc_)
        assert il.device.type == dev.type and 0 <= il.min() and il.max() <= 39, f'sample_lognormal_index: {il.device}, range {il.min()}..{il.max()}'
        s_dev = sample_lognormal_sigma(8, cpu_gen(7), device=dev)
        assert s_dev.device.type == dev.type and torch.equal(s_dev.cpu(), sample_lognormal_sigma(8, cpu_gen(7))), 'sample_lognormal_sigma'
        t, r = sample_ect_t_r(1000, 3, gc_)
        assert t.device.type == dev.type and r.device.type == dev.type, f'sample_ect_t_r: t on {t.device}, r on {r.device}'
        err = (r.cpu() - ect_r_from_t(t.cpu(), 3)).abs().max().item()
        assert err <= 1e-6 * max(1., t.max().item()), f'r(t) on {dev} differs from the CPU mapping by {err}'
        assert (r < t).all() and (r >= 0).all(), 'r outside [0, t)'
        return f'indices, levels and ECT pairs on {dev}; CPU-generator draws equal the CPU ones; |r - r_cpu| <= {err:.1e}'
    sec.check('curricula samplers on the device (05_curricula #| gpu)', curricula_samplers)

    def sampler_distributions():
        n = 20_000
        t, _ = sample_ect_t_r(n, 0, dev_gen(11), dtype=torch.float64)
        edges = norm.ppf(np.linspace(0, 1, 21), -1.1, 2.0)
        p_t = chi2_pvalue(np.histogram(t.log().cpu().numpy(), edges)[0], np.full(20, n / 20))
        s = karras_sigmas(41)
        idx = sample_lognormal_index(s, n, dev_gen(12))
        p_i = chi2_pvalue(torch.bincount(idx.cpu(), minlength=40).numpy(), ict_index_probs(s).double().numpy() * n)
        sec.data['chi2_pvalues'] = dict(ect_t=p_t, ict_index=p_i)
        assert p_t > 1e-4 and p_i > 1e-4, f'chi-square p-values {p_t:.2g} (ECT ln t), {p_i:.2g} (iCT index): not the intended distribution'
        return f'chi-square p = {p_t:.3g} (ECT ln t ~ N(-1.1, 2^2)), {p_i:.3g} (iCT index ~ ict_index_probs), 20k draws each with a {dev.type} generator'
    sec.check('device-generator draws follow the intended distributions', sampler_distributions)

    def dropout_shared_dropnet():  # 06_losses.ipynb's `#| gpu` cell, on `dev`
        torch.manual_seed(0)
        net = ConsistencyModel(DropNet()).to(dev).train()
        xx, tt = torch.randn(8, 4, device=dev), torch.full((8,), 1.5, device=dev)
        a, b = student_and_target(net, xx, tt, xx, tt)
        assert torch.equal(a.detach(), b), f'shared masks: student and target differ by {(a - b).abs().max().item():.3g}'
        a2, b2 = student_and_target(net, xx, tt, xx, tt, share_dropout=False)
        gap = (a2 - b2).abs().max().item()
        assert gap > 1e-3, f'without sharing the outputs should differ (masks are random), max diff {gap:.3g}'
        torch.manual_seed(1); net(xx, tt); after_student = dev_rng_state(dev)
        torch.manual_seed(1); student_and_target(net, xx, tt, xx, 0.5 * tt)
        assert torch.equal(dev_rng_state(dev), after_student), f'the {dev.type} generator does not end where a lone student pass leaves it'
        if cuda:
            cpu_state = torch.get_rng_state(); student_and_target(net, xx, tt, xx, tt)
            assert torch.equal(torch.get_rng_state(), cpu_state), 'student_and_target on CUDA touched the CPU generator'
        a3, b3 = student_and_target(net, xx, tt, xx, 0.5 * tt)
        assert a3.requires_grad and a3.grad_fn is not None and not b3.requires_grad, 'gradient must reach the student only'
        return (f'shared: identical; unshared: differ by {gap:.3g}; the {dev.type} generator ends where the student leaves it'
                + ('; the CPU generator is untouched' if cuda else ''))
    sec.check('losses.student_and_target: dropout masks shared (06_losses #| gpu)', dropout_shared_dropnet)

    for prec in ('fp32', 'bf16'):
        def dropout_shared_unet(prec=prec):
            torch.manual_seed(0)
            net = randomize_zero_init(ConsistencyModel(build_network('unet_tiny', img_resolution=8, in_channels=1, dropout=0.5))).to(dev).train()
            x, t = torch.randn(16, 1, 8, 8, device=dev), torch.full((16,), 1.5, device=dev)
            ac = torch.autocast(dev.type, dtype=torch.bfloat16) if prec == 'bf16' else contextlib.nullcontext()
            with ac:
                a, b = student_and_target(net, x, t, x, t)
                a2, b2 = student_and_target(net, x, t, x, t, share_dropout=False)
            shared, unshared = (a.detach() - b).abs().max().item(), (a2.detach() - b2).abs().max().item()
            scale = a.detach().abs().max().item()
            sec.data.setdefault('unet_dropout', {})[prec] = dict(shared_max_diff=shared, unshared_max_diff=unshared, output_scale=scale)
            tol = (1e-4 if prec == 'fp32' else 2e-2) * max(scale, 1.)  # room for a different attention kernel with/without grad
            assert shared <= tol, f'{prec}: with shared masks the target differs from the student by {shared:.3g} (> {tol:.2g})'
            assert unshared > 100 * max(shared, 1e-6), f'{prec}: without sharing the outputs barely differ ({unshared:.3g})'
            return f'{prec}: shared masks max diff {shared:.3g}, independent masks {unshared:.3g} (output scale {scale:.3g})'
        sec.check(f'student_and_target with the UNet (dropout 0.5), {prec}' + (' autocast' if prec == 'bf16' else ''), dropout_shared_unet)

    def every_objective_on_device():
        from consistency_models import losses
        from consistency_models.pf_ode import heun_step
        torch.manual_seed(0)
        mk = lambda smin=0.002: randomize_zero_init(ConsistencyModel(build_network('unet_tiny', img_resolution=8, in_channels=1), sigma_min=smin)).to(dev)
        teacher = mk(0.).eval()
        objs = dict(ct=losses.ConsistencyTraining(total_steps=100), ict=losses.ImprovedCT(total_steps=100),
                    ect=losses.EasyCT(iters_per_stage=25), cd=losses.ConsistencyDistillation(teacher, solver=heun_step),
                    edm=losses.EDMDenoising())
        x0, done = torch.randn(16, 1, 8, 8, device=dev).clamp(-1, 1), []
        for name, obj in objs.items():
            net = mk(0. if name == 'edm' else 0.002).train()
            target = mk().eval() if obj.needs_target else None
            for gname, g in (('device', dev_gen(5)), ('cpu', cpu_gen(5))):
                loss, _ = obj(net, x0, 60, target=target, generator=g)
                assert loss.shape == (16,) and loss.device.type == dev.type, f'{name} ({gname} generator): loss {tuple(loss.shape)} on {loss.device}'
                assert torch.isfinite(loss).all(), f'{name} ({gname} generator): non-finite loss'
                loss.mean().backward()
            done.append(name)
        return f"{', '.join(done)}: one loss and backward each on {dev} with a {dev.type} generator and with a CPU generator, finite"
    sec.check('every objective on the device (CT, iCT, ECT, CD, EDM)', every_objective_on_device)

    def sample_matches_cpu():
        if not cuda: raise Skip('CUDA only: compares sampling on the GPU with the CPU (here both are the CPU)')
        torch.manual_seed(0)
        net = randomize_zero_init(ConsistencyModel(build_network('unet_tiny', img_resolution=8, in_channels=1))).eval()
        ref = sample(net, (8, 1, 8, 8), steps=2, generator=cpu_gen(0), device='cpu')
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try: x = sample(net.to(dev), (8, 1, 8, 8), steps=2, generator=cpu_gen(0), device=dev)
        finally: torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        assert x.device.type == 'cuda', f'samples on {x.device}'
        rel = ((x.cpu() - ref).abs().max() / ref.abs().max()).item()
        assert rel < 1e-3, f'2-step samples on the GPU differ from the CPU ones by {rel:.2g} (relative)'
        return f'2-step samples with a CPU generator: GPU (TF32 off) = CPU to {rel:.1e} relative'
    sec.check('sampling.sample on the device = on the CPU (same generator)', sample_matches_cpu)


# ------------------------------------------------------------------------------------------ 3. digits training
def digits_overrides(run_dir, dev, prec, comp, p, nimg, resume=False):
    return [f'run.dir={run_dir}', f'run.device={dev}', f'run.precision={prec}', f'run.compile={"true" if comp == "on" else "false"}',
            'run.progress=false', f'run.total_nimg={nimg}', 'run.sample_nimg=0', f"run.log_nimg={p['log_nimg']}",
            f"run.ckpt_nimg={p['nimg']}", f"data.batch_size={p['batch']}", 'run.seed=0'] + (['run.resume=true'] if resume else [])


def dynamo_graphs():
    "Graphs torch.compile has captured in this process so far (an internal counter: None where it is missing)."
    try:
        from torch._dynamo.utils import counters
        return int(counters['stats']['unique_graphs'])
    except Exception: return None


def finite_records(recs):
    "(records with a loss, intervals whose steps were all skipped); asserts every logged loss is finite."
    with_loss = [r for r in recs if r.get('loss') is not None]
    bad = [r for r in with_loss if not math.isfinite(r['loss'])]
    assert not bad, f"non-finite logged loss at step(s) {[r['step'] for r in bad][:5]}"
    return with_loss, len(recs) - len(with_loss)


def section_digits(sec:Section, ctx):
    from consistency_models.config import get_config
    from consistency_models.training import Trainer, train
    from consistency_models.checkpoints import load_model, read_log, read_meta
    from consistency_models.sampling import sample
    dev, p = ctx.dev, ctx.plan['digits']
    steps1, steps2 = p['nimg'] // p['batch'], p['resume_nimg'] // p['batch']
    sec.data.update(plan=p, loss_rtol=LOSS_RTOL, runs={})
    threads = torch.get_num_threads()  # the digits preset sets run.threads=1 on a CPU: put it back afterwards
    try:
        # eager runs first, then the compiled ones (bf16 first: the GPU default), which the time budget may cut
        configs = [(q, 'off') for q in p['precisions'] if 'off' in p['compiles']]
        configs += [(q, 'on') for q in sorted(p['precisions'], key=lambda q: q != 'bf16') if 'on' in p['compiles']]
        for prec, comp in configs:
            key = f'{prec}/{comp}'
            run = sec.data['runs'][key] = dict(precision=prec, compile=comp)
            run_dir = ctx.work / f'digits_{prec}_compile_{comp}'
            if comp == 'on' and ctx.deadline and time.time() > ctx.t0 + 0.55 * ctx.args.budget:
                run['skipped'] = f'time budget: past 55% of --budget {ctx.args.budget:g} s, left to sections 4 and 5'
                sec.skip(f'digits {key}: fit, resume, sample', run['skipped']); continue

            def fit():
                if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
                # a fresh Dynamo cache per compiled configuration: three precisions x (fit + resume) x (grad, no-grad)
                # recompilations of the same UNet code could pass Dynamo's recompile limit, past which it runs eagerly
                if comp == 'on': torch._dynamo.reset()
                graphs0 = dynamo_graphs()
                t = time.perf_counter()
                tr = train(get_config('digits', digits_overrides(run_dir, dev, prec, comp, p, p['nimg'])))
                run['fit_s'] = round(time.perf_counter() - t, 2)
                run['compiled_graphs'] = None if graphs0 is None else dynamo_graphs() - graphs0
                if comp == 'on' and run['compiled_graphs'] is not None:
                    assert run['compiled_graphs'] > 0, 'run.compile=true but torch.compile captured no graph'
                if dev.type == 'cuda': run['peak_mem_gib'] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 3)
                run.update(steps=tr.step, bad_steps=tr.bad_total, scaler_scale=tr.scaler.get_scale() if tr.scaler else None)
                assert (tr.scaler is not None) == (prec == 'fp16'), f'GradScaler {"missing" if prec == "fp16" else "used"} for {prec}'
                del tr; free_memory(dev)
                recs = read_log(run_dir)
                with_loss, all_skipped = finite_records(recs)
                run.update(records=len(recs), all_skipped_records=all_skipped, loss_steps=[r['step'] for r in with_loss],
                           losses=[r['loss'] for r in with_loss], mean_loss=statistics.fmean(r['loss'] for r in with_loss) if with_loss else None,
                           img_per_s=recs[-1]['img_per_s'] if recs else None)
                assert run['steps'] == steps1 and recs and recs[-1]['step'] == steps1, f"trained to step {run['steps']}, log ends at {recs[-1]['step'] if recs else None}, expected {steps1}"
                assert with_loss, 'every logged interval was skipped (non-finite)'
                ck = run_dir / 'checkpoints' / 'last.safetensors'
                assert ck.is_file(), f'no checkpoint at {ck}'
                run['checkpoint_step'] = read_meta(ck)['step']
                assert run['checkpoint_step'] == steps1, f"checkpoint at step {run['checkpoint_step']}, expected {steps1}"
                return (f"{steps1} steps in {run['fit_s']} s, {len(recs)} log records, {run['bad_steps']} skipped step(s), "
                        f"{all_skipped} all-skipped record(s), mean loss {run['mean_loss']:.4g}, checkpoint at step {steps1}"
                        + (f", {run['compiled_graphs']} graph(s) compiled" if comp == 'on' else ''))
            ok = sec.check(f'digits {key}: fit, finite losses, checkpoint', fit) is not None

            def resume():
                if not ok: raise Skip('the first run failed')
                tr = Trainer(get_config('digits', digits_overrides(run_dir, dev, prec, comp, p, p['resume_nimg'], resume=True)))
                run['resumed_at'] = tr.step
                assert tr.step == steps1, f'the resumed trainer starts at step {tr.step}, the checkpoint holds step {steps1}'
                t = time.perf_counter(); tr.fit(); run['resume_s'] = round(time.perf_counter() - t, 2)
                end = tr.step; del tr; free_memory(dev)
                assert end == steps2, f'resumed run ended at step {end}, expected {steps2}'
                recs = read_log(run_dir)
                st = [r['step'] for r in recs]
                assert st == sorted(set(st)) and st[-1] == steps2, f'log steps after the resume: {st[-4:]}'
                new, all_skipped = finite_records([r for r in recs if r['step'] > steps1])
                assert new or all_skipped, 'nothing logged after the resume'
                run['resume_all_skipped_records'] = all_skipped
                return (f'continued from step {steps1} to {steps2}: {len(new)} new record(s) with a finite loss'
                        + (f', {all_skipped} whose steps were all skipped' if all_skipped else ''))
            ok = sec.check(f'digits {key}: resume', resume) is not None and ok

            def sample_it():
                if not ok: raise Skip('no run to sample')
                model = load_model(run_dir, device=dev)
                x = sample(model, (16, *model.data_shape), steps=2, generator=torch.Generator().manual_seed(0), device=dev)
                assert x.shape == (16, *model.data_shape) and x.device.type == dev.type, f'samples {tuple(x.shape)} on {x.device}'
                assert torch.isfinite(x).all(), 'non-finite samples'
                run['sample_range'] = [x.min().item(), x.max().item()]
                return f'16 2-step samples {tuple(x.shape[1:])} on {x.device}, finite, range [{x.min().item():.2f}, {x.max().item():.2f}]'
            sec.check(f'digits {key}: load_model + 2-step sample', sample_it)
    finally: torch.set_num_threads(threads)

    runs = sec.data['runs']
    def compare(key, ref):
        a, b = runs.get(key, {}), runs.get(ref, {})
        if a.get('mean_loss') is None or b.get('mean_loss') is None: raise Skip(f'needs both the {key} and the {ref} run')
        la, lb = dict(zip(a['loss_steps'], a['losses'])), dict(zip(b['loss_steps'], b['losses']))
        common = sorted(set(la) & set(lb))  # records both runs logged a loss for (not all-skipped in either)
        assert common, 'no log record has a loss in both runs'
        ma, mb = statistics.fmean(la[k] for k in common), statistics.fmean(lb[k] for k in common)
        rel, per = abs(ma - mb) / abs(mb), max(abs(la[k] - lb[k]) / abs(lb[k]) for k in common)
        sec.data.setdefault('comparisons', {})[f'{key} vs {ref}'] = dict(records=len(common), mean=ma, ref_mean=mb, mean_rel_diff=rel,
                                                                        max_record_rel_diff=per)
        assert rel < LOSS_RTOL, f'mean loss {ma:.4g} vs {mb:.4g} over {len(common)} records: relative difference {rel:.3f} >= {LOSS_RTOL}'
        return f'mean loss {ma:.4g} vs {mb:.4g} over {len(common)} records: relative difference {rel:.2%} < {LOSS_RTOL:.0%} (largest per-record {per:.2%})'
    for comp in p['compiles']:
        for prec in p['precisions']:
            if prec != 'fp32':
                sec.check(f'loss curves: {prec} vs fp32 (compile {comp})', compare, f'{prec}/{comp}', f'fp32/{comp}')
    if 'on' in p['compiles'] and 'off' in p['compiles']:
        for prec in p['precisions']:
            sec.check(f'loss curves: compile on vs off ({prec})', compare, f'{prec}/on', f'{prec}/off')
    for s in ctx.plan['skipped']:
        if s.startswith('digits:'): sec.notes.append('not run: ' + s[len('digits: '):])


# ------------------------------------------------------------------------------------------ 4. train step
def section_train_step(sec:Section, ctx):
    ts, dev, p = ctx.ts, ctx.dev, ctx.plan['train_step']
    cuda = dev.type == 'cuda'
    name = ts.device_name(str(dev))
    sec.data.update(device_name=name, warmup=p['warmup'], steps=p['steps'], n_images=p['n_images'], rows=[])
    free_memory(dev)
    deadline = ctx.deadline - ctx.sampler_reserve_s if ctx.deadline else None
    flops = {}
    for obj, prec, comp, batch in p['rows']:
        label = f'{obj} {prec} compile {comp} batch {batch}'
        spec = dict(objective=obj, precision=prec, compile=comp, device=str(dev), batch=batch, steps=p['steps'], warmup=p['warmup'],
                    threads=ctx.args.threads, n_images=p['n_images'], count_flops=obj not in flops)
        row = dict(spec, status=None, reason=None, result=None)
        sec.data['rows'].append(row)
        limit = p['timeout_on'] if comp == 'on' else p['timeout_off']
        remaining = deadline - time.time() if deadline else None
        if remaining is not None and remaining < (120 if comp == 'on' else 30):
            row.update(status='skipped', reason=f'time budget (--budget {ctx.args.budget:g} s) spent')
            sec.skip(label, row['reason']); continue
        timeout = limit if remaining is None else min(limit, remaining)

        def one(spec=spec, row=row, timeout=timeout, limit=limit):
            res, err = ts.run_subprocess(spec, timeout)
            if err and err.startswith('timed out') and timeout < limit:
                row.update(status='skipped', reason=f'time budget spent while it ran ({err})')
                raise Skip(row['reason'])
            if err: row.update(status='failed', reason=err); raise RuntimeError(err)
            # FLOPs are counted once per objective (they do not depend on precision or compile) and kept per image,
            # since the rows have different batch sizes
            if res['flops_per_step'] is not None: flops[spec['objective']] = res['flops_per_step'] / spec['batch']
            per_img = flops.get(spec['objective'])
            f = res['flops_per_step'] = per_img * spec['batch'] if per_img else None
            peak = ts.peak_tflops(name, spec['precision'], {}) if cuda else None
            res['gflop_per_img'] = per_img / 1e9 if per_img else None
            res['tflops'] = f / res['mean_step_s'] / 1e12 if f else None
            res['peak_tflops'], res['mfu'] = peak, (res['tflops'] / peak if peak and res['tflops'] else None)
            res.pop('loss_info', None)
            row.update(status='ok', result=res)
            assert res['skipped_steps'] == 0, f"{res['skipped_steps']} timed step(s) skipped as non-finite by the trainer"
            return (f"{res['img_per_s']:.4g} img/s, {res['mean_step_s'] * 1e3:.1f} ms/step, first step {res['first_step_s']:.1f} s, "
                    f"peak {res['peak_mem_bytes'] / 2**30:.2f} GiB" + (f", {res['tflops']:.3g} TFLOP/s" if res['tflops'] else '')
                    + (f", MFU {res['mfu']:.1%}" if res['mfu'] else ''))
        sec.check(label, one)
    for s in ctx.plan['skipped']:
        if s.startswith('train_step:'): sec.notes.append('not run: ' + s[len('train_step: '):])
    if cuda and not any(r['result'] and r['result']['peak_tflops'] for r in sec.data['rows']):
        sec.notes.append(f'MFU n/a: {name} is not in bench/train_step.py\'s peak table')


# ------------------------------------------------------------------------------------------ 5. sampler speed
def section_sampler(sec:Section, ctx):
    from consistency_models.config import ModelConfig, get_config
    from consistency_models.training import build_model
    from consistency_models.pf_ode import karras_sigmas, edm_sampler, heun_step, randn
    from consistency_models.sampling import sample
    dev, p = ctx.dev, ctx.plan['sampler']
    if p['network'] == 'digits':
        from consistency_models.data import load_dataset
        data = load_dataset('digits')
        shape, mc, sd = tuple(data.shape), get_config('digits').model, data.sigma_data
    else: shape, mc, sd = p['shape'], ModelConfig(network=p['network']), 0.5
    torch.manual_seed(0)
    model = randomize_zero_init(build_model(mc, shape, sd)).to(dev).eval().requires_grad_(False)
    if dev.type == 'cuda': torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as the trainer does
    B = p['batch']
    edm_sigmas = torch.cat([torch.zeros(1, dtype=torch.float64), karras_sigmas(18)])  # 18 Karras levels + 0: 17 Heun steps + 1 Euler = 35 evaluations
    sec.data.update(network=p['network'], shape=list(shape), batch=B, repeats=p['repeats'], params=sum(q.numel() for q in model.parameters()),
                    precision='fp32 (TF32 on)' if dev.type == 'cuda' else 'fp32', interleaved=True)

    class Count:  # counts network evaluations
        def __init__(self, m): self.m, self.n = m, 0
        def __call__(self, x, s, **kw): self.n += 1; return self.m(x, s, **kw)

    def cm(steps, net):
        return sample(net, (B, *shape), steps=steps, generator=torch.Generator().manual_seed(0), device=dev)
    def edm(net):
        x = 80. * randn((B, *shape), torch.Generator().manual_seed(0), device=dev)
        with torch.no_grad(): return edm_sampler(net, x, edm_sigmas, step=heun_step)
    samplers = {'consistency 1-step': lambda net: cm(1, net), 'consistency 2-step': lambda net: cm(2, net), 'EDM Heun 35-NFE': edm}
    times = {k: [] for k in samplers}

    def warm_up():
        rows = {}
        for k, f in samplers.items():
            c = Count(model); x = f(c); sync(dev)
            assert torch.isfinite(x).all(), f'{k}: non-finite output'
            rows[k] = c.n
        assert rows == {'consistency 1-step': 1, 'consistency 2-step': 2, 'EDM Heun 35-NFE': 35}, f'network evaluations {rows}'
        sec.data['nfe'] = rows
        return f"network evaluations per sample batch: {rows}; outputs finite"
    if sec.check(f'samplers run on {dev} (untimed warm-up)', warm_up) is None: return

    def timed():
        for _ in range(p['repeats']):  # interleaved: every repeat runs each sampler once, in turn
            for k, f in samplers.items():
                sync(dev); t = time.perf_counter(); f(model); sync(dev); times[k].append(time.perf_counter() - t)
        res = {}
        for k, ts_ in times.items():
            med = statistics.median(ts_)
            res[k] = dict(nfe=sec.data['nfe'][k], min_s=min(ts_), median_s=med, img_per_s=B / med, times_s=ts_)
        for k in res: res[k]['edm_median_over_this'] = res['EDM Heun 35-NFE']['median_s'] / res[k]['median_s']
        sec.data['samplers'] = res
        r1, r2 = res['consistency 1-step']['edm_median_over_this'], res['consistency 2-step']['edm_median_over_this']
        return f'EDM (35 NFE) takes {r1:.1f}x the time of 1-step and {r2:.1f}x that of 2-step sampling (medians of {p["repeats"]})'
    sec.check(f'sampler speed, batch {B}, {p["repeats"]} interleaved repeats', timed)
    sec.notes.append(f"network: a freshly built {'digits preset network (unet_tiny)' if p['network'] == 'digits' else p['network']} "
                     "with random weights (its zero-initialised layers too)")


# ------------------------------------------------------------------------------------------ report
def _is_num(c:str) -> bool:
    try: float(c.rstrip('x%').replace(',', '')); return True
    except ValueError: return c in ('', 'n/a')


def table(header, rows):
    "A plain-text table: numeric columns right-aligned, text columns left-aligned."
    rows = [([('' if c is None else str(c)) for c in r] + [''] * len(header))[:len(header)] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    right = [i > 0 and all(_is_num(r[i]) for r in rows) for i in range(len(header))]
    line = lambda cells: '  '.join(c.rjust(w[i]) if right[i] else c.ljust(w[i]) for i, c in enumerate(cells)).rstrip()
    return '\n'.join([line(header), line(['-' * x for x in w])] + [line(r) for r in rows])


def fmt(v, spec='.4g'): return 'n/a' if v is None else format(v, spec)


def text_report(sections, meta) -> str:
    out = [f"# consistency_models GPU check, {meta['date']}",
           f"device {meta['device']}{' (--quick)' if meta['quick'] else ''} | {meta['torch_threads']} torch CPU thread(s) | "
           f"result: {meta['status'].upper()} | total {meta['wall_s']:.1f} s",
           f"command: {meta['command']}", '']
    out.append(table(['section', 'status', 'checks ok/failed/skipped', 'wall s'],
                     [[s.title.split(':')[0].split(' (')[0], s.status,
                       '/'.join(str(sum(c['status'] == k for c in s.checks)) for k in ('ok', 'failed', 'skipped')),
                       fmt(s.wall_s, '.1f')] for s in sections]))
    for s in sections:
        if s.status == 'not run':
            out += ['', f'## {s.title}  [not run: left out by --only]']; continue
        out += ['', f'## {s.title}  [{s.status}, {fmt(s.wall_s, ".1f")} s]']
        try: out += section_tables(s)
        except Exception as e: out.append(f'(could not lay out this section\'s numbers: {one_line(e)}; they are in gpu_check.json)')
        out += ['', table(['check', 'status', 'detail / reason'],
                          [[c['name'], c['status'], (c.get('detail') or c.get('reason') or '')] for c in s.checks])]
        out += [f'note: {n}' for n in s.notes]
    return '\n'.join(out) + '\n'


def section_tables(s:Section) -> list:
    "The lines of a section's own tables (above its list of checks)."
    out, d = [], s.data
    if s.id == 'environment':
        env = [('python', d.get('python')), ('torch', d.get('torch')), ('CUDA / cuDNN', f"{d.get('cuda')} / {d.get('cudnn')}"),
               ('device', d.get('device')), ('GPU', f"{d['gpu_name']}, sm {d['gpu_capability']}, {d['gpu_memory_gib']} GiB "
                f"({d['gpu_free_gib']} free), {d['gpu_sms']} SMs, driver {d.get('driver')}" if 'gpu_name' in d else 'none'),
               ('CPU', d.get('cpu_name') or f"{d.get('cpu_count')} logical CPUs"),
               ('consistency_models', f"{d.get('library_version')} ({d.get('library_file')})"),
               ('fastcore', f"{d.get('fastcore')} ({d.get('fastcore_file')})"),
               ('requirements', ', '.join(f'{k} {v or "not installed"}' for k, v in d.get('requirements', {}).items())),
               ('triton', d.get('triton') or 'not installed')]
        out.append('\n'.join(f'{k:>18}: {v}' for k, v in env))
    if s.id == 'digits_training' and d.get('runs'):
        out.append(table(['precision', 'compile', 'steps', 'skipped', 'all-skipped rec', 'mean loss', 'last loss', 'img/s', 'fit s',
                          'resumed at', 'ckpt step', 'peak GiB'],
                         [[r['precision'], r['compile']] + (['skipped: time budget'] + [''] * 9 if r.get('skipped') else
                          [r.get('steps'), r.get('bad_steps'), r.get('all_skipped_records'),
                           fmt(r.get('mean_loss')), fmt(r['losses'][-1] if r.get('losses') else None), fmt(r.get('img_per_s'), '.0f'),
                           r.get('fit_s'), r.get('resumed_at'), r.get('checkpoint_step'), r.get('peak_mem_gib', 'n/a')])
                          for r in d['runs'].values()]))
        if d.get('comparisons'):
            out.append(table(['loss curves compared', 'records', 'mean loss', 'reference', 'rel. diff of means', 'largest per-record'],
                             [[k, c['records'], fmt(c['mean']), fmt(c['ref_mean']), fmt(c['mean_rel_diff'], '.2%'), fmt(c['max_record_rel_diff'], '.2%')]
                              for k, c in d['comparisons'].items()]))
        out.append(f"plan: batch {d['plan']['batch']}, {d['plan']['nimg']} images then resumed to {d['plan']['resume_nimg']}, "
                   f"a log record every {d['plan']['log_nimg']} images; loss tolerance: relative difference of the mean "
                   f"logged loss < {LOSS_RTOL:.0%}")
    if s.id == 'train_step' and d.get('rows'):
        rows, order = [], {'ect': 0, 'ict': 1, 'fp32': 0, 'bf16': 1, 'off': 0, 'on': 1}
        for r in sorted(d['rows'], key=lambda r: (r['batch'], order[r['objective']], order[r['precision']], order[r['compile']])):
            res = r['result'] or {}
            head = [r['objective'], r['precision'] + ('(tf32)' if r['precision'] == 'fp32' and 'cuda' in r['device'] else ''),
                    r['compile'], r['batch']]
            if not res: rows.append(head + [r['status'] or 'failed', (r['reason'] or '')[:60]] + [''] * 6); continue
            rows.append(head + [fmt(res['mean_step_s'] * 1e3, '.1f'), fmt(min(res['step_s']) * 1e3, '.1f'), fmt(res['img_per_s']),
                                fmt(res['first_step_s'], '.1f'), fmt(res['peak_mem_bytes'] / 2**30, '.2f'), fmt(res['gflop_per_img'], '.1f'),
                                fmt(res['tflops'], '.3g'), fmt(res['mfu'], '.1%') if res['mfu'] else 'n/a'])
        out.append(table(['objective', 'precision', 'compile', 'batch', 'ms/step', 'min ms', 'img/s', 'first step s',
                          'peak mem GiB', 'GFLOP/img', 'TFLOP/s', 'MFU'], rows))
        on_cuda = any('cuda' in r['device'] for r in d['rows'])
        out.append(f"{d['device_name']}: {d['warmup']} warm-up step(s), {d['steps']} timed step(s) per row, synthetic data "
                   f"({d['n_images']} images), one subprocess per row; peak mem: "
                   f"{'torch.cuda.max_memory_allocated' if on_cuda else 'peak RSS of the row subprocess'}; columns as in bench/train_step.py")
    if s.id == 'sampler_speed' and d.get('samplers'):
        out.append(table(['sampler', 'NFE', 'min s', 'median s', 'img/s (median)', 'EDM time / this'],
                         [[k, v['nfe'], fmt(v['min_s']), fmt(v['median_s']), fmt(v['img_per_s']), f"{v['edm_median_over_this']:.1f}x"]
                          for k, v in d['samplers'].items()]))
        out.append(f"network {d['network']} ({d['params']:,} parameters), {d['shape']}, batch {d['batch']}, {d['precision']}, "
                   f"{d['repeats']} repeats interleaved (each repeat runs the three samplers in turn), after an untimed warm-up")
    return out


# ------------------------------------------------------------------------------------------ main
def load_train_step():
    "bench/train_step.py as a module (its measure(), run_subprocess() and peak table are reused, not copied)."
    spec = importlib.util.spec_from_file_location('bench_train_step', ROOT / 'bench' / 'train_step.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', required=True, help='folder for gpu_check.json and gpu_check.txt (created if missing)')
    ap.add_argument('--device', default='auto', help="'auto' (cuda if available, else cpu; default), 'cuda', 'cuda:1' or 'cpu'")
    ap.add_argument('--quick', action='store_true', help='a small version of every section (minutes on a CPU)')
    ap.add_argument('--budget', type=float, default=None,
                    help='seconds for the whole check; section 4 skips (and lists) the rows that would not fit. '
                         'Default 480 on CUDA without --quick, else none; 0: no budget')
    ap.add_argument('--threads', type=int, default=None,
                    help="torch CPU threads (default on a CPU: 1, as the digits preset: tiny networks run faster on one "
                         "thread, and on shared cores extra threads mostly wait for each other; on CUDA: torch's default)")
    ap.add_argument('--keep', action='store_true', help='keep the digits run folders (under OUT/runs) instead of a temp folder')
    ap.add_argument('--only', default=None,
                    help='comma-separated section ids to run (others are reported as not run): ' + ', '.join(i for i, _ in SECTIONS))
    ap.add_argument('--rows', default=None,
                    help="section 4's rows instead of the plan's, as objective:precision:compile:batch, comma-separated "
                         "(e.g. ict:bf16:off:128,ect:bf16:on:128)")
    a = ap.parse_args(argv)
    ids = [i for i, _ in SECTIONS]
    only = ids if a.only is None else [x.strip() for x in a.only.split(',') if x.strip()]
    if bad := [x for x in only if x not in ids]: ap.error(f"--only: unknown section(s) {', '.join(bad)}; choose from {', '.join(ids)}")
    t0 = time.time()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    dev_name = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    try: dev = torch.device(dev_name)
    except RuntimeError: ap.error(f'unknown device {a.device!r}')
    cuda = dev.type == 'cuda'
    if cuda and dev.index is None: dev = torch.device('cuda', 0)
    if a.budget is None: a.budget = 480. if cuda and not a.quick else 0.
    if a.threads is None: a.threads = 0 if cuda else 1
    if a.threads > 0: torch.set_num_threads(a.threads)
    plan = make_plan(cuda, a.quick)
    if a.rows:
        try: rows = [(o, p, c, int(b)) for o, p, c, b in (r.split(':') for r in a.rows.split(','))]
        except ValueError: ap.error(f'--rows {a.rows!r}: expected objective:precision:compile:batch, comma-separated')
        if bad := [r for r in rows if r[0] not in ('ect', 'ict') or r[1] not in ('fp32', 'bf16') or r[2] not in ('off', 'on') or r[3] < 1]:
            ap.error(f'--rows: {bad[0]} is not (ect|ict):(fp32|bf16):(off|on):batch')
        plan['train_step']['rows'] = rows
    work = out / 'runs' if a.keep else Path(tempfile.mkdtemp(prefix='gpu_check_'))
    if a.keep: shutil.rmtree(work, ignore_errors=True); work.mkdir(parents=True)
    ctx = argparse.Namespace(args=a, dev=dev, quick=a.quick, plan=plan, work=work, ts=load_train_step(), t0=t0,
                             deadline=t0 + a.budget if a.budget > 0 else None, sampler_reserve_s=60 if cuda and not a.quick else 0)
    sections = [Section(sid, title) for sid, title in SECTIONS]
    funcs = dict(environment=section_environment, gpu_paths=section_gpu_paths, digits_training=section_digits,
                 train_step=section_train_step, sampler_speed=section_sampler)
    meta = dict(date=datetime.datetime.now().isoformat(timespec='seconds'), device=str(dev), quick=a.quick, budget_s=a.budget,
                torch_threads=torch.get_num_threads(),
                command=' '.join([Path(sys.executable).name, *sys.argv]) if argv is None else f'main({argv})', plan=plan,
                loss_rtol=LOSS_RTOL, status='running', wall_s=0.)

    def write():
        meta['wall_s'] = time.time() - t0
        (out / 'gpu_check.json').write_text(json.dumps(dict(meta=meta, status=meta['status'],
                                                            sections=[s.to_dict() for s in sections]), indent=1, default=str))
        (out / 'gpu_check.txt').write_text(text_report(sections, meta))

    try:
        for s in sections:
            if s.id not in only:
                s.status = 'not run'; s.notes.append('not run: left out by --only'); continue
            print(f'\n== {s.title}', flush=True)
            t = time.perf_counter()
            try: funcs[s.id](s, ctx)
            except Exception as e:  # a section's own set-up failed (its checks recorded so far stay)
                s.checks.append(dict(name='(section set-up)', status='failed', reason=one_line(e), wall_s=0.))
                print(f'  [ failed] section: {one_line(e)}', flush=True)
            s.wall_s = round(time.perf_counter() - t, 2)
            s.finish()
            print(f'== {s.status} ({s.wall_s:.1f} s)', flush=True)
            write()
        meta['status'] = 'ok' if all(s.status in ('ok', 'skipped', 'not run') for s in sections) else 'failed'
        # the GPU machine has only the runtime dependencies: nothing here may need the development tools
        meta['dev_modules_imported'] = sorted({n.split('.')[0] for n in sys.modules} & {'nbdev', 'execnb', 'pytest', '_pytest', 'ghapi'})
    finally:
        if meta['status'] == 'running': meta['status'] = 'failed'
        write()
        if not a.keep: shutil.rmtree(work, ignore_errors=True)
    print('\n' + (out / 'gpu_check.txt').read_text())
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.txt'}")
    return 0 if meta['status'] == 'ok' else 1


if __name__ == '__main__':
    sys.exit(main())
