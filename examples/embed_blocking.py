"""Embedding gaffer, blocking style: run two web servers until Ctrl-C."""

import signal

from gaffer import Manager, ProcessConfig

manager = Manager()
manager.start()
manager.load(ProcessConfig("web", "python3 -m http.server 8000", numprocesses=1, os_env=True))
manager.events.subscribe("job.default.web", lambda event, msg: print(event, msg))
manager.loop.add_signal_handler(signal.SIGINT, manager.stop)
manager.loop.add_signal_handler(signal.SIGTERM, manager.stop)
manager.run()
