"""gafferd: the gaffer daemon (ini configuration, binding, signals, plugins, webhooks)."""

import time

#: when this interpreter reached gafferd (before its imports): a hand-over says how long
#: the exec and the imports took
IMPORTED_AT = time.monotonic()
