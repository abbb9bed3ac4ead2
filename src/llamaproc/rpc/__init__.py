"""One model over several machines: llama.cpp's RPC backend, in-process.

A *worker* lends this machine's devices (its GPUs, else its CPU) to a llama-server elsewhere::

    python -m llamaproc rpc-worker --port 50052          # on each helper machine

and a server places layers of its model on the workers with llama-server's own flag::

    LlamaServer.from_args(["-m", "model.gguf", "--rpc", "10.0.0.2:50052,10.0.0.3:50052"])

In Python, :class:`RpcWorker` runs a worker on a native thread of this process, stoppable like
a server. The RPC protocol has no authentication: workers listen on 127.0.0.1 unless you pass
``allow_remote=True`` (CLI ``--allow-remote``), and then only belong on a trusted network.
"""

from .worker import RpcWorker, rpc_supported

__all__ = ["RpcWorker", "rpc_supported"]
