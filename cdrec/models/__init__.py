"""Model families; importing this package registers every model by name."""

from cdrec.models import cf  # noqa: F401
from cdrec.models import sequential  # noqa: F401
from cdrec.models import assisted  # noqa: F401
from cdrec.models import ctr  # noqa: F401
