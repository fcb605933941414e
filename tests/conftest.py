"""Shared pytest set-up: the `slow` marker.

Slow tests (a full preset run, torch.compile on a CPU) take minutes each. Like the notebooks' `#| slow` cells
(run with `nbdev_test --flags slow`), they are skipped unless asked for: `pytest tests --runslow`.
"""
import pytest

def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', default=False, help='also run tests marked slow')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes minutes (a full preset run, compiling); run with --runslow')

def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow'): return
    skip = pytest.mark.skip(reason='slow: run with --runslow')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)
