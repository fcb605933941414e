#!/usr/bin/env python
"""Benchmark the library's real training step on the CIFAR-10 DDPM++ network (≈56M parameters).

For the `cifar10_ict` and `cifar10_ect` presets of `consistency_models.config`, it builds the
library's `Trainer` (synthetic data in place of CIFAR-10), calls `Trainer.train_step()` (one optimizer
step: objective forward, stop-grad target pass, backward, optimizer, EMA update), and reports img/s,
peak memory, FLOPs per image, achieved TFLOP/s and MFU in fp32 and bf16, with and without torch.compile.

Each configuration runs in its own subprocess (fresh memory counters and compile caches) unless
--in-process is given. Run `python bench/train_step.py --help` for the options; see bench/README.md.
"""
import argparse, contextlib, datetime, json, os, platform, resource, signal, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))  # benchmark this checkout, not an installed copy

import torch

PRESETS = {'ict': 'cifar10_ict', 'ect': 'cifar10_ect'}
CIFAR10_TRAIN = 50_000  # default synthetic data-set size: the real trainer keeps the whole set on the device

# Dense peak tensor throughput in TFLOP/s (no sparsity), matched by substring of the CUDA device name, first hit wins.
# fp32 runs use the TF32 peak: the trainer turns TF32 on for CUDA matmuls and convolutions.
PEAK_TFLOPS = [
    ('H200',      {'bf16': 989., 'fp16': 989., 'fp32': 495.}),
    ('H100 PCIe', {'bf16': 756., 'fp16': 756., 'fp32': 378.}),
    ('H100 NVL',  None),                                          # not in the table: pass --peak-tflops
    ('H100',      {'bf16': 989., 'fp16': 989., 'fp32': 495.}),    # SXM ('NVIDIA H100 80GB HBM3')
    ('A100',      {'bf16': 312., 'fp16': 312., 'fp32': 156.}),
]


def peak_tflops(device_name:str, precision:str, override:dict):
    "The peak TFLOP/s that MFU divides by (None when unknown)."
    if precision in override: return override[precision]
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_name.lower(): return None if peaks is None else peaks.get(precision)
    return None


def parse_peak(text:str) -> dict:
    "'989' (every precision) or 'bf16=989,fp32=495' -> {precision: TFLOP/s}."
    if not text: return {}
    if '=' not in text: return {p: float(text) for p in ('bf16', 'fp16', 'fp32')}
    return {k.strip(): float(v) for k, v in (kv.split('=') for kv in text.split(','))}


def cpu_name() -> str:
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def device_name(device:str) -> str:
    if device.startswith('cuda'): return torch.cuda.get_device_name(torch.device(device))
    return f'{cpu_name()} ({os.cpu_count()} logical CPUs)'


# ---------------------------------------------------------------------------------------------------- worker
def synthetic_data(n:int, shape=(3, 32, 32), seed:int=0):
    "N uniform images in [-1, 1] of CIFAR-10's shape (σ_data fixed at 0.5), as the trainer's `ImageData`."
    from consistency_models.data import ImageData
    x = torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return ImageData(x=x, sigma_data=0.5, name='synthetic')


def measure(spec:dict) -> dict:
    "Build the Trainer for one configuration, time its steady-state train_step, count its FLOPs."
    from torch.utils.flop_counter import FlopCounterMode
    from consistency_models.config import get_config
    from consistency_models.training import Trainer
    if spec['threads']: torch.set_num_threads(spec['threads'])
    dev = torch.device(spec['device'])
    cuda = dev.type == 'cuda'
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    with tempfile.TemporaryDirectory(prefix='bench_train_step_') as run_dir:
        cfg = get_config(PRESETS[spec['objective']], [
            f"run.device={spec['device']}", f"run.precision={spec['precision']}", f"run.compile={spec['compile']}",
            f"data.batch_size={spec['batch']}", 'data.accum=1', 'data.name=synthetic', f'run.dir={run_dir}',
            'run.progress=false', 'run.resume=false', 'model.init_from=none', 'run.seed=0'])
        t = time.perf_counter()
        trainer = Trainer(cfg, data=synthetic_data(spec['n_images']))
        build_s = time.perf_counter() - t

        def step():
            sync(); t0 = time.perf_counter()
            trainer.train_step()
            sync(); return time.perf_counter() - t0

        first_s = step()  # includes torch.compile's compilation, cuDNN autotuning, lazy allocations
        warm = [step() for _ in range(spec['warmup'] - 1)]
        if cuda: torch.cuda.reset_peak_memory_stats(dev)
        bad0 = trainer.bad_total
        sync(); t0 = time.perf_counter()
        times = [step() for _ in range(spec['steps'])]
        total_s = time.perf_counter() - t0
        skipped = trainer.bad_total - bad0
        if cuda: peak_bytes, mem_kind = torch.cuda.max_memory_allocated(dev), 'cuda max_memory_allocated'
        else: peak_bytes, mem_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process peak RSS'

        flops = None
        if spec['count_flops']:
            # FLOPs of one more, eager, step: the objective gets the uncompiled model (trainer.model shares
            # its parameters with trainer.net, which wraps the compiled backbone when compile is on), and
            # autocast is off: the counted matmul/conv FLOPs depend on shapes only, and bf16 convolutions
            # can be many times slower than fp32 on CPUs without native bf16.
            net, autocast = trainer.net, trainer.autocast
            trainer.net, trainer.autocast = trainer.model, contextlib.nullcontext
            with FlopCounterMode(display=False) as fc: trainer.train_step()
            trainer.net, trainer.autocast = net, autocast
            flops = fc.get_total_flops()
    mean_s = total_s / spec['steps']
    return dict(spec, build_s=build_s, first_step_s=first_s, warmup_s=warm, step_s=times, mean_step_s=mean_s,
                img_per_s=spec['batch'] / mean_s, peak_mem_bytes=peak_bytes, peak_mem_kind=mem_kind,
                flops_per_step=flops, skipped_steps=skipped, params=sum(p.numel() for p in trainer.model.parameters()),
                loss_info={k: float(v) for k, v in trainer.info.items()})


