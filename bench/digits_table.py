#!/usr/bin/env python
"""The timings behind the results chapter's digits table, on this machine: training img/s of every algorithm's
preset, ECT's step with and without skipping the target pass where r = 0 (at stage 0 and at the last stage), and the
samplers' img/s (1 step, 2 steps, EDM's Heun at 35 evaluations) on the same network.

    python bench/digits_table.py [--steps 20] [--repeats 5] [--threads 1] [--json FILE]

Every configuration is built once; the repeats then interleave them (A, B, C, ..., A, B, C, ...) so that a busy
moment on shared cores hits all alike, and the script reports the minimum and the median over the repeats. The
weights are untrained (CD's teacher is a one-step EDM run in a temporary folder): the cost of a step does not
depend on them.
"""
import argparse, json, os, statistics, sys, tempfile, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmark this checkout, not an installed copy
from consistency_models.config import get_config
from consistency_models.training import Trainer
from consistency_models.sampling import generate
from train_step import cpu_name  # bench/train_step.py, beside this script

ALGORITHMS = ('digits_edm', 'digits_cd', 'digits_ct', 'digits_ict', 'digits_ect')


def trainers(tmp:Path, threads:int) -> dict:
    "{label: (trainer, step to time at)} for every algorithm, and ECT at its first and last stage with and without the skip."
    common = ['run.progress=false', f'run.threads={threads}', 'run.device=cpu']
    teacher = Trainer(get_config('digits_edm', [f'run.dir={tmp / "teacher"}', *common])).fit(steps=1)
    out = {}
    for p in ALGORITHMS:
        tr = Trainer(get_config(p, [f'run.dir={tmp / p}', f'objective.cd.teacher={teacher.run_dir}', *common]))
        out[p] = (tr, 0)
    ect = out.pop('digits_ect')[0]
    last = ect.total_steps - 1  # in the last stage
    for stage, step in (('stage 0', 0), ('last stage', last)):
        for skip in (True, False):
            tr = Trainer(get_config('digits_ect', [f'run.dir={tmp / f"ect_{step}_{skip}"}', *common]))
            tr.objective.skip_r0 = skip
            out[f'digits_ect, {stage}, ' + ('skip r=0' if skip else 'full target pass')] = (tr, step)
    return out


def time_steps(tr, step:int, n:int) -> float:
    "img/s of n training steps taken from `step` (the trainer's counter is reset, so the stage stays the same)."
    tr.step = step
    t = time.perf_counter()
    for _ in range(n): tr.train_step()
    dt = time.perf_counter() - t
    tr.step = step
    return n * tr.cfg.data.batch_size / dt


def time_sampler(model, steps:int, n:int) -> float:
    "img/s of drawing n samples with `steps` network evaluations."
    t = time.perf_counter()
    with torch.no_grad(): generate(model, (n, *model.data_shape), steps, torch.Generator().manual_seed(0))
    return n / (time.perf_counter() - t)


def summary(v:list) -> dict: return dict(min=min(v), median=statistics.median(v), runs=v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--steps', type=int, default=20, help='training steps per timed repeat (default 20)')
    ap.add_argument('--samples', type=int, default=500, help='samples per timed sampler repeat (default 500)')
    ap.add_argument('--repeats', type=int, default=5, help='timed repeats of each configuration (default 5)')
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (default 1, as the digits presets)')
    ap.add_argument('--json', default=None, help='also write the settings and every timing to this file')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trs = trainers(Path(tmp), a.threads)
        for tr, step in trs.values(): time_steps(tr, step, 2)  # warm-up
        train = {k: [] for k in trs}
        edm, cm = trs['digits_edm'][0].ema, trs['digits_ict'][0].ema
        for m in (edm, cm): m.data_shape = tuple(trs['digits_edm'][0].data.shape)
        samplers = {'1-step': (cm, 1), '2-step': (cm, 2), 'EDM Heun, 35 NFE': (edm, 35)}
        sample = {k: [] for k in samplers}
        for r in range(a.repeats):
            for k, (tr, step) in trs.items(): train[k].append(time_steps(tr, step, a.steps))
            for k, (m, s) in samplers.items(): sample[k].append(time_sampler(m, s, a.samples))
            print(f'repeat {r + 1}/{a.repeats} done', file=sys.stderr, flush=True)
    res = dict(machine=f'{cpu_name()} ({os.cpu_count()} logical CPUs)', torch=torch.__version__, threads=a.threads,
               steps=a.steps, samples=a.samples, repeats=a.repeats, batch=64,
               train_img_per_s={k: summary(v) for k, v in train.items()},
               sample_img_per_s={k: summary(v) for k, v in sample.items()})
    heun, one = res['sample_img_per_s']['EDM Heun, 35 NFE']['median'], res['sample_img_per_s']['1-step']['median']
    res['one_step_speedup_over_heun35'] = one / heun
    print(f"{res['machine']}, torch {res['torch']}, {a.threads} thread(s); min and median of {a.repeats} repeats")
    print(f"{'training (batch 64)':44s} {'img/s min':>10s} {'median':>10s}")
    for k, v in res['train_img_per_s'].items(): print(f'{k:44s} {v["min"]:10.1f} {v["median"]:10.1f}')
    print(f"{'sampling':44s} {'img/s min':>10s} {'median':>10s}")
    for k, v in res['sample_img_per_s'].items(): print(f'{k:44s} {v["min"]:10.1f} {v["median"]:10.1f}')
    print(f"1-step sampling is {res['one_step_speedup_over_heun35']:.1f}x faster than EDM Heun at 35 NFE (medians)")
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == '__main__': main()
