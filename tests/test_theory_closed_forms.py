"Fast checks of the closed-form theory reports behind `cm-theory --json` (chapters 03 and 04)."
import json
from consistency_models.theorem2 import theorem2_report, ct_cd_losses, ct_cd_gap
from consistency_models.ema_bias import prop1_report, prop1_loss_limit


def test_theorem2_report_is_json_and_second_order():
    rep = json.loads(json.dumps(theorem2_report()))
    for teacher in ('offset', 'same'):
        r = rep[teacher]
        assert r['N'] == [80, 160, 320, 640, 1280]
        D = r['D']
        assert all(abs(d - (cd - ct)) < 1e-15 for d, ct, cd in zip(D, r['L_CT'], r['L_CD']))
        for N, a, b in zip(r['N'], D, D[1:]):
            if N >= 160: assert 3.8 <= a / b <= 4.2
    assert min(rep['offset']['L_CT']) > 0.3          # an offset teacher keeps the loss away from 0


def test_theorem2_exact_identity():
    l_ct, l_cd = ct_cd_losses(160, 'offset')
    assert abs((l_ct - l_cd) / ct_cd_gap(160, 'offset') - 1) < 1e-8


def test_prop1_report_is_json_and_matches_ict():
    k = json.loads(json.dumps(prop1_report()))['karras']
    assert set(k['loss']) == {'-5', '1', '10'}
    at_1e4 = [k['loss'][x][3] for x in ('-5', '1', '10')]
    assert (max(at_1e4) - min(at_1e4)) <= 0.03 * sum(at_1e4) / 3
    assert abs(k['loss']['1'][-1] / prop1_loss_limit() - 1) < 2e-3
    g = k['grad_step_same']
    assert abs(g[3] - g[4]) <= 0.01 * abs(g[4])
    for seq, sign in ((k['grad_mean_minus'], 1), (k['grad_mean_plus'], -1)):
        assert all(sign * v > 0 for v in seq)
        assert all(9 <= b / a <= 11 for a, b in zip(seq[1:], seq[2:]))
