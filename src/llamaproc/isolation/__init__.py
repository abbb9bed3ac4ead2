"""Process isolation: ``ServerConfig(isolation="process")`` runs llama.cpp in a child process
with the same API, so that a native crash ends the child and never the host.

* :mod:`.remote_server`: the host's side (``IsolatedNative``, the native server's interface).
* :mod:`.child`: the child program (``python -m llamaproc.isolation.child``).
* :mod:`.channel`: the authenticated local channel between them.
"""
