import pytest

import evoreg


@pytest.fixture
def real_space() -> evoreg.Real:
    return evoreg.Real(5)
