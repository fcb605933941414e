"""How long evaluating 10,000 digits samples takes: drawing them (1-step, the digits preset's network) and measuring
them (`evaluation.measure`: features, FD, KID, precision/recall/density/coverage, classes, nearest-neighbour distances).

    python bench/eval_speed.py [--n 10000] [--repeats 5] [--threads 2] [--json FILE]

The feature network is trained first (into a temporary cache, not timed). The repeats interleave the two parts
(draw, measure, draw, measure, ...) so that a busy moment on shared cores hits both alike; the script reports the
minimum and the median of each.
"""
import argparse, json, platform, statistics, sys, tempfile, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from consistency_models.config import get_config
from consistency_models.training import build_model
from consistency_models.evaluation import make_reference, measure, draw


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--n', type=int, default=10_000, help='samples per repeat (default 10000)')
    ap.add_argument('--repeats', type=int, default=5, help='timed repeats of each part (default 5)')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads (default 2)')
    ap.add_argument('--json', default=None, help='also write the settings and every timing to this file')
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter(); ref = make_reference('digits', a.n, cache=cache); setup = time.perf_counter() - t
        cfg = get_config('digits')
        torch.manual_seed(0)
        model = build_model(cfg.model, ref.train.shape[1:], 0.75).eval().requires_grad_(False)
        model.data_shape = tuple(ref.train.shape[1:])
        times = dict(draw=[], measure=[])
        draw(model, 1000, 1); measure(ref.heldout, ref)  # warm-up, not timed
        for r in range(a.repeats):
            t = time.perf_counter(); x = draw(model, a.n, 1, seed=r); times['draw'].append(time.perf_counter() - t)
            t = time.perf_counter(); res = measure(x, ref); times['measure'].append(time.perf_counter() - t)
    print(f"# evaluation speed, {a.n} digits samples, {a.repeats} interleaved repeats, {a.threads} torch thread(s)")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}; reference set-up (feature network "
          f"trained, {len(ref.train)} images embedded) {setup:.1f} s, not timed below")
    print(f"{'part':<28}{'min s':>8}{'median s':>10}")
    for k, label in (('draw', f'draw {a.n} (1 step, unet_tiny)'), ('measure', f'measure {a.n} ({res["chunks"]} chunks)')):
        print(f"{label:<28}{min(times[k]):>8.2f}{statistics.median(times[k]):>10.2f}")
    tot = [d + m for d, m in zip(times['draw'], times['measure'])]
    print(f"{'total':<28}{min(tot):>8.2f}{statistics.median(tot):>10.2f}")
    if a.json: Path(a.json).write_text(json.dumps(dict(vars(a), setup_s=setup, times=times), indent=1))


if __name__ == '__main__':
    main()
