"""The ``augplug demo`` and ``augplug views`` commands (see docs/demo.md).

``main(argv)`` trains small encoders with several view strategies on a multi-task data
set, probes every task and writes a report; ``views_main(argv)`` renders a grid of views
from any registered generator. Both take the arguments after the command word and
return an exit status.
"""

from augplug.demo.main import main
from augplug.demo.views import views_main

__all__ = ["main", "views_main"]
