"Shared pytest set-up: the `slow` marker (deselect with `-m 'not slow'`)."

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes minutes (a full preset run); deselect with -m "not slow"')
