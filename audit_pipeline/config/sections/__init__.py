"""The typed sections of the configuration file, one module per section (``sinks.*``, ``retention``, ``integrity``, ...)."""
