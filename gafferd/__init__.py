"""gafferd: the gaffer daemon (ini configuration, binding, signals, plugins, webhooks)."""
