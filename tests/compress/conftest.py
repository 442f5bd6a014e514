import pytest

from tests.compress.compress_models import BUILDERS


@pytest.fixture(params=sorted(BUILDERS))
def kind(request):
    return request.param