def run_subprocess(spec:dict, timeout:float):
    "measure(spec) in a fresh Python process; (result, error text)."
    cmd = [sys.executable, str(Path(__file__).resolve()), '--worker', json.dumps(spec)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try: out, err = p.communicate(timeout=timeout or None)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # the worker and its compile workers (its own process group)
        p.communicate()
        return None, f'timed out after {timeout:.0f} s'
    lines = [l for l in out.splitlines() if l.startswith('BENCH_RESULT ')]
    if p.returncode or not lines:
        return None, f'exit {p.returncode}: ' + ' | '.join(err.strip().splitlines()[-3:])
    return json.loads(lines[-1][len('BENCH_RESULT '):]), None


# ---------------------------------------------------------------------------------------------------- table
COLS = [('objective', 9), ('precision', 10), ('compile', 7), ('ms/step', 9), ('min ms', 9), ('img/s', 8), ('first step s', 12),
        ('peak mem GiB', 12), ('GFLOP/img', 9), ('TFLOP/s', 8), ('MFU', 6)]


def fmt_row(cells): return '  '.join(f'{c:>{w}}' for c, (_, w) in zip(cells, COLS))


def num(v:float) -> str: return f'{v:.1f}' if v >= 10 else f'{v:.3g}'  # 3 significant digits for small values


def row_cells(spec, res, err, peak):
    prec = spec['precision'] + ('(tf32)' if spec['precision'] == 'fp32' and spec['device'].startswith('cuda') else '')
    head = [spec['objective'], prec, spec['compile']]
    if err: return head + [err]
    mfu = f"{res['tflops'] / peak:.1%}" if peak else 'n/a'
    return head + [f"{res['mean_step_s'] * 1e3:.1f}", f"{min(res['step_s']) * 1e3:.1f}", num(res['img_per_s']), f"{res['first_step_s']:.1f}",
                   f"{res['peak_mem_bytes'] / 2**30:.2f}", f"{res['gflop_per_img']:.1f}",
                   num(res['tflops']), mfu]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0] + ' See bench/README.md.')
    ap.add_argument('--device', default='auto', help="'auto' (cuda if available, else cpu; default), 'cpu', 'cuda', 'cuda:1'")
    ap.add_argument('--batch', type=int, default=None, help='images per step (default: 128 on CUDA, 8 on CPU)')
    ap.add_argument('--steps', type=int, default=None, help='timed steps per configuration (default: 20 CUDA, 3 CPU)')
    ap.add_argument('--warmup', type=int, default=None,
                    help='untimed steps before timing, >= 1; the first includes compilation (default: 5 CUDA, 1 CPU)')
    ap.add_argument('--objectives', default='ict,ect', help='comma list of ict, ect (presets cifar10_ict, cifar10_ect; default: ict,ect)')
    ap.add_argument('--precisions', default='fp32,bf16', help='comma list of fp32, bf16, fp16 (default: fp32,bf16)')
    ap.add_argument('--compile', default=None, help="comma list of off, on (default: off,on on CUDA; off on CPU)")
    ap.add_argument('--threads', type=int, default=0, help='CPU threads for torch (0: torch default)')
    ap.add_argument('--n-images', type=int, default=CIFAR10_TRAIN,
                    help='size of the synthetic data set, kept on the device by the trainer as CIFAR-10 would be (default: 50000)')
    ap.add_argument('--peak-tflops', default='', help="peak TFLOP/s for MFU instead of the built-in table: '989' (all precisions) or 'bf16=989,fp32=495'")
    ap.add_argument('--timeout', type=float, default=0, help='seconds per configuration before it is killed (0: none)')
    ap.add_argument('--in-process', action='store_true',
                    help='run every configuration in this process (CPU peak RSS then accumulates; compile caches are shared)')
    ap.add_argument('--json', default=None, help='write settings and all rows as JSON to this file')
    ap.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker:  # child process: one configuration, result on stdout
        print('BENCH_RESULT ' + json.dumps(measure(json.loads(a.worker))), flush=True)
        return

    device = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    cuda = device.startswith('cuda')
    batch = a.batch or (128 if cuda else 8)
    steps = a.steps or (20 if cuda else 3)
    warmup = a.warmup if a.warmup is not None else (5 if cuda else 1)
    if warmup < 1: ap.error('--warmup must be >= 1 (the first step includes compilation and allocation)')
    compiles = (a.compile or ('off,on' if cuda else 'off')).split(',')
    objectives, precisions = a.objectives.split(','), a.precisions.split(',')
    for o in objectives:
        if o not in PRESETS: ap.error(f'unknown objective {o!r}; choose from {", ".join(PRESETS)}')
    for c in compiles:
        if c not in ('off', 'on'): ap.error(f'--compile takes off and/or on, got {c!r}')
    override = parse_peak(a.peak_tflops)
    name = device_name(device)
    threads = a.threads or torch.get_num_threads()

    print(f'# consistency_models Trainer.train_step benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}')
    print(f'device: {name}' + (f' | CUDA {torch.version.cuda}' if cuda else f' | {threads} torch threads'))
    print(f'torch {torch.__version__} | python {platform.python_version()} | network cifar10_ddpmpp '
          f'(presets {", ".join(PRESETS[o] for o in objectives)}, model.init_from=none)')
    print(f'batch {batch} | {warmup} warm-up step(s) excluded | {steps} timed steps per row | synthetic data: '
          f'{a.n_images} images 3x32x32 | {"one process for all rows" if a.in_process else "one subprocess per row"}')
    if not cuda and a.compile is None:
        print('note: compile=on is skipped by default on CPU (compiling the 56M UNet on a few cores takes many '
              'minutes); ask for it with --compile off,on')
    print(fmt_row([c for c, _ in COLS]))
    print(fmt_row(['-' * w for _, w in COLS]), flush=True)

    rows, flops = [], {}  # flops: objective -> FLOPs per step, counted in its first successful row
    for obj in objectives:
        for prec in precisions:
            for comp in compiles:
                spec = dict(objective=obj, precision=prec, compile=comp, device=device, batch=batch, steps=steps,
                            warmup=warmup, threads=a.threads, n_images=a.n_images, count_flops=obj not in flops)
                if a.in_process:
                    try: res, err = measure(spec), None
                    except Exception as e: res, err = None, f'{type(e).__name__}: {e}'.splitlines()[0][:120]
                else: res, err = run_subprocess(spec, a.timeout)
                peak = peak_tflops(name, prec, override) if cuda or prec in override else None
                if res is not None:
                    if res['flops_per_step'] is not None: flops[obj] = res['flops_per_step']
                    res['flops_per_step'] = f = flops[obj]  # the same for every precision and compile setting
                    res['gflop_per_img'], res['tflops'] = f / batch / 1e9, f / res['mean_step_s'] / 1e12
                    res['peak_tflops'] = peak; res['mfu'] = res['tflops'] / peak if peak else None
                    if res['skipped_steps']:  # a skipped step does no optimizer/EMA work: the timing is off
                        print(f"warning: {res['skipped_steps']} timed step(s) were skipped as non-finite by the trainer")
                rows.append(dict(spec, error=err, result=res))
                print(fmt_row(row_cells(spec, res, err, peak)), flush=True)

    print()
    print('ms/step, img/s: mean over the timed steps (wall clock, synchronised on CUDA); min ms: the fastest timed '
          'step (a large gap to the mean means other load or jitter); first step s: the first '
          'warm-up step (includes torch.compile and autotuning); GFLOP/img: FlopCounterMode (matmul/conv FLOPs) '
          'over one extra eager fp32 train_step (student forward + stop-grad target forward + backward) / batch, '
          'counted in the first row of each objective (the count does not depend on precision or compile); TFLOP/s = FLOPs per step / s per step.')
    if cuda:
        print('peak mem: torch.cuda.max_memory_allocated over the timed steps (weights, EMA, optimizer state, '
              'activations, and the synthetic data set kept on the GPU). MFU = TFLOP/s / dense peak of the GPU '
              '(fp32 rows: TF32 peak, because the trainer enables TF32); '
              + ('peak from --peak-tflops' if override else 'peak from the table in bench/train_step.py'
                 + ('' if any(r['result'] and r['result']['peak_tflops'] for r in rows) else
                    ' (this GPU is not in it: pass --peak-tflops)')) + '.')
    else:
        print('peak mem: peak RSS of the ' + ('process, process-wide and monotone over the rows' if a.in_process else
              "row's own subprocess") + ' (includes the Python runtime, the synthetic data set, and any compiler '
              'memory); MFU n/a on CPU.')
    if a.json:
        meta = dict(date=datetime.datetime.now().isoformat(timespec='seconds'), device=device, device_name=name,
                    torch=torch.__version__, cuda=torch.version.cuda, threads=threads, batch=batch, steps=steps,
                    warmup=warmup, n_images=a.n_images, in_process=a.in_process, peak_override=override)
        Path(a.json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
        print(f'wrote {a.json}')


if __name__ == '__main__':
    main()
